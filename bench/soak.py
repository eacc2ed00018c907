#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Soak test with faults: VMs with 1-4 Quantum vNICs (Open vSwitch, OVN, Linux bridge)
started, hot-plugged, suspended and resumed or restored from a memory snapshot (here or
on the other host), migrated between two "hosts" (network namespaces, each with its own
Open vSwitch; both sides of the migration as VDSM runs them) and destroyed by parallel
workers through the real hook scripts, while
faults are injected at random: ovsdb-server restarted, ovsdb-server stopped (SIGSTOP)
longer than the hooks' timeout, a hook killed (SIGKILL) mid-way, taps deleted behind the
hooks' back, the disk of the data files full.

At the end, after `qhook cleanup` on each host: no tap, port or mirror of ours may be
left, the foreign objects made beforehand must be as they were, every hook must have
either succeeded or failed with clear `vdsm-hook-quantum:` lines (a traceback, another
exit code or a hang is a defect). Prints the counts; exits 1 on any leak, touched
foreign object, hang or defect.

Run as root from the checkout: python3 bench/soak.py [--lifecycles N] [--workers N]
"""

import argparse
import collections
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from common import foreign_state, leaks, make_foreign  # noqa: E402
from domains import openstacknet_properties, quantum_vm, seed_properties, to_bytes  # noqa: E402

from qhook.lab.sandbox import OvsSandbox  # noqa: E402
from qhook.lab.vdsm_emulator import HookFailed, PointRun, VdsmEmulator, VmStart  # noqa: E402
from qhook.vocabulary.ids import TAP_NAME  # noqa: E402
from tools import hook_env, qhook_on_host  # noqa: E402

OVS_TIMEOUT = 2.0  # [ovs] timeout of the hooks; a SIGSTOP lasts longer
HANG_BOUND = 60.0  # a hook running longer than this is a hang
PREFIX = "vdsm-hook-quantum:"


class Host:
    """One hypervisor: its own Open vSwitch in a namespace, VDSM's runner, a small disk
    for the hooks' data files."""

    def __init__(self, work: Path, name: str):
        self.name = name
        self.ovs = OvsSandbox(work / name, f"qhook-soak-{name}-{os.getpid()}").start()
        self.disk = work / f"{name}-disk"
        self.disk.mkdir()
        try:
            subprocess.run(
                ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(self.disk)], check=True
            )
        except BaseException:
            self.ovs.stop()
            raise
        self.config = work / f"{name}.conf"
        self.config.write_text(
            f"[ovs]\nconnection = {self.ovs.connection}\nhybrid_plug = no\n"
            f"timeout = {OVS_TIMEOUT:g}\n[wiring]\nwait = no\n"
        )
        env = hook_env({"QHOOK_CONFIG": str(self.config)})
        self.vdsm = VdsmEmulator(
            REPO / "hooks", env, wrapper=self.ovs.netns_exec, script_timeout=HANG_BOUND
        )

    def foreign(self) -> Dict[str, str]:
        return make_foreign(self.ovs)

    def foreign_state(self) -> Dict[str, str]:
        return foreign_state(self.ovs)

    def leaks(self) -> List[str]:
        return [f"{self.name}: {leak}" for leak in leaks(self.ovs)]

    def stop(self) -> None:
        subprocess.run(["umount", "-l", str(self.disk)], check=False)
        self.ovs.stop()


class Soak:
    def __init__(self, hosts: List[Host], seed: int):
        self.hosts = hosts
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.counts: Dict[str, int] = collections.Counter()
        self.defects: List[str] = []
        self.stopping = threading.Event()
        self.slowest = 0.0  # seconds, the longest hook point (or VM start) run

    def note(self, key: str, defect: Optional[str] = None) -> None:
        with self.lock:
            self.counts[key] += 1
            if defect:
                self.defects.append(defect)

    # -- one hook point, judged ---------------------------------------------------------
    def hook(self, action: Callable[[], Any], what: str) -> Any:
        """Run hook points (a PointRun, or a VM start's); None when one failed (cleanly:
        counted; otherwise a defect)."""
        began = time.monotonic()
        try:
            result = action()
        except HookFailed as failed:
            result = failed.run
        except OSError:  # VDSM itself could not write the data file (disk full)
            self.note("VDSM could not write a data file")
            return None
        finally:
            with self.lock:
                self.slowest = max(self.slowest, time.monotonic() - began)
        if isinstance(result, VmStart):
            runs: List[PointRun] = result.runs
        else:
            runs = result if isinstance(result, list) else [result]
        if not any(run.failed for run in runs):
            self.note("hook points succeeded")
            return result
        for script in (script for run in runs for script in run.scripts):
            lines = script.stderr.splitlines()
            if script.returncode == -9 and script.stderr.startswith("killed after"):
                self.note("hangs", f"{what}: {script.stderr.strip()}")
            elif script.returncode == -9:
                self.note("hooks killed by the injector")
            elif (
                script.returncode not in (0, 1, 2)
                or "Traceback" in script.stderr
                or not all(line.startswith(PREFIX) for line in lines)
            ):
                self.note("defects", f"{what}: exit {script.returncode}: {script.stderr[-300:]}")
            elif script.returncode:
                self.note("hooks failed with one clear line")
        return None

    # -- a VM's life ------------------------------------------------------------------------
    def lifecycle(self, rng: random.Random) -> None:
        vm = str(uuid.uuid4())
        makers = [
            lambda: seed_properties("openvswitch"),
            lambda: seed_properties("ovn"),
            lambda: seed_properties("linuxbridge"),
            lambda: openstacknet_properties("OVIRT_PROVIDER_OVN", "EXTERNAL_NETWORK"),
        ]
        domain = to_bytes(
            quantum_vm([rng.choice(makers)() for _ in range(rng.randint(1, 4))], vm_uuid=vm)
        )
        here, there = rng.sample(self.hosts, 2)
        started = self.hook(lambda: here.vdsm.start_vm(domain, data_dir=str(here.disk)), "start")
        xml = started.domain_xml if started is not None else domain
        if started is not None and rng.random() < 0.3:
            self.hotplug(here, vm, rng)
        if started is not None and rng.random() < 0.3:
            here = self.come_back(domain, xml, here, rng.choice([here, there]), rng)
        if started is not None and rng.random() < 0.4:
            arrived = self.hook(
                lambda: there.vdsm.run_point(
                    "before_vm_migrate_destination", xml, {}, vm, str(there.disk)
                ),
                "migrate destination",
            )
            if arrived is not None:
                self.hook(
                    lambda: there.vdsm.run_point(
                        "after_vm_migrate_destination", xml, {}, vm, str(there.disk)
                    ),
                    "arrived",
                )
                self.hook(lambda: here.vdsm.migrate_away(xml, data_dir=str(here.disk)), "source")
                here = there
            else:  # VDSM drops the incoming VM on the destination
                self.hook(lambda: there.vdsm.destroy_vm(xml, str(there.disk)), "drop incoming")
        self.hook(lambda: here.vdsm.destroy_vm(xml, str(here.disk)), "destroy")
        self.note("lifecycles")

    def come_back(
        self, domain: bytes, xml: bytes, here: Host, target: Host, rng: random.Random
    ) -> Host:
        """Suspended and resumed, or stopped and restored from a memory snapshot, on this
        host or the other (the saved XML is the running one); the host it runs on after."""
        snapshot = rng.random() < 0.5
        if snapshot:
            self.hook(lambda: here.vdsm.destroy_vm(xml, str(here.disk)), "stop after snapshot")
        else:
            self.hook(lambda: here.vdsm.hibernate_vm(xml, data_dir=str(here.disk)), "suspend")
        restored = self.hook(
            lambda: target.vdsm.restore_vm(domain, xml, snapshot, data_dir=str(target.disk)),
            "restore",
        )
        self.note("restores" if restored is not None else "restores failed")
        if restored is None:  # VDSM releases the VM that did not come back
            self.hook(lambda: target.vdsm.destroy_vm(xml, str(target.disk)), "failed restore")
        return target

    def hotplug(self, host: Host, vm: str, rng: random.Random) -> None:
        properties = seed_properties(rng.choice(["openvswitch", "ovn"]))
        device = (
            f'<interface type="bridge"><mac address="02:00:00:00:{rng.randint(16, 250):02x}'
            f':09"/><model type="virtio"/><source bridge="ovirtmgmt"/></interface>'
        ).encode()
        plugged = self.hook(
            lambda: host.vdsm.run_point(
                "before_nic_hotplug", device, properties, vm, str(host.disk)
            ),
            "hotplug",
        )
        data = plugged.data_out if plugged is not None else device
        point = "after_nic_hotunplug" if plugged is not None else "after_nic_hotplug_fail"
        self.hook(
            lambda: host.vdsm.run_point(point, data, properties, vm, str(host.disk)), "hotunplug"
        )

    # -- faults ------------------------------------------------------------------------------
    def inject(self) -> None:
        faults = {
            "ovsdb-server restarted": lambda h: h.ovs.restart_ovsdb(),
            "ovsdb-server stopped": self.stop_ovsdb,
            "hook killed": self.kill_hook,
            "tap deleted": self.delete_tap,
            "disk full": self.fill_disk,
        }
        while not self.stopping.wait(self.rng.uniform(0.2, 0.8)):
            name = self.rng.choice(sorted(faults))
            host = self.rng.choice(self.hosts)
            try:
                if faults[name](host) is not False:
                    self.note(f"fault: {name}")
            except Exception as error:  # the injector must go on
                self.note("injector errors", f"injector: {name}: {error}")

    def stop_ovsdb(self, host: Host) -> None:
        pid = host.ovs.pid("ovsdb-server")
        os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(OVS_TIMEOUT + 1)
        finally:
            os.kill(pid, signal.SIGCONT)

    def kill_hook(self, host: Host) -> bool:
        victims = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                command = (entry / "cmdline").read_bytes()
                if (
                    b"50_quantum" in command
                    and str(host.config).encode() in (entry / "environ").read_bytes()
                ):
                    victims.append(int(entry.name))
        if not victims:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.rng.choice(victims), signal.SIGKILL)
        return True

    def delete_tap(self, host: Host) -> bool:
        links = json.loads(host.ovs.in_netns("ip", "-j", "link"))
        taps = [link["ifname"] for link in links if TAP_NAME.fullmatch(link["ifname"])]
        if not taps:
            return False
        subprocess.run(
            [*host.ovs.netns_exec, "ip", "link", "del", self.rng.choice(taps)],
            capture_output=True,
            check=False,
        )
        return True

    def fill_disk(self, host: Host) -> None:
        filler = host.disk / "filler"
        with contextlib.suppress(OSError), open(filler, "wb") as stream:
            stream.write(b"\0" * (8 << 20))
        time.sleep(0.5)
        filler.unlink()

    # -- the run --------------------------------------------------------------------------------
    def run(self, lifecycles: int, workers: int) -> None:
        injector = threading.Thread(target=self.inject, daemon=True)
        injector.start()
        left = iter(range(lifecycles))
        left_lock = threading.Lock()

        def work(seed: int) -> None:
            rng = random.Random(seed)
            while True:
                with left_lock:
                    if next(left, None) is None:
                        return
                try:
                    self.lifecycle(rng)
                except Exception as error:
                    self.note("defects", f"worker: {type(error).__name__}: {error}")

        threads = [threading.Thread(target=work, args=(self.rng.random(),)) for _ in range(workers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.stopping.set()
        injector.join()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lifecycles", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="qhook-soak-"))
    hosts: List[Host] = []
    try:
        for name in ("a", "b"):
            hosts.append(Host(work, name))
        foreign = {host.name: host.foreign() for host in hosts}
        soak = Soak(hosts, args.seed)
        began = time.monotonic()
        soak.run(args.lifecycles, args.workers)
        for host in hosts:  # what the host's boot-time cleanup would do
            cleaned = qhook_on_host(host.ovs.netns_exec, host.config, "cleanup", "--grace", "0")
            if cleaned.returncode:
                soak.note("defects", f"cleanup on {host.name}: {cleaned.stderr.strip()}")
            soak.counts["removed by cleanup"] += cleaned.stdout.count("removed")
        leaks = [leak for host in hosts for leak in host.leaks()]
        touched = [
            f"{host.name}: {kind}"
            for host in hosts
            for kind, state in host.foreign_state().items()
            if state != foreign[host.name][kind]
        ]
        soak.counts["leaks"] = len(leaks)
        soak.counts["foreign objects touched"] = len(touched)
        print(
            f"seed {args.seed}, {args.workers} workers, {time.monotonic() - began:.0f} s; "
            f"the slowest hook point took {soak.slowest:.1f} s (a hang: {HANG_BOUND:g} s)"
        )
        for key, value in sorted(soak.counts.items()):
            print(f"{key:<40} {value}")
        for line in (soak.defects + leaks + touched)[:30]:
            print(f"  {line}")
        bad = soak.counts["hangs"] or soak.counts["defects"] or leaks or touched
        return 1 if bad else 0
    finally:
        for host in hosts:
            host.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
