#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Benchmark: creating N ports (default 200) on a real Neutron API behind a real
Keystone, from the engine side: qhook's client one by one and in bulk, the qhook
command (one call per port, and one call for all), beside what an operator would use
otherwise: `openstack port create` (python-openstackclient) per port, and openstacksdk
in one process. Prints each figure and its ratio to qhook's bulk create.

Needs what `tools/bootstrap --test` installs (Neutron, Keystone and openstackclient in
.venv-neutron, MariaDB, RabbitMQ). Run as root from the checkout:
    .venv/bin/python bench/quantum_ports.py [--ports N] [--cli-ports M]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Callable, Dict, List, Tuple

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from keystone_stack import keystone_in_front_of  # noqa: E402
from neutron_stack import NeutronStack  # noqa: E402

from qhook.engine.provisioning import OWNER  # noqa: E402
from qhook.quantum.client import QuantumClient  # noqa: E402
from qhook.quantum.keystone import KeystonePassword  # noqa: E402
from tools import without_openrc  # noqa: E402

VENV = Path(os.environ.get("QHOOK_NEUTRON_VENV", REPO / ".venv-neutron"))
_SDK = """import json, sys, time, openstack
url, password, network, vm, count = sys.argv[1:6]
began = time.perf_counter()
cloud = openstack.connect(auth_url=url, username="admin", password=password,
    project_name="admin", user_domain_name="Default", project_domain_name="Default",
    load_envvars=False, load_yaml_config=False)
for i in range(int(count)):
    cloud.network.create_port(network_id=network, device_id=vm, device_owner="bench",
        mac_address="56:6f:52:%02x:%02x:%02x" % (i >> 16, (i >> 8) & 255, i & 255))
print(json.dumps(time.perf_counter() - began))
"""


def macs(count: int, prefix: str) -> List[str]:
    return [f"{prefix}:{i >> 16:02x}:{(i >> 8) & 255:02x}:{i & 255:02x}" for i in range(count)]


def port_items(network: str, vm: str, count: int, prefix: str) -> List[Dict]:
    return [
        {"network_id": network, "device_id": vm, "device_owner": OWNER, "mac_address": mac}
        for mac in macs(count, prefix)
    ]


def timed(work: Callable[[], object]) -> float:
    began = time.perf_counter()
    work()
    return time.perf_counter() - began


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ports", type=int, default=200)
    parser.add_argument(
        "--cli-ports", type=int, default=200, help="ports made by the per-port commands"
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="qhook-bench-ports-"))
    neutron = NeutronStack(work / "neutron", VENV, f"qhook-bench-{os.getpid()}").start()
    front = None
    try:
        front = keystone_in_front_of(neutron, work / "keystone", VENV)
        keystone = front.keystone
        auth = KeystonePassword(keystone.url, "admin", keystone.admin_password, "admin")
        client = QuantumClient(auth=auth, timeout=(10, 300))
        network = client.create("networks", name="Q_bench")["id"]
        env = without_openrc(
            QHOOK_CONFIG=str(work / "none.conf"),
            OS_AUTH_URL=keystone.url,
            OS_USERNAME="admin",
            OS_PASSWORD=keystone.admin_password,
            OS_PROJECT_NAME="admin",
            OS_USER_DOMAIN_NAME="Default",
            OS_PROJECT_DOMAIN_NAME="Default",
            OS_IDENTITY_API_VERSION="3",
            OS_REGION_NAME="RegionOne",
            PYTHONWARNINGS="ignore",
        )

        def clean() -> None:
            for port in list(client.list("ports", network_id=network)):
                client.delete("ports", port["id"])

        def qhook(*argv: str) -> None:
            subprocess.run(
                [sys.executable, "-m", "qhook.cli", *argv],
                env=env,
                check=True,
                capture_output=True,
                timeout=600,
            )

        results: List[Tuple[str, int, float]] = []
        n, m = args.ports, args.cli_ports
        vm = str(uuid.uuid4())
        one_by_one = timed(
            lambda: [
                client.create("ports", **item) for item in port_items(network, vm, n, "56:6f:50")
            ]
        )
        results.append(("qhook client, one request per port", n, one_by_one))
        clean()
        bulk = timed(lambda: client.create_many("ports", port_items(network, vm, n, "56:6f:50")))
        results.append(("qhook client, bulk (one request)", n, bulk))
        clean()
        every_mac = [a for mac in macs(n, "56:6f:51") for a in ("--mac", mac)]
        cli_bulk = timed(
            lambda: qhook("port", "create", "--network", "Q_bench", "--vm", vm, *every_mac)
        )
        results.append(("qhook port create, one command for all", n, cli_bulk))
        clean()
        cli_each = timed(
            lambda: [
                qhook("port", "create", "--network", "Q_bench", "--vm", vm, "--mac", mac)
                for mac in macs(m, "56:6f:51")
            ]
        )
        results.append(("qhook port create, one command per port", m, cli_each))
        clean()
        sdk = subprocess.run(
            [
                str(VENV / "bin" / "python"),
                "-c",
                _SDK,
                keystone.url,
                keystone.admin_password,
                network,
                vm,
                str(n),
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=3600,
        )
        results.append(("openstacksdk, one process, one call per port", n, json.loads(sdk.stdout)))
        clean()
        osc_env = {**env, "PATH": f"{VENV}/bin:{env.get('PATH', '')}"}
        osc = timed(
            lambda: [
                subprocess.run(
                    [
                        "openstack",
                        "port",
                        "create",
                        "--network",
                        network,
                        "--device",
                        vm,
                        "--device-owner",
                        "bench",
                        "--mac-address",
                        mac,
                        "-f",
                        "value",
                        "-c",
                        "id",
                        mac,
                    ],
                    env=osc_env,
                    check=True,
                    capture_output=True,
                    timeout=600,
                )
                for mac in macs(m, "56:6f:53")
            ]
        )
        results.append(("openstack port create, one command per port", m, osc))
        clean()

        base = bulk / n
        print(f"{'what':<48} {'ports':>5} {'total':>9} {'per port':>10} {'vs bulk':>8}")
        for what, count, seconds in results:
            per = seconds / count
            print(
                f"{what:<48} {count:>5} {seconds:>8.2f}s {per * 1000:>8.1f}ms {per / base:>7.1f}x"
            )
        client.delete("networks", network)
        client.close()
    finally:
        if front is not None:
            front.stop()
        neutron.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
