# SPDX-License-Identifier: GPL-2.0-or-later
"""The root work of the hook points, asked of the privileged helper: what crosses to root
for each vNIC (its attachment), the ports on demand found or made (and given back if
what follows fails), the vNICs plugged before the XML is written (and unplugged if
writing fails), and the vNICs unplugged."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Dict, Iterator, List, Optional, Tuple

from qhook import plugins
from qhook.errors import QhookError
from qhook.plugins import Plugin
from qhook.vdsm import domxml, helper_client
from qhook.vdsm.contract import HookContext
from qhook.vdsm.vnic import QuantumVnic
from qhook.vdsm.vnics import mirroring, rewrite, rewritten_taps
from qhook.vocabulary import schema
from qhook.vocabulary.attachment import Attachment
from qhook.vocabulary.config import PlugMode
from qhook.vocabulary.ids import TAP_NAME, hybrid_names, parse_mtu, tap_name_of

if TYPE_CHECKING:
    from qhook.vdsm.vnics import VnicInterface

MAX_QUEUES = 256


def _number(text: Optional[str], what: str, lowest: int, highest: int) -> Optional[int]:
    if text is None:
        return None
    if not text.isdigit() or not lowest <= int(text) <= highest:
        raise QhookError(f"{what} {text!a} is not a number from {lowest} to {highest}")
    return int(text)


def attachment(
    interface: domxml.Element,
    vnic: QuantumVnic,
    vm_id: str,
    mirror: bool = False,
    as_written: bool = False,
) -> Attachment:
    """What root needs to plug the vNIC: queues and MTU come from its <interface>.

    as_written: the XML cannot change any more (a VM arriving or restored); in libvirt
    plug mode it says how libvirt plugs the vNIC, and so how the hook must."""
    if as_written and not vnic.plugin_decided:
        vnic = _as_written(interface, vnic)
    driver = interface.find("driver")
    mtu = interface.find("mtu")
    target = domxml.interface_target(interface)
    derived = tap_name_of(vnic.host_id)
    # A vNIC moved to another port while running keeps the tap its QEMU holds.
    tap = target if target and TAP_NAME.fullmatch(target) and target != derived else None
    queues = _number(None if driver is None else driver.get("queues"), "queues", 1, MAX_QUEUES)
    return Attachment(
        host_id=vnic.host_id,
        mac=vnic.mac,
        plugin=vnic.plugin,
        vm_id=vm_id,
        multiqueue=(queues or 1) > 1,
        mtu=parse_mtu(None if mtu is None else mtu.get("size"), "<mtu size>"),
        network_id=vnic.network_id,
        mirror=mirror,
        tap=tap,
        decided=vnic.plugin_decided,
    )


def _as_written(interface: domxml.Element, vnic: QuantumVnic) -> QuantumVnic:
    """A bridge interface (libvirt plug mode) says how libvirt plugs the vNIC: hybrid on
    the vNIC's own bridge, straight on the integration bridge."""
    if not plugins.of(vnic.plugin).on_integration_bridge or interface.get("type") != "bridge":
        return vnic
    source = interface.find("source")
    own_bridge, _, _ = hybrid_names(domxml.interface_target(interface) or vnic.tap_name)
    if source is not None and source.get("bridge") == own_bridge:
        return vnic.plugged_by(plugins.hybrid_plugin().plugin)
    return vnic.plugged_by(vnic.plugin)


def plug_and_write(
    document: domxml.Document,
    vnics: List[VnicInterface],
    vm_id: str,
    context: HookContext,
    changed: bool,
    final: bool = False,
) -> None:
    """Plug the vNICs, then write the XML if it changed (rewritten before, or now for
    the vNICs the bindings say to plug otherwise); undo the plugging if that fails.

    final: VDSM discards this hook's XML (a VM arriving or restored): it says how libvirt
    plugs the vNICs, and nothing is written."""
    domain = document.root if document.root.tag == "domain" else None
    mirrored = mirroring(domain, vnics, context)
    items = [
        attachment(interface, vnic, vm_id, mirror=vnic.mac in mirrored, as_written=final)
        for interface, vnic in vnics
    ]
    plugged = helper_client.plug(items, context.config) if items else None
    try:
        if plugged is None:
            return
        for note in plugged.notes:
            context.warn(note)
        if plugged.unwired:
            context.warn(
                f"the agent has not wired {', '.join(plugged.unwired)} within "
                f"{context.config.wiring.timeout:g} s; starting anyway "
                "([wiring] on_timeout = start)"
            )
        # Plugged as the bindings say: the interfaces follow (libvirt plug mode).
        rewritten = rewrite(_as_plugged(vnics, plugged.plugged_as), context)
        if (changed or rewritten) and not final:
            context.write_data(domxml.serialize(document))
        elif rewritten and final and context.config.ovs.plug is PlugMode.LIBVIRT:
            raise QhookError(
                "the ports' bindings say to plug these vNICs otherwise than the XML, which "
                "cannot change now: in libvirt plug mode a VM arriving or restored is "
                "plugged as it was"
            )
    except BaseException:
        if plugged is not None:
            helper_client.undo(plugged, context.config)
        raise


def _as_plugged(vnics: List[VnicInterface], plugged_as: Dict[str, str]) -> List[VnicInterface]:
    """The vNICs plugged by another plugin than they name, on it."""
    changed = []
    for interface, vnic in vnics:
        value = plugged_as.get(vnic.mac, vnic.plugin.value)
        if value != vnic.plugin.value:
            changed.append((interface, vnic.plugged_by(Plugin(value))))
    return changed


def resolve(
    vnics: List[VnicInterface], vm_id: str, context: HookContext, mode: str
) -> Tuple[List[VnicInterface], List[str]]:
    """The vNICs, those with ports on demand on the ports found or made for them; and the
    MACs whose port was made now."""
    wanted = [
        schema.PortWanted(vnic.mac, vnic.network_id, vnic.plugin)
        for _, vnic in vnics
        if vnic.unresolved and vnic.network_id
    ]
    if not wanted:
        return vnics, []
    ports, made, notes = helper_client.ports_on_demand(vm_id, wanted, mode, context.config)
    for note in notes:
        context.warn(note)
    resolved = []
    for interface, vnic in vnics:
        if vnic.unresolved:
            if vnic.mac not in ports:
                raise QhookError(f"vNIC {vnic.mac}: the privileged helper found no port for it")
            vnic = vnic.with_port(*ports[vnic.mac])
        resolved.append((interface, vnic))
    return resolved, made


@contextlib.contextmanager
def ports_on_demand(
    vnics: List[VnicInterface], vm_id: str, context: HookContext, mode: str
) -> Iterator[List[VnicInterface]]:
    """The vNICs resolved (see resolve). If what follows fails, Quantum is left as it
    was found: the ports made now go, and a migration's ports go back to their host; a
    port that was there before stays (a concurrent run of the same VM may be using it)."""
    resolved, made = resolve(vnics, vm_id, context, mode)
    try:
        yield resolved
    except BaseException:
        if mode == schema.MIGRATE:
            made = [vnic.mac for _, vnic in vnics if vnic.unresolved]
        if made:
            helper_client.release(vm_id, made, context.config)
        raise


def unplug(
    interfaces: List[domxml.Element], vnics: List[VnicInterface], vm_id: str, context: HookContext
) -> None:
    """Unplug; then the ports on demand go (their taps are found from the rewritten
    interfaces: the port id is not in the properties)."""
    names = [vnic.tap_name for _, vnic in vnics if not vnic.unresolved]
    names += rewritten_taps(interfaces)
    on_demand = [vnic.mac for _, vnic in vnics if vnic.unresolved]
    problems, notes = helper_client.unplug(names, vm_id, context.config, on_demand)
    for note in notes:
        context.warn(note)
    if problems:
        raise QhookError("; ".join(problems))
