#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Benchmark: what each hook point imports, and what that costs (`python -X importtime`).

Every hook point runs for real, on a VM with 4 Open vSwitch vNICs, in a private Open
vSwitch; the interpreter's own import report is summed per hook point: the total, the
modules of this package, and the heaviest other packages. Hooks run as root here, so
the privileged helper's work (plumbing) is in the same process: the figures are those of
the hook and the helper together.

Run as root from the checkout: python3 bench/imports.py [--runs N]
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Dict, List, Tuple

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "bench")]

from domains import quantum_vm, seed_properties, to_bytes  # noqa: E402

from hooks import _device  # noqa: E402
from qhook.sandbox import OvsSandbox  # noqa: E402
from tools import hook_env  # noqa: E402

Report = Dict[str, float]  # top-level package -> cumulative import time (s)


def _imports(ovs, env, point: str, data: bytes, work: Path, extra=None) -> Tuple[Report, bytes]:
    """Run one hook point with the import profiler on; (cost per top package, data out)."""
    path = work / f"{point}.data"
    path.write_bytes(data)
    script = REPO / "hooks" / point / "50_quantum"
    done = subprocess.run(
        [*ovs.netns_exec, sys.executable, "-X", "importtime", str(script)],
        env=dict(env, _hook_domxml=str(path), **(extra or {})),
        capture_output=True,
        text=True,
        check=False,
    )
    report: Report = {}
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = line[len("import time:") :].split("|")
        if name.startswith("  "):
            continue  # counted in the cumulative figure of what imported it
        top = name.strip().split(".")[0]
        report[top] = report.get(top, 0.0) + int(cumulative) / 1e6
    problems = [line for line in done.stderr.splitlines() if not line.startswith("import time:")]
    assert done.returncode == 0, problems
    return report, path.read_bytes()


def _pass(ovs, env, work: Path) -> Dict[str, Report]:
    vm = str(uuid.uuid4())
    domain = to_bytes(quantum_vm([seed_properties("openvswitch") for _ in range(4)], vm_uuid=vm))
    device, props = _device(domain)
    reports: Dict[str, Report] = {}
    reports["before_device_create"], _ = _imports(
        ovs, env, "before_device_create", device, work, dict(props, vmId=vm)
    )
    reports["before_vm_start"], started = _imports(ovs, env, "before_vm_start", domain, work)
    for point in ("after_vm_migrate_destination", "after_vm_destroy"):
        reports[point], _ = _imports(ovs, env, point, started, work)
    reports["before_nic_hotplug"], plugged = _imports(
        ovs, env, "before_nic_hotplug", device, work, dict(props, vmId=vm)
    )
    reports["after_nic_hotunplug"], _ = _imports(
        ovs, env, "after_nic_hotunplug", plugged, work, dict(props, vmId=vm)
    )
    reports["after_get_caps"], _ = _imports(ovs, env, "after_get_caps", b"{}", work)
    return reports


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="qhook-bench-imports-"))
    ovs = OvsSandbox(work / "ovs", f"qhook-imports-{os.getpid()}").start()
    try:
        config = work / "quantum.conf"
        config.write_text(f"[ovs]\nconnection = {ovs.connection}\n[wiring]\nwait = no\n")
        env = hook_env({"QHOOK_CONFIG": str(config)})
        passes = [_pass(ovs, env, work) for _ in range(args.runs)]
        print(f"imports per hook point (median of {args.runs}; ms, cumulative per package)")
        for point in passes[0]:
            packages = sorted({name for p in passes for name in p[point]})
            cost = {
                name: statistics.median(p[point].get(name, 0.0) for p in passes) * 1000
                for name in packages
            }
            total = sum(cost.values())
            heaviest = sorted(cost.items(), key=lambda item: -item[1])[:6]
            shown = ", ".join(f"{name} {ms:.1f}" for name, ms in heaviest)
            loaded: List[str] = sorted(
                name for name in packages if name in ("pyroute2", "ovs", "requests", "lxml")
            )
            print(f"  {point:<30} {total:6.1f} ms: {shown}")
            print(f"  {'':<30} third-party loaded: {', '.join(loaded) or 'none'}")
    finally:
        ovs.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
