# SPDX-License-Identifier: GPL-2.0-or-later
"""One module per plugin: what a Quantum vNIC's <interface> looks like for it."""

from dataclasses import dataclass
from typing import Optional

from qhook.config import Config
from qhook.vnic import Plugin, QuantumVnic


@dataclass(frozen=True)
class InterfaceSpec:
    """The host side of a rewritten <interface>; everything else in it stays."""

    type: str
    target_dev: str
    target_managed: Optional[str] = None
    source_bridge: Optional[str] = None
    ovs_interface_id: Optional[str] = None


def interface_spec(vnic: QuantumVnic, config: Config) -> InterfaceSpec:
    """What the plugin of this vNIC wants its <interface> to say."""
    if vnic.plugin is Plugin.LINUXBRIDGE:
        from qhook.plugins import linuxbridge

        return linuxbridge.interface_spec(vnic)
    # OVN plugs like Open vSwitch: ovn-controller binds the port by iface-id.
    from qhook.plugins import openvswitch

    return openvswitch.interface_spec(vnic, config.ovs)
