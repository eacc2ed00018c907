# SPDX-License-Identifier: GPL-2.0-or-later
"""The Linux bridge agent: a tap named after the port, which the agent finds by that name
and puts on its `brq` bridge. Wired: the tap has a master. No Open vSwitch, so no port
mirroring; the name is the port's, so a running vNIC cannot move to another port."""

from typing import TYPE_CHECKING, Optional

from qhook.plugins import HostFacts, InterfaceSpec, Plugin, VnicPlugin, Watch
from qhook.vocabulary.config import OvsConfig, PlugMode

if TYPE_CHECKING:
    from qhook.plugins import PortView


class LinuxbridgePlugin(VnicPlugin):
    plugin = Plugin.LINUXBRIDGE
    label = "Linux bridge"
    on_integration_bridge = False
    watch = Watch.LINK
    finds_the_tap_by_name = True
    cannot_mirror = "a Linux bridge vNIC cannot: mirrors are made on Open vSwitch"
    cannot_move = (
        "a Linux bridge vNIC cannot move to another Quantum port while the VM runs: the "
        "agent finds the tap by a name made from the port id, and the running QEMU's tap "
        "cannot be renamed; unplug and plug the vNIC instead"
    )

    def interface(self, tap_name: str, host_id: str, ovs: OvsConfig) -> InterfaceSpec:
        """A tap the hook makes and libvirt uses as it is, in either plug mode."""
        return InterfaceSpec(type="ethernet", target_dev=tap_name, target_managed="no")

    def hook_makes_tap(self, plug: PlugMode) -> bool:
        return True

    def wired(self, port: Optional["PortView"], linked: bool, network: Optional[str]) -> bool:
        return linked

    def usable(self, facts: HostFacts) -> bool:
        return facts.tun


PLUGIN = LinuxbridgePlugin()
