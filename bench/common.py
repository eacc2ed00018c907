# SPDX-License-Identifier: GPL-2.0-or-later
"""What the benchmarks share: a sandbox host the hooks are configured for, and how a
figure prints."""

import contextlib
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from qhook.lab.sandbox import OvsSandbox  # noqa: E402
from qhook.vocabulary.ids import TAP_NAME  # noqa: E402
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
        shutil.rmtree(work, ignore_errors=True)


def ms(values: List[float]) -> str:
    """Median and spread, in milliseconds."""
    return f"{statistics.median(values) * 1000:5.0f} ms (±{statistics.pstdev(values) * 1000:3.0f})"


def make_foreign(ovs: OvsSandbox) -> Dict[str, str]:
    """Objects on the host that are not ours (a tap, a port with an iface-id, a mirror of
    everything, a QoS); their state, to compare at the end."""
    ovs.in_netns("ip", "tuntap", "add", "dev", "fortap0", "mode", "tap")
    ovs.vsctl(
        *("add-port", "br-int", "forport0"),
        *("--", "set", "Interface", "forport0", "external_ids:iface-id=foreign"),
        *("--", "--id=@m", "create", "Mirror", "name=foreign-span", "select_all=true"),
        *("--", "add", "Bridge", "br-int", "mirrors", "@m"),
        *("--", "--id=@q", "create", "QoS", "type=linux-htb", "external_ids:owner=foreign"),
        *("--", "set", "Port", "forport0", "qos=@q"),
    )
    return foreign_state(ovs)


def foreign_state(ovs: OvsSandbox) -> Dict[str, str]:
    """What make_foreign made, as it is now."""
    return {
        "tap": ovs.in_netns("ip", "-o", "link", "show", "fortap0").split(":")[1],
        "port": ovs.vsctl("--columns=name,external_ids", "list", "Interface", "forport0"),
        "mirror": ovs.vsctl(
            "--columns=name,select_all,output_port", "list", "Mirror", "foreign-span"
        ),
        "qos": ovs.vsctl(
            "--columns=type,external_ids", "find", "QoS", "external_ids:owner=foreign"
        ),
    }


def leaks(ovs: OvsSandbox) -> List[str]:
    """Taps, OVS ports and mirrors of ours still on the host."""
    links = json.loads(ovs.in_netns("ip", "-j", "link"))
    found = [f"tap {link['ifname']}" for link in links if TAP_NAME.fullmatch(link["ifname"])]
    for table, kind in (("Interface", "port"), ("Mirror", "mirror")):
        rows = ovs.vsctl("--columns=name", "find", table, "external_ids:vdsm-hook-quantum=owned")
        found += [f"{kind} {name}" for name in re.findall(r'name\s*:\s*"?([\w-]+)', rows)]
    return found
