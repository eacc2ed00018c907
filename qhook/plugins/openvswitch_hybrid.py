# SPDX-License-Identifier: GPL-2.0-or-later
"""Open vSwitch, hybrid: the OVS agent's vNIC under Neutron's iptables_hybrid firewall,
whose binding says `ovs_hybrid_plug`. The tap is a port of the vNIC's own Linux bridge
`qbr<id11>`, where the agent's iptables rules filter it; a veth pair joins that bridge to
the integration bridge, whose port `qvo<id11>` carries the ids and is what the agent
wires (qhook.host.hybrid makes the devices).

With `[ovs] plug = hook` the hook makes the tap and puts it in the bridge; with
`plug = libvirt` the interface is a bridge interface on `qbr<id11>`, where libvirt puts
the tap it makes. The firewall's rules name the tap after the port, so a running vNIC
cannot move to another port, and the copies a mirror would send it are not its own
traffic to the firewall: both are refused."""

from qhook.plugins import InterfaceSpec, Plugin
from qhook.plugins.openvswitch import OpenvswitchPlugin
from qhook.vocabulary.config import OvsConfig, PlugMode
from qhook.vocabulary.ids import hybrid_names


class OvsHybridPlugin(OpenvswitchPlugin):
    plugin = Plugin.OVS_HYBRID
    label = "Open vSwitch (hybrid)"
    hybrid = True
    finds_the_tap_by_name = True
    cannot_mirror = (
        "a vNIC plugged hybrid (iptables_hybrid firewall) cannot: its security groups "
        "would filter the copies as its own traffic"
    )
    cannot_move = (
        "a vNIC plugged hybrid (iptables_hybrid firewall) cannot move to another Quantum "
        "port while the VM runs: the firewall's rules name the tap after the port, and the "
        "running QEMU's tap cannot be renamed; unplug and plug the vNIC instead"
    )

    def interface(self, tap_name: str, host_id: str, ovs: OvsConfig) -> InterfaceSpec:
        """In hook mode the hook's tap; in libvirt mode a bridge interface on qbr<id11>."""
        if ovs.plug is PlugMode.LIBVIRT:
            bridge, _, _ = hybrid_names(tap_name)
            return InterfaceSpec(type="bridge", target_dev=tap_name, source_bridge=bridge)
        return InterfaceSpec(type="ethernet", target_dev=tap_name, target_managed="no")

    def bridge_port(self, tap_name: str) -> str:
        return hybrid_names(tap_name)[2]

    def hook_adds_port(self, plug: PlugMode) -> bool:
        return True  # qvo, in either plug mode


PLUGIN = OvsHybridPlugin()
