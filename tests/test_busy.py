# SPDX-License-Identifier: GPL-2.0-or-later
"""The busiest hour, short: bench/busy.py with 16 VMs of 2 vNICs, 4 at a time, on two
hosts with a real OVN each, the hooks run as vdsm through sudo. What must hold is
asserted, not the times: every hook point succeeded, every port was wired when its VM's
before_vm_start returned, every mirror selects its network's ports, nothing of ours is
left after the stops or the boot cleanup, nothing foreign was touched, and no start
waited out [wiring] timeout for ports that were wired (a missed wake-up)."""

import sys

from tools import REPO

sys.path.insert(0, str(REPO / "bench"))

import busy

OPTIONS = busy.Options(
    vms=16,
    vnics=2,
    at_once=4,
    others=100,
    stale=200,
    mirror_every=2,
    anchor=False,
    serial=False,
    wiring_timeout=30.0,
)


def test_the_busiest_hour_loses_nothing():
    report = busy.run_busy(OPTIONS)
    verdict = report.verdict
    assert verdict.failures == []
    assert verdict.unwired == []
    assert verdict.leaks == []
    assert verdict.touched == []
    assert verdict.warnings == []
    started = report.scenarios["mass start"]
    assert len(started.per_vm) == len(started.to_wired) == OPTIONS.vms
    for name, scenario in report.scenarios.items():
        slowest = max(scenario.per_vm)
        assert slowest < OPTIONS.wiring_timeout, f"{name}: a VM's hooks took {slowest:.1f} s"
    assert set(report.scenarios) == {"mass start", "migration", "boot storm"}
