# SPDX-License-Identifier: GPL-2.0-or-later
"""OVN (ovn-controller; oVirt's ovirt-provider-ovn, Neutron ML2/OVN): plugged as Open
vSwitch is, with iface-id the logical switch port's name; ovn-controller binds the port
and marks the Interface `ovn-installed`. Usable where ovn-controller is configured."""

from qhook.plugins import HostFacts, Plugin
from qhook.plugins.openvswitch import OpenvswitchPlugin


class OvnPlugin(OpenvswitchPlugin):
    plugin = Plugin.OVN
    label = "OVN"

    def usable(self, facts: HostFacts) -> bool:
        return facts.bridge_present and facts.ovn_chassis is not None


PLUGIN = OvnPlugin()
