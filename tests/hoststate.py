# SPDX-License-Identifier: GPL-2.0-or-later
"""What is on the sandbox "host", read with the standard tools (ip, ovs-vsctl)."""

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

from qhook.lab.sandbox import OvsSandbox


def links(ovs: OvsSandbox) -> Dict[str, Dict[str, Any]]:
    """Network devices in the sandbox, by name, as `ip -j -d link` reports them."""
    return {link["ifname"]: link for link in json.loads(ovs.in_netns("ip", "-j", "-d", "link"))}


def tun_info(link: Dict[str, Any]) -> Dict[str, Any]:
    info = link.get("linkinfo", {})
    assert info.get("info_kind") == "tun", link
    return info["info_data"]


def ovs_interfaces(ovs: OvsSandbox) -> Dict[str, Dict[str, Any]]:
    """OVS Interface rows by name: external_ids as a dict, ofport as an int or None."""
    table = json.loads(
        ovs.vsctl("--format=json", "--columns=name,external_ids,ofport", "list", "Interface")
    )
    rows = {}
    for name, external_ids, ofport in table["data"]:
        rows[name] = {
            "external_ids": dict(external_ids[1]),
            "ofport": ofport if isinstance(ofport, int) else None,
        }
    return rows


def ovs_ports(ovs: OvsSandbox) -> Dict[str, Dict[str, Any]]:
    """OVS Port rows by name: external_ids as a dict."""
    table = json.loads(ovs.vsctl("--format=json", "--columns=name,external_ids", "list", "Port"))
    return {name: {"external_ids": dict(external_ids[1])} for name, external_ids in table["data"]}


def add_port(ovs: OvsSandbox, bridge: str, name: str, **external_ids: str) -> None:
    """A port row of this name on the bridge, its Interface carrying these external_ids
    (a device of that name need not exist: ovs-vswitchd then only complains)."""
    pairs = [f"external_ids:{key}={value}" for key, value in external_ids.items()]
    ovs.vsctl("add-port", bridge, name, "--", "set", "Interface", name, *pairs)


def bridge_ports(ovs: OvsSandbox, bridge: str = "br-int") -> set:
    return set(ovs.vsctl("list-ports", bridge).split())


def wait_for_ofports(ovs: OvsSandbox, names, timeout: float = 10) -> Dict[str, int]:
    """ovs-vswitchd gives each port an OpenFlow number soon after it is added."""
    deadline = time.monotonic() + timeout
    while True:
        rows = ovs_interfaces(ovs)
        ofports = {name: rows.get(name, {}).get("ofport") for name in names}
        if all(isinstance(v, int) and v > 0 for v in ofports.values()):
            return ofports
        assert time.monotonic() < deadline, f"no ofport after {timeout} s: {ofports}"
        time.sleep(0.05)


FRAMES = str(Path(__file__).with_name("frames.py"))


def frames_cross(
    ovs: OvsSandbox, sender: str, src_mac: str, sizes: List[int], receivers: List[str]
) -> Dict[int, List[str]]:
    """Be the guests: one broadcast frame per size into the sender's tap; which of the
    receivers' taps each came out of (tests/frames.py, run inside the sandbox)."""
    out = ovs.in_netns(
        sys.executable,
        FRAMES,
        "cross",
        sender,
        src_mac,
        ",".join(map(str, sizes)),
        ",".join(receivers),
    )
    return {int(size): taps for size, taps in json.loads(out).items()}


def udp_arrives(
    netns_exec: Sequence[str],
    sender: Tuple[str, str, str],
    receiver: Tuple[str, str, str],
    port: int = 7777,
    count: int = 5,
    receiver_netns: str = "",
) -> int:
    """Be the guests: COUNT UDP datagrams from the sender (tap, MAC, IP) to the receiver
    (tap, MAC, IP); how many it got (tests/frames.py, run in that namespace; the
    receiver's tap in receiver_netns, another host's, if given)."""
    done = subprocess.run(
        [*netns_exec, sys.executable, FRAMES, "udp", *sender, *receiver, str(port), str(count),
         *([receiver_netns] if receiver_netns else [])],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"frames.py udp: {done.stderr.strip()[-600:]}"
    out = done.stdout
    return int(out)
