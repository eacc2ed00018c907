# SPDX-License-Identifier: GPL-2.0-or-later
"""Open vSwitch: the Quantum/Neutron OVS agent's vNIC, a port of the integration bridge.

With `[ovs] plug = hook` the hook makes the tap and adds the port with the ids the agent
reads; with `plug = libvirt` the interface is an openvswitch virtualport libvirt plugs.
Wired: the agent has given the Port its local VLAN tag (not the dead 4095) and
`other_config:net_uuid` (for the network named, after a move), or ovn-controller has
marked the Interface `ovn-installed` (a Neutron whose backend is OVN)."""

from __future__ import annotations

from qhook.plugins import HostFacts, InterfaceSpec, Plugin, VnicPlugin, Watch
from qhook.vocabulary.config import OvsConfig, PlugMode

TYPE_CHECKING = False  # typing.TYPE_CHECKING: a device hook does not import typing
if TYPE_CHECKING:
    from typing import Optional

    from qhook.plugins import PortView

DEAD_VLAN = 4095


def wired_on_the_integration_bridge(port: Optional[PortView], network: Optional[str]) -> bool:
    """ovn-controller installed its flows, or the OVS agent tagged the port (for network)."""
    if port is None:
        return False
    installed = port.external_ids.get("ovn-installed") == "true"
    tagged = port.tag is not None and port.tag != DEAD_VLAN
    if not (installed or (tagged and "net_uuid" in port.port_other_config)):
        return False
    # After a move the old network's tag stays until the agent rewires the port.
    return network is None or port.port_other_config.get("net_uuid", network) == network


class OpenvswitchPlugin(VnicPlugin):
    plugin = Plugin.OPENVSWITCH
    label = "Open vSwitch"
    on_integration_bridge = True
    watch = Watch.OVSDB

    def interface(self, tap_name: str, host_id: str, ovs: OvsConfig) -> InterfaceSpec:
        """In hook mode a tap the hook makes; in libvirt mode an OVS virtualport libvirt plugs."""
        if ovs.plug is PlugMode.LIBVIRT:
            return InterfaceSpec(
                type="bridge",
                target_dev=tap_name,
                source_bridge=ovs.integration_bridge,
                ovs_interface_id=host_id,
            )
        return InterfaceSpec(type="ethernet", target_dev=tap_name, target_managed="no")

    def hook_makes_tap(self, plug: PlugMode) -> bool:
        return plug is PlugMode.HOOK

    def wired(self, port: Optional[PortView], linked: bool, network: Optional[str]) -> bool:
        return wired_on_the_integration_bridge(port, network)

    def usable(self, facts: HostFacts) -> bool:
        return facts.bridge_present


PLUGIN = OpenvswitchPlugin()
