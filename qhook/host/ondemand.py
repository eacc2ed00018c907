# SPDX-License-Identifier: GPL-2.0-or-later
"""Ports on demand: the host finds or makes the Quantum port of a vNIC whose profile names
only the network, binds it to itself, and deletes it when the VM is gone. Runs as root
(in the privileged helper), where the credentials can be read.

A vNIC's port is the one with device_id = the VM, mac_address = the vNIC's MAC and
device_owner = this package. Ports the host makes are named ON_DEMAND_PREFIX...; only
those are ever deleted or given back by the host, never a port given by id (the engine's
`qhook port create` names its own otherwise), never one of another owner.

Migration: the destination binds the ports to itself before it plugs them, and notes
under [host] state_dir which host each one was bound to; the note goes once the VM has
arrived. A VM destroyed while the note is there (the migration failed) gives its ports
back to that host. A VM destroyed on the source after the hand-over finds its ports bound
to the destination and leaves them.
"""

import calendar
import functools
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Set, Tuple

from qhook import PROGRAM
from qhook.errors import ConfigError
from qhook.host import state
from qhook.host.capabilities import agent_host_here
from qhook.host.trust import read_file
from qhook.plugins import Plugin
from qhook.plugins.binding import by_binding
from qhook.quantum.client import QuantumClient, QuantumError
from qhook.vocabulary import schema
from qhook.vocabulary.config import PATH_VARIABLE, Config

OWNER = PROGRAM
ON_DEMAND_PREFIX = "qhook-on-demand-"
BINDING = "binding"  # the port binding extension: binding:host_id
CALLS_AT_ONCE = 4  # concurrent deletes or rebinds: one VM's, not a flood of the API


@dataclass(frozen=True)
class Found:
    """The port of one vNIC, whether this run made it, and the plugin its binding says
    (None where it says nothing: [ovs] hybrid_plug decides)."""

    mac: str
    port_id: str
    created: bool
    plugin: Optional[Plugin] = None


def port_name(vm_id: str, mac: str) -> str:
    return f"{ON_DEMAND_PREFIX}{vm_id}-{mac.replace(':', '')}"


def made_on_demand(port: Dict[str, Any]) -> bool:
    return port.get("device_owner") == OWNER and str(port.get("name") or "").startswith(
        ON_DEMAND_PREFIX
    )


class Quantum:
    """One run's exchange with Quantum: every call together bounded by [on_demand] timeout."""

    def __init__(self, config: Config):
        from qhook.quantum.connect import connect, creates_need_project
        from qhook.quantum.settings import load_quantum_settings

        state.check(config)  # before anything depends on it
        path = config.on_demand.settings
        data = read_file(path, "ports on demand need [on_demand] settings", secret=True)
        try:
            settings, warnings = load_quantum_settings({PATH_VARIABLE: path}, data=data)
        except ConfigError:
            # Its values are root's secrets: name the file, not what is wrong in it.
            raise ConfigError(
                f"ports on demand: {path} is not valid; as root, QHOOK_CONFIG={path} "
                "qhook network list --debug says why"
            ) from None
        self.config = config
        self.client: QuantumClient = connect(settings, budget=config.on_demand.timeout, retries=1)
        self.project = creates_need_project(settings)
        self.notes: List[str] = list(warnings)
        self._binding: Optional[bool] = None
        self._asked = False

    @functools.cached_property
    def host(self) -> str:
        """The host id this machine's ports are bound to (Open vSwitch asked if need be)."""
        return agent_host_here(self.config)

    def __enter__(self) -> "Quantum":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.client.close()

    def binding(self) -> Optional[bool]:
        """Whether the server binds ports to hosts: True when it lists the binding
        extension, or a port it made came back bound to the host asked for; False when
        one came back without; None while that is not known (no extension listed, no port
        made yet). Learnt once, then remembered for a while (qhook.host.state)."""
        if not self._asked:
            self._asked = True
            self._binding = state.known_binding(self.config, self.client.base_url())
            if self._binding is None:
                try:
                    self.client.request("GET", f"extensions/{BINDING}")
                    self._learnt(True)
                except QuantumError as error:
                    if error.status != 404:
                        raise
        return self._binding

    def _learnt(self, binding: bool) -> None:
        self._binding = binding
        state.remember_binding(self.config, self.client.base_url(), binding)
        if not binding:
            self.notes.append(
                f"Quantum at {self.client.base_url()} does not bind ports to hosts (no "
                f"{BINDING} extension, and binding:host_id comes back unset): ports are not "
                f"bound to {self.host}; where a VM runs, VDSM's own events tell"
            )

    def ports(self, vm_id: str) -> Dict[str, Dict[str, Any]]:
        """This package's ports of the VM, by MAC: one request."""
        found: Dict[str, Dict[str, Any]] = {}
        for port in self.client.list("ports", device_id=vm_id, device_owner=OWNER):
            found.setdefault(str(port.get("mac_address", "")).lower(), port)
        return found

    # -- start, migration, arrival ------------------------------------------------------
    def ensure(self, vm_id: str, vnics: Sequence[schema.PortWanted], mode: str) -> List[Found]:
        """Each vNIC's port, found or made on its network, bound here (START, MIGRATE), or
        only found (ARRIVED), with the plugin its binding says. A failure (a binding that
        failed here among them) leaves Quantum as it was."""
        existing = self._existing(vm_id, vnics)
        if mode == schema.ARRIVED:
            state.write_migration(self.config, vm_id, {})
            missing = [v.mac for v in vnics if v.mac not in existing]
            if missing:
                raise QuantumError(f"VM {vm_id} has no port for vNIC {', '.join(missing)}")
            return [Found(v.mac, existing[v.mac]["id"], False) for v in vnics]
        binding = self.binding()
        created, raced = self._create(vm_id, [v for v in vnics if v.mac not in existing], binding)
        existing.update(created)
        existing.update(raced)
        before = state.migration(self.config, vm_id)
        moved: Dict[str, str] = {}
        try:
            stale = [
                existing[v.mac]
                for v in vnics
                if self._binding and existing[v.mac].get("binding:host_id") != self.host
            ]
            if mode == schema.MIGRATE:
                note = {p["id"]: p.get("binding:host_id") or "" for p in stale}
                note.update({p["id"]: None for p in created.values()})
                state.write_migration(self.config, vm_id, {**note, **before})
            answers: Dict[str, Dict[str, Any]] = {}
            bound = self._bind({port["id"]: self.host for port in stale}, answers)
            moved = {p["id"]: p.get("binding:host_id") or "" for p in stale if not bound[p["id"]]}
            _raise_first(bound)
            found = []
            for vnic in vnics:
                port = existing[vnic.mac]
                port = answers.get(port["id"], port)
                plugin = by_binding(vnic.plugin, port, self.host) if self._binding else None
                found.append(Found(vnic.mac, port["id"], vnic.mac in created, plugin))
        except BaseException:
            self._give_back(moved)
            self.delete([p["id"] for p in created.values()])
            state.write_migration(self.config, vm_id, before)
            raise
        return found

    def _existing(
        self, vm_id: str, vnics: Sequence[schema.PortWanted]
    ) -> Dict[str, Dict[str, Any]]:
        existing = self.ports(vm_id)
        for vnic in vnics:
            port = existing.get(vnic.mac)
            if port is not None and port.get("network_id") != vnic.network_id:
                raise QuantumError(
                    f"vNIC {vnic.mac} of VM {vm_id} already has port {port['id']} on network "
                    f"{port.get('network_id')}, not on {vnic.network_id}: "
                    f"qhook port delete --vm {vm_id} --mac {vnic.mac} removes it"
                )
        return {v.mac: existing[v.mac] for v in vnics if v.mac in existing}

    def _create(
        self, vm_id: str, vnics: Sequence[schema.PortWanted], binding: Optional[bool]
    ) -> Tuple[Dict[str, Dict[str, Any]], Dict[str, Dict[str, Any]]]:
        """Make the missing ports in one request: (made, found). The ports a concurrent run
        made meanwhile (their MACs are taken) are found instead. Unless the server is known
        not to bind, the ports ask for this host; what comes back tells whether it binds."""
        if not vnics:
            return {}, {}
        ask_host = binding is not False
        try:
            made = self._make(vm_id, vnics, ask_host)
        except QuantumError as error:
            if ask_host and binding is None and _refused_binding(error):
                self._learnt(False)  # a server that does not know the attribute at all
                return self._create(vm_id, vnics, False)
            if error.kind != "MacAddressInUse":
                raise
            found = self._existing(vm_id, vnics)
            if len(found) < len(vnics):
                raise
            return {}, found
        if ask_host and binding is None:
            self._learnt(all(port.get("binding:host_id") == self.host for port in made))
        return {str(port["mac_address"]).lower(): port for port in made}, {}

    def _make(
        self, vm_id: str, vnics: Sequence[schema.PortWanted], ask_host: bool
    ) -> List[Dict[str, Any]]:
        extra: Dict[str, Any] = {"binding:host_id": self.host} if ask_host else {}
        if self.project:
            extra["project_id"] = self.project
        items = [
            {
                "network_id": vnic.network_id,
                "mac_address": vnic.mac,
                "device_id": vm_id,
                "device_owner": OWNER,
                "name": port_name(vm_id, vnic.mac),
                "admin_state_up": True,
                **extra,
            }
            for vnic in vnics
        ]
        if len(items) == 1:
            return [self.client.create("ports", **items[0])]
        return self.client.create_many("ports", items)

    # -- the end of a VM here ------------------------------------------------------------
    def release(self, vm_id: str, macs: Iterable[str], in_use: Set[str] = frozenset()) -> None:
        """The vNICs are gone from this host: delete their ports made on demand, or give
        them back to the host they came from (a migration here that failed). VDSM's own
        events decide first: a VM that left by migration leaves them to its new host, a
        suspended one keeps them; then the binding: a port bound elsewhere is left. A port
        a tap or port of ours still carries here (in_use: a concurrent run of the VM
        plugged it) is that run's."""
        wanted = set(macs)
        note = state.migration(self.config, vm_id)
        left = state.noted(self.config, vm_id, state.LEFT)
        suspended = state.noted(self.config, vm_id, state.SUSPENDED)
        ports = self.ports(vm_id)
        done: Set[str] = set()
        doomed: List[str] = []
        back: Dict[str, str] = {}
        for mac, port in sorted(ports.items()):
            if mac not in wanted or not made_on_demand(port):
                continue
            if port["id"] in in_use:  # a concurrent run of the VM plugged it: its port
                continue
            done.add(port["id"])
            bound = port.get("binding:host_id") or ""
            if port["id"] in note and note[port["id"]] is not None:
                previous = str(note[port["id"]])
                if bound != previous:
                    back[port["id"]] = previous
                self.notes.append(
                    f"port {port['id']} of vNIC {mac} given back to {previous or 'no host'}: "
                    "the VM's migration here did not complete"
                )
            elif left is not None:
                self.notes.append(
                    f"port {port['id']} of vNIC {mac} left to the host VM {vm_id} migrated to"
                )
            elif suspended is not None:
                self.notes.append(
                    f"port {port['id']} of vNIC {mac} kept: VM {vm_id} is suspended and may "
                    "come back (qhook cleanup --quantum deletes it after [on_demand] "
                    "keep_suspended)"
                )
            elif port["id"] in note or self.binding() is not True or bound in ("", self.host):
                doomed.append(port["id"])
            else:
                self.notes.append(
                    f"port {port['id']} of vNIC {mac} left to {bound}, where the VM runs now"
                )
        _raise_first(self._bind(back), self.delete(doomed))
        if left is not None:
            state.forget_event(self.config, vm_id, state.LEFT)
        alive = {port["id"] for port in ports.values()}
        state.write_migration(
            self.config, vm_id, {k: v for k, v in note.items() if k in alive and k not in done}
        )

    def _at_once(
        self, call: Callable[[str, str], Any], work: Dict[str, str]
    ) -> Dict[str, Optional[QuantumError]]:
        """call(port id, value) for every item of `work`, CALLS_AT_ONCE at a time: Neutron
        has no bulk delete or update, and takes ~80 ms for each. Each port's failure, or
        None where the call went through."""
        from concurrent.futures import ThreadPoolExecutor

        def one(item: Tuple[str, str]) -> Optional[QuantumError]:
            try:
                call(*item)
            except QuantumError as error:
                return error
            return None

        if not work:
            return {}
        with ThreadPoolExecutor(min(CALLS_AT_ONCE, len(work))) as pool:
            return dict(zip(work, pool.map(one, work.items())))

    def delete(self, port_ids: Sequence[str]) -> Dict[str, Optional[QuantumError]]:
        """Delete ports; each one's failure, or None."""
        return self._at_once(
            lambda port_id, _: self.client.delete("ports", port_id), dict.fromkeys(port_ids, "")
        )

    def _give_back(self, moved: Dict[str, str]) -> None:
        """Bind these ports back to the hosts they had ({port id: host}); best effort, on
        the way out of a failure (what does not go back, cleanup finds)."""
        self._bind(moved)

    def _bind(
        self, hosts: Dict[str, str], answers: Optional[Dict[str, Dict[str, Any]]] = None
    ) -> Dict[str, Optional[QuantumError]]:
        """Bind each port to its host ({port id: host}); each one's failure, or None. The
        ports as Quantum answered (bound anew) go in `answers`."""

        def bind(port_id: str, host: str) -> None:
            port = self.client.update("ports", port_id, **{"binding:host_id": host})
            if answers is not None:
                answers[port_id] = port

        return self._at_once(bind, hosts)

    # -- qhook cleanup --quantum -----------------------------------------------------------
    def orphans(self, running: Set[str], grace: float) -> List[Dict[str, Any]]:
        """Ports made on demand, bound to this host, whose VM has nothing plugged here, is
        not arriving, is not suspended for less than [on_demand] keep_suspended, and that
        no one changed for `grace` seconds. A suspended VM's ports it keeps are a note."""
        if not self.binding():
            return []
        now = time.time()
        keep = self.config.on_demand.keep_suspended * 86400
        suspended = state.noted_vms(self.config, state.SUSPENDED)
        kept = {vm for vm, since in suspended.items() if now - since < keep}
        busy = running | state.arriving_vms(self.config) | kept
        candidates = self.client.list("ports", device_owner=OWNER, **{"binding:host_id": self.host})
        found = []
        for port in candidates:
            if not made_on_demand(port) or port.get("binding:host_id") != self.host:
                continue
            vm = port.get("device_id")
            if vm in kept and vm not in running:
                days = (now - suspended[vm]) / 86400
                self.notes.append(
                    f"port {port['id']} of suspended VM {vm} kept ({days:.1f} of "
                    f"{self.config.on_demand.keep_suspended:g} days of [on_demand] keep_suspended)"
                )
            elif vm not in busy and now - _timestamp(port.get("updated_at")) >= grace:
                found.append(port)
        return found

    def forget_suspended(self, vm_ids: Iterable[str]) -> None:
        """The VMs whose ports went: their suspension is no longer kept."""
        for vm in vm_ids:
            state.forget_event(self.config, vm, state.SUSPENDED)


def _timestamp(value: Any) -> float:
    """Seconds since the epoch of Neutron's '2026-11-30T10:00:00Z'; 0 when unknown."""
    try:
        return float(calendar.timegm(time.strptime(str(value)[:19], "%Y-%m-%dT%H:%M:%S")))
    except ValueError:
        return 0.0


def _refused_binding(error: QuantumError) -> bool:
    """The server refused the port because it does not know binding:host_id."""
    return error.status == 400 and "binding:host_id" in str(error)


def _raise_first(*outcomes: Dict[str, Optional[QuantumError]]) -> None:
    """Raise the first failure of calls made at once, if any."""
    for outcome in outcomes:
        for error in outcome.values():
            if error is not None:
                raise error
