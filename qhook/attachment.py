# SPDX-License-Identifier: GPL-2.0-or-later
"""What crosses from the unprivileged hooks to root: one value per vNIC to plug, and
what a plug run made. Kept apart from the plumbing, so that a hook running as vdsm
loads no Open vSwitch, tap or netlink code it never runs."""

from dataclasses import dataclass, field
from typing import List, Optional

from qhook import domxml
from qhook.errors import QhookError
from qhook.vnic import ID_CHARS_IN_NAME, TAP_NAME, TAP_PREFIX, Plugin, QuantumVnic, parse_mtu

OVS_PLUGINS = (Plugin.OPENVSWITCH, Plugin.OVN)
MAX_QUEUES = 256


@dataclass(frozen=True)
class Attachment:
    """What plugging one Quantum vNIC of a VM needs, and all that crosses to root."""

    host_id: str
    mac: str
    plugin: Plugin
    vm_id: str
    multiqueue: bool
    mtu: Optional[int]
    network_id: Optional[str] = None
    mirror: bool = False  # the vNIC receives a copy of its network's traffic
    tap: Optional[str] = None  # the tap's name when it is not the one of host_id (moved)

    @property
    def tap_name(self) -> str:
        return self.tap or TAP_PREFIX + self.host_id[:ID_CHARS_IN_NAME]

    @property
    def on_ovs(self) -> bool:
        return self.plugin in OVS_PLUGINS


def _number(text: Optional[str], what: str, lowest: int, highest: int) -> Optional[int]:
    if text is None:
        return None
    if not text.isdigit() or not lowest <= int(text) <= highest:
        raise QhookError(f"{what} {text!a} is not a number from {lowest} to {highest}")
    return int(text)


def attachment(
    interface: domxml.Element, vnic: QuantumVnic, vm_id: str, mirror: bool = False
) -> Attachment:
    """The attachment of a vNIC: queues and MTU come from its <interface>."""
    driver = interface.find("driver")
    mtu = interface.find("mtu")
    target = domxml.interface_target(interface)
    derived = TAP_PREFIX + vnic.host_id[:ID_CHARS_IN_NAME]
    # A vNIC moved to another port while running keeps the tap its QEMU holds.
    tap = target if target and TAP_NAME.fullmatch(target) and target != derived else None
    queues = _number(None if driver is None else driver.get("queues"), "queues", 1, MAX_QUEUES)
    return Attachment(
        host_id=vnic.host_id,
        mac=vnic.mac,
        plugin=vnic.plugin,
        vm_id=vm_id,
        multiqueue=(queues or 1) > 1,
        mtu=parse_mtu(None if mtu is None else mtu.get("size"), "<mtu size>"),
        network_id=vnic.network_id,
        mirror=mirror,
        tap=tap,
    )


@dataclass
class Plugged:
    """What one plug run made, so that it can be undone: ports added, taps created."""

    vm_id: str
    created_taps: List[str] = field(default_factory=list)
    added_ports: List[str] = field(default_factory=list)
    unwired: List[str] = field(default_factory=list)
