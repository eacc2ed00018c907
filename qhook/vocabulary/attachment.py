# SPDX-License-Identifier: GPL-2.0-or-later
"""What crosses from the unprivileged hooks to root: one value per vNIC to plug, and what
a plug run made. Kept apart from the plumbing, so that a hook running as vdsm loads no
Open vSwitch, tap or netlink code it never runs."""

from dataclasses import dataclass, field
from typing import Dict, List, Optional

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
    # The plugin is the one the port's binding (or [ovs] hybrid_plug) says, not the
    # vNIC's property: qhook.host.bindings decided, or the ports on demand did.
    decided: bool = False

    @property
    def tap_name(self) -> str:
        return self.tap or tap_name_of(self.host_id)

    @property
    def on_integration_bridge(self) -> bool:
        """Its plugin puts it on the integration bridge (an OVS port, or libvirt's)."""
        return plugins.of(self.plugin).on_integration_bridge

    def hook_makes_tap(self, plug: PlugMode) -> bool:
        """The hook makes its tap in this plug mode (else libvirt does)."""
        return plugins.of(self.plugin).hook_makes_tap(plug)

    def hook_adds_port(self, plug: PlugMode) -> bool:
        """The hook adds its integration-bridge port in this plug mode."""
        return plugins.of(self.plugin).hook_adds_port(plug)

    @property
    def hybrid(self) -> bool:
        """Plugged hybrid: the tap in a Linux bridge of its own (qhook.host.hybrid)."""
        return plugins.of(self.plugin).hybrid

    @property
    def port_name(self) -> str:
        """The name of its integration-bridge port: the tap's, or qvo<id11> if hybrid."""
        return plugins.of(self.plugin).bridge_port(self.tap_name)


@dataclass
class Plugged:
    """What one plug run made, so that it can be undone: ports added, taps created."""

    vm_id: str
    created_taps: List[str] = field(default_factory=list)
    added_ports: List[str] = field(default_factory=list)
    unwired: List[str] = field(default_factory=list)
    created_devices: List[str] = field(default_factory=list)  # hybrid bridges and veths
    plugged_as: Dict[str, str] = field(default_factory=dict)  # MAC: plugin, where decided
    notes: List[str] = field(default_factory=list)
