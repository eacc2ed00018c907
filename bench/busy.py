#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Benchmark: a host's busiest hour, with a real OVN wiring every port.

Two "hosts" (network namespaces, each with its own Open vSwitch, OVN and ovn-controller,
and the package installed as the RPM lays it out: hooks run as `vdsm`, root work through
the sudoers rule) and an integration bridge holding `--others` other ports:
- mass start: `--vms` VMs with `--vnics` vNICs each (Open vSwitch and OVN mixed, some
  mirrored), started `--at-once` at a time as VDSM would (each VM's device hooks, then
  before_vm_start), then stopped as many at a time; the same VMs one at a time beside;
- mass migration: the VMs arrive on the second host, as many at a time
  (before_vm_migrate_destination, after_vm_migrate_destination) and leave the first
  (before/after_vm_migrate_source, after_vm_destroy); then they stop there;
- boot storm: `--stale` ports and taps of ours left as after a crash, the boot cleanup
  (`qhook cleanup --grace 0`), then the mass start and stop again;
- the anchor: the mass start with libvirt's way of plugging (a tap and one `ovs-vsctl
  add-port` per vNIC) plus openstacknet's 15 s paused start.

It prints each scenario's wall time, VM starts per second, the hooks' time per VM
(median, p95, p99, max), the time from a VM's first hook to all its ports wired (median,
p99; ovn-installed as an OVSDB monitor sees it), the OVSDB transactions the hooks
retried and why, and peak memory. It exits 1 if what must hold does not: no failed hook
point, no port unwired when its VM's before_vm_start returned, nothing of ours left after
the stops, nothing foreign touched, no conflict surfaced; and (unless --no-timing) the
mass start at most 0.6x the time of one at a time, p99 time-to-wired at most 3x the
median of one at a time.

Run as root from the checkout: python3 bench/busy.py [--vms 64] [--vnics 4] [--at-once 8]
"""

import argparse
import concurrent.futures
import contextlib
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "bench")]

from common import foreign_state, leaks, make_foreign  # noqa: E402
from domains import quantum_vm, seed_properties, set_port_mirroring, to_bytes  # noqa: E402
from installed_host import emulator_as_vdsm, installed_host  # noqa: E402

from qhook.host import mirrors, ovsdb, ovsports, state  # noqa: E402
from qhook.lab.sandbox import OvnSandbox, OvsSandbox  # noqa: E402
from qhook.lab.vdsm_emulator import HookFailed, PointRun  # noqa: E402
from qhook.vocabulary.config import load_config  # noqa: E402
from qhook.vocabulary.ids import tap_name_of  # noqa: E402
from tools import qhook_on_host  # noqa: E402

ANCHOR_PAUSE = 15.0  # openstacknet starts the VM paused and unpauses it 15 s later
PLUGINS = ("openvswitch", "openvswitch", "ovn", "ovn")  # by vNIC index, round the list


@dataclass(frozen=True)
class Options:
    vms: int = 64
    vnics: int = 4
    at_once: int = 8
    others: int = 10000
    stale: int = 10000
    networks: int = 4
    mirror_every: int = 8  # every N-th VM's first vNIC mirrors its network
    anchor: bool = True
    serial: bool = True
    wiring_timeout: float = 30.0


@dataclass
class Vm:
    """One VM of the benchmark: its domain XML and its vNICs' taps and logical ports."""

    vm_id: str
    domain: bytes
    taps: List[str]
    ports: List[Dict[str, str]]  # network, port (the logical port's name), mac
    running: bytes = b""  # the domain XML libvirt would run (before_vm_start's output)


@dataclass
class Scenario:
    """What one scenario measured."""

    name: str
    vms: int
    wall: float = 0.0
    per_vm: List[float] = field(default_factory=list)  # hooks' time of each VM, s
    to_wired: List[float] = field(default_factory=list)  # first hook -> all wired, s
    retries: Dict[str, int] = field(default_factory=dict)
    peak_hook_kib: int = 0
    cpu: Dict[str, float] = field(default_factory=dict)  # CPU seconds: hooks, each daemon
    note: str = ""


@dataclass
class Verdict:
    """What must hold, as found."""

    failures: List[str] = field(default_factory=list)
    unwired: List[str] = field(default_factory=list)
    leaks: List[str] = field(default_factory=list)
    touched: List[str] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)

    def problems(self) -> List[str]:
        return self.failures + self.unwired + self.leaks + self.touched


class WiredWatch:
    """When ovn-controller marked each Interface ovn-installed, as an OVSDB monitor sees
    it (monitor_cond on the mark: the other ports' rows are never sent)."""

    def __init__(self, socket_path: Path):
        self.since: Dict[str, float] = {}
        self._names: Dict[str, str] = {}  # row uuid -> name
        self._changed = threading.Condition()
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._socket.connect(str(socket_path))
        installed = ["external_ids", "includes", ovsdb.ovs_map({"ovn-installed": "true"})]
        request = {
            "method": "monitor_cond",
            "id": 1,
            "params": [
                ovsdb.DATABASE,
                "busy",
                {"Interface": [{"columns": ["name"], "where": [installed]}]},
            ],
        }
        self._socket.sendall(json.dumps(request).encode())
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        decoder, text = json.JSONDecoder(), ""
        while True:
            try:
                chunk = self._socket.recv(1 << 16)
            except OSError:
                return
            if not chunk:
                return
            text += chunk.decode()
            while True:
                text = text.lstrip()
                try:
                    message, end = decoder.raw_decode(text)
                except ValueError:
                    break
                text = text[end:]
                self._take(message, time.monotonic())

    def _take(self, message: dict, now: float) -> None:
        if message.get("method") == "echo":
            answer = {"result": message.get("params"), "error": None, "id": message.get("id")}
            self._socket.sendall(json.dumps(answer).encode())
            return
        if message.get("id") == 1:
            updates = message.get("result") or {}
        elif message.get("method") == "update2":
            updates = message["params"][1]
        else:
            return
        with self._changed:
            for row_uuid, change in updates.get("Interface", {}).items():
                row = change.get("initial") or change.get("insert")
                if row is not None:
                    self._names[row_uuid] = row["name"]
                    self.since.setdefault(row["name"], now)
                elif "delete" in change:
                    self.since.pop(self._names.pop(row_uuid, ""), None)
            self._changed.notify_all()

    def wired_at(self, taps: Sequence[str], timeout: float = 5.0) -> Optional[float]:
        """When the last of these taps was marked; None if one is not within timeout."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not all(tap in self.since for tap in taps):
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._changed.wait(left)
            return max(self.since[tap] for tap in taps)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._socket.shutdown(socket.SHUT_RDWR)
        self._socket.close()
        self._thread.join(5)


class BusyHost:
    """One hypervisor: Open vSwitch, OVN and ovn-controller in a namespace, the package
    installed with its sudoers rule, VDSM's hook runner as vdsm, a watch on the wiring."""

    def __init__(self, stack: contextlib.ExitStack, work: Path, name: str, options: Options):
        self.name = name
        self.ovs = OvsSandbox(work / name, f"qhook-busy-{name}-{os.getpid()}").start()
        stack.callback(self.ovs.stop)
        self.ovn = OvnSandbox(self.ovs, system_id=f"busy-{name}-{os.getpid()}").start()
        stack.callback(self.ovn.stop)
        self.state_dir = work / f"{name}-state"
        self.installed = stack.enter_context(
            installed_host(
                self.ovs.connection,
                host_settings=f"state_dir = {self.state_dir}\n",
                ovs_settings="timeout = 20\n",
                wiring_settings=f"wait = yes\ntimeout = {options.wiring_timeout:g}\n",
            )
        )
        self.vdsm = emulator_as_vdsm(self.installed, self.ovs.netns_exec)
        self.watch = WiredWatch(self.ovs.socket)
        stack.callback(self.watch.close)
        self.foreign: Dict[str, str] = {}

    def fill_bridge(self, others: int) -> None:
        """Other ports on br-int (rows only, no device behind them), as a busy host has."""
        for start in range(0, others, 1000):
            commands: List[str] = []
            for index in range(start, min(others, start + 1000)):
                commands += ["--", "add-port", "br-int", f"other{index}"]
            self.ovs.vsctl(*commands)

    def logical_ports(self, vms: Sequence[Vm], networks: int) -> None:
        """What the engine and Neutron would have made: a logical switch per network, a
        logical port per vNIC."""
        commands: List[str] = []
        for network in range(networks):
            commands += ["--", "ls-add", f"net{network}"]
        for vm in vms:
            for port in vm.ports:
                commands += ["--", "lsp-add", port["network"], port["port"]]
                commands += ["--", "lsp-set-addresses", port["port"], port["mac"]]
        self.ovn.nbctl(*commands)

    def unwired(self, vm: Vm) -> List[str]:
        """The VM's taps not marked ovn-installed now (read from OVSDB, not the watch)."""
        with ovsdb.Ovsdb(self.ovs.connection, 30) as db:
            rows = ovsports.find(db, vm.taps)
        return [
            tap
            for tap in vm.taps
            if tap not in rows or rows[tap].external_ids.get("ovn-installed") != "true"
        ]

    def mirror_gaps(self) -> List[str]:
        """Our mirrors that do not select every port of their network (but their output)."""
        with ovsdb.Ovsdb(self.ovs.connection, 30) as db:
            ports = mirrors.network_ports(db, sorted({m.network for m in mirrors.find(db)}))
            found = mirrors.find(db)
        gaps = []
        for mirror in found:
            output = mirror.name[len(mirrors.NAME_PREFIX) :]
            wanted = {u for name, u in ports.get(mirror.network, {}).items() if name != output}
            if wanted - mirror.selected:
                gaps.append(f"{self.name}: {mirror.name} lacks {len(wanted - mirror.selected)}")
        return gaps

    def notes(self) -> List[str]:
        """Root's notes left under state_dir (none may outlive the VMs)."""
        if not self.state_dir.exists():
            return []
        return [f"note {p.name}" for p in self.state_dir.iterdir() if p.name != state.RETRIES_LOG]

    def retries(self) -> Dict[str, int]:
        """The OVSDB transactions the helper ran again, by reason (its log of them)."""
        return state.retries(load_config({"QHOOK_CONFIG": str(self.installed.config)})[0])

    def cpu(self) -> Dict[str, float]:
        """CPU seconds the host's daemons used so far."""
        found = {}
        tick = os.sysconf("SC_CLK_TCK")
        for sandbox in (self.ovs, self.ovn):
            for label, process in sandbox.processes.items():
                with contextlib.suppress(OSError):
                    fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1]
                    utime, stime = fields.split()[11:13]
                    found[label] = (int(utime) + int(stime)) / tick
        return found

    def peaks(self) -> Dict[str, int]:
        """Peak resident memory (KiB) of the host's daemons."""
        found = {}
        for sandbox in (self.ovs, self.ovn):
            for label, process in sandbox.processes.items():
                with contextlib.suppress(OSError):
                    for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
                        if line.startswith("VmHWM:"):
                            found[label] = int(line.split()[1])
        return found


def make_vms(options: Options) -> List[Vm]:
    vms = []
    for index in range(options.vms):
        vm_id = str(uuid.uuid4())
        properties, ports = [], []
        for nic in range(options.vnics):
            network = f"net{(index + nic) % options.networks}"
            # The logical port's name is the vNIC's id (q_port_id), as Neutron names it.
            network_id = str(uuid.uuid5(uuid.NAMESPACE_URL, network))
            vnic = seed_properties(PLUGINS[nic % len(PLUGINS)], q_network_id=network_id)
            properties.append(vnic)
            mac = f"02:{index >> 8:02x}:{index & 255:02x}:00:{nic + 1:02x}:01"
            ports.append({"network": network, "port": vnic["q_port_id"], "mac": mac})
        domain = quantum_vm(properties, vm_uuid=vm_id)
        for nic, port in enumerate(ports):  # quantum_vm's MACs are the same for every VM
            default = f"02:00:00:00:{nic + 1:02x}:01"
            for element in domain.iter():
                for attribute in ("address", "mac_address"):
                    if element.get(attribute) == default:
                        element.set(attribute, port["mac"])
        if options.mirror_every and index % options.mirror_every == 0:
            set_port_mirroring(domain, ports[0]["mac"], [ports[0]["network"]])
        taps = [tap_name_of(p["q_port_id"]) for p in properties]
        vms.append(Vm(vm_id, to_bytes(domain), taps, ports))
    return vms


def _percentile(values: List[float], share: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered) + 0.5) - 1))]


def _judge_runs(runs: List[PointRun], what: str, verdict: Verdict) -> None:
    for run in runs:
        for script in run.scripts:
            if script.returncode:
                verdict.failures.append(
                    f"{what}: {run.point} exit {script.returncode}: {script.stderr.strip()[-300:]}"
                )
            elif script.stderr.strip():
                verdict.warnings.append(f"{what}: {run.point}: {script.stderr.strip()[:300]}")


def _in_waves(vms: Sequence[Vm], at_once: int, action: Callable[[Vm], None]) -> float:
    """Run action on every VM, at_once at a time; the wall time."""
    began = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=at_once) as pool:
        for future in [pool.submit(action, vm) for vm in vms]:
            future.result()
    return time.perf_counter() - began


def _children_peak() -> int:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss


class Busy:
    """The scenarios, on two hosts."""

    def __init__(self, hosts: List[BusyHost], vms: List[Vm], options: Options):
        self.hosts = hosts
        self.vms = vms
        self.options = options
        self.verdict = Verdict()
        self.lock = threading.Lock()

    def _retries_since(self, before: Dict[str, int]) -> Dict[str, int]:
        now: Dict[str, int] = {}
        for host in self.hosts:
            for reason, count in host.retries().items():
                now[reason] = now.get(reason, 0) + count
        return {r: c - before.get(r, 0) for r, c in now.items() if c - before.get(r, 0)}

    def start(self, host: BusyHost, scenario: Scenario) -> Callable[[Vm], None]:
        def action(vm: Vm) -> None:
            began = time.monotonic()
            try:
                started = host.vdsm.start_vm(vm.domain)
            except HookFailed as failed:
                runs: List[PointRun] = [failed.run]
                vm.running = b""
            else:
                runs = started.runs
                vm.running = started.domain_xml
            took = time.monotonic() - began
            unwired = host.unwired(vm) if vm.running else []
            wired = host.watch.wired_at(vm.taps) if vm.running and not unwired else None
            with self.lock:
                _judge_runs(runs, f"{host.name}: VM {vm.vm_id} start", self.verdict)
                self.verdict.unwired += [f"{host.name}: {tap} of VM {vm.vm_id}" for tap in unwired]
                scenario.per_vm.append(took)
                if wired is not None:
                    scenario.to_wired.append(wired - began)

        return action

    def stop(self, host: BusyHost, scenario: Scenario) -> Callable[[Vm], None]:
        def action(vm: Vm) -> None:
            began = time.monotonic()
            run = host.vdsm.destroy_vm(vm.running or vm.domain)
            took = time.monotonic() - began
            with self.lock:
                _judge_runs([run], f"{host.name}: VM {vm.vm_id} stop", self.verdict)
                scenario.per_vm.append(took)

        return action

    def _cpu(self) -> Dict[str, float]:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        found = {"hooks": usage.ru_utime + usage.ru_stime}
        for host in self.hosts:
            for label, seconds in host.cpu().items():
                found[label] = found.get(label, 0.0) + seconds
        return found

    def restart(self, host: BusyHost, scenario: Scenario) -> Callable[[Vm], None]:
        """A pool's VM rebooted by the engine: stopped, started again; other VMs' stops and
        starts on the same networks (and mirrors) overlap it."""
        stop, start = self.stop(host, Scenario("", 0)), self.start(host, scenario)

        def action(vm: Vm) -> None:
            stop(vm)
            start(vm)

        return action

    def scenario(self, name: str, run: Callable[[Scenario], float]) -> Scenario:
        scenario = Scenario(name, len(self.vms))
        before = self._retries_since({})
        cpu = self._cpu()
        scenario.wall = run(scenario)
        scenario.cpu = {k: v - cpu.get(k, 0.0) for k, v in self._cpu().items()}
        scenario.retries = self._retries_since(before)
        scenario.peak_hook_kib = _children_peak()
        print_scenario(scenario)
        return scenario

    def mass_start_and_stop(
        self, host: BusyHost, at_once: int, label: str, restart: bool = False
    ) -> List[Scenario]:
        started = self.scenario(
            f"{label}: start, {at_once} at a time",
            lambda s: _in_waves(self.vms, at_once, self.start(host, s)),
        )
        self.verdict.failures += [f"after {label}: {gap}" for gap in host.mirror_gaps()]
        if restart:
            self.scenario(
                f"{label}: restart (stop, start again), {at_once} at a time",
                lambda s: _in_waves(self.vms, at_once, self.restart(host, s)),
            )
            self.verdict.failures += [f"after restarts: {gap}" for gap in host.mirror_gaps()]
        stopped = self.scenario(
            f"{label}: stop, {at_once} at a time",
            lambda s: _in_waves(self.vms, at_once, self.stop(host, s)),
        )
        self.check_clean(label)
        return [started, stopped]

    def migration(self, source: BusyHost, destination: BusyHost) -> List[Scenario]:
        """The VMs run on source; they arrive on destination and leave source."""
        self.scenario(
            "migration: the VMs start on the first host",
            lambda s: _in_waves(self.vms, self.options.at_once, self.start(source, s)),
        )

        def migrate(scenario: Scenario) -> Callable[[Vm], None]:
            def action(vm: Vm) -> None:
                began = time.monotonic()
                what = f"VM {vm.vm_id} migration"
                try:
                    runs = destination.vdsm.migrate_in(vm.running)
                except HookFailed as failed:
                    runs = [failed.run]
                arrived = time.monotonic() - began
                wired = destination.watch.wired_at(vm.taps)
                try:
                    runs += source.vdsm.migrate_away(vm.running)
                except HookFailed as failed:
                    runs.append(failed.run)
                with self.lock:
                    _judge_runs(runs, what, self.verdict)
                    scenario.per_vm.append(arrived)
                    if wired is not None:
                        scenario.to_wired.append(wired - began)
                    else:
                        self.verdict.unwired.append(f"{destination.name}: {what}: not wired")

            return action

        moved = self.scenario(
            f"migration: {self.options.at_once} at a time",
            lambda s: _in_waves(self.vms, self.options.at_once, migrate(s)),
        )
        moved.note = "per VM: the destination's hooks; wired: on the destination"
        print(f"   {moved.note}")
        self.verdict.leaks += [f"{source.name}: {leak}" for leak in leaks(source.ovs)]
        stopped = self.scenario(
            "migration: the VMs stop on the second host",
            lambda s: _in_waves(self.vms, self.options.at_once, self.stop(destination, s)),
        )
        self.check_clean("migration")
        return [moved, stopped]

    def boot_storm(self, host: BusyHost) -> List[Scenario]:
        """Stale ports and taps of ours as a crash leaves them, the boot cleanup, then the
        mass start and stop."""
        began = time.perf_counter()
        stale = make_stale(host, self.options.stale)
        made = time.perf_counter() - began
        began = time.perf_counter()
        cleaned = qhook_on_host(
            host.ovs.netns_exec, host.installed.config, "cleanup", "--grace", "0", timeout=3600
        )
        took = time.perf_counter() - began
        if cleaned.returncode:
            self.verdict.failures.append(f"boot cleanup: {cleaned.stderr.strip()[-300:]}")
        removed = cleaned.stdout.count("removed OVS port")
        if removed != stale:
            self.verdict.failures.append(f"boot cleanup removed {removed} ports of {stale}")
        print(
            f"boot storm: {stale} stale ports and taps of ours made in {made:.1f} s; "
            f"`qhook cleanup --grace 0` removed them in {took:.1f} s",
            flush=True,
        )
        self.check_clean("boot cleanup")
        return self.mass_start_and_stop(host, self.options.at_once, "boot storm")

    def check_clean(self, after: str) -> None:
        for host in self.hosts:
            found = leaks(host.ovs) + host.notes()
            self.verdict.leaks += [f"after {after}: {host.name}: {leak}" for leak in found]


def make_stale(host: BusyHost, count: int) -> int:
    """Ports of ours on br-int, each with its tap (marked, held by nobody), as a crash of
    the host's VMs leaves them."""
    names, batch = [], []
    vm_id = str(uuid.uuid4())
    for _ in range(count):
        vnic = str(uuid.uuid4())
        name = tap_name_of(vnic)
        names.append((name, vnic))
        batch.append(f"tuntap add dev {name} mode tap")
        batch.append(f'link set dev {name} alias "vdsm-hook-quantum vnic={vnic} vm={vm_id}"')
    subprocess.run(
        [*host.ovs.netns_exec, "ip", "-batch", "-"],
        input="\n".join(batch).encode(),
        check=True,
        timeout=600,
    )
    with ovsdb.Ovsdb(host.ovs.connection, 600) as db:
        for start in range(0, count, 2000):
            ports = [
                ovsports.NewPort(
                    name,
                    {
                        "iface-id": vnic,
                        "vm-uuid": vm_id,
                        ovsports.OWNER_KEY: ovsports.OWNER_VALUE,
                    },
                )
                for name, vnic in names[start : start + 2000]
            ]
            ovsports.add(db, "br-int", ports, [])
    return count


def anchor(host: BusyHost, vms: Sequence[Vm], at_once: int) -> Scenario:
    """The mass start as libvirt plugs (a tap and one `ovs-vsctl --may-exist add-port`
    per vNIC, waiting for ovs-vswitchd) with openstacknet's paused start: the VM is
    unpaused 15 s later. libvirt gives ovs-vsctl 5 s (--timeout=5): the calls that took
    longer, which would have failed the VM's start, are counted; here they may go on."""
    scenario = Scenario(f"anchor: ovs-vsctl per vNIC + 15 s pause, {at_once} at a time", len(vms))
    lock = threading.Lock()
    calls: List[float] = []

    def action(vm: Vm) -> None:
        began = time.monotonic()
        for tap, port in zip(vm.taps, vm.ports):
            host.ovs.in_netns("ip", "tuntap", "add", "dev", tap, "mode", "tap")
            called = time.monotonic()
            subprocess.run(
                [
                    *("ovs-vsctl", f"--db={host.ovs.connection}", "--timeout=600"),
                    *("--may-exist", "add-port", "br-int", tap),
                    *("--", "set", "Interface", tap, f"external_ids:iface-id={port['port']}"),
                    f"external_ids:attached-mac={port['mac']}",
                    "external_ids:iface-status=active",
                    f"external_ids:vm-id={vm.vm_id}",
                ],
                env=host.ovs.env,
                capture_output=True,
                check=True,
                timeout=900,
            )
            with lock:
                calls.append(time.monotonic() - called)
        time.sleep(ANCHOR_PAUSE)
        took = time.monotonic() - began
        wired = host.watch.wired_at(vm.taps, 0)
        with lock:
            scenario.per_vm.append(took)
            if wired is not None:
                scenario.to_wired.append(wired - began)

    try:
        scenario.wall = _in_waves(vms, at_once, action)
    finally:
        for vm in vms:
            for tap in vm.taps:
                host.ovs.vsctl("--if-exists", "del-port", tap)
                subprocess.run([*host.ovs.netns_exec, "ip", "link", "delete", tap], check=False)
    late = sum(1 for took in calls if took > 5)
    scenario.note = (
        f"ovs-vsctl calls: median {statistics.median(calls):.2f} s, max {max(calls):.2f} s; "
        f"{late} of {len(calls)} took over libvirt's 5 s"
    )
    print_scenario(scenario)
    print(f"   {scenario.note}")
    return scenario


def print_scenario(scenario: Scenario) -> None:
    per_vm, wired = scenario.per_vm, scenario.to_wired
    line = (
        f"{scenario.name}: {scenario.vms} VMs in {scenario.wall:.1f} s, "
        f"{scenario.vms / scenario.wall:.2f} VMs/s; per VM median {statistics.median(per_vm):.2f}"
        f" p95 {_percentile(per_vm, 0.95):.2f} p99 {_percentile(per_vm, 0.99):.2f}"
        f" max {max(per_vm):.2f} s"
    )
    if wired:
        line += (
            f"; wired after median {statistics.median(wired):.2f} p99 "
            f"{_percentile(wired, 0.99):.2f} s"
        )
    retries = ", ".join(f"{r}: {c}" for r, c in sorted(scenario.retries.items())) or "none"
    print(f"{line}; OVSDB retries: {retries}; hook peak {scenario.peak_hook_kib / 1024:.0f} MiB")
    if scenario.cpu:
        busiest = sorted(scenario.cpu.items(), key=lambda item: -item[1])
        shown = ", ".join(f"{label} {seconds:.1f}" for label, seconds in busiest if seconds >= 0.05)
        print(f"   CPU s: {shown} (of {scenario.wall * (os.cpu_count() or 1):.1f} available)")
    sys.stdout.flush()


@dataclass
class Report:
    scenarios: Dict[str, Scenario]
    verdict: Verdict
    daemons: Dict[str, Dict[str, int]]
    ratio: Optional[float] = None  # at_once wall / one-at-a-time wall
    wired_ratio: Optional[float] = None  # p99 to-wired at_once / one-at-a-time median


@contextlib.contextmanager
def busy_hosts(options: Options) -> Iterator[List[BusyHost]]:
    work = Path(tempfile.mkdtemp(prefix=f"qhook-busy-{os.getpid()}-"))
    try:
        with contextlib.ExitStack() as stack:
            hosts = [BusyHost(stack, work, name, options) for name in ("a", "b")]
            yield hosts
    finally:
        subprocess.run(["rm", "-rf", str(work)], check=False)


def run_busy(options: Options) -> Report:
    """Every scenario; what they measured and what was found."""
    vms = make_vms(options)
    with busy_hosts(options) as hosts:
        for host in hosts:
            host.fill_bridge(options.others)
            host.logical_ports(vms, options.networks)
            host.foreign = make_foreign(host.ovs)
        busy = Busy(hosts, vms, options)
        first = hosts[0]
        found: Dict[str, Scenario] = {}
        start, *_ = busy.mass_start_and_stop(first, options.at_once, "mass start", restart=True)
        found["mass start"] = start
        if options.serial:
            found["one at a time"], _ = busy.mass_start_and_stop(first, 1, "one at a time")
        found["migration"], _ = busy.migration(hosts[0], hosts[1])
        if options.stale:
            found["boot storm"], _ = busy.boot_storm(first)
        if options.anchor:
            found["anchor"] = anchor(first, vms, options.at_once)
        for host in hosts:
            busy.verdict.touched += [
                f"{host.name}: {kind}"
                for kind, state in foreign_state(host.ovs).items()
                if state != host.foreign[kind]
            ]
        report = Report(found, busy.verdict, {host.name: host.peaks() for host in hosts})
    if "one at a time" in found:
        serial = found["one at a time"]
        report.ratio = start.wall / serial.wall
        if start.to_wired and serial.to_wired:
            report.wired_ratio = _percentile(start.to_wired, 0.99) / statistics.median(
                serial.to_wired
            )
    return report


def main() -> int:
    defaults = Options()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=defaults.vms)
    parser.add_argument("--vnics", type=int, default=defaults.vnics)
    parser.add_argument("--at-once", type=int, default=defaults.at_once)
    parser.add_argument("--others", type=int, default=defaults.others)
    parser.add_argument("--stale", type=int, default=defaults.stale)
    parser.add_argument(
        "--mirror-every", type=int, default=defaults.mirror_every, help="0: no mirrors"
    )
    parser.add_argument("--no-anchor", action="store_true")
    parser.add_argument("--no-serial", action="store_true", help="no one-at-a-time run")
    parser.add_argument("--no-timing", action="store_true", help="judge no time figure")
    args = parser.parse_args()
    options = Options(
        vms=args.vms,
        vnics=args.vnics,
        at_once=args.at_once,
        others=args.others,
        stale=args.stale,
        mirror_every=args.mirror_every,
        anchor=not args.no_anchor,
        serial=not args.no_serial,
    )
    print(
        f"{options.vms} VMs x {options.vnics} vNICs, {options.at_once} at a time; "
        f"{options.others} other ports on br-int; {os.cpu_count()} CPUs",
        flush=True,
    )
    report = run_busy(options)
    verdict = report.verdict
    for host, peaks in report.daemons.items():
        shown = ", ".join(f"{label} {kib / 1024:.0f} MiB" for label, kib in sorted(peaks.items()))
        print(f"host {host} daemons' peak memory: {shown}")
    problems = verdict.problems()
    if report.ratio is not None:
        print(f"{options.at_once} at a time / one at a time: {report.ratio:.2f}x (must be <= 0.6)")
        if report.ratio > 0.6 and not args.no_timing:
            problems.append(f"concurrency: {report.ratio:.2f}x the time of one at a time")
    if report.wired_ratio is not None:
        print(f"p99 time-to-wired / one-at-a-time median: {report.wired_ratio:.2f}x (must be <= 3)")
        if report.wired_ratio > 3 and not args.no_timing:
            problems.append(f"time-to-wired: p99 {report.wired_ratio:.2f}x the single median")
        started, serial = report.scenarios["mass start"], report.scenarios["one at a time"]
        cpu = sum(started.cpu.values()) / started.vms
        floor = options.at_once * cpu / (os.cpu_count() or 1)
        print(
            f"   what CPU allows: {options.at_once} VMs in flight x {cpu:.2f} CPU s each "
            f"(hooks and daemons) / {os.cpu_count()} CPUs = {floor:.2f} s a VM at best, "
            f"{floor / statistics.median(serial.to_wired):.2f}x the single median"
        )
    print(
        f"failed hook points: {len(verdict.failures)}; ports unwired when their VM started: "
        f"{len(verdict.unwired)}; left after the stops: {len(verdict.leaks)}; foreign objects "
        f"touched: {len(verdict.touched)}; warnings: {len(verdict.warnings)}"
    )
    for line in (problems + verdict.warnings)[:20]:
        print(f"  {line}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
