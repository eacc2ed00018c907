# SPDX-License-Identifier: GPL-2.0-or-later
"""Open vSwitch (Quantum/Neutron OVS agent, and OVN): the vNIC's tap on the integration bridge."""

from qhook.config import OvsConfig, PlugMode
from qhook.plugins import InterfaceSpec
from qhook.vnic import QuantumVnic


def interface_spec(vnic: QuantumVnic, ovs: OvsConfig) -> InterfaceSpec:
    """In hook mode a tap the hook makes; in libvirt mode an OVS virtualport libvirt plugs."""
    if ovs.plug is PlugMode.LIBVIRT:
        return InterfaceSpec(
            type="bridge",
            target_dev=vnic.tap_name,
            source_bridge=ovs.integration_bridge,
            ovs_interface_id=vnic.host_id,
        )
    return InterfaceSpec(type="ethernet", target_dev=vnic.tap_name, target_managed="no")
