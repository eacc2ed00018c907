#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Benchmark: what `qhook engine sync` costs, against the tests' engine stand-in (TLS,
read by the official SDK) and the real Neutron.

- A first pass that makes N Quantum networks and sets N profiles, and a pass that finds
  everything in step, for N = 10, 40 and 90 Q_ logical networks (the whole command,
  start-up and sign-on included).
- With --watch running: from a logical network added in the engine to its Quantum
  network existing, and to its profile carrying the network's id (median and max of
  --runs).

Neutron 29 (API, RPC server, Open vSwitch agent, MariaDB, RabbitMQ) runs in a private
namespace as in the tests; it needs the .venv-neutron of `tools/bootstrap --test`.
Run as root from the checkout: python3 bench/engine_sync.py [--runs N]
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import List

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from engine_standin import EngineStandin, self_signed  # noqa: E402
from neutron_stack import NeutronStack  # noqa: E402
from relay import Relay  # noqa: E402

from tools import without_openrc  # noqa: E402


def _seconds(values: List[float]) -> str:
    return f"median {statistics.median(values):6.2f} s, max {max(values):6.2f} s"


def _sync(env, *args: str) -> float:
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "qhook.cli", "engine", "sync", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    took = time.perf_counter() - began
    assert done.returncode == 0, done.stderr
    return took


def _until(ready, timeout: float = 30) -> float:
    began = time.perf_counter()
    while not ready():
        if time.perf_counter() - began > timeout:
            raise AssertionError("not within 30 s")
        time.sleep(0.01)
    return time.perf_counter() - began


def _properties(engine: EngineStandin, network: str) -> dict:
    return engine.profiles(network)[0]["custom_properties"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    venv = Path(os.environ.get("QHOOK_NEUTRON_VENV", REPO / ".venv-neutron"))
    work = Path(tempfile.mkdtemp(prefix="qhook-bench-sync-"))
    stack = NeutronStack(work / "neutron", venv, f"qhook-bench-sync-{os.getpid()}")
    stack.start()
    relay = engine = None
    try:
        relay = Relay(str(stack.dir / "api.sock"))
        cert, key = self_signed(work)
        engine = EngineStandin(password="bench", tls=(cert, key)).start()
        data_center = engine.add_data_center("Default")
        engine.define_custom_properties(("plugin", "q_network_id", "mtu"))
        project = uuid.uuid4().hex
        quota = {"quota": {"network": -1}}  # Neutron's default is 100 a project
        stack.api("PUT", f"/v2.0/quotas/{project}", quota)
        conf = work / "engine.conf"
        conf.write_text(
            f"[quantum]\nurl = {relay.url}\nproject_id = {project}\n"
            f"[ovirt]\nurl = {engine.url}\nusername = admin@internal\npassword = bench\n"
            f"ca_file = {cert}\nstate_file = {work}/records.json\nresync = 600\n"
        )
        os.chmod(conf, 0o600)
        env = without_openrc(QHOOK_CONFIG=str(conf))
        made: List[str] = []
        print("-- one pass (the whole command)")
        for count in (10, 40, 90):  # the test stack has 100 VLANs for project networks
            while len(made) < count:
                made.append(engine.add_network(f"Q_bench{len(made)}", data_center, mtu=1400))
            first = _sync(env)
            steady = [_sync(env) for _ in range(3)]
            print(f"   {count:>3} networks: first pass {first:6.2f} s, in step {_seconds(steady)}")
        for network in made:
            engine.remove_network(network)
        _sync(env)  # deletes them all

        watcher = subprocess.Popen(
            [sys.executable, "-m", "qhook.cli", "engine", "sync", "--watch"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            while not (watcher.stdout.readline() or "watching").startswith("watching"):
                pass
            to_network, to_profile = [], []
            for index in range(args.runs):
                name = f"Q_watch{index}"
                began = time.perf_counter()
                logical = engine.add_network(name, data_center)
                path = f"/v2.0/networks?name={name}"
                _until(lambda path=path: stack.api("GET", path)["networks"])
                to_network.append(time.perf_counter() - began)
                _until(lambda net=logical: "q_network_id" in _properties(engine, net))
                to_profile.append(time.perf_counter() - began)
            print(f"-- --watch, from a logical network added in the engine ({args.runs} runs)")
            print(f"   to its Quantum network   {_seconds(to_network)}")
            print(f"   to its vNIC profile set  {_seconds(to_profile)}")
        finally:
            watcher.terminate()
            watcher.wait(timeout=20)
    finally:
        if engine is not None:
            engine.stop()
        if relay is not None:
            relay.stop()
        stack.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
