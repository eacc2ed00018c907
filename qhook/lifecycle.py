# SPDX-License-Identifier: GPL-2.0-or-later
"""What each hook point does with the Quantum vNICs of a VM."""

import contextlib
import json
from dataclasses import replace
from typing import Callable, Dict, Iterator, List, Mapping, Optional, Set, Tuple

from qhook import domxml, host, wire
from qhook.attachment import attachment
from qhook.config import PlugMode
from qhook.errors import PropertyError, QhookError, shown
from qhook.hooking import HookContext
from qhook.plugins import interface_spec
from qhook.vnic import (
    TAP_NAME,
    Plugin,
    QuantumVnic,
    claims,
    normalise_mac,
    normalise_uuid,
    parse_mtu,
    parse_vnic,
)

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


def _mirroring(
    domain: Optional[domxml.Element], vnics: List[VnicInterface], context: HookContext
) -> Set[str]:
    """The MACs of the Quantum vNICs with port mirroring; refuse what cannot mirror."""
    wanted = domxml.port_mirroring(domain) if domain is not None else {}
    macs: Set[str] = set()
    for _, vnic in vnics:
        if vnic.mac not in wanted:
            continue
        why = None
        if vnic.plugin is Plugin.LINUXBRIDGE:
            why = "a Linux bridge vNIC cannot: mirrors are made on Open vSwitch"
        elif vnic.network_id is None:
            why = "it needs the vNIC's Quantum network (property q_network_id)"
        elif context.config.ovs.plug is PlugMode.LIBVIRT:
            why = "it needs the hook to plug the port ([ovs] plug = hook)"
        if why:
            raise QhookError(
                f"vNIC {vnic.mac}: port mirroring of {', '.join(wanted[vnic.mac])}: {why}"
            )
        macs.add(vnic.mac)
    return macs


def _plug_and_write(
    document: domxml.Document,
    vnics: List[VnicInterface],
    vm_id: str,
    context: HookContext,
    write: bool,
) -> None:
    """Plug the vNICs, then write the rewritten XML; undo the plugging if writing fails."""
    domain = document.root if document.root.tag == "domain" else None
    mirroring = _mirroring(domain, vnics, context)
    items = [
        attachment(interface, vnic, vm_id, mirror=vnic.mac in mirroring)
        for interface, vnic in vnics
    ]
    plugged = host.plug(items, context.config) if items else None
    if plugged is not None and plugged.unwired:
        context.warn(
            f"the agent has not wired {', '.join(plugged.unwired)} within "
            f"{context.config.wiring.timeout:g} s; starting anyway ([wiring] on_timeout = start)"
        )
    try:
        if write:
            context.write_data(domxml.serialize(document))
    except BaseException:
        if plugged is not None:
            host.undo(plugged, context.config)
        raise


def before_device_create(context: HookContext) -> None:
    """Rewrite the one device if it is a Quantum vNIC; no side effects."""
    document = domxml.parse(context.read_data(), "device XML")
    if document.root.tag != "interface":
        return
    vnic = classify(document.root, context.env, context)
    # A port on demand is found or made in before_vm_start, with the VM's others at once.
    if vnic is not None and not vnic.on_demand and _rewrite([(document.root, vnic)], context):
        context.write_data(domxml.serialize(document))


def _resolve(
    vnics: List[VnicInterface], vm_id: str, context: HookContext, mode: str
) -> Tuple[List[VnicInterface], List[str]]:
    """The vNICs, those with ports on demand on the ports found or made for them; and the
    MACs whose port was made now."""
    wanted = [
        wire.PortWanted(vnic.mac, vnic.network_id)
        for _, vnic in vnics
        if vnic.unresolved and vnic.network_id
    ]
    if not wanted:
        return vnics, []
    ports, made, notes = host.ports_on_demand(vm_id, wanted, mode, context.config)
    for note in notes:
        context.warn(note)
    resolved = []
    for interface, vnic in vnics:
        if vnic.unresolved:
            if vnic.mac not in ports:
                raise QhookError(f"vNIC {vnic.mac}: the privileged helper found no port for it")
            vnic = vnic.with_port(ports[vnic.mac])
        resolved.append((interface, vnic))
    return resolved, made


@contextlib.contextmanager
def _ports_on_demand(
    vnics: List[VnicInterface], vm_id: str, context: HookContext, mode: str
) -> Iterator[List[VnicInterface]]:
    """The vNICs resolved (see _resolve). If what follows fails, Quantum is left as it
    was found: the ports made now go, and a migration's ports go back to their host; a
    port that was there before stays (a concurrent run of the same VM may be using it)."""
    resolved, made = _resolve(vnics, vm_id, context, mode)
    try:
        yield resolved
    except BaseException:
        if mode == wire.MIGRATE:
            made = [vnic.mac for _, vnic in vnics if vnic.unresolved]
        if made:
            host.release(vm_id, made, context.config)
        raise


def before_vm_start(context: HookContext) -> None:
    """Rewrite every Quantum vNIC not rewritten yet, then plug them all."""
    document = domxml.parse(context.read_data(), "domain XML")
    vnics = domain_vnics(document.root, context)
    if not vnics:
        return
    vm_id = vm_id_of(context, document.root)
    with _ports_on_demand(vnics, vm_id, context, wire.START) as resolved:
        check_tap_names(document.root, resolved)
        changed = _rewrite(resolved, context)
        _plug_and_write(document, resolved, vm_id, context, changed)


def before_nic_hotplug(context: HookContext) -> None:
    """Rewrite and plug the one vNIC being hot-plugged."""
    document = domxml.parse(context.read_data(), "device XML")
    if document.root.tag != "interface":
        return
    vnic = classify(document.root, context.env, context)
    if vnic is None:
        return
    vm_id = vm_id_of(context)
    with _ports_on_demand([(document.root, vnic)], vm_id, context, wire.START) as vnics:
        changed = _rewrite(vnics, context)
        _plug_and_write(document, vnics, vm_id, context, changed)


def before_vm_migrate_destination(context: HookContext) -> None:
    """Bind the ports on demand here, then plug before the incoming QEMU needs the taps.

    VDSM ignores this hook's output: the XML is the source's, already rewritten.
    """
    document = domxml.parse(context.read_data(), "domain XML")
    vnics = domain_vnics(document.root, context)
    if vnics:
        vm_id = vm_id_of(context, document.root)
        with _ports_on_demand(vnics, vm_id, context, wire.MIGRATE) as resolved:
            check_tap_names(document.root, resolved)
            _plug_and_write(document, resolved, vm_id, context, False)


def _rewritten_taps(interfaces: List[domxml.Element]) -> List[str]:
    """Targets named as this package names taps, metadata or not (only ours get removed)."""
    targets = (domxml.interface_target(interface) for interface in interfaces)
    return [target for target in targets if target and TAP_NAME.fullmatch(target)]


def _unplug(
    interfaces: List[domxml.Element], vnics: List[VnicInterface], vm_id: str, context: HookContext
) -> None:
    """Unplug; then the ports on demand go (their taps are found from the rewritten
    interfaces: the port id is not in the properties)."""
    names = [vnic.tap_name for _, vnic in vnics if not vnic.unresolved]
    names += _rewritten_taps(interfaces)
    on_demand = [vnic.mac for _, vnic in vnics if vnic.unresolved]
    problems, notes = host.unplug(names, vm_id, context.config, on_demand)
    for note in notes:
        context.warn(note)
    if problems:
        raise QhookError("; ".join(problems))


def after_vm_destroy(context: HookContext) -> None:
    """Unplug every Quantum vNIC of the VM: our OVS ports and taps of this VM, nothing else."""
    data = context.read_data()
    if not data.strip():
        return  # VDSM may hand an empty file to after_* hooks; nothing to act on
    domain = domxml.parse(data, "domain XML").root
    _unplug(
        domxml.interfaces(domain),
        domain_vnics(domain, context, tolerant=True),
        vm_id_of(context, domain),
        context,
    )


def _unplug_device(context: HookContext) -> None:
    """Unplug the one vNIC of a device hook (hot-unplugged, or a failed hotplug)."""
    data = context.read_data()
    if not data.strip():
        return
    document = domxml.parse(data, "device XML")
    if document.root.tag != "interface":
        return
    try:
        vnic = classify(document.root, context.env, context)
    except QhookError as error:
        context.warn(str(error))
        vnic = None
    vnics = [] if vnic is None else [(document.root, vnic)]
    _unplug([document.root], vnics, vm_id_of(context), context)


def after_vm_migrate_destination(context: HookContext) -> None:
    """Check the plugging after an incoming migration; repair missing ports."""
    data = context.read_data()
    if not data.strip():
        return
    domain = domxml.parse(data, "domain XML").root
    vm_id = vm_id_of(context, domain)
    vnics = domain_vnics(domain, context, tolerant=True)
    try:
        vnics, _ = _resolve(vnics, vm_id, context, wire.ARRIVED)
    except QhookError as error:
        unchecked = [vnic.mac for _, vnic in vnics if vnic.unresolved]
        context.warn(f"vNIC {', '.join(unchecked)} not checked: {error}")
        vnics = [(interface, vnic) for interface, vnic in vnics if not vnic.unresolved]
    items = [attachment(interface, vnic, vm_id) for interface, vnic in vnics]
    repaired, unrepairable = host.repair(items, context.config)
    for name in repaired:
        context.warn(f"{name} was not plugged after the migration; plugged it again")
    if unrepairable:
        raise QhookError("; ".join(unrepairable))


def _device_vnic(context: HookContext) -> Optional[VnicInterface]:
    """The Quantum vNIC of a device hook's XML, with its new properties; None if none."""
    data = context.read_data()
    if not data.strip():
        return None
    document = domxml.parse(data, "device XML")
    if document.root.tag != "interface":
        return None
    vnic = classify(document.root, context.env, context)
    return None if vnic is None else (document.root, vnic)


def before_update_device(context: HookContext) -> None:
    """The engine moves a running vNIC to another profile: re-key its port to the new
    Quantum port, keeping the tap the running QEMU holds, and wait for the agent."""
    document = domxml.parse(context.read_data(), "device XML")
    if document.root.tag != "interface":
        return
    interface = document.root
    vnic = classify(interface, context.env, context)
    if vnic is None:
        return
    if vnic.on_demand:
        raise QhookError(
            f"vNIC {vnic.mac}: a running vNIC cannot move to a profile without q_port_id "
            "(a port on demand); unplug the vNIC, change its profile and plug it again"
        )
    if vnic.plugin is Plugin.LINUXBRIDGE:
        raise QhookError(
            f"vNIC {vnic.mac}: a Linux bridge vNIC cannot move to another Quantum port while "
            "the VM runs: the agent finds the tap by a name made from the port id, and the "
            "running QEMU's tap cannot be renamed; unplug and plug the vNIC instead"
        )
    if context.config.ovs.plug is PlugMode.LIBVIRT:
        raise QhookError(
            f"vNIC {vnic.mac}: moving a running vNIC needs the hook to plug it ([ovs] plug = hook)"
        )
    item = attachment(interface, vnic, vm_id_of(context))
    tap_name, unwired = host.move(item, context.config)
    if unwired:
        context.warn(
            f"the agent has not wired {tap_name} for port {vnic.host_id} within "
            f"{context.config.wiring.timeout:g} s; moving anyway ([wiring] on_timeout = start)"
        )
    try:
        spec = replace(interface_spec(vnic, context.config), target_dev=tap_name)
        domxml.rewrite_interface(interface, spec)
        if vnic.mtu is not None:
            domxml.ensure_mtu(interface, vnic.mtu)
        domxml.cap_inbound(interface)
        context.write_data(domxml.serialize(document))
    except BaseException:
        host.end_move(item.vm_id, [vnic.mac], True, context.config)
        raise


def _end_move(context: HookContext, undo: bool) -> None:
    found = _device_vnic(context)
    if found is not None and found[1].plugin is not Plugin.LINUXBRIDGE:
        host.end_move(vm_id_of(context), [found[1].mac], undo, context.config)


def after_update_device(context: HookContext) -> None:
    """The move went through: forget the ids it replaced."""
    _end_move(context, undo=False)


def after_update_device_fail(context: HookContext) -> None:
    """libvirt did not take the new device: put the old ids back."""
    _end_move(context, undo=True)


def after_get_caps(context: HookContext) -> None:
    """Add what this host can do for Quantum vNICs to VDSM's capabilities. Never fails
    getCaps: whatever goes wrong is reported inside the capabilities, and exit is 0."""
    try:
        caps = json.loads(context.read_data().decode("utf-8"))
    except (QhookError, ValueError) as error:
        context.warn(f"capabilities left as they are: {error}")
        return
    if not isinstance(caps, dict):
        context.warn("capabilities left as they are: not a JSON object")
        return
    from qhook.caps import CAPS_KEY  # only this hook point reports capabilities

    try:
        caps[CAPS_KEY] = host.capabilities(context.config)
    except QhookError as error:
        caps[CAPS_KEY] = {"error": str(error)}
    try:
        context.write_data(json.dumps(caps).encode())
    except QhookError as error:
        context.warn(str(error))


HOOK_POINTS: Dict[str, Callable[[HookContext], None]] = {
    "before_device_create": before_device_create,
    "before_vm_start": before_vm_start,
    "after_vm_destroy": after_vm_destroy,
    "before_vm_migrate_destination": before_vm_migrate_destination,
    "after_vm_migrate_destination": after_vm_migrate_destination,
    "before_nic_hotplug": before_nic_hotplug,
    "after_nic_hotunplug": _unplug_device,
    "after_nic_hotplug_fail": _unplug_device,
    "after_get_caps": after_get_caps,
    "before_update_device": before_update_device,
    "after_update_device": after_update_device,
    "after_update_device_fail": after_update_device_fail,
}
