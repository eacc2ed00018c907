# SPDX-License-Identifier: GPL-2.0-or-later
"""How a vNIC is plugged, as its Quantum port's binding says (nova reads it the same way):

- `binding:vif_type` ovs: on the integration bridge; hybrid (openvswitch_hybrid) when
  `binding:vif_details` says `ovs_hybrid_plug` (the iptables_hybrid firewall), else
  straight on it (the openvswitch firewall, OVN);
- bridge: the Linux bridge agent's tap;
- binding_failed or unbound on this host: refused at once, naming the likely cause,
  instead of waiting for wiring that never comes;
- anything else (vhostuser, hw_veb, ...): refused.

Where the host cannot read the binding (explicit ids without root's Quantum settings, a
server without the binding extension, a port no host has bound yet), `[ovs] hybrid_plug`
decides for Open vSwitch vNICs, and `auto` plugs them straight with a warning.
"""

from typing import Any, Mapping, Optional, Sequence

from qhook.errors import QhookError, shown
from qhook.plugins import Plugin
from qhook.vocabulary.config import HybridPlug

OVS, BRIDGE = "ovs", "bridge"
NOT_BOUND = ("binding_failed", "unbound")


class BindingRefused(QhookError):
    """The port's binding says it cannot be plugged here."""


def by_binding(asked: Plugin, port: Mapping[str, Any], host: str) -> Optional[Plugin]:
    """The plugin the port's binding says, or None where it says nothing (no binding
    read, or not bound to this host yet); BindingRefused where it says no."""
    vif_type = port.get("binding:vif_type")
    bound_to = port.get("binding:host_id") or ""
    if not isinstance(vif_type, str) or not vif_type:
        return None
    if vif_type in NOT_BOUND:
        if bound_to != host:
            return None
        raise BindingRefused(
            f"Quantum port {port.get('id')} is bound to host {host} but Quantum could not "
            f"bind it there (binding:vif_type {vif_type}): most likely no live agent on "
            f"{host} serves network {port.get('network_id')} "
            f"(openstack network agent list --host {host})"
        )
    if vif_type == OVS:
        details = port.get("binding:vif_details")
        if isinstance(details, Mapping) and details.get("ovs_hybrid_plug") is True:
            return Plugin.OVS_HYBRID
        return asked if asked in (Plugin.OPENVSWITCH, Plugin.OVN) else Plugin.OPENVSWITCH
    if vif_type == BRIDGE:
        return Plugin.LINUXBRIDGE
    raise BindingRefused(
        f"Quantum port {port.get('id')} is bound on {bound_to or 'no host'} as "
        f"binding:vif_type {shown(vif_type)}: this package plugs only ovs and bridge bindings"
    )


def by_setting(asked: Plugin, hybrid_plug: HybridPlug) -> Plugin:
    """The plugin where no binding says: [ovs] hybrid_plug, for Open vSwitch vNICs."""
    if asked not in (Plugin.OPENVSWITCH, Plugin.OVS_HYBRID):
        return asked
    return Plugin.OVS_HYBRID if hybrid_plug is HybridPlug.YES else Plugin.OPENVSWITCH


def unread_warning(port_ids: Sequence[str], why: str) -> str:
    """The one line for Open vSwitch vNICs plugged straight for want of a binding."""
    return (
        f"the binding of Quantum port {', '.join(port_ids)} cannot be read here ({why}): "
        "plugged straight into the integration bridge, where only the openvswitch firewall "
        "or OVN applies security groups; under iptables_hybrid set [ovs] hybrid_plug = yes "
        "(no: silences this)"
    )


def needs_warning(asked: Plugin, hybrid_plug: HybridPlug) -> bool:
    """Whether a vNIC plugged by setting, not binding, gets unread_warning."""
    return asked is Plugin.OPENVSWITCH and hybrid_plug is HybridPlug.AUTO
