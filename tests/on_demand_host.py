# SPDX-License-Identifier: GPL-2.0-or-later
"""A hypervisor host whose hooks make ports on demand in the tests' real Neutron."""

import os
import uuid
from pathlib import Path

from qhook.lab.sandbox import OvsSandbox
from qhook.lab.vdsm_emulator import VdsmEmulator
from tools import HOOKS_DIR, hook_env

PROJECT = uuid.uuid4().hex
API = "http://127.0.0.1:9696"  # in each host's namespace (host B's through a relay)


class Host:
    """A hypervisor host: its Open vSwitch, its agent's host id, VDSM running the hooks."""

    def __init__(self, directory: Path, ovs: OvsSandbox, agent: str, url: str = API):
        self.ovs = ovs
        self.agent = agent
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.settings = directory / "quantum-api.conf"
        self.settings.write_text(f"[quantum]\nurl = {url}\nproject_id = {PROJECT}\ntimeout = 10\n")
        os.chmod(self.settings, 0o600)  # only root may read Quantum's settings
        self.state = directory / "state"
        self.config = directory / "quantum.conf"
        self.write_config()
        self.vdsm = VdsmEmulator(
            HOOKS_DIR, hook_env({"QHOOK_CONFIG": str(self.config)}), wrapper=ovs.netns_exec
        )

    def write_config(self, budget: float = 20, wait: bool = True, bridge: str = "br-int") -> None:
        self.config.write_text(
            f"[ovs]\nconnection = {self.ovs.connection}\ntimeout = 5\n"
            f"integration_bridge = {bridge}\n"
            f"[wiring]\nwait = {'yes' if wait else 'no'}\ntimeout = 60\n"
            "on_timeout = fail\n"
            f"[host]\nagent_host = {self.agent}\nstate_dir = {self.state}\n"
            f"[on_demand]\nsettings = {self.settings}\ntimeout = {budget:g}\n"
        )

    def run(self, point: str, data: bytes, vm_id: str, **properties: str):
        return self.vdsm.run_point(point, data, properties, vm_id=vm_id)
