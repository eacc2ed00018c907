# SPDX-License-Identifier: GPL-2.0-or-later
"""One pass of `qhook engine sync`: every oVirt logical network named Q_<name> gets its
Quantum network and a vNIC profile for ports on demand; what the sync made for a
logical network that is gone goes with it.

- A logical network's Quantum network is the one the records say; a new one is made
  (named as the logical network, with its MTU) and recorded. Renames and MTU changes
  are followed.
- Its vNIC profile named as the network carries plugin, q_network_id and mtu (the
  properties the sync owns); a drifted value is corrected, other properties are kept.
  Any other profile of the network naming a wrong q_network_id is corrected too.
- A Quantum network the sync owns whose logical network is gone (or no longer named
  Q_...) is deleted once it has no ports; while ports remain it is kept and reported.
- A Q_ network in Quantum that the sync does not own is never changed: reported, and
  taken over only with adopt.
"""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

from qhook.engine.ovirt import Engine, LogicalNetwork, Profile, UndefinedProperties
from qhook.engine.provisioning import NETWORK_NAME
from qhook.engine.records import Record, Records
from qhook.quantum.client import QuantumClient
from qhook.vocabulary.properties import MTU

OWNED = ("plugin", "q_network_id", MTU)
NEW = "(new)"  # a dry run's id of a network it would make
# Ports Quantum makes for itself and deletes with their network (a DHCP server's): they
# do not keep a network whose logical network is gone.
QUANTUMS_OWN = ("network:dhcp",)


@dataclass
class Change:
    """One thing done (or, in a dry run, to do), or one thing reported and left."""

    action: str
    line: str
    network: str
    quantum_id: Optional[str] = None
    details: Dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> Dict[str, Any]:
        return {
            "action": self.action,
            "network": self.network,
            "quantum_id": self.quantum_id,
            "line": self.line,
            **self.details,
        }


@dataclass
class Outcome:
    changes: List[Change] = field(default_factory=list)
    reported: List[Change] = field(default_factory=list)


@dataclass(frozen=True)
class Options:
    plugin: str  # the profiles' `plugin` value
    data_centers: Sequence[str] = ()
    adopt: bool = False
    dry_run: bool = False
    project_id: Optional[str] = None  # Quantum without Keystone wants it in creates


class SyncPass:
    """Compare the engine with Quantum and the records, and make them agree."""

    def __init__(self, engine: Engine, quantum: QuantumClient, records: Records, options: Options):
        self.engine = engine
        self.quantum = quantum
        self.records = records
        self.options = options
        self.outcome = Outcome()

    def run(self) -> Outcome:
        logical = self.engine.networks()
        self.by_id = {n["id"]: n for n in self.quantum.list("networks")}
        # What is gone first: a logical network deleted and made again under its name
        # gets a new Quantum network in the same pass.
        still = {n.id for n in logical if NETWORK_NAME.fullmatch(n.name)}
        for quantum_id, record in sorted(self.records.networks.items()):
            if record.ovirt_id not in still:
                self._gone(quantum_id, record)
        synced = [n for n in logical if self._in_scope(n)]
        for network in synced:
            quantum_id = self._network(network)
            if quantum_id is not None:
                self._profiles(network, quantum_id)
        self._report_foreign(synced)
        return self.outcome

    def _in_scope(self, network: LogicalNetwork) -> bool:
        if not NETWORK_NAME.fullmatch(network.name):
            return False
        return not self.options.data_centers or network.data_center in self.options.data_centers

    def _did(self, change: Change) -> None:
        self.outcome.changes.append(change)

    def _report(self, change: Change) -> None:
        self.outcome.reported.append(change)

    # -- the Quantum network ------------------------------------------------------------
    def _network(self, network: LogicalNetwork) -> Optional[str]:
        """The id of the logical network's Quantum network, made or adopted if need be;
        None when it has none the sync may use."""
        quantum_id = self.records.quantum_id_of(network.id)
        if quantum_id is not None and quantum_id not in self.by_id:
            self._did(
                Change(
                    "forget",
                    f"Quantum network {quantum_id} of {network.name} is gone from Quantum: "
                    "making it again",
                    network.name,
                    quantum_id,
                )
            )
            if not self.options.dry_run:
                self.records.drop(quantum_id)
            quantum_id = None
        if quantum_id is None:
            return self._new_network(network)
        self._follow(network, self.by_id[quantum_id])
        return quantum_id

    def _new_network(self, network: LogicalNetwork) -> Optional[str]:
        named = [n for n in self.by_id.values() if n.get("name") == network.name]
        owned = [n for n in named if n["id"] in self.records.networks]
        if owned:
            other = self.records.networks[owned[0]["id"]]
            self._report(
                Change(
                    "name-taken",
                    f"{network.name} of data center {network.data_center}: its name is "
                    f"already the Quantum network of {other.name} in data center "
                    f"{other.data_center}; left alone (rename one of them)",
                    network.name,
                    owned[0]["id"],
                )
            )
            return None
        if named and not self.options.adopt:
            ids = ", ".join(n["id"] for n in named)
            self._report(
                Change(
                    "not-ours",
                    f"Quantum network {network.name} ({ids}) was not made by the sync: left "
                    "alone (qhook engine sync --adopt takes it over)",
                    network.name,
                    named[0]["id"],
                )
            )
            return None
        if len(named) > 1:
            ids = ", ".join(n["id"] for n in named)
            self._report(
                Change(
                    "ambiguous",
                    f"{len(named)} Quantum networks are named {network.name} ({ids}): none "
                    "adopted (delete the extra ones)",
                    network.name,
                )
            )
            return None
        record = Record(network.id, network.name, network.data_center, adopted=bool(named))
        if named:
            quantum_id = named[0]["id"]
            self._did(
                Change(
                    "adopt",
                    f"adopted Quantum network {network.name} {quantum_id} for the logical "
                    f"network of data center {network.data_center}",
                    network.name,
                    quantum_id,
                )
            )
            if not self.options.dry_run:
                self.records.put(quantum_id, record)
                self._follow(network, named[0])
            return quantum_id
        return self._create(network, record)

    def _create(self, network: LogicalNetwork, record: Record) -> str:
        attributes: Dict[str, Any] = {"name": network.name}
        if network.mtu:
            attributes["mtu"] = network.mtu
        if self.options.project_id:
            attributes["project_id"] = self.options.project_id
        quantum_id = NEW
        if not self.options.dry_run:
            made = self.quantum.create("networks", **attributes)
            quantum_id = made["id"]
            self.by_id[quantum_id] = made
            self.records.put(quantum_id, record)
        mtu = f", MTU {network.mtu}" if network.mtu else ""
        self._did(
            Change(
                "create",
                f"created Quantum network {network.name} {quantum_id} for the logical network "
                f"of data center {network.data_center}{mtu}",
                network.name,
                quantum_id,
                {"mtu": network.mtu or None},
            )
        )
        return quantum_id

    def _follow(self, network: LogicalNetwork, current: Dict[str, Any]) -> None:
        """Rename and re-MTU the Quantum network as the logical network now is."""
        quantum_id = current["id"]
        wanted: Dict[str, Any] = {}
        if current.get("name") != network.name:
            wanted["name"] = network.name
        if network.mtu and current.get("mtu") != network.mtu:
            wanted["mtu"] = network.mtu
        if wanted:
            said = "; ".join(f"{key} {current.get(key)} -> {new}" for key, new in wanted.items())
            if not self.options.dry_run:
                self.by_id[quantum_id] = self.quantum.update("networks", quantum_id, **wanted)
                adopted = self.records.networks[quantum_id].adopted
                record = Record(network.id, network.name, network.data_center, adopted)
                self.records.put(quantum_id, record)
            self._did(
                Change(
                    "update",
                    f"updated Quantum network {network.name} {quantum_id}: {said}",
                    network.name,
                    quantum_id,
                    {"changed": wanted},
                )
            )

    # -- the vNIC profiles --------------------------------------------------------------
    def _profiles(self, network: LogicalNetwork, quantum_id: str) -> None:
        wanted = {"plugin": self.options.plugin, "q_network_id": quantum_id}
        if network.mtu:
            wanted[MTU] = str(network.mtu)
        default = next((p for p in network.profiles if p.name == network.name), None)
        if default is None:
            self._add_profile(network, wanted)
        else:
            self._correct(network, default, wanted, OWNED)
        for profile in network.profiles:
            if profile is not default and "q_network_id" in profile.properties:
                self._correct(network, profile, {"q_network_id": quantum_id}, ("q_network_id",))

    def _add_profile(self, network: LogicalNetwork, wanted: Dict[str, str]) -> None:
        if not self.options.dry_run:
            self._engine_write(
                network, lambda: self.engine.add_profile(network, network.name, wanted)
            )
        self._did(
            Change(
                "add-profile",
                f"added vNIC profile {network.name} to {network.name}: {_form(wanted)}",
                network.name,
                wanted["q_network_id"],
                {"profile": network.name, "properties": wanted},
            )
        )

    def _correct(
        self,
        network: LogicalNetwork,
        profile: Profile,
        wanted: Dict[str, str],
        owned: Sequence[str],
    ) -> None:
        """Set the owned properties as wanted (one not wanted is removed); keep the rest."""
        current = profile.properties
        merged = {k: wanted.get(k, v) for k, v in current.items() if k in wanted or k not in owned}
        merged.update({k: v for k, v in wanted.items() if k not in merged})
        if merged == current:
            return
        said = "; ".join(
            f"{key} {current.get(key, '(none)')} -> {merged.get(key, '(none)')}"
            for key in owned
            if current.get(key) != merged.get(key)
        )
        if not self.options.dry_run:
            self._engine_write(
                network, lambda: self.engine.set_properties(profile, network.name, merged)
            )
        self._did(
            Change(
                "correct-profile",
                f"corrected vNIC profile {profile.name} of {network.name}: {said}",
                network.name,
                wanted["q_network_id"],
                {"profile": profile.name, "properties": merged},
            )
        )

    @staticmethod
    def _engine_write(network: LogicalNetwork, write: Any) -> None:
        try:
            write()
        except UndefinedProperties as error:
            version = network.version or "4.7"
            raise UndefinedProperties(
                f"{error} — the engine does not define the seed's vNIC custom properties "
                f"for data center {network.data_center}: run `qhook engine-config --cver "
                f"{version}` on the engine machine, apply what it prints, restart "
                "ovirt-engine",
                error.status,
            ) from None

    # -- what is gone, what is not ours ---------------------------------------------------
    def _gone(self, quantum_id: str, record: Record) -> None:
        if quantum_id not in self.by_id:
            if not self.options.dry_run:
                self.records.drop(quantum_id)
            return
        ports = [
            port
            for port in self.quantum.list("ports", network_id=quantum_id)
            if port.get("device_owner") not in QUANTUMS_OWN
        ]
        if ports:
            shown = ", ".join(p["id"] for p in ports[:3]) + (", ..." if len(ports) > 3 else "")
            self._report(
                Change(
                    "kept",
                    f"Quantum network {record.name} {quantum_id}: its logical network is gone "
                    f"but {len(ports)} port(s) remain ({shown}); kept until they are deleted",
                    record.name,
                    quantum_id,
                    {"ports": [p["id"] for p in ports]},
                )
            )
            return
        if not self.options.dry_run:
            self.quantum.delete("networks", quantum_id)
            self.records.drop(quantum_id)
            del self.by_id[quantum_id]
        self._did(
            Change(
                "delete",
                f"deleted Quantum network {record.name} {quantum_id}: its logical network is gone",
                record.name,
                quantum_id,
            )
        )

    def _report_foreign(self, synced: List[LogicalNetwork]) -> None:
        names = {n.name for n in synced}
        for quantum_id, network in sorted(self.by_id.items(), key=lambda i: i[1].get("name", "")):
            name = network.get("name") or ""
            if not NETWORK_NAME.fullmatch(name) or name in names:
                continue
            if quantum_id in self.records.networks:
                continue
            self._report(
                Change(
                    "not-ours",
                    f"Quantum network {name} {quantum_id} was not made by the sync and no "
                    "logical network of that name is synced: left alone",
                    name,
                    quantum_id,
                )
            )


def _form(properties: Dict[str, str]) -> str:
    return ";".join(f"{key}={value}" for key, value in properties.items())
