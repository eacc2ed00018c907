# SPDX-License-Identifier: GPL-2.0-or-later
"""ovirt-provider-ovn, oVirt's own Neutron-API provider over OVN, run as a real peer.

No package registry ships it: its public source (GPL-2.0) is kept beside the project in
../shared/peers/ovirt-provider-ovn (or $QHOOK_PEERS), with how to run it. A test that
needs it is skipped, in one line, where that folder is not; its dependencies (ovsdbapp,
netaddr, requests) come from PyPI, pinned in tests/requirements-provider.txt.

It runs in the test's own namespace on 127.0.0.1 (its Neutron API and its Keystone
v2.0 stand-in), over the northbound database of an OvnSandbox; relays make both
answer on 127.0.0.1 inside the sandbox's namespace too, where the hooks run."""

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest
from netns_relay import NetnsRelay

from qhook.lab.sandbox import OvnSandbox
from tools import REPO

PEERS = Path(os.environ.get("QHOOK_PEERS", REPO.parent / "shared" / "peers"))
PEER = PEERS / "ovirt-provider-ovn"
VENV = Path(os.environ.get("QHOOK_PROVIDER_VENV", REPO / ".venv-provider"))


def require_provider() -> None:
    """Skip (one line) where the peer or its virtualenv is missing; CI has both."""
    if not (PEER / "run" / "launch.py").exists():
        pytest.skip(f"ovirt-provider-ovn is not beside the project ({PEER} is missing)")
    if not (VENV / "bin" / "python").exists():
        message = f"no ovirt-provider-ovn virtualenv in {VENV} (tools/bootstrap --test)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ProviderStack:
    """The provider over this OVN; binds_host: its ovs-version-2.9 setting (true: it
    stores binding:host_id as OVN's requested-chassis and answers it back)."""

    def __init__(
        self, directory: Path, ovn: OvnSandbox, binds_host: bool, token_seconds: int = 360000
    ):
        self.dir = Path(directory)
        self.ovn = ovn
        self.binds_host = binds_host
        self.token_seconds = token_seconds  # how long its Keystone stand-in's tokens last
        self.neutron_port = _free_port()
        self.keystone_port = _free_port()
        self.process: Optional[subprocess.Popen] = None
        self.relays: List[NetnsRelay] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.neutron_port}"

    @property
    def auth_url(self) -> str:
        return f"http://127.0.0.1:{self.keystone_port}/v2.0"

    def start(self) -> "ProviderStack":
        require_provider()
        self.dir.mkdir(parents=True, exist_ok=True)
        conf = (PEER / "run" / "ovirt-provider-ovn.conf.in").read_text()
        conf = conf.replace("@NB_REMOTE@", self.ovn.db("nb"))
        conf = conf.replace("@NEUTRON_PORT@", str(self.neutron_port))
        conf = conf.replace("@KEYSTONE_PORT@", str(self.keystone_port))
        conf = conf.replace(
            "ovs-version-2.9=false", f"ovs-version-2.9={'true' if self.binds_host else 'false'}"
        )
        conf = conf.replace("auth-token-timeout=360000", f"auth-token-timeout={self.token_seconds}")
        (self.dir / "provider.conf").write_text(conf)
        logger = (PEER / "run" / "logger.conf.in").read_text()
        (self.dir / "logger.conf").write_text(logger.replace("@LOG_FILE@", str(self.dir / "log")))
        with open(self.dir / "provider.out", "wb") as out:
            self.process = subprocess.Popen(
                [
                    str(VENV / "bin" / "python"),
                    str(PEER / "run" / "launch.py"),
                    str(self.dir / "provider.conf"),
                    str(self.dir / "logger.conf"),
                ],
                cwd=self.dir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
            )
        try:
            self._wait_until_it_answers()
            for port in (self.neutron_port, self.keystone_port):
                self.relays.append(NetnsRelay(self.ovn.ovs.name, port, to_port=port))
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_until_it_answers(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.api("GET", "/v2.0/networks")
                return
            except (OSError, urllib.error.URLError):
                assert self.process is not None
                if self.process.poll() is not None or time.monotonic() > deadline:
                    output = (self.dir / "provider.out").read_text()[-2000:]
                    raise RuntimeError(f"ovirt-provider-ovn did not start: {output}") from None
                time.sleep(0.1)

    def api(self, method: str, path: str, body: Optional[Dict[str, Any]] = None) -> Any:
        """A call of its Neutron API (any token will do: its auth is NoAuthPlugin)."""
        request = urllib.request.Request(
            self.url + path,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "X-Auth-Token": "test"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            text = response.read()
        return json.loads(text) if text else None

    def stop(self) -> None:
        for relay in self.relays:
            relay.stop()
        self.relays = []
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self.process = None
