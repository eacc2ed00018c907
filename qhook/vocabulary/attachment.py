# SPDX-License-Identifier: GPL-2.0-or-later
"""What crosses from the unprivileged hooks to root: one value per vNIC to plug, and what
a plug run made. Kept apart from the plumbing, so that a hook running as vdsm loads no
Open vSwitch, tap or netlink code it never runs."""

from dataclasses import dataclass, field
from typing import List, Optional

from qhook import plugins
from qhook.plugins import Plugin
from qhook.vocabulary.config import PlugMode
from qhook.vocabulary.ids import tap_name_of


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
        return self.tap or tap_name_of(self.host_id)

    @property
    def on_integration_bridge(self) -> bool:
        """Its plugin puts it on the integration bridge (an OVS port, or libvirt's)."""
        return plugins.of(self.plugin).on_integration_bridge

    def hook_makes_tap(self, plug: PlugMode) -> bool:
        """The hook makes its tap in this plug mode (else libvirt does, and plugs it)."""
        return plugins.of(self.plugin).hook_makes_tap(plug)


@dataclass
class Plugged:
    """What one plug run made, so that it can be undone: ports added, taps created."""

    vm_id: str
    created_taps: List[str] = field(default_factory=list)
    added_ports: List[str] = field(default_factory=list)
    unwired: List[str] = field(default_factory=list)
