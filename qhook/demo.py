# SPDX-License-Identifier: GPL-2.0-or-later
"""`qhook demo`: a VM's start and stop run through the hooks as VDSM would, on a private
Open vSwitch in its own network namespace, showing what happens on the "host"."""

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

from qhook import hookscripts
from qhook.lifecycle import HOOK_POINTS
from qhook.sandbox import OvsSandbox
from qhook.vdsm_emulator import VdsmEmulator

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "quantum-vm.xml"


def _step(title: str) -> float:
    print(f"\n==> {title}", flush=True)
    return time.monotonic()


def _done(started: float) -> None:
    print(f"    ({(time.monotonic() - started) * 1000:.0f} ms)", flush=True)


def _status(sandbox: OvsSandbox, config: Path) -> None:
    output = subprocess.run(
        [*sandbox.netns_exec, sys.executable, "-m", "qhook.cli", "status", "--config", str(config)],
        capture_output=True,
        text=True,
        check=False,
    )
    print(output.stdout.rstrip() or output.stderr.rstrip())


def run_demo(
    domxml: Optional[str], keep: bool, show_interfaces: Callable[[bytes, bytes], None]
) -> int:
    """The whole demo; returns the exit code."""
    path = Path(domxml) if domxml else EXAMPLE
    if not path.exists():
        raise OSError(f"{path} does not exist: name a domain XML with oVirt metadata")
    original = path.read_bytes()
    work = Path(tempfile.mkdtemp(prefix="qhook-demo-"))
    sandbox = OvsSandbox(work / "ovs", f"qhook-demo-{os.getpid()}")
    config = work / "quantum.conf"
    hooks = work / "hooks"
    try:
        started = _step(f"starting a private Open vSwitch in network namespace {sandbox.name}")
        sandbox.start()
        # No agent runs in this sandbox yet: do not wait for one to wire the ports.
        config.write_text(
            f"[ovs]\nconnection = {sandbox.connection}\ntimeout = 5\n[wiring]\nwait = no\n"
        )
        hookscripts.write_tree(hooks, HOOK_POINTS, sys.executable)
        _done(started)

        env = dict(os.environ, QHOOK_CONFIG=str(config))
        vdsm = VdsmEmulator(hooks, env, wrapper=sandbox.netns_exec)
        started = _step(
            f"starting VM {path.name}: before_device_create per vNIC, then before_vm_start"
        )
        start = vdsm.start_vm(original, data_dir=str(work))
        _done(started)
        for run in start.runs:
            for line in run.stderr.splitlines():
                print(f"    [{run.point}] {line}")
        show_interfaces(original, start.domain_xml)

        started = _step("the host now: our taps and integration-bridge ports (qhook status)")
        _status(sandbox, config)
        print(
            sandbox.vsctl(
                "--columns=name,external_ids",
                "find",
                "Interface",
                "external_ids:vdsm-hook-quantum=owned",
            ).rstrip()
        )
        _done(started)
        if keep:
            _explore(sandbox, config)
            return 0

        started = _step("stopping the VM: after_vm_destroy")
        destroyed = vdsm.destroy_vm(start.domain_xml, data_dir=str(work))
        for line in destroyed.stderr.splitlines():
            print(f"    [after_vm_destroy] {line}")
        _done(started)
        _step("the host now (qhook status): nothing of ours is left")
        _status(sandbox, config)
        return 1 if destroyed.failed else 0
    finally:
        if not keep:
            sandbox.stop()


def _explore(sandbox: OvsSandbox, config: Path) -> None:
    print(
        f"\nLeft running (--keep). Explore, then clean up:\n"
        f"  ip netns exec {sandbox.name} {sys.executable} -m qhook.cli status --config {config}\n"
        f"  ovs-vsctl --db={sandbox.connection} show\n"
        f"  ip netns exec {sandbox.name} ip -d link\n"
        f"  kill {sandbox.pid('ovs-vswitchd')} {sandbox.pid('ovsdb-server')}; "
        f"ip netns delete {sandbox.name}"
    )
