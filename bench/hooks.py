#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Benchmark: every hook point's wall time and peak memory for VMs with 1, 4 and 16
Quantum vNICs, with 10, 1,000 and 10,000 other ports on the integration bridge, beside
the floor (the same process chain doing nothing: `ip netns exec` and an interpreter
importing what the hook imports) and the anchor (libvirt's way: one `ovs-vsctl
--may-exist add-port ... -- set Interface ... external_ids:...` per vNIC); and `qhook
cleanup` of 10,000 stale ports beside one `ovs-vsctl` command removing them. The wait
for the agent is off. Hooks run as root here (in-process plumbing); on a host they run
as vdsm and add `sudo -n` and the helper's interpreter (see bench --help of the tests).

Run as root from the checkout:
    python3 bench/hooks.py [--runs N] [--others 10,1000,10000] [--hybrid-plug yes]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Dict, List, Tuple

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from common import bench_host, ms  # noqa: E402
from domains import quantum_vm, seed_properties, to_bytes  # noqa: E402
from lxml import etree  # noqa: E402

from qhook.host import ovsdb, ovsports  # noqa: E402
from tools import qhook_on_host  # noqa: E402


def _run(command: List[str], env: Dict[str, str]) -> Tuple[float, int]:
    """Wall time and peak memory (KiB) of a process."""
    began = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    took = time.perf_counter() - began
    stderr = process.stderr.read() if process.stderr else b""
    process.returncode = os.waitstatus_to_exitcode(status)
    assert process.returncode == 0, stderr
    return took, usage.ru_maxrss


def _hook(ovs, env, point, data: bytes, work: Path, extra=None) -> Tuple[float, int]:
    path = work / f"{point}.data"
    path.write_bytes(data)
    return _run(
        [*ovs.netns_exec, str(REPO / "hooks" / point / "50_quantum")],
        dict(env, _hook_domxml=str(path), **(extra or {})),
    )


def _floor(ovs, env) -> Tuple[float, int]:
    return _run(
        [
            *ovs.netns_exec,
            sys.executable,
            "-c",
            "import qhook.vdsm.points.start, qhook.host.helper",
        ],
        env,
    )


def _anchor(ovs, count: int) -> float:
    """libvirt's plugging of `count` vNICs: a tap each, then one ovs-vsctl each."""
    names = [f"tapanc{uuid.uuid4().hex[:8]}" for _ in range(count)]
    for name in names:
        ovs.in_netns("ip", "tuntap", "add", "dev", name, "mode", "tap")
    began = time.perf_counter()
    for name in names:
        ovs.vsctl(
            "--may-exist",
            "add-port",
            "br-int",
            name,
            "--",
            "set",
            "Interface",
            name,
            f"external_ids:iface-id={uuid.uuid4()}",
            "external_ids:attached-mac=x",
            "external_ids:iface-status=active",
            f"external_ids:vm-id={uuid.uuid4()}",
            wait=True,
        )
    took = time.perf_counter() - began
    for name in names:
        ovs.vsctl("--if-exists", "del-port", name)
        ovs.in_netns("ip", "link", "delete", name)
    return took


def _device(domain: bytes, index: int = 0) -> Tuple[bytes, Dict[str, str]]:
    """One vNIC's device XML and custom properties, as VDSM hands them to device hooks."""
    root = etree.fromstring(domain)
    interface = root.findall("devices/interface")[index]
    mac = interface.find("mac").get("address")
    props = {}
    for device in root.iter("{http://ovirt.org/vm/1.0}device"):
        if device.get("mac_address") == mac:
            props = {
                etree.QName(c).localname: c.text
                for c in device.find("{http://ovirt.org/vm/1.0}custom")
            }
    interface.tail = None
    return etree.tostring(interface), props


def _lifecycle(ovs, env, work: Path, count: int) -> Dict[str, Tuple[float, int]]:
    """One pass through every hook point for a VM with `count` vNICs."""
    vm = str(uuid.uuid4())
    domain = to_bytes(
        quantum_vm([seed_properties("openvswitch") for _ in range(count)], vm_uuid=vm)
    )
    device, props = _device(domain)
    figures = {
        "before_device_create": _hook(
            ovs, env, "before_device_create", device, work, dict(props, vmId=vm)
        )
    }
    figures["before_vm_start"] = _hook(ovs, env, "before_vm_start", domain, work)
    started = (work / "before_vm_start.data").read_bytes()
    figures["after_vm_migrate_destination"] = _hook(
        ovs, env, "after_vm_migrate_destination", started, work
    )
    figures["after_vm_destroy"] = _hook(ovs, env, "after_vm_destroy", started, work)
    figures["before_vm_migrate_destination"] = _hook(
        ovs, env, "before_vm_migrate_destination", started, work
    )
    figures["after_vm_destroy"] = min(
        figures["after_vm_destroy"], _hook(ovs, env, "after_vm_destroy", started, work)
    )
    figures["before_nic_hotplug"] = _hook(
        ovs, env, "before_nic_hotplug", device, work, dict(props, vmId=vm)
    )
    plugged = (work / "before_nic_hotplug.data").read_bytes()
    figures["after_nic_hotunplug"] = _hook(
        ovs, env, "after_nic_hotunplug", plugged, work, dict(props, vmId=vm)
    )
    figures["after_get_caps"] = _hook(ovs, env, "after_get_caps", b"{}", work)
    return figures


def _cleanup_bench(ovs, env, work: Path, count: int) -> Tuple[float, float]:
    """qhook cleanup of `count` stale ports of ours vs one ovs-vsctl command."""

    def add_stale(prefix: str) -> List[str]:
        names = [f"tap{prefix}{i:06x}-00"[:14] for i in range(count)]
        with ovsdb.Ovsdb(ovs.connection, 120) as db:
            for start in range(0, count, 2000):
                chunk = names[start : start + 2000]
                ovsports.add(
                    db,
                    "br-int",
                    [
                        ovsports.NewPort(
                            n,
                            {
                                "iface-id": str(uuid.uuid4()),
                                "vm-uuid": str(uuid.uuid4()),
                                ovsports.OWNER_KEY: ovsports.OWNER_VALUE,
                            },
                        )
                        for n in chunk
                    ],
                    [],
                )
        return names

    add_stale("c")
    config = work / "quantum.conf"
    began = time.perf_counter()
    done = qhook_on_host(ovs.netns_exec, config, "cleanup", "--grace", "0", timeout=3600)
    ours = time.perf_counter() - began
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("removed OVS port") == count, done.stdout[-500:]
    print(f"qhook cleanup of {count} stale ports: {ours:.2f} s", flush=True)
    names = add_stale("d")
    commands = []
    for name in names:
        commands += ["--", "del-port", "br-int", name]
    began = time.perf_counter()
    anchor = subprocess.run(
        ["ovs-vsctl", f"--db={ovs.connection}", "--timeout=3600", *commands],
        env=ovs.env,
        capture_output=True,
        timeout=7200,
    )
    assert anchor.returncode == 0, anchor.stderr[-500:]
    return ours, time.perf_counter() - began


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--others", default="10,1000,10000")
    parser.add_argument("--stale", type=int, default=10000)
    parser.add_argument(
        "--hybrid-plug", choices=("no", "yes"), default="no", help="yes: every vNIC hybrid"
    )
    args = parser.parse_args()
    settings = "timeout = 60\n[wiring]\nwait = no\n"
    with bench_host("hooks", settings, args.hybrid_plug) as host:
        ovs, env, work = host.ovs, host.env, host.work
        floors = [_floor(ovs, env) for _ in range(args.runs)]
        floor = statistics.median(t for t, _ in floors)
        print(
            f"floor: {ms([t for t, _ in floors])}, "
            f"{statistics.median(m for _, m in floors) / 1024:.0f} MiB"
        )
        existing, table = 0, {}
        for others in (int(n) for n in args.others.split(",")):
            # Rows only (no device behind them): what a busy br-int's database holds.
            names = [f"other{index}" for index in range(existing, others)]
            for start in range(0, len(names), 1000):
                commands = []
                for name in names[start : start + 1000]:
                    commands += ["--", "add-port", "br-int", name]
                ovs.vsctl(*commands)
            existing = max(existing, others)
            for count in (1, 4, 16):
                runs = [_lifecycle(ovs, env, work, count) for _ in range(args.runs)]
                anchors = [_anchor(ovs, count) for _ in range(min(args.runs, 3))]
                print(
                    f"-- {others} other ports, {count} vNICs; anchor (ovs-vsctl per vNIC) "
                    f"{ms(anchors)}"
                )
                for point in runs[0]:
                    times = [r[point][0] for r in runs]
                    memory = statistics.median(r[point][1] for r in runs) / 1024
                    table[(others, count, point)] = statistics.median(times)
                    print(
                        f"   {point:<30} {ms(times)} = {statistics.median(times) / floor:4.2f}x"
                        f" floor, {memory:3.0f} MiB"
                    )
        for count in (1, 4, 16):
            low = table.get((10, count, "before_vm_start"))
            high = table.get((10000, count, "before_vm_start"))
            if low and high:
                print(
                    f"before_vm_start, {count} vNICs: 10,000 other ports / 10 = {high / low:.2f}x"
                )
        if args.stale:
            ours, vsctl = _cleanup_bench(ovs, env, work, args.stale)
            print(
                f"qhook cleanup of {args.stale} stale ports: {ours:.2f} s; one ovs-vsctl "
                f"command: {vsctl:.2f} s ({vsctl / ours:.1f}x slower)"
            )
        print(json.dumps({"floor_ms": floor * 1000}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
