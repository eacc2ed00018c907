# SPDX-License-Identifier: GPL-2.0-or-later
"""Hybrid plugging's devices, as os-vif makes them for nova: the vNIC's own Linux bridge
`qbr<id11>`, which its tap joins, and a veth pair from it (`qvb<id11>`) to the
integration bridge (`qvo<id11>`, the port the agent wires). Neutron's iptables_hybrid
firewall filters the vNIC with `physdev` rules on the tap as a port of that bridge; a tap
straight on the integration bridge is never filtered.

The bridge forgets MACs at once (ageing 0: nothing is lost when the VM moves), hands its
frames to netfilter (also where the host's bridge-nf-call sysctls are off), answers no
ARP of the host's and has no IPv6 of its own; every device carries the MTU and our
mark (qhook.host.links). Only devices of these names, of the right kind and marked as
ours for the vNIC, are ever changed or removed.
"""

import errno
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

from qhook.errors import QhookError
from qhook.host import links
from qhook.vocabulary.ids import HYBRID_NAME, TAP_NAME, hybrid_names, tap_name_behind

FOREIGN = "already exists and belongs to something else"
# No MAC ageing; its frames go through iptables, ip6tables and arptables whatever the
# host's net.bridge.bridge-nf-call-* say (br_netfilter must be loaded for either).
_BRIDGE = links.number(links.IFLA_BR_AGEING_TIME, 0) + b"".join(
    links.byte(kind, 1)
    for kind in (
        links.IFLA_BR_NF_CALL_IPTABLES,
        links.IFLA_BR_NF_CALL_IP6TABLES,
        links.IFLA_BR_NF_CALL_ARPTABLES,
    )
)


@dataclass(frozen=True)
class Devices:
    """A hybrid vNIC's three devices, named after its tap."""

    bridge: str
    bridge_end: str
    ovs_end: str

    @property
    def all(self) -> List[str]:
        return [self.bridge, self.bridge_end, self.ovs_end]

    def kind(self, name: str) -> str:
        """The kind each of them must be."""
        return "bridge" if name == self.bridge else "veth"


def of(tap_name: str) -> Devices:
    """The devices of the vNIC whose tap has this name."""
    if not isinstance(tap_name, str) or not TAP_NAME.fullmatch(tap_name):
        raise QhookError(f"{tap_name!a} is not a tap name of this package")
    return Devices(*hybrid_names(tap_name))


def mark(name: str, devices: Devices) -> Optional[Dict[str, str]]:
    """Our mark on the device if it is ours and of its kind; None if there is no device
    of that name; {} if it is somebody else's."""
    if not links.exists(name):
        return None  # the common case, without a netlink round trip
    kind = links.kind_of(name)
    if kind is None:
        return None
    found = links.mark_of(name)
    return found if found and kind == devices.kind(name) else {}


def present(devices: Devices, vm_id: Optional[str] = None) -> Optional[str]:
    """The vNIC (host id) whose bridge of ours this is (for this VM, if given), or None."""
    found = mark(devices.bridge, devices) or {}
    if vm_id is not None and found.get("vm") != vm_id:
        return None
    return found.get("vnic")


def check(devices: Devices, host_id: str) -> None:
    """Refuse, changing nothing, if a device of these names is not ours for this vNIC."""
    for name in devices.all:
        found = mark(name, devices)
        if found is not None and found.get("vnic") != host_id:
            raise QhookError(f"device {name} {FOREIGN}")


def make(
    devices: Devices,
    host_id: str,
    vm_id: str,
    mtu: Optional[int],
    made: List[str],
    timeout: float,
) -> None:
    """Make what is missing of the bridge and the veth pair, and mark, size and set up
    all of it (what is there, ours for the vNIC, is taken over: a leftover, or a
    concurrent run of this VM's). What it made is added to `made` as it goes, for
    remove_named()."""
    check(devices, host_id)
    marked = links.mark_text(host_id, vm_id)
    if _create(devices.bridge, "bridge", _BRIDGE, devices, host_id, timeout):
        made.append(devices.bridge)
    sysctl = "/proc/sys/net"
    links.write_sysctl(f"{sysctl}/ipv6/conf/{devices.bridge}/disable_ipv6", "1")
    links.write_sysctl(f"{sysctl}/ipv4/conf/{devices.bridge}/arp_ignore", "1")
    links.write_sysctl(f"{sysctl}/ipv4/conf/{devices.bridge}/arp_announce", "2")
    links.configure(devices.bridge, mark=marked, mtu=mtu, timeout=timeout)
    peer = links.veth_peer(devices.ovs_end)
    if _create(devices.bridge_end, "veth", peer, devices, host_id, timeout):
        made.append(devices.bridge_end)
    for end in (devices.ovs_end, devices.bridge_end):
        links.configure(end, mark=marked, mtu=mtu, promiscuous=True, timeout=timeout)
    links.configure(devices.bridge_end, master=devices.bridge, timeout=timeout)


def _create(
    name: str, kind: str, data: bytes, devices: Devices, host_id: str, timeout: float
) -> bool:
    """Make the device unless it is there; True if made. One made meanwhile by anybody
    but a run for this vNIC is refused."""
    if links.exists(name):
        return False
    try:
        links.create(name, kind, data, timeout)
    except links.LinkError as error:
        if error.errno != errno.EEXIST:
            raise
        check(devices, host_id)
        return False
    return True


def join(tap_name: str, devices: Devices, timeout: float) -> None:
    """Put the vNIC's tap in its bridge."""
    links.configure(tap_name, master=devices.bridge, up=None, timeout=timeout)


def joined(tap_name: str, devices: Devices) -> bool:
    """Whether the tap is a port of the vNIC's bridge."""
    return links.master_of(tap_name) == devices.bridge


def removable(devices: Devices, vm_id: Optional[str]) -> List[str]:
    """Which of the vNIC's bridge and veth ends to delete: those ours (and this VM's, if
    given); of the veth pair one end, which takes the other with it."""
    names = []
    for name in devices.all:
        found = mark(name, devices)
        if found and (vm_id is None or found.get("vm") == vm_id):
            names.append(name)
    if devices.bridge_end in names and devices.ovs_end in names:
        names.remove(devices.ovs_end)
    return names


def remove(devices: Devices, vm_id: Optional[str], timeout: float) -> List[str]:
    """Delete the vNIC's bridge and veth pair where ours (and this VM's, if given; the
    tap is the caller's); what could not be done, one line each."""
    try:
        return links.delete_many(removable(devices, vm_id), timeout)
    except links.LinkError as error:
        return [str(error)]


def remove_named(names: Sequence[str], vm_id: str, timeout: float) -> List[str]:
    """Delete these hybrid devices (what a plug run made), where ours and this VM's."""
    problems = []
    for name in names:
        if not isinstance(name, str) or not HYBRID_NAME.fullmatch(name):
            problems.append(f"{name!a} is not a device name of this package")
            continue
        devices = of(tap_name_behind(name))
        try:
            found = mark(name, devices)
            if found and found.get("vm") == vm_id:
                links.delete(name, timeout)
        except links.LinkError as error:
            problems.append(str(error))
    return problems


def complete(devices: Devices, host_id: str, vm_id: str) -> bool:
    """All three devices are there, ours for this vNIC and VM, the veth in the bridge."""
    for name in devices.all:
        found = mark(name, devices)
        if not found or found.get("vnic") != host_id or found.get("vm") != vm_id:
            return False
    return links.master_of(devices.bridge_end) == devices.bridge


def named_here() -> List[str]:
    """Every device named like a hybrid vNIC's bridge or veth end."""
    try:
        entries = os.listdir(links.SYS_NET)
    except OSError:
        return []
    return sorted(name for name in entries if HYBRID_NAME.fullmatch(name))
