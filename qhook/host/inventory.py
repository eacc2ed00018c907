# SPDX-License-Identifier: GPL-2.0-or-later
"""What this package has on the host: our taps and OVS ports, and which are stale.

Stale means what a crash or a reboot leaves: an OVS port of ours whose tap (or, plugged
hybrid, whose veth) is gone (the database outlives a reboot, the devices do not), and a
tap or hybrid bridge of ours whose tap no process holds open (no QEMU uses it) and that
was plugged longer ago than a grace period, so a VM that is starting right now is never
taken for a dead one.
"""

import time
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Set, Tuple

from qhook.errors import QhookError
from qhook.host import hybrid, links, mirrors, ovsports, tap
from qhook.host.ovsdb import Ovsdb, map_value
from qhook.plugins import wired_on_the_bridge
from qhook.vocabulary.config import Config
from qhook.vocabulary.ids import tap_name_behind

DEFAULT_GRACE = 120
# How long a cleanup waits for ovs-vswitchd to apply the removal of the ports it removed.
APPLY_BOUND = 60.0


@dataclass
class Entry:
    """One vNIC of ours, by its tap's name: its tap, its hybrid bridge and veth pair, its
    OVS port (the tap's name, or the veth's end qvo<id11>), and whether it is stale."""

    tap: str
    vnic: Optional[str] = None
    vm: Optional[str] = None
    device: bool = False  # a tap of ours of that name
    in_use: bool = False
    age: Optional[int] = None
    ovs_port: bool = False
    ofport: Optional[int] = None
    wired: Optional[bool] = None
    stale: Optional[str] = None
    port: Optional[str] = None  # the OVS port's name
    bridge: Optional[str] = None  # the Linux bridge the tap is a port of (an agent's, or qbr)
    hybrid: List[str] = field(default_factory=list)  # our bridge and veths of the vNIC
    row: Optional[ovsports.PortRow] = field(default=None, repr=False, compare=False)

    def as_dict(self) -> Dict[str, object]:
        return {k: v for k, v in asdict(self).items() if k != "row"}


def _age(mark: Dict[str, str], now: float) -> Optional[int]:
    since = mark.get("since", "")
    return int(now - int(since)) if since.isdigit() else None


def survey(config: Config, grace: float = DEFAULT_GRACE) -> Tuple[List[Entry], Optional[str]]:
    """Our taps, hybrid devices and ports; the second value says why OVS could not be
    read, if it could not."""
    entries: Dict[str, Entry] = {}
    now = time.time()
    for name in tap.names():
        current = tap.state(name)
        if current is None or not current.ours:
            continue
        entries[name] = Entry(
            tap=name,
            vnic=current.mark.get("vnic"),
            vm=current.mark.get("vm"),
            device=True,
            in_use=current.carrier,
            age=_age(current.mark, now),
            bridge=links.master_of(name),
        )
    for name in hybrid.named_here():
        tap_name = tap_name_behind(name)
        mark = hybrid.mark(name, hybrid.of(tap_name))
        if not mark:
            continue
        entry = entries.setdefault(tap_name, Entry(tap=tap_name, age=_age(mark, now)))
        entry.vnic = entry.vnic or mark.get("vnic")
        entry.vm = entry.vm or mark.get("vm")
        entry.hybrid.append(name)
    # libvirt's tap (libvirt plug mode) in a hybrid bridge: held while its QEMU runs.
    behind = [e.tap for e in entries.values() if e.hybrid and tap.state(e.tap) is not None]
    for name in tap.held_among(behind):
        entries[name].in_use = True
    problem = None
    rows: List[ovsports.PortRow] = []
    try:
        with Ovsdb(config.ovs.connection, config.ovs.timeout) as db:
            rows = ovsports.ours(db)
    except QhookError as error:
        problem = str(error)
    for row in rows:
        tap_name = tap_name_behind(row.name)
        entry = entries.setdefault(tap_name, Entry(tap=tap_name))
        entry.vnic = entry.vnic or row.external_ids.get("iface-id")
        entry.vm = entry.vm or row.external_ids.get("vm-uuid")
        entry.ovs_port = True
        entry.port = row.name
        entry.row = row
        entry.ofport = row.ofport
        entry.wired = wired_on_the_bridge(row)
    for entry in entries.values():
        if not entry.ovs_port and not entry.hybrid and entry.device:
            entry.wired = entry.bridge is not None  # the Linux bridge agent bridged it
        entry.stale = _stale(entry, grace)
    return sorted(entries.values(), key=lambda e: e.tap), problem


def _stale(entry: Entry, grace: float) -> Optional[str]:
    """Why the entry is what a crash or a reboot left, or None."""
    if entry.in_use:
        return None
    if entry.port is not None and entry.port != entry.tap:  # hybrid: the port is the veth's
        if entry.port not in entry.hybrid:
            return "its veth is gone"
    elif entry.ovs_port and not entry.device:
        gone = tap.state(entry.tap) is None
        return "its tap is gone" if gone else "the device of its name is not ours"
    if (entry.device or entry.hybrid) and (entry.age is None or entry.age >= grace):
        return "no VM holds its tap"
    return None


def clean(config: Config, entries: List[Entry], dry_run: bool) -> List[str]:
    """Remove the stale entries (taps and hybrid devices first, then ports); return what
    was (or would be) done, one line each: only what really went, and what was kept and
    why.

    Each piece is looked at again just before it goes: a VM starting meanwhile may have
    made the tap anew, or taken it; a removal's guards catch a port changed meanwhile."""
    stale = [entry for entry in entries if entry.stale]
    if dry_run:
        return [
            f"would remove {what} ({entry.stale})"
            for entry in stale
            for what in (
                ([f"OVS port {entry.port}"] if entry.ovs_port else [])
                + ([f"tap {entry.tap}"] if entry.device else [])
                + [f"device {name}" for name in entry.hybrid]
            )
        ]
    done: List[str] = []
    doomed = []
    kept = set()
    # Which taps a VM holds, looked at once for all: a look at every process's descriptors
    # per tap made 10,000 stale taps take minutes.
    holding = tap.held_among([e.tap for e in stale if tap.state(e.tap) is not None])
    for entry in stale:
        held = entry.tap in holding
        if held and (entry.device or entry.hybrid):
            done.append(f"kept tap {entry.tap}: a VM holds it now")
            kept.add(entry.tap)
            continue
        current = tap.state(entry.tap)
        if entry.device and current is not None and current.ours:
            doomed.append(entry)
    problems = tap.delete_many([entry.tap for entry in doomed], config.ovs.timeout)
    for entry in stale:
        if entry.hybrid and entry.tap not in kept:
            found = hybrid.remove(hybrid.of(entry.tap), None, config.ovs.timeout)
            problems += found
            if not found:
                done += [f"removed device {name} ({entry.stale})" for name in entry.hybrid]
    if problems:
        raise QhookError("; ".join(problems))
    done += [f"removed tap {entry.tap} ({entry.stale})" for entry in doomed]
    gone: List[Entry] = []
    for entry in stale:
        if entry.row is None or entry.tap in kept:
            continue
        current = tap.state(entry.tap)
        if entry.port == entry.tap and current is not None and current.ours:
            done.append(f"kept OVS port {entry.port}: its tap is ours again (a VM is starting)")
        else:
            gone.append(entry)
    if gone:
        rows = [entry.row for entry in gone if entry.row is not None]
        with Ovsdb(config.ovs.connection, config.ovs.timeout) as db:
            # A mirroring vNIC's mirror goes with its port.
            mirrors.remove_outputs(db, {r.name: r.external_ids.get("vm-uuid", "") for r in rows})
            ovsports.remove(db, rows)
        # Return once ovs-vswitchd has let go of them too: at boot the VMs start right
        # after, and 10,000 removals keep it busy half a minute, so their ports would wait.
        if not ovsports.wait_applied(config.ovs.connection, APPLY_BOUND):
            done.append(f"ovs-vswitchd had not applied the removals after {APPLY_BOUND:g} s")
        for entry in gone:
            why = entry.stale
            if entry.port == entry.tap and not entry.device and tap.state(entry.tap) is not None:
                why = "the device of its name is not ours"
            done.append(f"removed OVS port {entry.port} ({why})")
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
