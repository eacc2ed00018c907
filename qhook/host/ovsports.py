# SPDX-License-Identifier: GPL-2.0-or-later
"""The integration bridge's ports: find them by name, add ours, remove ours.

Each step is one OVSDB transaction that touches only the rows it names, with
`wait` operations so that a row changed by someone else in the meantime makes the
transaction fail instead of being overwritten. A name someone else took meanwhile makes
it fail too: Interface and Port names are unique indexes of the schema.
"""

import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

from qhook.errors import QhookError, shown
from qhook.host import ovsdb
from qhook.vocabulary.ids import PORT_NAME

OWNER_KEY = "vdsm-hook-quantum"
OWNER_VALUE = "owned"
VM_KEY = "vm-uuid"


@dataclass(frozen=True)
class PortRow:
    """An OVS Interface of a given name and the Port that holds it."""

    name: str
    interface_uuid: str
    port_uuid: Optional[str]
    external_ids: Dict[str, str]
    ofport: Optional[int]
    tag: Optional[int]
    port_other_config: Dict[str, str]

    @property
    def ours(self) -> bool:
        return self.external_ids.get(OWNER_KEY) == OWNER_VALUE

    def for_vnic(self, host_id: str) -> bool:
        """Ours, for this vNIC."""
        return self.ours and self.external_ids.get("iface-id") == host_id

    def libvirt_made(self, host_id: str, mac: str, vm_id: str) -> bool:
        """Not ours, but what libvirt makes for this VM's vNIC (plug mode libvirt): the
        ids libvirt sets, the VM's among them."""
        ids = self.external_ids
        return (
            not self.ours
            and ids.get("iface-id") == host_id
            and ids.get("attached-mac", "").lower() == mac
            and ids.get("vm-id") == vm_id
        )


@dataclass(frozen=True)
class NewPort:
    """A port to add: the tap's name and the Interface's external_ids."""

    name: str
    external_ids: Dict[str, str]
    mtu: Optional[int] = None


def _atom(value: Any) -> Optional[Any]:
    values = ovsdb.set_values(value)
    return values[0] if values else None


_INTERFACE_COLUMNS = ["_uuid", "name", "external_ids", "ofport"]
_PORT_COLUMNS = ["_uuid", "interfaces", "tag", "other_config"]


def _ports_by_interface(ports: List[Dict[str, Any]]) -> Dict[str, Dict[str, Any]]:
    return {member[1]: port for port in ports for member in ovsdb.set_values(port["interfaces"])}


def _bridge_select(bridge: str) -> Dict[str, Any]:
    return {
        "op": "select",
        "table": "Bridge",
        "where": [["name", "==", bridge]],
        "columns": ["_uuid"],
    }


def _selects(where: List[Any]) -> List[Dict[str, Any]]:
    """Select the Interface rows and the Port rows that match."""
    return [
        {"op": "select", "table": "Interface", "where": where, "columns": _INTERFACE_COLUMNS},
        {"op": "select", "table": "Port", "where": where, "columns": _PORT_COLUMNS},
    ]


def _marked(
    db: ovsdb.Ovsdb, also: Dict[str, str], bridge: Optional[str], what: str
) -> List[PortRow]:
    """The rows with our mark (and these other external_ids): two selects, however many
    ports there are; raise if the bridge is given and missing."""
    mark = {OWNER_KEY: OWNER_VALUE, **also}
    operations = _selects([["external_ids", "includes", ovsdb.ovs_map(mark)]])
    if bridge is not None:
        operations.append(_bridge_select(bridge))
    results = db.transact(operations, what)
    if bridge is not None:
        _check_bridge(bridge, results[2])
    port_of = _ports_by_interface(results[1]["rows"])
    # A row whose name is not one of ours is never acted on, marked or not.
    return [
        _row(i["name"], i, port_of.get(i["_uuid"][1]))
        for i in results[0]["rows"]
        if isinstance(i["name"], str) and PORT_NAME.fullmatch(i["name"])
    ]


def _check_bridge(bridge: str, result: Dict[str, Any]) -> None:
    if not result["rows"]:
        raise QhookError(f"integration bridge {bridge} does not exist in Open vSwitch")


def _row(name: str, interface: Dict[str, Any], port: Optional[Dict[str, Any]]) -> PortRow:
    return PortRow(
        name=name,
        interface_uuid=interface["_uuid"][1],
        port_uuid=None if port is None else port["_uuid"][1],
        external_ids=ovsdb.map_value(interface["external_ids"]),
        ofport=_atom(interface["ofport"]),
        tag=None if port is None else _atom(port["tag"]),
        port_other_config={} if port is None else ovsdb.map_value(port["other_config"]),
    )


def find(db: ovsdb.Ovsdb, names: Sequence[str], bridge: Optional[str] = None) -> Dict[str, PortRow]:
    """The Interface (and Port) rows of these names, whoever owns them; raise if the
    bridge is missing. Two selects per name, each of which ovsdb-server answers by
    scanning its table: for the paths that must see foreign rows too."""
    operations: List[Dict[str, Any]] = []
    for name in names:
        if not PORT_NAME.fullmatch(name):
            raise QhookError(f"{shown(name)} is not a port name of this package")
        operations += _selects([["name", "==", name]])
    if bridge is not None:
        operations.append(_bridge_select(bridge))
    results = db.transact(operations, "looking up ports") if operations else []
    if bridge is not None:
        _check_bridge(bridge, results[-1])
    found: Dict[str, PortRow] = {}
    for index, name in enumerate(names):
        interfaces = results[2 * index]["rows"]
        if not interfaces:
            continue
        member = ["uuid", interfaces[0]["_uuid"][1]]
        ports = results[2 * index + 1]["rows"]
        port = next((p for p in ports if member in ovsdb.set_values(p["interfaces"])), None)
        found[name] = _row(name, interfaces[0], port)
    return found


def reread(db: ovsdb.Ovsdb, rows: Dict[str, PortRow]) -> Dict[str, PortRow]:
    """These rows as they are now, looked up by their uuids (which ovsdb-server finds by
    its index; a select by name scans the table: ~10 ms each beside 10,000 ports). A row
    gone, renamed or moved to another Port is missing from the answer."""
    operations: List[Dict[str, Any]] = []
    for row in rows.values():
        operations.append(_by_uuid("Interface", row.interface_uuid, _INTERFACE_COLUMNS))
        if row.port_uuid is not None:
            operations.append(_by_uuid("Port", row.port_uuid, _PORT_COLUMNS))
    results = iter(db.transact(operations, "looking up ports again") if operations else [])
    found: Dict[str, PortRow] = {}
    for name, row in rows.items():
        interfaces = next(results)["rows"]
        ports = next(results)["rows"] if row.port_uuid is not None else []
        if not interfaces or interfaces[0]["name"] != name:
            continue
        member = ["uuid", row.interface_uuid]
        port = next((p for p in ports if member in ovsdb.set_values(p["interfaces"])), None)
        if port is not None or row.port_uuid is None:
            found[name] = _row(name, interfaces[0], port)
    return found


def _by_uuid(table: str, row_uuid: str, columns: List[str]) -> Dict[str, Any]:
    where = [["_uuid", "==", ovsdb.uuid(row_uuid)]]
    return {"op": "select", "table": table, "where": where, "columns": columns}


def of_vm(db: ovsdb.Ovsdb, vm_id: str) -> List[PortRow]:
    """Every row of ours of this VM, on whichever bridge."""
    return _marked(db, {VM_KEY: vm_id}, None, "looking up the VM's ports")


def find_ours(
    db: ovsdb.Ovsdb, names: Sequence[str], vm_id: str, bridge: Optional[str] = None
) -> Dict[str, PortRow]:
    """Our rows of this VM among these names; raise if the bridge is missing.

    Two selects on our mark and the VM, however many names: ovsdb-server scans a table
    once per select, and one select per name would scan it once per name. A foreign row
    of such a name is not seen; `add` cannot take its name (the schema's unique index).
    Ports made before they carried the VM's id are looked up by name."""
    wanted = set(names)
    marked = _marked(db, {VM_KEY: vm_id}, bridge, "looking up the VM's ports")
    found = {row.name: row for row in marked if row.name in wanted}
    older = [row.name for row in found.values() if row.port_uuid is None]
    if older:
        found.update(find(db, older))
    return found


def _unchanged(row: PortRow) -> Dict[str, Any]:
    """A wait that fails if the row is gone or its external_ids changed since we looked."""
    return {
        "op": "wait",
        "table": "Interface",
        "timeout": 0,
        "until": "==",
        "where": [["_uuid", "==", ovsdb.uuid(row.interface_uuid)]],
        "columns": ["external_ids"],
        "rows": [{"external_ids": ovsdb.ovs_map(row.external_ids)}],
    }


def _detach(row: PortRow, bridge: str) -> List[Dict[str, Any]]:
    """Remove the row's Port from this bridge (OVSDB then drops the rows); the transaction
    fails if the bridge does not hold it: a port is never taken from another bridge."""
    port = ovsdb.uuid(row.port_uuid or "")
    on_bridge = [["name", "==", bridge], ["ports", "includes", port]]
    return [
        {
            "op": "wait",
            "table": "Bridge",
            "timeout": 0,
            "until": "==",
            "where": on_bridge,
            "columns": ["name"],
            "rows": [{"name": bridge}],
        },
        {
            "op": "mutate",
            "table": "Bridge",
            "where": on_bridge,
            "mutations": [["ports", "delete", ovsdb.ovs_set([port])]],
        },
    ]


def _port_mark(port: NewPort) -> Dict[str, str]:
    """Our mark on the Port, with the VM's id when known (what `find_ours` selects on)."""
    mark = {OWNER_KEY: OWNER_VALUE}
    if port.external_ids.get(VM_KEY):
        mark[VM_KEY] = port.external_ids[VM_KEY]
    return mark


def add(
    db: ovsdb.Ovsdb, bridge: str, ports: Sequence[NewPort], replacing: Sequence[PortRow]
) -> None:
    """Add the ports to the bridge in one transaction, first removing the rows replaced
    (ours, on this bridge, unchanged since they were looked at; else the transaction fails)."""
    operations: List[Dict[str, Any]] = [
        {
            "op": "wait",
            "table": "Bridge",
            "timeout": 0,
            "until": "==",
            "where": [["name", "==", bridge]],
            "columns": ["name"],
            "rows": [{"name": bridge}],
        }
    ]
    for row in replacing:
        if not row.ours:
            raise QhookError(f"Open vSwitch port {row.name} is not ours to replace")
        operations.append(_unchanged(row))
        if row.port_uuid is not None:
            operations += _detach(row, bridge)
    new_ports = []
    for index, port in enumerate(ports):
        operations.append(
            {
                "op": "insert",
                "table": "Interface",
                "uuid-name": f"i{index}",
                "row": {
                    "name": port.name,
                    "external_ids": ovsdb.ovs_map(port.external_ids),
                    "mtu_request": ovsdb.ovs_set([] if port.mtu is None else [port.mtu]),
                },
            }
        )
        operations.append(
            {
                "op": "insert",
                "table": "Port",
                "uuid-name": f"p{index}",
                "row": {
                    "name": port.name,
                    "interfaces": ovsdb.named(f"i{index}"),
                    "external_ids": ovsdb.ovs_map(_port_mark(port)),
                },
            }
        )
        new_ports.append(ovsdb.named(f"p{index}"))
    operations.append(
        {
            "op": "mutate",
            "table": "Bridge",
            "where": [["name", "==", bridge]],
            "mutations": [["ports", "insert", ovsdb.ovs_set(new_ports)]],
        }
    )
    names = ", ".join(port.name for port in ports)
    db.transact(operations, f"adding {names} to {bridge}")


def remove(db: ovsdb.Ovsdb, rows: Sequence[PortRow]) -> None:
    """Remove these ports of ours in one transaction, if nobody changed them since we
    looked (the wait on their external_ids, our mark among them, guards each one)."""
    if any(not row.ours for row in rows):
        raise QhookError("only ports of this package are ever removed")
    operations: List[Dict[str, Any]] = [_unchanged(row) for row in rows]
    ports = [ovsdb.uuid(row.port_uuid) for row in rows if row.port_uuid is not None]
    if ports:
        # One mutation for all, on whichever bridges hold them: one per port would make
        # ovsdb-server search each bridge's port set once per port.
        operations.append(
            {
                "op": "mutate",
                "table": "Bridge",
                "where": [],
                "mutations": [["ports", "delete", ovsdb.ovs_set(ports)]],
            }
        )
    if operations:
        names = ", ".join(row.name for row in rows[:5]) + (" ..." if len(rows) > 5 else "")
        db.transact(operations, f"removing {len(rows)} port(s): {names}")


def of_vnic(db: ovsdb.Ovsdb, vm_id: str, mac: str) -> Optional[PortRow]:
    """Our port of this VM's vNIC (by MAC), if there is one."""
    mark = {OWNER_KEY: OWNER_VALUE, "vm-uuid": vm_id, "attached-mac": mac}
    results = db.transact(
        [
            {
                "op": "select",
                "table": "Interface",
                "where": [["external_ids", "includes", ovsdb.ovs_map(mark)]],
                "columns": ["name"],
            }
        ],
        f"looking up the port of vNIC {mac}",
    )
    names = sorted(
        row["name"]
        for row in results[0]["rows"]
        if isinstance(row["name"], str) and PORT_NAME.fullmatch(row["name"])
    )
    if len(names) > 1:
        raise QhookError(f"vNIC {mac} of VM {vm_id} has {len(names)} ports: {', '.join(names)}")
    return find(db, names).get(names[0]) if names else None


def set_external_ids(db: ovsdb.Ovsdb, row: PortRow, external_ids: Dict[str, str]) -> None:
    """Replace the Interface's external_ids, if nobody changed them since we looked."""
    db.transact(
        [
            _unchanged(row),
            {
                "op": "update",
                "table": "Interface",
                "where": [["_uuid", "==", ovsdb.uuid(row.interface_uuid)]],
                "row": {"external_ids": ovsdb.ovs_map(external_ids)},
            },
        ],
        f"re-keying {row.name}",
    )


def ours(db: ovsdb.Ovsdb) -> List[PortRow]:
    """Every Interface marked as ours, with its Port: two selects on our mark, however
    many ports there are (one select per name would make ovsdb-server scan the table
    once per port). A Port that lacks our mark (made by hand, or by an older version) is
    looked up by name."""
    found = {row.name: row for row in _marked(db, {}, None, "listing our ports")}
    unmarked = [row.name for row in found.values() if row.port_uuid is None]
    if unmarked:
        found.update({n: r for n, r in find(db, unmarked).items() if r.ours})
    return sorted(found.values(), key=lambda row: row.name)


def wait_applied(connection: str, timeout: float) -> bool:
    """Wait until ovs-vswitchd has applied the database as it is now (what `ovs-vsctl
    --wait` waits for: next_cfg raised, cur_cfg caught up with it); False if it has not
    within timeout (or Open vSwitch cannot be asked)."""
    deadline = time.monotonic() + timeout
    try:
        with ovsdb.Ovsdb(connection, timeout) as db:
            raised = db.transact(
                [
                    {
                        "op": "mutate",
                        "table": "Open_vSwitch",
                        "where": [],
                        "mutations": [["next_cfg", "+=", 1]],
                    },
                    {"op": "select", "table": "Open_vSwitch", "where": [], "columns": ["next_cfg"]},
                ],
                "asking ovs-vswitchd to say when it applied the changes",
            )[1]["rows"]
            target = raised[0]["next_cfg"] if raised else 0
            applied = {"op": "select", "table": "Open_vSwitch", "where": [], "columns": ["cur_cfg"]}
            while time.monotonic() < deadline:
                rows = db.transact([applied], "reading what ovs-vswitchd applied")[0]["rows"]
                if rows and rows[0]["cur_cfg"] >= target:
                    return True
                time.sleep(0.1)
    except QhookError:
        return False
    return False
