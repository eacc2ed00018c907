#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Benchmark: each hook point's wall time for VMs with 1, 4 and 16 Quantum vNICs, with 10
and 1,000 other ports on the integration bridge, beside the floor (the same process
chain doing nothing: `ip netns exec` and an interpreter importing what the hook
imports) and the anchor (libvirt's way: one `ovs-vsctl --may-exist add-port ... --
set Interface ... external_ids:...` per vNIC). The wait for the agent is off.

Run as root from the checkout: python3 bench/hooks.py [--runs N] [--others 10,1000]
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from domains import quantum_vm, seed_properties, to_bytes  # noqa: E402

from qhook.sandbox import OvsSandbox  # noqa: E402
from tools import hook_env  # noqa: E402


def _ms(values):
    return f"{statistics.median(values) * 1000:6.0f} ms (±{statistics.pstdev(values) * 1000:3.0f})"


def _hook(ovs, env, point, data_file):
    began = time.perf_counter()
    done = subprocess.run(
        [*ovs.netns_exec, str(REPO / "hooks" / point / "50_quantum")],
        env=dict(env, _hook_domxml=str(data_file)),
        capture_output=True,
    )
    assert done.returncode == 0, done.stderr
    return time.perf_counter() - began


def _floor(ovs):
    began = time.perf_counter()
    subprocess.run(
        [*ovs.netns_exec, sys.executable, "-c", "import qhook.lifecycle, qhook.privileged"],
        check=True,
    )
    return time.perf_counter() - began


def _anchor(ovs, count):
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--others", default="10,1000")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="qhook-bench-"))
    ovs = OvsSandbox(work / "ovs", f"qhook-bench-{os.getpid()}").start()
    try:
        config = work / "quantum.conf"
        config.write_text(f"[ovs]\nconnection = {ovs.connection}\n[wiring]\nwait = no\n")
        env = hook_env({"QHOOK_CONFIG": str(config)})
        floor = [_floor(ovs) for _ in range(args.runs)]
        print(f"floor: {_ms(floor)}")
        existing = 0
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
                starts, stops, anchors = [], [], []
                for _ in range(args.runs):
                    data = work / "domain.xml"
                    data.write_bytes(
                        to_bytes(quantum_vm([seed_properties("openvswitch") for _ in range(count)]))
                    )
                    starts.append(_hook(ovs, env, "before_vm_start", data))
                    stops.append(_hook(ovs, env, "after_vm_destroy", data))
                    anchors.append(_anchor(ovs, count))
                ratio = statistics.median(starts) / statistics.median(floor)
                print(
                    f"{others:5} other ports, {count:2} vNICs: before_vm_start {_ms(starts)} "
                    f"= {ratio:.2f}x floor; after_vm_destroy {_ms(stops)}; "
                    f"anchor (ovs-vsctl per vNIC) {_ms(anchors)}"
                )
    finally:
        ovs.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
