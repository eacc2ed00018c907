# SPDX-License-Identifier: GPL-2.0-or-later
"""The Quantum vNICs of a domain or a device: found by their properties, checked, and
rewritten as their plugin says."""

from __future__ import annotations

from qhook import plugins
from qhook.errors import PropertyError, QhookError, shown
from qhook.vdsm import domxml
from qhook.vdsm.contract import HookContext
from qhook.vdsm.vnic import QuantumVnic, claims, parse_vnic
from qhook.vocabulary import ids
from qhook.vocabulary.ids import normalise_mac, normalise_uuid, parse_mtu

TYPE_CHECKING = False  # typing.TYPE_CHECKING: a device hook does not import typing
if TYPE_CHECKING:
    from typing import Dict, List, Mapping, Optional, Set, Tuple

    VnicInterface = Tuple[domxml.Element, QuantumVnic]


def _label(interface: domxml.Element) -> str:
    mac = domxml.interface_mac(interface)
    try:
        return f"vNIC {normalise_mac(mac)}"
    except PropertyError:
        return "vNIC"  # the error itself names the bad MAC


def classify(
    interface: domxml.Element, properties: Mapping[str, str], context: HookContext
) -> Optional[QuantumVnic]:
    """The Quantum vNIC an <interface> with these properties is, or None if not ours."""
    if not claims(properties):
        return None
    kind = interface.get("type")
    if kind not in domxml.REWRITABLE_TYPES:
        context.warn(
            f"{_label(interface)}: a type={shown(kind)} interface cannot join a Quantum "
            "network; its Quantum properties are ignored"
        )
        return None
    try:
        vnic = parse_vnic(properties, domxml.interface_mac(interface))
        _check_mtu(interface, vnic)
    except PropertyError as error:
        raise PropertyError(f"{_label(interface)}: {error}") from None
    return vnic


def _check_mtu(interface: domxml.Element, vnic: Optional[QuantumVnic]) -> None:
    """The mtu property and the engine's <mtu> must agree when both are there."""
    written = domxml.interface_mtu(interface)
    if vnic is None or vnic.mtu is None or written is None:
        return
    if parse_mtu(written, "<mtu size>") != vnic.mtu:
        raise PropertyError(
            f"property mtu={vnic.mtu} contradicts the interface's <mtu size={shown(written)}>"
        )


def domain_vnics(
    domain: domxml.Element, context: HookContext, tolerant: bool = False
) -> List[VnicInterface]:
    """Every Quantum vNIC of a domain, its properties taken from the oVirt metadata.

    tolerant: a vNIC whose properties do not parse is a warning and is skipped, for
    the hooks that clean up and must not give up on the others.
    """
    properties = domxml.device_properties(domain)
    found = []
    for interface in domxml.interfaces(domain):
        mac = (domxml.interface_mac(interface) or "").lower()
        try:
            vnic = classify(interface, properties.get(mac, {}), context)
        except QhookError as error:
            if not tolerant:
                raise
            context.warn(str(error))
            continue
        if vnic is not None:
            found.append((interface, vnic))
    return found


def device_vnic(context: HookContext) -> Optional[VnicInterface]:
    """The Quantum vNIC of a device hook's XML, with the device's properties; None if the
    device is none (or the data file is empty)."""
    data = context.read_data()
    if not data.strip():
        return None
    document = domxml.parse(data, "device XML")
    if document.root.tag != "interface":
        return None
    vnic = classify(document.root, context.env, context)
    return None if vnic is None else (document.root, vnic)


def check_tap_names(domain: domxml.Element, vnics: List[VnicInterface]) -> None:
    """Refuse two vNICs that would share a host device name."""
    owners: Dict[str, QuantumVnic] = {}
    for _, vnic in vnics:
        other = owners.setdefault(vnic.tap_name, vnic)
        if other is not vnic:
            raise QhookError(
                f"vNICs {other.mac} and {vnic.mac} would both use tap {vnic.tap_name} "
                f"(host ids {other.host_id} and {vnic.host_id})"
            )
    ours = {id(interface) for interface, _ in vnics}
    for interface in domxml.interfaces(domain):
        target = domxml.interface_target(interface)
        if id(interface) not in ours and target in owners:
            raise QhookError(
                f"{_label(interface)} already uses device {target}, "
                f"the tap of Quantum vNIC {owners[target].mac}"
            )


def rewrite(
    vnics: List[VnicInterface], context: HookContext, tap_names: Optional[Dict[str, str]] = None
) -> bool:
    """Rewrite each vNIC's <interface> as its plugin says (tap_names: by MAC, a tap that
    is not the one of the vNIC's host id); whether anything changed."""
    changed = False
    for interface, vnic in vnics:
        tap_name = (tap_names or {}).get(vnic.mac, vnic.tap_name)
        spec = plugins.of(vnic.plugin).interface(tap_name, vnic.host_id, context.config.ovs)
        changed = domxml.rewrite_interface(interface, spec) or changed
        if vnic.mtu is not None:
            changed = domxml.ensure_mtu(interface, vnic.mtu) or changed
        changed = domxml.cap_inbound(interface) or changed
    return changed


def vm_id_of(context: HookContext, domain: Optional[domxml.Element] = None) -> str:
    """The VM's UUID: the domain's <uuid>, else VDSM's vmId."""
    value = domain.findtext("uuid") if domain is not None else None
    if value is None:
        value = context.vm_id
        what = "vmId"
    else:
        what = "the domain's <uuid>"
    if value is None:
        raise QhookError("the VM's UUID is unknown: no <uuid> in the domain and no vmId")
    return normalise_uuid(value, what)


def mirroring(
    domain: Optional[domxml.Element], vnics: List[VnicInterface], context: HookContext
) -> Set[str]:
    """The MACs of the Quantum vNICs with port mirroring; refuse what cannot mirror."""
    from qhook.vocabulary.config import PlugMode  # not on a device hook's path

    wanted = domxml.port_mirroring(domain) if domain is not None else {}
    macs: Set[str] = set()
    for _, vnic in vnics:
        if vnic.mac not in wanted:
            continue
        why = plugins.of(vnic.plugin).cannot_mirror
        if why is None and vnic.network_id is None:
            why = "it needs the vNIC's Quantum network (property q_network_id)"
        elif why is None and context.config.ovs.plug is PlugMode.LIBVIRT:
            why = "it needs the hook to plug the port ([ovs] plug = hook)"
        if why:
            raise QhookError(
                f"vNIC {vnic.mac}: port mirroring of {', '.join(wanted[vnic.mac])}: {why}"
            )
        macs.add(vnic.mac)
    return macs


def rewritten_taps(interfaces: List[domxml.Element]) -> List[str]:
    """Targets named as this package names taps, metadata or not (only ours get removed)."""
    targets = (domxml.interface_target(interface) for interface in interfaces)
    return [target for target in targets if target and ids.TAP_NAME.fullmatch(target)]


def note_for_ports_on_demand(context: HookContext, event: str) -> None:
    """Tell root what VDSM said happened to the VM (schema.EVENTS), when it has a vNIC
    whose port the host makes; a VM without one costs no call. The after_* points: what
    goes wrong is a warning."""
    from qhook.vdsm import helper_client

    data = context.read_data()
    if not data.strip():
        return
    domain = domxml.parse(data, "domain XML").root
    if not any(vnic.on_demand for _, vnic in domain_vnics(domain, context, tolerant=True)):
        return
    vm_id = vm_id_of(context, domain)
    try:
        helper_client.note(vm_id, event, context.config)
    except QhookError as error:
        context.warn(f"VM {vm_id} is {event}, but its ports on demand cannot know: {error}")
