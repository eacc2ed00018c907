#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Benchmark: what ports on demand cost a VM's start and stop, with the real Neutron.

For VMs with 1, 4 and 16 Open vSwitch vNICs, the wall time of before_vm_start and
after_vm_destroy when the vNICs carry explicit port ids (the ports made beforehand, as
the engine's `qhook port create` does) and when they carry only the network (the host
finds or makes, binds and, at the stop, deletes them). The wait for the agent is off, so
the figures are the hooks' own. Neutron 29 (API, RPC server, Open vSwitch agent, MariaDB,
RabbitMQ) runs in a private namespace, as in the tests, with as many API workers as this
machine has cores (Neutron's default); it needs the .venv-neutron of `tools/bootstrap
--test`. Hooks run as root here (the helper's work in-process).

Run as root from the checkout: python3 bench/on_demand.py [--runs N]
"""

import argparse
import os
import secrets
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Dict, List, Optional

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from common import ms  # noqa: E402
from domains import quantum_vm, to_bytes  # noqa: E402
from neutron_stack import AGENT_HOST, NeutronStack  # noqa: E402

from qhook.lab.vdsm_emulator import VdsmEmulator  # noqa: E402
from tools import HOOKS_DIR, bench_env  # noqa: E402

API = "http://127.0.0.1:9696"


def _vm(network_id: str, macs: List[str], port_ids: List[Optional[str]]) -> bytes:
    """A VM with one vNIC per MAC; a port id makes that vNIC's port explicit."""
    vnics = [
        {"plugin": "openvswitch", "q_network_id": network_id, **({"q_port_id": p} if p else {})}
        for p in port_ids
    ]
    data = to_bytes(quantum_vm(vnics, vm_uuid=str(uuid.uuid4())))
    for index, mac in enumerate(macs):
        data = data.replace(f"02:00:00:00:{index + 1:02x}:01".encode(), mac.encode())
    return data


def _timed(vdsm: VdsmEmulator, point: str, data: bytes) -> "tuple[float, bytes]":
    began = time.perf_counter()
    run = vdsm.run_point(point, data)
    took = time.perf_counter() - began
    assert not run.failed and not run.stderr, run.stderr
    return took, run.data_out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    venv = Path(os.environ.get("QHOOK_NEUTRON_VENV", REPO / ".venv-neutron"))
    work = Path(tempfile.mkdtemp(prefix="qhook-bench-on-demand-"))
    stack = NeutronStack(
        work / "neutron", venv, f"qhook-bench-nt-{os.getpid()}", api_workers=os.cpu_count() or 1
    )
    stack.start()
    try:
        project = uuid.uuid4().hex
        body = {"name": "Q_bench", "project_id": project}
        network = stack.api("POST", "/v2.0/networks", {"network": body})["network"]
        settings = work / "quantum-api.conf"
        settings.write_text(f"[quantum]\nurl = {API}\nproject_id = {project}\n")
        os.chmod(settings, 0o600)
        config = work / "quantum.conf"
        config.write_text(
            f"[ovs]\nconnection = {stack.ovs.connection}\nhybrid_plug = no\n[wiring]\nwait = no\n"
            f"[host]\nagent_host = {AGENT_HOST}\nstate_dir = {work}/state\n"
            f"[on_demand]\nsettings = {settings}\n"
        )
        vdsm = VdsmEmulator(
            HOOKS_DIR, bench_env({"QHOOK_CONFIG": str(config)}), wrapper=stack.ovs.netns_exec
        )
        for count in (1, 4, 16):
            figures: Dict[str, List[float]] = {}
            for _ in range(args.runs):
                for form in ("explicit ids", "on demand"):
                    macs = [
                        ":".join(f"{b:02x}" for b in bytes.fromhex("02" + secrets.token_hex(5)))
                        for _ in range(count)
                    ]
                    port_ids: List[Optional[str]] = [None] * count
                    if form == "explicit ids":
                        for index, mac in enumerate(macs):
                            port = {"network_id": network["id"], "project_id": project}
                            port.update(mac_address=mac, **{"binding:host_id": AGENT_HOST})
                            port_ids[index] = stack.api("POST", "/v2.0/ports", {"port": port})[
                                "port"
                            ]["id"]
                    domain = _vm(network["id"], macs, port_ids)
                    took, started = _timed(vdsm, "before_vm_start", domain)
                    figures.setdefault(f"before_vm_start, {form}", []).append(took)
                    took, _ = _timed(vdsm, "after_vm_destroy", started)
                    figures.setdefault(f"after_vm_destroy, {form}", []).append(took)
                    for port_id in filter(None, port_ids):
                        stack.api("DELETE", f"/v2.0/ports/{port_id}")
            left = stack.api("GET", f"/v2.0/ports?network_id={network['id']}")["ports"]
            assert left == [], left  # every port on demand was deleted at the stop
            print(f"-- {count} vNICs")
            for label, values in figures.items():
                print(f"   {label:<32} {ms(values)}")
    finally:
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
