#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Benchmark: from "VDSM calls the first hook" to "before_vm_start returns with every port
wired", for VMs with 1 and 4 Quantum vNICs on a real OVN (ovn-controller as the agent),
beside oVirt's openstacknet anchor: start paused, sleep 15 s, unpause.

Run as root from the checkout: python3 bench/wiring.py [--runs N]
"""

import argparse
import statistics
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from common import bench_host  # noqa: E402
from domains import quantum_vm, seed_properties, to_bytes  # noqa: E402

from qhook.lab.sandbox import OvnSandbox  # noqa: E402
from qhook.lab.vdsm_emulator import VdsmEmulator  # noqa: E402

ANCHOR_SECONDS = 15.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    with bench_host("wiring", "[wiring]\ntimeout = 30\n") as host:
        ovn = OvnSandbox(host.ovs).start()
        ovn.nbctl("ls-add", "tenant")
        vdsm = VdsmEmulator(REPO / "hooks", host.env, wrapper=host.ovs.netns_exec)
        print(f"{'vNICs':>5}  {'median':>8}  {'min':>8}  {'max':>8}  {'anchor':>8}  ratio")
        for count in (1, 4):
            times = []
            for _ in range(args.runs):
                vnics = [seed_properties("ovn", str(uuid.uuid4())) for _ in range(count)]
                domain = quantum_vm(vnics)
                for index, properties in enumerate(vnics):
                    port = properties["q_port_id"]
                    mac = f"02:00:00:00:{index + 1:02x}:01"
                    ovn.nbctl("lsp-add", "tenant", port, "--", "lsp-set-addresses", port, mac)
                began = time.perf_counter()
                started = vdsm.start_vm(to_bytes(domain))
                times.append(time.perf_counter() - began)
                assert not any(run.stderr for run in started.runs), started.runs
                vdsm.destroy_vm(started.domain_xml)
                for properties in vnics:
                    ovn.nbctl("lsp-del", properties["q_port_id"])
            median = statistics.median(times)
            print(
                f"{count:>5}  {median * 1000:>6.0f}ms  {min(times) * 1000:>6.0f}ms  "
                f"{max(times) * 1000:>6.0f}ms  {ANCHOR_SECONDS:>7.0f}s  "
                f"{ANCHOR_SECONDS / median:.0f}x faster"
            )
        ovn.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
