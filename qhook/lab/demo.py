# SPDX-License-Identifier: GPL-2.0-or-later
"""`qhook demo`: a VM's life run through the hooks as VDSM would, on a private Open
vSwitch with OVN as the agent and a real libvirt, all in one network namespace, showing
step by step what happens on the "host"."""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, List, Optional, Tuple

from qhook import install, plugins
from qhook.errors import QhookError
from qhook.lab.sandbox import LibvirtSandbox, OvnSandbox, OvsSandbox, stop_everything
from qhook.lab.vdsm_emulator import VdsmEmulator
from qhook.vdsm import domxml
from qhook.vdsm.points import HOOK_POINTS
from qhook.vdsm.vnic import QuantumVnic, parse_vnic

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
DEMO_VM = EXAMPLES / "ovirt-demo-vm.xml"
LINUX_BRIDGE_WAIT = 3
DHCP_WAIT = 60
QEMU_PATHS = ("/usr/bin/qemu-system-x86_64", "/usr/libexec/qemu-kvm")
KEPT = "kept-demo.json"  # in a kept demo's directory: what `--stop` needs
WORK_PREFIX = "qhook-demo-"


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


def _vnics(domain_xml: bytes) -> List[QuantumVnic]:
    domain = domxml.parse(domain_xml, "domain XML").root
    properties = domxml.device_properties(domain)
    found = []
    for interface in domxml.interfaces(domain):
        mac = (domxml.interface_mac(interface) or "").lower()
        try:
            vnic = parse_vnic(properties.get(mac, {}), mac)
        except QhookError:
            continue  # the hooks will say what is wrong with it
        if vnic is not None:
            found.append(vnic)
    return found


def _plugins(vnics: List[QuantumVnic]) -> List[plugins.VnicPlugin]:
    return [plugins.of(vnic.plugin) for vnic in vnics]


def _logical_ports(vnics: List[QuantumVnic], ovn: OvnSandbox) -> List[str]:
    """What the engine and Neutron would have made: a logical port per OVS/OVN vNIC."""
    ovn.nbctl("ls-add", "demo")
    ports = []
    for vnic in vnics:
        if plugins.of(vnic.plugin).on_integration_bridge:  # what ovn-controller wires
            ovn.nbctl(
                "lsp-add", "demo", vnic.host_id, "--", "lsp-set-addresses", vnic.host_id, vnic.mac
            )
            ports.append(vnic.host_id)
    return ports


def _libvirt_wanted(with_vm: bool) -> Tuple[bool, str]:
    if not with_vm:
        return False, "--no-vm"
    missing = [tool for tool in ("libvirtd", "virsh", "tcpdump") if not shutil.which(tool)]
    if not any(os.path.exists(path) for path in QEMU_PATHS):
        missing.append("QEMU")
    return (not missing, f"{', '.join(missing)} not installed" if missing else "")


def _boot(
    libvirt: LibvirtSandbox, sandbox: OvsSandbox, domain_xml: bytes, work: Path, first: QuantumVnic
) -> str:
    """Define and start the VM in libvirt; wait for its firmware's first DHCP request."""
    emulator = next(path for path in QEMU_PATHS if os.path.exists(path))
    document = domxml.parse(domain_xml, "domain XML")
    element = document.root.find("devices/emulator")
    if element is not None:
        element.text = emulator
    path = work / "libvirt-domain.xml"
    path.write_bytes(domxml.serialize(document))
    name = document.root.findtext("name") or "demo"
    libvirt.virsh("define", str(path))
    listener = subprocess.Popen(
        [
            *sandbox.netns_exec,
            "tcpdump",
            "-i",
            first.tap_name,
            "-c",
            "1",
            "-n",
            "-l",
            "-e",
            f"ether src {first.mac} and udp dst port 67",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        time.sleep(0.5)  # tcpdump attaches
        began = time.monotonic()
        libvirt.virsh("start", name)
        print(f"    virsh start {name}: QEMU runs, the firmware boots from the network")
        try:
            line, _ = listener.communicate(timeout=DHCP_WAIT)
        except subprocess.TimeoutExpired:
            line = ""
        if line.strip():
            print(
                f"    {time.monotonic() - began:.1f} s after the start, on {first.tap_name} "
                f"(port of the integration bridge):\n    {line.strip()}"
            )
        else:
            print(f"    no DHCP request from {first.mac} within {DHCP_WAIT} s")
    finally:
        if listener.poll() is None:
            listener.kill()
            listener.wait()
    return name


def run_demo(
    domxml_path: Optional[str],
    keep: bool,
    show_interfaces: Callable[[bytes, bytes], None],
    with_vm: bool = True,
) -> int:
    """The whole demo; returns the exit code."""
    path = Path(domxml_path) if domxml_path else DEMO_VM
    try:
        original = path.read_bytes()
    except OSError as error:
        raise QhookError(
            f"cannot read {path}: {error.strerror}: name a domain XML with oVirt metadata"
        ) from None
    vnics = _vnics(original)
    work = Path(tempfile.mkdtemp(prefix=WORK_PREFIX))
    sandbox = OvsSandbox(work / "ovs", f"qhook-demo-{os.getpid()}")
    ovn = OvnSandbox(sandbox, system_id="qhook-demo-host")
    use_libvirt, why_not = _libvirt_wanted(with_vm)
    libvirt = LibvirtSandbox(work / "libvirt", sandbox) if use_libvirt else None
    config = work / "quantum.conf"
    hooks = work / "hooks"
    vm_name = None
    try:
        started = _step(
            f"starting a private Open vSwitch and OVN (the agent) in network "
            f"namespace {sandbox.name}"
        )
        sandbox.start()
        ovn.start()
        ports = _logical_ports(vnics, ovn)
        config.write_text(
            f"[ovs]\nconnection = {sandbox.connection}\ntimeout = 5\nhybrid_plug = no\n"
            f"[wiring]\ntimeout = {LINUX_BRIDGE_WAIT}\n"
        )
        install.write_tree(hooks, HOOK_POINTS, sys.executable)
        _done(started)
        print(f"    logical switch 'demo' with ports {', '.join(ports) or '(none)'}")
        for label in sorted({p.label for p in _plugins(vnics) if not p.on_integration_bridge}):
            print(
                f"    (no {label} agent runs here: a {label} vNIC waits "
                f"{LINUX_BRIDGE_WAIT} s and starts anyway)"
            )
        if libvirt is not None:
            started = _step(
                "starting libvirtd in the same namespace (in its new private directory it "
                "has no cache, so it probes QEMU's capabilities first: seconds)"
            )
            libvirt.start()
            _done(started)
        else:
            print(f"    (no VM will boot: {why_not})")

        env = dict(os.environ, QHOOK_CONFIG=str(config))
        vdsm = VdsmEmulator(hooks, env, wrapper=sandbox.netns_exec)
        started = _step(
            f"VM {path.name}: before_device_create per vNIC, then before_vm_start "
            "(which plugs the vNICs and waits for the agent)"
        )
        start = vdsm.start_vm(original, data_dir=str(work))
        _done(started)
        for run in start.runs:
            for line in run.stderr.splitlines():
                print(f"    [{run.point}] {line}")
        show_interfaces(original, start.domain_xml)

        started = _step("the agent's view: OVN logical ports, up once wired (ovn-nbctl)")
        for port in ports:
            print(f"    {port}: up={ovn.nbctl('get', 'Logical_Switch_Port', port, 'up').strip()}")
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

        if libvirt is not None and vnics:
            started = _step("libvirt starts the VM; the guest's first DHCP request arrives")
            vm_name = _boot(libvirt, sandbox, start.domain_xml, work, vnics[0])
            _done(started)
        if keep:
            _explore(work, sandbox, libvirt, config)
            return 0

        if vm_name is not None:
            started = _step("stopping the VM: virsh destroy, then after_vm_destroy")
        else:
            started = _step("the VM stops (no VM was booted): after_vm_destroy")
        if vm_name is not None and libvirt is not None:
            libvirt.virsh("destroy", vm_name)
            libvirt.virsh("undefine", vm_name)
        destroyed = vdsm.destroy_vm(start.domain_xml, data_dir=str(work))
        for line in destroyed.stderr.splitlines():
            print(f"    [after_vm_destroy] {line}")
        _done(started)
        _step("the host now (qhook status): nothing of ours is left")
        _status(sandbox, config)
        return 1 if destroyed.failed else 0
    finally:
        if not keep:
            if libvirt is not None:
                libvirt.stop()
            ovn.stop()
            sandbox.stop()
            shutil.rmtree(work, ignore_errors=True)


def _explore(
    work: Path, sandbox: OvsSandbox, libvirt: Optional[LibvirtSandbox], config: Path
) -> None:
    """What a kept demo leaves: a `qhook` for its "host", and one command to stop it all."""
    wrapper = work / "qhook"
    wrapper.write_text(
        "#!/bin/sh\n# qhook on the kept demo's host: its network namespace and configuration.\n"
        f"QHOOK_CONFIG={config} exec ip netns exec {sandbox.name} "
        f'{sys.executable} -m qhook.cli "$@"\n'
    )
    wrapper.chmod(0o755)
    (work / KEPT).write_text(json.dumps({"netns": sandbox.name, "libvirt": bool(libvirt)}))
    print(f"\nLeft running (--keep), all of it in {work}. Explore:")
    print(f"  {wrapper} status")
    print(f"  ovs-vsctl --db={sandbox.connection} show")
    print(f"  ip netns exec {sandbox.name} ip -d link")
    if libvirt is not None:
        print(f"  virsh -c '{libvirt.uri}' list --all")
    print(f"Then stop everything (QEMU, libvirtd, OVN, Open vSwitch) and remove {work}:")
    print(f"  ./demo --stop {work}")


def stop_demo(directory: str) -> int:
    """Stop everything a kept demo started, and remove its directory."""
    work = Path(directory).resolve()
    try:
        kept = json.loads((work / KEPT).read_text())
        netns = kept["netns"]
    except (OSError, ValueError, KeyError, TypeError):
        raise QhookError(f"{directory} is not the directory of a kept demo (no {KEPT})") from None
    if not work.name.startswith(WORK_PREFIX) or not re.fullmatch(r"qhook-demo-\d+", str(netns)):
        raise QhookError(f"{directory} is not the directory of a kept demo")
    started = _step(f"stopping the kept demo in {work} (network namespace {netns})")
    if kept.get("libvirt"):
        libvirt = LibvirtSandbox(work / "libvirt", OvsSandbox(work / "ovs", netns))
        for name in _running_domains(libvirt):
            libvirt.virsh("destroy", name, timeout=30)
    count = stop_everything(netns, work)
    shutil.rmtree(work, ignore_errors=True)
    print(f"    stopped {count} processes; namespace {netns} and {work} are gone")
    _done(started)
    return 0


def _running_domains(libvirt: LibvirtSandbox) -> List[str]:
    from qhook.lab.sandbox import SandboxError

    try:
        return libvirt.virsh("list", "--name", timeout=30).split()
    except (SandboxError, subprocess.TimeoutExpired):
        return []  # libvirtd is gone already: its QEMU is stopped by PID below
