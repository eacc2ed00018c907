# SPDX-License-Identifier: GPL-2.0-or-later
"""Tap devices: create, inspect and delete, with a mark that says this package made them.

A handful of ioctls on /dev/net/tun and netlink messages (qhook.host.links, which also
holds the mark: the device's alias) do all that is needed.
Every function takes only names of this package's pattern (`tap` + 8 hex + `-` + 2 hex),
whoever said them (a request, Open vSwitch, the kernel), so a name can never be a path.
"""

import errno
import fcntl
import os
import socket
import struct
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Set

from qhook.errors import QhookError, shown
from qhook.host import links
from qhook.vocabulary.ids import TAP_NAME

SYS_NET = "/sys/class/net"
TUN_DEVICE = "/dev/net/tun"

TUNSETIFF = 0x400454CA
TUNSETPERSIST = 0x400454CB
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
SIOCSIFMTU = 0x8922
IFF_UP = 0x1
IFF_TAP = 0x0002
IFF_MULTI_QUEUE = 0x0100
IFF_NO_PI = 0x1000
IFF_TUN_EXCL = 0x8000


class TapError(QhookError):
    """A tap device could not be made, changed or removed."""


class TapTaken(TapError):
    """A device of that name appeared between the look and the making."""


def checked(name: str) -> str:
    """The name, if it is one of this package's tap names; TapError otherwise."""
    if not isinstance(name, str) or not TAP_NAME.fullmatch(name):
        raise TapError(f"{shown(str(name))} is not a tap name of this package")
    return name


@dataclass(frozen=True)
class TapState:
    """What the host says about a network device of a tap's name."""

    name: str
    is_tap: bool
    multiqueue: bool
    carrier: bool
    mark: Dict[str, str]

    @property
    def ours(self) -> bool:
        return self.is_tap and bool(self.mark)

    def belongs_to(self, host_id: str) -> bool:
        return self.ours and self.mark.get("vnic") == host_id

    def mine(self, host_id: str, vm_id: str) -> bool:
        """Ours, for this vNIC and this VM."""
        return self.belongs_to(host_id) and self.mark.get("vm") == vm_id


def _read(path: str) -> Optional[str]:
    try:
        with open(path) as stream:
            return stream.read().strip()
    except OSError:
        return None


def names() -> List[str]:
    """Every network device named like one of our taps."""
    try:
        return sorted(n for n in os.listdir(SYS_NET) if TAP_NAME.fullmatch(n))
    except OSError:
        return []


def state(name: str) -> Optional[TapState]:
    """The device of this name, or None if there is none."""
    base = os.path.join(SYS_NET, checked(name))
    if not os.path.isdir(base):
        return None
    tun_flags = _read(os.path.join(base, "tun_flags"))
    return TapState(
        name=name,
        is_tap=tun_flags is not None and bool(int(tun_flags, 16) & IFF_TAP),
        multiqueue=tun_flags is not None and bool(int(tun_flags, 16) & IFF_MULTI_QUEUE),
        carrier=_read(os.path.join(base, "carrier")) == "1",
        mark=links.parse_mark(_read(os.path.join(base, "ifalias")) or ""),
    )


def held(name: str) -> bool:
    """Whether a process (QEMU) has the tap open."""
    return name in held_among([name])


def held_among(names: Sequence[str]) -> Set[str]:
    """Those of these taps a process (QEMU) has open. A tap that is up has a carrier
    exactly while a queue is attached; for those that are down, every process's
    descriptors are looked at once (the tun driver names its device in fdinfo)."""
    found, down = set(), set()
    for name in names:
        carrier = _read(os.path.join(SYS_NET, checked(name), "carrier"))
        if carrier is None:
            down.add(name)
        elif carrier == "1":
            found.add(name)
    if down:
        opened = _opened_tun_devices()
        found |= down if opened is None else down & opened
    return found


def _opened_tun_devices() -> Optional[Set[str]]:
    """The tun/tap devices some process has open; None if /proc cannot be read."""
    try:
        processes = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return None  # cannot tell: every tap is held, so nothing is taken from one
    opened = set()
    for pid in processes:
        directory = f"/proc/{pid}/fdinfo"
        try:
            descriptors = os.listdir(directory)
        except OSError:
            continue
        for fd in descriptors:
            text = _read_raw(os.path.join(directory, fd))
            if text is not None and "iff:\t" in text:
                opened.update(
                    line[len("iff:\t") :] for line in text.splitlines() if line.startswith("iff:\t")
                )
    return opened


def _read_raw(path: str) -> Optional[str]:
    try:
        with open(path) as stream:
            return stream.read(4096)
    except OSError:
        return None


def _ifreq(name: str, payload: bytes = b"") -> bytes:
    return struct.pack("16s", name.encode()) + payload.ljust(24, b"\0")


def _fail(name: str, action: str, error: OSError) -> TapError:
    reason = os.strerror(error.errno) if error.errno else "no answer in time"
    return TapError(f"cannot {action} tap {name}: {reason}")


def create(name: str, host_id: str, vm_id: str, multiqueue: bool, mtu: Optional[int]) -> None:
    """Make a persistent tap, marked as ours, with the MTU given, and set it up.

    Fails if a device of that name exists: callers decide first what to do with one.
    The tap is marked and set up while only our descriptor keeps it, and made persistent
    last: a process killed before that leaves no tap, and one killed after leaves a tap
    marked as ours, which cleanup can tell from anybody else's.
    """
    checked(name)
    flags = IFF_TAP | IFF_NO_PI | IFF_TUN_EXCL | (IFF_MULTI_QUEUE if multiqueue else 0)
    try:
        fd = os.open(TUN_DEVICE, os.O_RDWR | os.O_CLOEXEC)
    except OSError as error:
        raise _fail(name, "create", error) from None
    try:
        try:
            fcntl.ioctl(fd, TUNSETIFF, _ifreq(name, struct.pack("H", flags)))
        except OSError as error:
            if error.errno in (errno.EBUSY, errno.EEXIST):
                raise TapTaken(str(_fail(name, "create", error))) from None
            raise _fail(name, "create", error) from None
        configure(name, host_id, vm_id, mtu)
        try:
            fcntl.ioctl(fd, TUNSETPERSIST, 1)
        except OSError as error:
            raise _fail(name, "create", error) from None
    finally:
        os.close(fd)  # without TUNSETPERSIST, the tap goes with it


def configure(name: str, host_id: str, vm_id: str, mtu: Optional[int]) -> None:
    """Mark the tap as ours, give it the MTU and set it up."""
    try:
        links.configure(checked(name), mark=links.mark_text(host_id, vm_id), up=None)
    except links.LinkError as error:
        reason = os.strerror(error.errno) if error.errno else error
        raise TapError(f"cannot mark tap {name}: {reason}") from None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            if mtu is not None:
                fcntl.ioctl(sock, SIOCSIFMTU, _ifreq(name, struct.pack("i", mtu)))
            current = fcntl.ioctl(sock, SIOCGIFFLAGS, _ifreq(name))
            (flags,) = struct.unpack_from("H", current, 16)
            fcntl.ioctl(sock, SIOCSIFFLAGS, _ifreq(name, struct.pack("H", flags | IFF_UP)))
        except OSError as error:
            raise _fail(name, "set up", error) from None


def delete_many(names: Sequence[str], timeout: float = 5.0) -> List[str]:
    """Delete these taps at once (qhook.host.links.delete_many); the errors, one line each."""
    return [
        problem.replace("device", "tap", 1)
        for problem in links.delete_many([checked(name) for name in names], timeout)
    ]


def delete(name: str, timeout: float = 5.0) -> bool:
    """Delete a device by name (netlink RTM_DELLINK); False if it was already gone."""
    try:
        return links.delete(checked(name), timeout)
    except links.LinkError as error:
        reason = os.strerror(error.errno) if error.errno else error
        raise TapError(f"cannot delete tap {name}: {reason}") from None
