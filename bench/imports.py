#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Benchmark: what each hook point imports, and what that costs (`python -X importtime`).

Every hook point runs for real, on a VM with 4 Open vSwitch vNICs, in a private Open
vSwitch; the interpreter's own import report is summed per hook point: the total, the
modules of this package, and the heaviest other packages. Hooks run as root here, so
the privileged helper's work (plumbing) is in the same process: the figures are those of
the hook and the helper together.

Wall time swings by several ms on a busy machine; --instructions adds a figure that does
not: the instructions (valgrind's callgrind, deterministic) that importing the qhook
modules each hook point loaded costs, beyond the interpreter's own start.

Run as root from the checkout: python3 bench/imports.py [--runs N] [--instructions]
"""

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Dict, Tuple

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "bench")]

from common import bench_host  # noqa: E402
from domains import quantum_vm, seed_properties, to_bytes  # noqa: E402

from hooks import _device  # noqa: E402

# What a hook's hot path should not pay for unless it uses it.
THIRD_PARTY = {"lxml", "requests", "urllib3", "pyroute2", "ovs", "subprocess", "ssl", "json"}

VALGRIND = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
Report = Dict[str, float]  # "total", and each module's own import time (s)


def _imports(ovs, env, point: str, data: bytes, work: Path, extra=None) -> Tuple[Report, bytes]:
    """Run one hook point with the import profiler on; (the import times, data out)."""
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
    report: Report = {"total": 0.0}
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        own, cumulative, name = line[len("import time:") :].split("|")
        if not name.startswith("  "):  # a top-level import: its figure holds the nested ones
            report["total"] += int(cumulative) / 1e6
        report[name.strip()] = int(own) / 1e6
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


def instructions(modules) -> int:
    """Instructions (callgrind's Ir) of `python -c 'import MODULES'`, beyond `pass`."""

    def count(code: str) -> int:
        done = subprocess.run(
            [*VALGRIND, sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            cwd="/",
            env={k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
        )
        return int(re.search(r"Collected : (\d+)", done.stderr).group(1))

    return count("import " + ", ".join(modules)) - count("pass")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--instructions", action="store_true", help="also count instructions (needs valgrind)"
    )
    args = parser.parse_args()
    if args.instructions and not shutil.which("valgrind"):
        parser.error("--instructions needs valgrind")
    with bench_host("imports", "[wiring]\nwait = no\n") as host:
        passes = [_pass(host.ovs, host.env, host.work) for _ in range(args.runs)]
        print(f"imports per hook point, median of {args.runs} runs (modules byte-compiled)")
        for point in passes[0]:
            modules = sorted({name for p in passes for name in p[point]} - {"total"})
            own = {m: statistics.median(p[point].get(m, 0.0) for p in passes) for m in modules}
            total = statistics.median(p[point]["total"] for p in passes) * 1000
            ours = sum(v for m, v in own.items() if m.split(".")[0] == "qhook") * 1000
            heaviest = sorted(own.items(), key=lambda item: -item[1])[:5]
            shown = ", ".join(f"{name} {value * 1000:.1f}" for name, value in heaviest)
            loaded = sorted({m.split(".")[0] for m in modules} & THIRD_PARTY)
            print(f"  {point:<29} {total:5.1f} ms in all, qhook's own modules {ours:4.1f} ms")
            print(f"  {'':<29} heaviest (own time, ms): {shown}")
            watched = ", ".join(sorted(THIRD_PARTY))
            print(f"  {'':<29} loaded of {watched}: {', '.join(loaded) or 'none'}")
            qhook = sorted(m for m in modules if m.split(".")[0] == "qhook")
            print(f"  {'':<29} {len(modules)} modules, {len(qhook)} of qhook: {', '.join(qhook)}")
            if args.instructions:
                print(f"  {'':<29} importing them: {instructions(qhook) / 1e6:.1f} M instructions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
