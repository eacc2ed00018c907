# SPDX-License-Identifier: GPL-2.0-or-later
"""`qhook demo`: a VM's start and stop run through the hooks as VDSM would, on a private
Open vSwitch with OVN as the agent in its own network namespace, showing what happens on
the "host"."""

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, List, Optional

from qhook import domxml, hookscripts
from qhook.errors import QhookError
from qhook.lifecycle import HOOK_POINTS
from qhook.sandbox import OvnSandbox, OvsSandbox
from qhook.vdsm_emulator import VdsmEmulator
from qhook.vnic import Plugin, parse_vnic

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "quantum-vm.xml"
LINUX_BRIDGE_WAIT = 3


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
    ovn = OvnSandbox(sandbox, system_id="qhook-demo-host")
    config = work / "quantum.conf"
    hooks = work / "hooks"
    try:
        started = _step(
            f"starting a private Open vSwitch and OVN (the agent) in network namespace "
            f"{sandbox.name}"
        )
        sandbox.start()
        ovn.start()
        ports = _logical_ports(original, ovn)
        config.write_text(
            f"[ovs]\nconnection = {sandbox.connection}\ntimeout = 5\n"
            f"[wiring]\ntimeout = {LINUX_BRIDGE_WAIT}\n"
        )
        hookscripts.write_tree(hooks, HOOK_POINTS, sys.executable)
        _done(started)
        print(f"    logical switch 'demo' with ports {', '.join(ports) or '(none)'}")
        print(
            "    (no Linux bridge agent runs here: a Linux bridge vNIC waits "
            f"{LINUX_BRIDGE_WAIT} s and starts anyway)"
        )

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

        started = _step("the agent's view: OVN logical ports, up once wired (ovn-nbctl)")
        for port in ports:
            up = ovn.nbctl("get", "Logical_Switch_Port", port, "up").strip()
            print(f"    {port}: up={up}")
        _done(started)

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
            _explore(sandbox, ovn, config)
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
            ovn.stop()
            sandbox.stop()


def _logical_ports(domain_xml: bytes, ovn: OvnSandbox) -> List[str]:
    """What the engine and Neutron would have made: a logical port per OVS/OVN vNIC."""
    domain = domxml.parse(domain_xml, "domain XML").root
    properties = domxml.device_properties(domain)
    ovn.nbctl("ls-add", "demo")
    ports = []
    for interface in domxml.interfaces(domain):
        mac = (domxml.interface_mac(interface) or "").lower()
        try:
            vnic = parse_vnic(properties.get(mac, {}), mac)
        except QhookError:
            continue  # the hooks will say what is wrong with it
        if vnic is not None and vnic.plugin is not Plugin.LINUXBRIDGE:
            ovn.nbctl(
                "lsp-add", "demo", vnic.host_id, "--", "lsp-set-addresses", vnic.host_id, vnic.mac
            )
            ports.append(vnic.host_id)
    return ports


def _explore(sandbox: OvsSandbox, ovn: OvnSandbox, config: Path) -> None:
    pids = [process.pid for process in (*ovn.processes.values(), *sandbox.processes.values())]
    print(
        f"\nLeft running (--keep). Explore, then clean up:\n"
        f"  ip netns exec {sandbox.name} {sys.executable} -m qhook.cli status --config {config}\n"
        f"  ovs-vsctl --db={sandbox.connection} show\n"
        f"  ip netns exec {sandbox.name} ip -d link\n"
        f"  kill {' '.join(str(p) for p in pids)}; ip netns delete {sandbox.name}"
    )
