# SPDX-License-Identifier: GPL-2.0-or-later
"""The root work of the hook points, asked of the privileged helper: what crosses to root
for each vNIC (its attachment), the ports on demand found or made (and given back if
what follows fails), the vNICs plugged before the XML is written (and unplugged if
writing fails), and the vNICs unplugged."""

import contextlib
from typing import Iterator, List, Optional, Tuple

from qhook.errors import QhookError
from qhook.vdsm import domxml, helper_client
from qhook.vdsm.contract import HookContext
from qhook.vdsm.vnic import QuantumVnic
from qhook.vdsm.vnics import VnicInterface, mirroring, rewritten_taps
from qhook.vocabulary import schema
from qhook.vocabulary.attachment import Attachment
from qhook.vocabulary.ids import TAP_NAME, parse_mtu, tap_name_of

MAX_QUEUES = 256


def _number(text: Optional[str], what: str, lowest: int, highest: int) -> Optional[int]:
    if text is None:
        return None
    if not text.isdigit() or not lowest <= int(text) <= highest:
        raise QhookError(f"{what} {text!a} is not a number from {lowest} to {highest}")
    return int(text)


def attachment(
    interface: domxml.Element, vnic: QuantumVnic, vm_id: str, mirror: bool = False
) -> Attachment:
    """What root needs to plug the vNIC: queues and MTU come from its <interface>."""
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
    )


def plug_and_write(
    document: domxml.Document,
    vnics: List[VnicInterface],
    vm_id: str,
    context: HookContext,
    write: bool,
) -> None:
    """Plug the vNICs, then write the rewritten XML; undo the plugging if writing fails."""
    domain = document.root if document.root.tag == "domain" else None
    mirrored = mirroring(domain, vnics, context)
    items = [
        attachment(interface, vnic, vm_id, mirror=vnic.mac in mirrored) for interface, vnic in vnics
    ]
    plugged = helper_client.plug(items, context.config) if items else None
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
            helper_client.undo(plugged, context.config)
        raise


def resolve(
    vnics: List[VnicInterface], vm_id: str, context: HookContext, mode: str
) -> Tuple[List[VnicInterface], List[str]]:
    """The vNICs, those with ports on demand on the ports found or made for them; and the
    MACs whose port was made now."""
    wanted = [
        schema.PortWanted(vnic.mac, vnic.network_id)
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
            vnic = vnic.with_port(ports[vnic.mac])
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
