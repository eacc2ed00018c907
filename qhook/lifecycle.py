# SPDX-License-Identifier: GPL-2.0-or-later
"""What each hook point does with the Quantum vNICs of a VM."""

from typing import Callable, Dict, List, Mapping, Optional, Tuple

from qhook import domxml
from qhook.errors import PropertyError, QhookError, shown
from qhook.hooking import HookContext
from qhook.plugins import interface_spec
from qhook.vnic import QuantumVnic, claims, normalise_mac, parse_vnic

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
        return parse_vnic(properties, domxml.interface_mac(interface))
    except PropertyError as error:
        raise PropertyError(f"{_label(interface)}: {error}") from None


def domain_vnics(domain: domxml.Element, context: HookContext) -> List[VnicInterface]:
    """Every Quantum vNIC of a domain, its properties taken from the oVirt metadata."""
    properties = domxml.device_properties(domain)
    found = []
    for interface in domxml.interfaces(domain):
        mac = domxml.interface_mac(interface)
        vnic = classify(interface, properties.get((mac or "").lower(), {}), context)
        if vnic is not None:
            found.append((interface, vnic))
    return found


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


def _rewrite(vnics: List[VnicInterface], context: HookContext) -> bool:
    changed = False
    for interface, vnic in vnics:
        spec = interface_spec(vnic, context.config)
        changed = domxml.rewrite_interface(interface, spec) or changed
    return changed


def before_device_create(context: HookContext) -> None:
    """Rewrite the one device if it is a Quantum vNIC; no side effects."""
    document = domxml.parse(context.read_data(), "device XML")
    if document.root.tag != "interface":
        return
    vnic = classify(document.root, context.env, context)
    if vnic is not None and _rewrite([(document.root, vnic)], context):
        context.write_data(domxml.serialize(document))


def before_vm_start(context: HookContext) -> None:
    """Rewrite every Quantum vNIC of the domain not rewritten yet."""
    document = domxml.parse(context.read_data(), "domain XML")
    vnics = domain_vnics(document.root, context)
    check_tap_names(document.root, vnics)
    if _rewrite(vnics, context):
        context.write_data(domxml.serialize(document))


def _observe(context: HookContext) -> None:
    """Find the domain's Quantum vNICs; nothing on the host changes yet.

    These hooks cannot stop the operation, so a problem is a warning, not a failure.
    """
    data = context.read_data()
    if not data.strip():
        return  # VDSM may hand an empty file to after_* hooks; nothing to act on
    try:
        domain_vnics(domxml.parse(data, "domain XML").root, context)
    except QhookError as error:
        context.warn(str(error))


after_vm_destroy = _observe
after_vm_migrate_destination = _observe

HOOK_POINTS: Dict[str, Callable[[HookContext], None]] = {
    "before_device_create": before_device_create,
    "before_vm_start": before_vm_start,
    "after_vm_destroy": after_vm_destroy,
    "after_vm_migrate_destination": after_vm_migrate_destination,
}
