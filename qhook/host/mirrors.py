# SPDX-License-Identifier: GPL-2.0-or-later
"""Port mirroring for Quantum vNICs: an OVS Mirror on the integration bridge per
mirroring vNIC, whose output is that vNIC's port and which selects the traffic to and
from every port of the vNIC's Quantum network on this host.

The ports of a network are the ones this package plugged, found by the network id in
their external_ids. Each plug adds its ports to the mirrors of their network, so the
selection follows ports as they come; Open vSwitch drops a deleted port from every
mirror by itself. Only mirrors marked as ours are ever changed or removed.
"""

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Sequence, Set

from qhook.host import ovsdb
from qhook.host.ovsports import OWNER_KEY, OWNER_VALUE

NETWORK_KEY = "vdsm-hook-quantum-network"
NAME_PREFIX = "qhook-mirror-"


def mirror_name(tap_name: str) -> str:
    return NAME_PREFIX + tap_name


@dataclass(frozen=True)
class MirrorRow:
    """One of our Mirror rows."""

    uuid: str
    name: str
    network: str
    vm_id: str
    selected: Set[str]


def _ours_filter() -> List[Any]:
    return [["external_ids", "includes", ovsdb.ovs_map({OWNER_KEY: OWNER_VALUE})]]


def find(db: ovsdb.Ovsdb) -> List[MirrorRow]:
    """Every mirror this package made."""
    rows = db.transact(
        [
            {
                "op": "select",
                "table": "Mirror",
                "where": _ours_filter(),
                "columns": ["_uuid", "name", "external_ids", "select_src_port"],
            }
        ],
        "listing our mirrors",
    )[0]["rows"]
    found = []
    for row in rows:
        ids = ovsdb.map_value(row["external_ids"])
        found.append(
            MirrorRow(
                uuid=row["_uuid"][1],
                name=row["name"],
                network=ids.get(NETWORK_KEY, ""),
                vm_id=ids.get("vm-uuid", ""),
                selected={value[1] for value in ovsdb.set_values(row["select_src_port"])},
            )
        )
    return found


def _network_filter(network: str) -> List[Any]:
    mark = {OWNER_KEY: OWNER_VALUE, NETWORK_KEY: network}
    return [["external_ids", "includes", ovsdb.ovs_map(mark)]]


def _network_interfaces(db: ovsdb.Ovsdb, networks: Sequence[str]) -> Dict[str, List[str]]:
    """For each network, the names of our Interfaces on it."""
    operations: List[Dict[str, Any]] = [
        {"op": "select", "table": "Interface", "where": _network_filter(n), "columns": ["name"]}
        for n in networks
    ]
    results = db.transact(operations, "looking up the ports of a network") if operations else []
    return {
        network: [row["name"] for row in result["rows"]]
        for network, result in zip(networks, results)
    }


def network_ports(db: ovsdb.Ovsdb, networks: Sequence[str]) -> Dict[str, Dict[str, str]]:
    """For each network, our ports on it: {network: {port name: Port uuid}}."""
    return _with_port_uuids(db, _network_interfaces(db, networks))


def _with_port_uuids(db: ovsdb.Ovsdb, names: Dict[str, List[str]]) -> Dict[str, Dict[str, str]]:
    every = sorted({name for found in names.values() for name in found})
    ports = _port_uuids(db, every)
    return {network: {n: ports[n] for n in found if n in ports} for network, found in names.items()}


def _still(table: str, where: List[Any], names: Sequence[str]) -> Dict[str, Any]:
    """A wait that fails if the rows `where` selects are no longer these (by name)."""
    return {
        "op": "wait",
        "table": table,
        "timeout": 0,
        "until": "==",
        "where": where,
        "columns": ["name"],
        "rows": [{"name": name} for name in sorted(set(names))],
    }


def _port_uuids(db: ovsdb.Ovsdb, names: Sequence[str]) -> Dict[str, str]:
    """The Port uuid of each of these ports of ours: one select of our Ports (a select by
    name scans the table once per name: ~10 ms each beside 10,000 ports); by name only
    those a Port without our mark holds (made by an older version of this package)."""
    if not names:
        return {}
    wanted = set(names)
    ours = db.transact(
        [{"op": "select", "table": "Port", "where": _ours_filter(), "columns": ["_uuid", "name"]}],
        "looking up our ports",
    )[0]["rows"]
    found = {row["name"]: row["_uuid"][1] for row in ours if row["name"] in wanted}
    unmarked = sorted(wanted - set(found))
    if unmarked:
        operations = [
            {"op": "select", "table": "Port", "where": [["name", "==", n]], "columns": ["_uuid"]}
            for n in unmarked
        ]
        results = db.transact(operations, "looking up ports")
        found.update({n: r["rows"][0]["_uuid"][1] for n, r in zip(unmarked, results) if r["rows"]})
    return found


@dataclass(frozen=True)
class WantedMirror:
    """A mirroring vNIC: its tap (the mirror's output), network and VM."""

    tap_name: str
    network: str
    vm_id: str


def update(
    db: ovsdb.Ovsdb,
    bridge: str,
    networks: Sequence[str],
    wanted: Sequence[WantedMirror],
    on_retry: Callable[[str], None] = lambda _: None,
) -> None:
    """Make the wanted mirrors, and have every mirror of these networks select all of
    the network's ports (but its own output). One transaction, which holds only if the
    networks' ports and mirrors are still those it read: a VM plugging or leaving beside
    this one makes it run again (ovsdb.retrying), so no port misses a mirror."""
    ovsdb.retrying(lambda: _update(db, bridge, networks, wanted), "mirroring", on_retry)


def _update(
    db: ovsdb.Ovsdb, bridge: str, networks: Sequence[str], wanted: Sequence[WantedMirror]
) -> None:
    networks = sorted(set(networks) | {w.network for w in wanted})
    if not networks:
        return
    names = _network_interfaces(db, networks)
    ports = _with_port_uuids(db, names)
    existing = {m.name: m for m in find(db)}
    operations: List[Dict[str, Any]] = []
    for mirror in existing.values():
        if mirror.network not in ports:
            continue
        output = mirror.name[len(NAME_PREFIX) :]
        missing = {u for n, u in ports[mirror.network].items() if n != output} - mirror.selected
        if missing:
            selection = ovsdb.ovs_set([ovsdb.uuid(u) for u in sorted(missing)])
            operations.append(
                {
                    "op": "mutate",
                    "table": "Mirror",
                    "where": [["_uuid", "==", ovsdb.uuid(mirror.uuid)]],
                    "mutations": [
                        ["select_src_port", "insert", selection],
                        ["select_dst_port", "insert", selection],
                    ],
                }
            )
    new = []
    for index, mirror in enumerate(wanted):
        name = mirror_name(mirror.tap_name)
        output = ports.get(mirror.network, {}).get(mirror.tap_name)
        if name in existing or output is None:
            continue
        others = [
            ovsdb.uuid(u) for n, u in sorted(ports[mirror.network].items()) if n != mirror.tap_name
        ]
        operations.append(
            {
                "op": "insert",
                "table": "Mirror",
                "uuid-name": f"m{index}",
                "row": {
                    "name": name,
                    "output_port": ovsdb.uuid(output),
                    "select_src_port": ovsdb.ovs_set(others),
                    "select_dst_port": ovsdb.ovs_set(others),
                    "external_ids": ovsdb.ovs_map(
                        {
                            OWNER_KEY: OWNER_VALUE,
                            NETWORK_KEY: mirror.network,
                            "vm-uuid": mirror.vm_id,
                        }
                    ),
                },
            }
        )
        new.append(ovsdb.named(f"m{index}"))
    if new:
        operations.append(
            {
                "op": "mutate",
                "table": "Bridge",
                "where": [["name", "==", bridge]],
                "mutations": [["mirrors", "insert", ovsdb.ovs_set(new)]],
            }
        )
    if operations:
        read = [_still("Interface", _network_filter(n), names[n]) for n in networks]
        read += [
            _still(
                "Mirror",
                _network_filter(n),
                [m.name for m in existing.values() if m.network == n],
            )
            for n in networks
        ]
        db.transact(read + operations, "mirroring the ports of " + ", ".join(networks))


def forget_port(db: ovsdb.Ovsdb, port_uuid: str, network: str) -> None:
    """Take a port out of our mirrors of a network it left."""
    selection = ovsdb.ovs_set([ovsdb.uuid(port_uuid)])
    operations = [
        {
            "op": "mutate",
            "table": "Mirror",
            "where": [["_uuid", "==", ovsdb.uuid(m.uuid)]],
            "mutations": [
                ["select_src_port", "delete", selection],
                ["select_dst_port", "delete", selection],
            ],
        }
        for m in find(db)
        if m.network == network and port_uuid in m.selected
    ]
    if operations:
        db.transact(operations, "updating mirrors")


def remove(db: ovsdb.Ovsdb, tap_names: Sequence[str], vm_id: str) -> None:
    """Remove our mirrors whose output is one of these taps of this VM."""
    remove_outputs(db, {tap_name: vm_id for tap_name in tap_names})


def remove_outputs(db: ovsdb.Ovsdb, outputs: Dict[str, str]) -> None:
    """Remove our mirrors whose output is one of these taps ({tap: its VM})."""
    vms = {mirror_name(tap_name): vm_id for tap_name, vm_id in outputs.items()}
    doomed = [m for m in find(db) if m.name in vms and m.vm_id == vms[m.name]]
    if not doomed:
        return
    uuids = ovsdb.ovs_set([ovsdb.uuid(m.uuid) for m in doomed])
    db.transact(
        [
            {
                "op": "mutate",
                "table": "Bridge",
                "where": [["mirrors", "includes", ovsdb.uuid(m.uuid)]],
                "mutations": [["mirrors", "delete", uuids]],
            }
            for m in doomed
        ],
        "removing mirrors " + ", ".join(m.name for m in doomed),
    )
