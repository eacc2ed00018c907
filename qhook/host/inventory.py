# SPDX-License-Identifier: GPL-2.0-or-later
"""What this package has on the host: our taps and OVS ports, and which are stale.

Stale means what a crash or a reboot leaves: an OVS port of ours whose tap is gone
(the database outlives a reboot, the taps do not), and a tap of ours that no process
holds open (no QEMU uses it) and that was plugged longer ago than a grace period, so
a VM that is starting right now is never taken for a dead one.
"""

import time
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Set, Tuple

from qhook.errors import QhookError
from qhook.host import mirrors, ovsports, tap
from qhook.host.ovsdb import Ovsdb, map_value
from qhook.plugins import wired_on_the_bridge
from qhook.vocabulary.config import Config

DEFAULT_GRACE = 120


@dataclass
class Entry:
    """One tap name of ours: its device, its OVS port, and whether it is stale."""

    tap: str
    vnic: Optional[str] = None
    vm: Optional[str] = None
    device: bool = False
    in_use: bool = False
    age: Optional[int] = None
    ovs_port: bool = False
    ofport: Optional[int] = None
    wired: Optional[bool] = None
    stale: Optional[str] = None
    row: Optional[ovsports.PortRow] = field(default=None, repr=False, compare=False)

    def as_dict(self) -> Dict[str, object]:
        return {k: v for k, v in asdict(self).items() if k != "row"}


def survey(config: Config, grace: float = DEFAULT_GRACE) -> Tuple[List[Entry], Optional[str]]:
    """Our taps and ports; the second value says why OVS could not be read, if it could not."""
    entries: Dict[str, Entry] = {}
    now = time.time()
    for name in tap.names():
        current = tap.state(name)
        if current is None or not current.ours:
            continue
        since = current.mark.get("since", "")
        entries[name] = Entry(
            tap=name,
            vnic=current.mark.get("vnic"),
            vm=current.mark.get("vm"),
            device=True,
            in_use=current.carrier,
            age=int(now - int(since)) if since.isdigit() else None,
        )
    problem = None
    rows: List[ovsports.PortRow] = []
    try:
        with Ovsdb(config.ovs.connection, config.ovs.timeout) as db:
            rows = ovsports.ours(db)
    except QhookError as error:
        problem = str(error)
    for row in rows:
        entry = entries.setdefault(row.name, Entry(tap=row.name))
        entry.vnic = entry.vnic or row.external_ids.get("iface-id")
        entry.vm = entry.vm or row.external_ids.get("vm-uuid")
        entry.ovs_port = True
        entry.row = row
        entry.ofport = row.ofport
        entry.wired = wired_on_the_bridge(row)
    for entry in entries.values():
        if entry.ovs_port and not entry.device:
            gone = tap.state(entry.tap) is None
            entry.stale = "its tap is gone" if gone else "the device of its name is not ours"
        elif entry.device and not entry.in_use and (entry.age is None or entry.age >= grace):
            entry.stale = "no VM holds its tap"
    return sorted(entries.values(), key=lambda e: e.tap), problem


def clean(config: Config, entries: List[Entry], dry_run: bool) -> List[str]:
    """Remove the stale entries (taps first, then ports); return what was (or would be)
    done, one line each: only what really went, and what was kept and why.

    Each piece is looked at again just before it goes: a VM starting meanwhile may have
    made the tap anew, or taken it; a removal's guards catch a port changed meanwhile."""
    stale = [entry for entry in entries if entry.stale]
    if dry_run:
        return [
            f"would remove {what} {entry.tap} ({entry.stale})"
            for entry in stale
            for what in (["OVS port"] if entry.ovs_port else []) + (["tap"] if entry.device else [])
        ]
    done: List[str] = []
    doomed = []
    for entry in stale:
        if not entry.device:
            continue
        current = tap.state(entry.tap)
        if current is not None and current.ours and not tap.held(entry.tap):
            doomed.append(entry)
        else:
            done.append(f"kept tap {entry.tap}: a VM holds it now")
    problems = tap.delete_many([entry.tap for entry in doomed], config.ovs.timeout)
    if problems:
        raise QhookError("; ".join(problems))
    done += [f"removed tap {entry.tap} ({entry.stale})" for entry in doomed]
    gone: List[Entry] = []
    for entry in stale:
        if entry.row is None:
            continue
        current = tap.state(entry.tap)
        if current is not None and current.ours:
            done.append(f"kept OVS port {entry.tap}: its tap is ours again (a VM is starting)")
        else:
            gone.append(entry)
    if gone:
        rows = [entry.row for entry in gone if entry.row is not None]
        with Ovsdb(config.ovs.connection, config.ovs.timeout) as db:
            # A mirroring vNIC's mirror goes with its port.
            mirrors.remove_outputs(db, {r.name: r.external_ids.get("vm-uuid", "") for r in rows})
            ovsports.remove(db, rows)
        for entry in gone:
            why = entry.stale
            if not entry.device and tap.state(entry.tap) is not None:
                why = "the device of its name is not ours"
            done.append(f"removed OVS port {entry.tap} ({why})")
    return done


def in_use_here(config: Config, entries: List[Entry]) -> Tuple[Set[str], Set[str]]:
    """What shows a Quantum port in use on this host: (VM ids, port ids) of these entries
    of ours, and of every Open vSwitch Interface that is not ours (libvirt's)."""
    vms = {entry.vm for entry in entries if entry.vm}
    ids = {entry.vnic for entry in entries if entry.vnic}
    with Ovsdb(config.ovs.connection, config.ovs.timeout) as db:
        (interfaces,) = db.transact(
            [{"op": "select", "table": "Interface", "where": [], "columns": ["external_ids"]}],
            "listing the ports' ids",
        )
    for row in interfaces["rows"]:
        external_ids = map_value(row["external_ids"])
        if external_ids.get(ovsports.OWNER_KEY) == ovsports.OWNER_VALUE:
            continue  # ours are the entries: a stale one is no VM's
        ids.update(v for k, v in external_ids.items() if k == "iface-id")
        vms.update(v for k, v in external_ids.items() if k in ("vm-uuid", "vm-id"))
    return vms, ids


def clean_quantum(
    config: Config, entries: List[Entry], grace: float, dry_run: bool
) -> Tuple[List[str], List[str], bool]:
    """Delete the ports on demand bound to this host that nothing here uses any more:
    (what was or would be done, notes on what it cannot judge, whether all went)."""
    from qhook.host.ondemand import Quantum

    vms, ids = in_use_here(config, entries)
    taps = set(tap.names())
    done = []
    with Quantum(config) as quantum:
        orphans = [
            port
            for port in quantum.orphans(vms, grace)
            if port["id"] not in ids and "tap" + port["id"][:11] not in taps
        ]
        deleted = {} if dry_run else quantum.delete([port["id"] for port in orphans])
        gone = {port.get("device_id") for port in orphans if deleted.get(port["id"], 0) is None}
        quantum.forget_suspended(vm for vm in gone if isinstance(vm, str))
        for port in orphans:
            why = f"VM {port.get('device_id')} has nothing plugged on {quantum.host}"
            if dry_run:
                done.append(f"would delete Quantum port {port['id']} ({why})")
            elif deleted[port["id"]] is None:
                done.append(f"deleted Quantum port {port['id']} ({why})")
            else:
                done.append(f"could not delete Quantum port {port['id']}: {deleted[port['id']]}")
        notes = [
            *quantum.notes,
            f"only ports made on demand and bound to {quantum.host} are judged here: those of "
            "other hosts are theirs, the engine's (qhook port create) are qhook port delete's",
        ]
    return done, notes, not any(deleted.values())
