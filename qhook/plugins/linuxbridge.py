# SPDX-License-Identifier: GPL-2.0-or-later
"""Linux bridge agent: a tap named after the port, which the agent puts on its brq bridge."""

from qhook.plugins import InterfaceSpec
from qhook.vnic import QuantumVnic


def interface_spec(vnic: QuantumVnic) -> InterfaceSpec:
    """A tap the hook makes and libvirt uses as it is."""
    return InterfaceSpec(type="ethernet", target_dev=vnic.tap_name, target_managed="no")
