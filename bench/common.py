# SPDX-License-Identifier: GPL-2.0-or-later
"""What the benchmarks share: a sandbox host the hooks are configured for, and how a
figure prints."""

import contextlib
import os
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from qhook.lab.sandbox import OvsSandbox  # noqa: E402
from tools import bench_env  # noqa: E402


@dataclass
class BenchHost:
    """A private Open vSwitch, its work directory, and the hooks' configuration for it."""

    ovs: OvsSandbox
    work: Path
    config: Path
    env: Dict[str, str]


@contextlib.contextmanager
def bench_host(name: str, settings: str, hybrid_plug: str = "no") -> Iterator[BenchHost]:
    """An Open vSwitch in a namespace of its own, and a configuration of [ovs] connection
    and hybrid_plug (no: straight, as no binding is read here) followed by `settings`
    (more ini lines); stopped at the end."""
    work = Path(tempfile.mkdtemp(prefix=f"qhook-bench-{name}-"))
    ovs = OvsSandbox(work / "ovs", f"qhook-bench-{name}-{os.getpid()}").start()
    try:
        config = work / "quantum.conf"
        config.write_text(
            f"[ovs]\nconnection = {ovs.connection}\nhybrid_plug = {hybrid_plug}\n{settings}"
        )
        yield BenchHost(ovs, work, config, bench_env({"QHOOK_CONFIG": str(config)}))
    finally:
        ovs.stop()


def ms(values: List[float]) -> str:
    """Median and spread, in milliseconds."""
    return f"{statistics.median(values) * 1000:5.0f} ms (±{statistics.pstdev(values) * 1000:3.0f})"
