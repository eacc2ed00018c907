# SPDX-License-Identifier: GPL-2.0-or-later
"""Plugging and unplugging Quantum vNICs on the host: taps and integration-bridge ports.

Everything is inspected before anything changes, so a refusal leaves the host as it
was; a failure half-way undoes what this run made.
"""

from dataclasses import replace
from typing import Callable, Dict, List, Optional, Sequence, Set, Tuple

from qhook import plugins
from qhook.errors import QhookError
from qhook.host import bindings, hybrid, links, mirrors, ovsports, state, tap, wiring
from qhook.host.ovsdb import Ovsdb, OvsdbError, retrying
from qhook.vocabulary.attachment import Attachment, Plugged
from qhook.vocabulary.config import Config, OnTimeout, PlugMode
from qhook.vocabulary.ids import HYBRID_NAME, TAP_NAME


def _external_ids(item: Attachment) -> Dict[str, str]:
    """What the agents read from the OVS Interface, plus our mark."""
    ids = {
        "iface-id": item.host_id,
        "attached-mac": item.mac,
        "iface-status": "active",
        "vm-uuid": item.vm_id,
        ovsports.OWNER_KEY: ovsports.OWNER_VALUE,
    }
    if item.network_id:
        ids[mirrors.NETWORK_KEY] = item.network_id
    return ids


def _new_port(item: Attachment) -> ovsports.NewPort:
    return ovsports.NewPort(item.port_name, _external_ids(item), item.mtu)


def undo(plugged: Plugged, config: Config) -> List[str]:
    """Remove what a plug run made (taps it took over stay); return what could not be done."""
    return remove_ours(
        plugged.added_ports,
        plugged.created_taps,
        plugged.vm_id,
        config,
        devices=plugged.created_devices,
    )


def _ovsdb(config: Config) -> Ovsdb:
    return Ovsdb(config.ovs.connection, config.ovs.timeout)


FOREIGN = "already exists and belongs to something else"


def _check_tap(item: Attachment, held_by_this_vm_ok: bool = True) -> Optional[tap.TapState]:
    """The existing device of the tap's name if this vNIC may take it over; None if none.

    Only a tap of ours for this vNIC: this VM's, or another VM's that no process holds
    (what a crashed or replaced run left). Anything else is refused, naming nothing of it.
    """
    current = tap.state(item.tap_name)
    if current is None:
        return None
    if not current.belongs_to(item.host_id):
        raise QhookError(f"device {item.tap_name} {FOREIGN}")
    this_vm = current.mark.get("vm") == item.vm_id
    if (not this_vm or not held_by_this_vm_ok) and tap.held(item.tap_name):
        whose = "this VM" if this_vm else "another VM"
        raise QhookError(f"device {item.tap_name} is in use by {whose} on this host")
    return current


def _replaceable(item: Attachment, row: ovsports.PortRow) -> ovsports.PortRow:
    """A row of the port's name may be replaced only if it is ours for this vNIC (whether
    its tap is held was settled by _check_tap, which every plug runs first)."""
    if not row.for_vnic(item.host_id):
        raise QhookError(f"Open vSwitch port {item.port_name} {FOREIGN}")
    return row


def _other_form(item: Attachment) -> str:
    """The name its port has when plugged the other way (hybrid, or straight)."""
    return item.tap_name if item.hybrid else hybrid.of(item.tap_name).ovs_end


def plug(items: Sequence[Attachment], config: Config) -> Plugged:
    """Plug the VM's Quantum vNICs as their bindings say (qhook.host.bindings); raise
    after undoing if anything fails."""
    done = Plugged(items[0].vm_id if items else "")
    items, done.notes = bindings.decide(items, config)
    done.plugged_as = {item.mac: item.plugin.value for item in items}
    plug_mode = config.ovs.plug
    hook_made = [item for item in items if item.hook_makes_tap(plug_mode)]
    leftovers = {item.tap_name: _check_tap(item) for item in hook_made}
    for item in items:
        if item.on_integration_bridge:
            hybrid.check(hybrid.of(item.tap_name), item.host_id)
    _clear_for_libvirt([i for i in items if not i.hook_makes_tap(plug_mode)], config)
    adding = [item for item in items if item.hook_adds_port(plug_mode)]
    try:
        if adding:
            with _ovsdb(config) as db:
                names = [item.port_name for item in adding]
                bridge = config.ovs.integration_bridge
                rows = ovsports.find_ours(
                    db, names + [_other_form(i) for i in adding], done.vm_id, bridge
                )
                replacing = [
                    _replaceable(i, rows[i.port_name]) for i in adding if i.port_name in rows
                ]
                # Plugged the other way before (a binding changed): that port goes too.
                replacing += [
                    rows[_other_form(i)]
                    for i in adding
                    if _other_form(i) in rows and rows[_other_form(i)].for_vnic(i.host_id)
                ]
                _make_taps(hook_made, leftovers, done, config.ovs.timeout)
                _make_hybrid(items, done, config)
                _add_ports(db, adding, replacing, config)
                done.added_ports = names
                _mirror(db, adding, config)
        else:
            _make_taps(hook_made, leftovers, done, config.ovs.timeout)
        if config.wiring.wait:
            waited = [
                i for i in items if i.hook_makes_tap(plug_mode) or i.hook_adds_port(plug_mode)
            ]
            _wait_for_agents(waited, done, config)
    except BaseException:
        undo(done, config)
        raise
    return done


def _make_hybrid(items: Sequence[Attachment], done: Plugged, config: Config) -> None:
    """The hybrid vNICs' bridges and veth pairs, with the hook's taps in them; a vNIC of
    the integration bridge plugged straight loses what it had of them."""
    timeout = config.ovs.timeout
    for item in items:
        if not item.on_integration_bridge:
            continue
        devices = hybrid.of(item.tap_name)
        if not item.hybrid:
            problems = hybrid.remove(devices, None, timeout)  # ours for the vNIC: checked
            if problems:
                raise QhookError("; ".join(problems))
            continue
        hybrid.make(devices, item.host_id, item.vm_id, item.mtu, done.created_devices, timeout)
        if item.hook_makes_tap(config.ovs.plug):
            hybrid.join(item.tap_name, devices, timeout)


def _add_ports(
    db: Ovsdb, items: Sequence[Attachment], replacing: Sequence[ovsports.PortRow], config: Config
) -> None:
    """Add the vNICs' ports, replacing these rows. A name taken by a row not of this VM
    is looked up: a leftover of ours for the same vNIC is replaced, anything else refused.
    A row on another bridge is never moved: the transaction fails instead."""
    new = [_new_port(item) for item in items]
    bridge = config.ovs.integration_bridge
    try:
        try:
            ovsports.add(db, bridge, new, replacing)
        except OvsdbError as error:
            if error.kind != "constraint violation":
                raise
            rows = ovsports.find(db, [item.port_name for item in items])
            found = [_replaceable(i, rows[i.port_name]) for i in items if i.port_name in rows]
            known = {row.name for row in found}
            replacing = found + [row for row in replacing if row.name not in known]
            ovsports.add(db, bridge, new, replacing)
    except OvsdbError as error:
        if error.kind != "timed out":
            raise
        raise QhookError(
            f"Open vSwitch port {', '.join(r.name for r in replacing)} of this package is not "
            f"on {bridge}, or changed meanwhile: not taken over"
        ) from None


def _mirror(db: Ovsdb, items: Sequence[Attachment], config: Config) -> None:
    """Mirrors for the mirroring vNICs; the new ports join the mirrors of their network."""
    wanted = [
        mirrors.WantedMirror(i.port_name, i.network_id, i.vm_id)
        for i in items
        if i.mirror and i.network_id
    ]
    networks = [i.network_id for i in items if i.network_id]
    if wanted or (networks and any(m.network in networks for m in mirrors.find(db))):
        mirrors.update(db, config.ovs.integration_bridge, networks, wanted, _noting(config))


def _wait_for_agents(items: Sequence[Attachment], done: Plugged, config: Config) -> None:
    done.unwired = wiring.wait_until_wired([(i.port_name, i.plugin) for i in items], config)
    if done.unwired and config.wiring.on_timeout is OnTimeout.FAIL:
        raise QhookError(
            f"the agent did not wire {', '.join(done.unwired)} within "
            f"{config.wiring.timeout:g} s ([wiring] on_timeout = fail): unplugged"
        )


def _make_taps(
    items: Sequence[Attachment],
    leftovers: Dict[str, Optional[tap.TapState]],
    done: Plugged,
    timeout: float,
) -> None:
    for item in items:
        current = leftovers[item.tap_name]
        if current is not None and current.multiqueue != item.multiqueue:
            # Ours, but QEMU could not attach its queues to it: make it anew.
            tap.delete(item.tap_name, timeout)
            current = None
        if current is None:
            try:
                tap.create(item.tap_name, item.host_id, item.vm_id, item.multiqueue, item.mtu)
                done.created_taps.append(item.tap_name)
                continue
            except tap.TapTaken:
                # Made meanwhile: by a concurrent run of this VM's vNIC, it is taken over
                # as a leftover would be; by anything else, refused.
                if _check_tap(item) is None:
                    raise
        tap.configure(item.tap_name, item.host_id, item.vm_id, item.mtu)


def _clear_for_libvirt(items: Sequence[Attachment], config: Config) -> None:
    """libvirt plugs these, and replaces whatever Open vSwitch port has the tap's name
    (`--if-exists del-port` before its `add-port`). So a name must be free, or held by a
    leftover of ours for the vNIC (removed here, with its tap, when no process holds it),
    or by the port libvirt itself made for this VM's vNIC (its own ids, vm-id the VM's;
    libvirt replaces it). Anything else is refused before anything changes."""
    if not items:
        return
    stale_taps = [i.tap_name for i in items if _check_tap(i, held_by_this_vm_ok=False) is not None]
    with _ovsdb(config) as db:
        rows = ovsports.find(db, [item.tap_name for item in items])
        stale_ports = []
        for item in items:
            row = rows.get(item.tap_name)
            if row is not None and item.hybrid and not row.ours:
                raise QhookError(
                    f"Open vSwitch port {item.tap_name} is on the integration bridge, where "
                    "a vNIC plugged hybrid must not be (its firewall would not see it): "
                    "not plugged"
                )
            if row is None or row.libvirt_made(item.host_id, item.mac, item.vm_id):
                continue
            if not row.for_vnic(item.host_id):
                raise QhookError(
                    f"Open vSwitch port {item.tap_name} {FOREIGN}, and libvirt would replace it"
                )
            stale_ports.append(row)
        if stale_ports:
            ovsports.remove(db, stale_ports)
    for name in stale_taps:
        tap.delete(name, config.ovs.timeout)


PREVIOUS_IFACE = "vdsm-hook-quantum-previous-iface-id"
PREVIOUS_NETWORK = "vdsm-hook-quantum-previous-network"


def move(item: Attachment, config: Config) -> Tuple[str, List[str]]:
    """Re-key the port of a running vNIC (found by VM and MAC) to new Quantum ids, keeping
    the tap its QEMU holds; wait for the agent as on start. (tap, still unwired).

    The ids replaced are kept in the port until end_move; a failure puts them back. A vNIC
    plugged hybrid, or one whose new port is bound for hybrid plugging, cannot move."""
    with _ovsdb(config) as db:
        row = ovsports.of_vnic(db, item.vm_id, item.mac)
        if row is None:
            raise QhookError(
                f"vNIC {item.mac} has no port of this package on this host: only a vNIC "
                "plugged by the hook can move to another Quantum port while it runs"
            )
        (decided,), _ = bindings.decide([item], config)
        if HYBRID_NAME.fullmatch(row.name) or decided.hybrid:
            raise QhookError(f"vNIC {item.mac}: {plugins.hybrid_plugin().cannot_move}")
        old = row.external_ids
        if old.get("iface-id") == item.host_id:
            return row.name, []  # the same port: a change of something else
        current = tap.state(row.name)
        if current is None or not current.mine(old.get("iface-id", ""), item.vm_id):
            raise QhookError(
                f"vNIC {item.mac}: device {row.name} is not this VM's tap of this package: "
                "not moved"
            )
        moved = replace(item, tap=row.name)
        new = _external_ids(moved)
        new[PREVIOUS_IFACE] = old.get("iface-id", "")
        new[PREVIOUS_NETWORK] = old.get(mirrors.NETWORK_KEY, "")
        ovsports.set_external_ids(db, row, new)
    try:
        tap.configure(row.name, item.host_id, item.vm_id, None)
        with _ovsdb(config) as db:
            if old.get(mirrors.NETWORK_KEY) and row.port_uuid:
                mirrors.forget_port(db, row.port_uuid, old[mirrors.NETWORK_KEY])
            _mirror(db, [moved], config)
        unwired: List[str] = []
        if config.wiring.wait:
            networks = {row.name: item.network_id} if item.network_id else {}
            unwired = wiring.wait_until_wired([(row.name, item.plugin)], config, networks)
            if unwired and config.wiring.on_timeout is OnTimeout.FAIL:
                raise QhookError(
                    f"the agent did not wire {row.name} for port {item.host_id} within "
                    f"{config.wiring.timeout:g} s ([wiring] on_timeout = fail): moved back"
                )
    except BaseException:
        end_move(item.vm_id, [item.mac], True, config)
        raise
    return row.name, unwired


def end_move(vm_id: str, macs: Sequence[str], undo: bool, config: Config) -> List[str]:
    """After a move: forget the ids it replaced, or (undo) put them back. The MACs done."""
    done = []
    with _ovsdb(config) as db:
        for mac in macs:
            row = ovsports.of_vnic(db, vm_id, mac)
            if row is None or PREVIOUS_IFACE not in row.external_ids:
                continue
            ids = dict(row.external_ids)
            back_iface, back_network = ids.pop(PREVIOUS_IFACE), ids.pop(PREVIOUS_NETWORK, "")
            if undo:
                ids.pop("ovn-installed", None)
                ids["iface-id"] = back_iface
                left = ids.pop(mirrors.NETWORK_KEY, None)
                if back_network:
                    ids[mirrors.NETWORK_KEY] = back_network
            ovsports.set_external_ids(db, row, ids)
            if undo:
                # The tap goes back to the old mark only if it is still ours, this VM's.
                current = tap.state(row.name)
                if current is not None and current.mine(
                    row.external_ids.get("iface-id", ""), vm_id
                ):
                    tap.configure(row.name, back_iface, vm_id, None)
                if left and row.port_uuid:
                    mirrors.forget_port(db, row.port_uuid, left)
                if back_network:
                    mirrors.update(db, config.ovs.integration_bridge, [back_network], [])
            done.append(mac)
    return done


def remove_ours(
    port_names: Sequence[str],
    tap_names: Sequence[str],
    vm_id: str,
    config: Config,
    devices: Sequence[str] = (),
) -> List[str]:
    """Remove what is ours and this VM's of these names, nothing else: the ports (a tap's
    name stands for its vNIC's port either way, straight or hybrid), the taps with their
    hybrid bridges and veths, and these hybrid devices."""
    problems: List[str] = []
    names = sorted({n for name in port_names for n in _port_names_of(name)})
    if names:
        try:
            with _ovsdb(config) as db:
                mirrors.remove(db, names, vm_id)
                # The rows are read again if an agent changed one meanwhile (ovn-controller
                # marks and unmarks ovn-installed): their removal holds only if unchanged.
                retrying(lambda: _remove_rows(db, names, vm_id), "unplugging", _noting(config))
        except QhookError as error:
            problems.append(str(error))
    mine = []
    for name in tap_names:
        current = tap.state(name)
        if current is not None and current.ours and current.mark.get("vm") == vm_id:
            mine.append(name)
    problems += tap.delete_many(mine, config.ovs.timeout)
    # All hybrid devices at once: each deletion's wait in the kernel then overlaps.
    doomed = []
    try:
        for name in tap_names:
            doomed += hybrid.removable(hybrid.of(name), vm_id)
    except QhookError as error:
        problems.append(str(error))
    problems += links.delete_many(doomed, config.ovs.timeout)
    problems += hybrid.remove_named(devices, vm_id, config.ovs.timeout)
    return problems


def _remove_rows(db: Ovsdb, names: Sequence[str], vm_id: str) -> None:
    rows = ovsports.find_ours(db, names, vm_id)
    mine = [row for row in rows.values() if row.ours and row.external_ids.get("vm-uuid") == vm_id]
    ovsports.remove(db, mine)


def _noting(config: Config) -> Callable[[str], None]:
    """What tells root's notes that a transaction was run again, and why."""
    return lambda reason: state.note_retry(config, reason)


def _port_names_of(name: str) -> List[str]:
    """A tap's name stands for both names its vNIC's port may have."""
    return [name, hybrid.of(name).ovs_end] if TAP_NAME.fullmatch(name) else [name]


def plugged_here(vm_id: str, config: Config) -> Set[str]:
    """The host ids (Quantum ports) of this VM that a tap or port of ours carries now."""
    ids = set()
    for name in tap.names():
        current = tap.state(name)
        if current is not None and current.ours and current.mark.get("vm") == vm_id:
            ids.add(current.mark.get("vnic", ""))
    try:
        with _ovsdb(config) as db:
            rows = ovsports.of_vm(db, vm_id)
    except QhookError:
        rows = []
    ids.update(row.external_ids.get("iface-id", "") for row in rows)
    return ids - {""}


def _mine(item: Attachment) -> bool:
    current = tap.state(item.tap_name)
    return current is not None and current.mine(item.host_id, item.vm_id)


def _rows_to_repair(
    db: Ovsdb, names: List[str], vm_id: str, config: Config
) -> Dict[str, ovsports.PortRow]:
    """The rows of these names: ours on our mark, then whoever's for the names not ours
    (libvirt's, in libvirt plug mode, are never ours)."""
    bridge = config.ovs.integration_bridge
    if config.ovs.plug is PlugMode.LIBVIRT:
        return ovsports.find(db, names, bridge)
    rows = ovsports.find_ours(db, names, vm_id, bridge)
    absent = [name for name in names if name not in rows]
    if absent:
        rows.update(ovsports.find(db, absent))
    return rows


def _as_plugged(item: Attachment) -> Attachment:
    """A running vNIC as it was plugged: hybrid where its bridge of ours is there."""
    if not item.on_integration_bridge:
        return item
    if hybrid.present(hybrid.of(item.tap_name), item.vm_id) != item.host_id:
        return item
    return replace(item, plugin=plugins.hybrid_plugin().plugin, decided=True)


def _hybrid_problems(item: Attachment, config: Config) -> List[str]:
    devices = hybrid.of(item.tap_name)
    if not hybrid.complete(devices, item.host_id, item.vm_id):
        return [f"the bridge and veth pair of vNIC {item.mac} ({devices.bridge}) are not whole"]
    if hybrid.joined(item.tap_name, devices):
        return []
    return [f"tap {item.tap_name} of vNIC {item.mac} is not in its bridge {devices.bridge}"]


def repair(items: Sequence[Attachment], config: Config) -> Tuple[List[str], List[str]]:
    """Check the plugging of a running VM; add missing ports. Return (repaired, problems).

    A missing or foreign tap cannot be repaired under a running QEMU; it is reported.
    """
    problems: List[str] = []
    items = [_as_plugged(item) for item in items]
    plug_mode = config.ovs.plug
    hook_made = [i for i in items if i.hook_makes_tap(plug_mode)]
    for item in hook_made:
        current = tap.state(item.tap_name)
        if current is None:
            problems.append(f"tap {item.tap_name} of vNIC {item.mac} is missing")
        elif not current.mine(item.host_id, item.vm_id):
            problems.append(f"device {item.tap_name} of vNIC {item.mac} is not this VM's tap")
    whole = []
    for item in items:
        if item.hybrid:
            found = _hybrid_problems(item, config)
            problems += found
            if not found:
                whole.append(item.port_name)
    on_bridge = [item for item in items if item.on_integration_bridge]
    if not on_bridge:
        return [], problems
    missing: List[Attachment] = []
    try:
        with _ovsdb(config) as db:
            names = [i.port_name for i in on_bridge]
            rows = _rows_to_repair(db, names, on_bridge[0].vm_id, config)
            for item in on_bridge:
                row = rows.get(item.port_name)
                if row is None:
                    missing.append(item)
                elif not (
                    row.for_vnic(item.host_id)
                    or row.libvirt_made(item.host_id, item.mac, item.vm_id)
                ):
                    problems.append(f"Open vSwitch port {item.port_name} belongs to something else")
            if plug_mode is PlugMode.LIBVIRT:
                problems += [
                    f"libvirt did not plug {i.tap_name} into Open vSwitch"
                    for i in missing
                    if not i.hybrid
                ]
                missing = [i for i in missing if i.hybrid]
            # Only what is ours for this vNIC and VM is plugged again, never another's.
            missing = [i for i in missing if (i.port_name in whole if i.hybrid else _mine(i))]
            if missing:
                new = [_new_port(i) for i in missing]
                ovsports.add(db, config.ovs.integration_bridge, new, [])
    except QhookError as error:
        problems.append(str(error))
        missing = []
    return [item.port_name for item in missing], problems
