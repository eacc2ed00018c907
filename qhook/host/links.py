# SPDX-License-Identifier: GPL-2.0-or-later
"""Network devices ("links") through rtnetlink, and the mark that says they are ours.

A few netlink messages make, change, inspect and delete devices by name, so the hooks do
not pay for importing a netlink library. The mark is the device's alias (`ip link`
shows it): ``vdsm-hook-quantum vnic=<host id> vm=<VM UUID> since=<seconds>``. Only root
(CAP_NET_ADMIN) can set it. Callers give names they checked against this package's
patterns, which also makes each one safe in a /proc or /sys path.
"""

import errno
import os
import re
import socket
import struct
import threading
import time
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from qhook import PROGRAM
from qhook.errors import QhookError, shown

SYS_NET = "/sys/class/net"

NETLINK_ROUTE = 0
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
NLMSG_ERROR = 0x2
IFLA_IFNAME, IFLA_MTU, IFLA_MASTER, IFLA_LINKINFO, IFLA_IFALIAS = 3, 4, 10, 18, 20
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
IFLA_BR_AGEING_TIME = 4
IFLA_BR_NF_CALL_IPTABLES, IFLA_BR_NF_CALL_IP6TABLES, IFLA_BR_NF_CALL_ARPTABLES = 36, 37, 38
VETH_INFO_PEER = 1
NLA_TYPE_MASK = 0x3FFF  # without NLA_F_NESTED and NLA_F_NET_BYTEORDER
IFF_UP, IFF_PROMISC = 0x1, 0x100

MARK = PROGRAM
_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class LinkError(QhookError):
    """The kernel refused a request on a device (OSError's errno in `errno`)."""

    def __init__(self, message: str, error_number: int = 0):
        super().__init__(message)
        self.errno = error_number


def mark_text(host_id: str, vm_id: str) -> str:
    """Our mark: the vNIC, the VM and when it was plugged. Both ids are canonical UUIDs,
    whoever gave them, so no word can be slipped in."""
    for value in (host_id, vm_id):
        if not _ID.fullmatch(value):
            raise QhookError(f"{shown(value)} is not a canonical UUID: no device is marked with it")
    return f"{MARK} vnic={host_id} vm={vm_id} since={int(time.time())}"


def parse_mark(alias: str) -> Dict[str, str]:
    """The fields of our mark, or {} for any other alias."""
    words = alias.split()
    if not words or words[0] != MARK:
        return {}
    fields = dict(word.split("=", 1) for word in words[1:] if "=" in word)
    return fields if "vnic" in fields else {}


def read(name: str, entry: str) -> Optional[str]:
    """/sys/class/net/NAME/ENTRY, stripped; None if absent."""
    try:
        with open(os.path.join(SYS_NET, name, entry)) as stream:
            return stream.read().strip()
    except OSError:
        return None


def mark_of(name: str) -> Dict[str, str]:
    """Our mark on the device of this name ({} if none, or no such device)."""
    return parse_mark(read(name, "ifalias") or "")


def exists(name: str) -> bool:
    return os.path.isdir(os.path.join(SYS_NET, name))


def attribute(kind: int, value: bytes) -> bytes:
    """A netlink attribute, padded to 4 bytes."""
    attr = struct.pack("HH", 4 + len(value), kind) + value
    return attr + b"\0" * (-len(attr) % 4)


def text(kind: int, value: str) -> bytes:
    """An attribute holding a NUL-terminated string."""
    return attribute(kind, value.encode() + b"\0")


def number(kind: int, value: int) -> bytes:
    """An attribute holding an unsigned 32-bit number."""
    return attribute(kind, struct.pack("I", value))


def byte(kind: int, value: int) -> bytes:
    """An attribute holding an unsigned 8-bit number."""
    return attribute(kind, struct.pack("B", value))


def _ifinfo(flags: int = 0, change: int = 0) -> bytes:
    return struct.pack("BxHiII", socket.AF_UNSPEC, 0, 0, flags, change)


def _talk(kind: int, flags: int, body: bytes, timeout: float) -> bytes:
    """One request; the kernel's answer (an ACK, an error or the link asked for)."""
    header = struct.pack("IHHII", 16 + len(body), kind, NLM_F_REQUEST | flags, 1, 0)
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE) as sock:
        sock.settimeout(timeout)
        sock.sendto(header + body, (0, 0))
        return sock.recv(65536)


def request(
    kind: int,
    name: str,
    extra: bytes = b"",
    flags: int = 0,
    link_flags: int = 0,
    change: int = 0,
    timeout: float = 5.0,
) -> None:
    """One rtnetlink request on the link of this name (the device flags in `change` set
    as in `link_flags`); OSError with the kernel's errno."""
    body = _ifinfo(link_flags, change) + text(IFLA_IFNAME, name) + extra
    reply = _talk(kind, NLM_F_ACK | flags, body, timeout)
    _, answer = struct.unpack_from("IH", reply)
    if answer != NLMSG_ERROR:
        raise OSError(errno.EPROTO, f"unexpected netlink reply {answer}")
    (code,) = struct.unpack_from("i", reply, 16)
    if code:
        raise OSError(-code, os.strerror(-code))


def _attributes(data: bytes, offset: int = 0) -> Iterator[Tuple[int, bytes]]:
    while offset + 4 <= len(data):
        length, kind = struct.unpack_from("HH", data, offset)
        if length < 4:
            return
        yield kind & NLA_TYPE_MASK, data[offset + 4 : offset + length]
        offset += (length + 3) & ~3


def kind_of(name: str, timeout: float = 5.0) -> Optional[str]:
    """The device's kind as `ip -d link` names it ("bridge", "veth", "tun"), "" for a
    device without one (a physical NIC), None if there is no such device."""
    body = _ifinfo() + text(IFLA_IFNAME, name)
    try:
        reply = _talk(RTM_GETLINK, 0, body, timeout)
    except OSError as error:
        raise LinkError(f"cannot look at device {name}: {error.strerror or error}") from None
    _, answer = struct.unpack_from("IH", reply)
    if answer == NLMSG_ERROR:
        (code,) = struct.unpack_from("i", reply, 16)
        if -code == errno.ENODEV:
            return None
        raise LinkError(f"cannot look at device {name}: {os.strerror(-code)}", -code)
    for attr, value in _attributes(reply, 32):
        if attr == IFLA_LINKINFO:
            for inner, info in _attributes(value):
                if inner == IFLA_INFO_KIND:
                    return info.rstrip(b"\0").decode(errors="replace")
    return ""


def create(name: str, kind: str, data: bytes = b"", timeout: float = 5.0) -> None:
    """A new device of this kind (its IFLA_INFO_DATA given); LinkError with EEXIST if the
    name is taken."""
    info = text(IFLA_INFO_KIND, kind) + (attribute(IFLA_INFO_DATA, data) if data else b"")
    try:
        flags = NLM_F_CREATE | NLM_F_EXCL
        request(RTM_NEWLINK, name, attribute(IFLA_LINKINFO, info), flags, timeout=timeout)
    except OSError as error:
        raise LinkError(
            f"cannot create {kind} {name}: {error.strerror or error}", error.errno or 0
        ) from None


def veth_peer(name: str) -> bytes:
    """The IFLA_INFO_DATA of a veth pair whose other end is `name`."""
    return attribute(VETH_INFO_PEER, _ifinfo() + text(IFLA_IFNAME, name))


def configure(
    name: str,
    mark: Optional[str] = None,
    mtu: Optional[int] = None,
    master: Optional[str] = None,
    up: Optional[bool] = True,
    promiscuous: Optional[bool] = None,
    timeout: float = 5.0,
) -> None:
    """Set what is given of the device's alias, MTU, bridge (master), state and
    promiscuity, in one request (None leaves a flag as it is)."""
    extra = b""
    if mark is not None:
        extra += text(IFLA_IFALIAS, mark)
    if mtu is not None:
        extra += number(IFLA_MTU, mtu)
    if master is not None:
        index = read(master, "ifindex")
        if index is None or not index.isdigit():
            raise LinkError(f"cannot put {name} in {master}: there is no {master}")
        extra += number(IFLA_MASTER, int(index))
    link_flags = change = 0
    for flag, wanted in ((IFF_UP, up), (IFF_PROMISC, promiscuous)):
        if wanted is not None:
            change |= flag
            link_flags |= flag if wanted else 0
    try:
        request(RTM_NEWLINK, name, extra, link_flags=link_flags, change=change, timeout=timeout)
    except OSError as error:
        raise LinkError(
            f"cannot set up device {name}: {error.strerror or error}", error.errno or 0
        ) from None


def master_of(name: str) -> Optional[str]:
    """The name of the bridge the device is a port of, if any."""
    try:
        return os.path.basename(os.readlink(os.path.join(SYS_NET, name, "master")))
    except OSError:
        return None


def delete(name: str, timeout: float = 5.0) -> bool:
    """Delete a device by name; False if it was already gone."""
    try:
        request(RTM_DELLINK, name, timeout=timeout)
    except OSError as error:
        if error.errno == errno.ENODEV:
            return False
        raise LinkError(
            f"cannot delete device {name}: {error.strerror or error}", error.errno or 0
        ) from None
    return True


def delete_many(names: Sequence[str], timeout: float = 5.0) -> List[str]:
    """Delete these devices at once, one thread each (the kernel's wait after each
    deletion then overlaps: 16 taps take ~30 ms instead of ~360); the errors, one line each."""
    problems: List[str] = []

    def one(name: str) -> None:
        try:
            delete(name, timeout)
        except LinkError as error:
            problems.append(str(error))

    workers = [threading.Thread(target=one, args=(name,)) for name in names]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sorted(problems)


def write_sysctl(path: str, value: str) -> None:
    """A /proc/sys entry of a device of ours, if the kernel has it."""
    try:
        with open(path, "w") as stream:
            stream.write(value)
    except FileNotFoundError:
        pass
    except OSError as error:
        raise LinkError(f"cannot write {path}: {error.strerror or error}") from None
