# SPDX-License-Identifier: GPL-2.0-or-later
"""Shared fixtures: a private Open vSwitch in its own network namespace (the "host"),
and a VDSM-like runner that runs the checkout's hook scripts inside it."""

import os
import secrets
from pathlib import Path
from typing import Dict, Optional

import pytest
from frames import ETHERTYPE
from keystone_stack import keystone_in_front_of
from leaks import HostSnapshot
from neutron_stack import HOST_B, NeutronStack
from relay import Relay

from qhook.lab.sandbox import OvnSandbox, OvsSandbox
from qhook.lab.vdsm_emulator import VdsmEmulator
from tools import HOOKS_DIR, REPO, hook_env, require_program, require_tool, run_hook


@pytest.fixture(scope="session", autouse=True)
def host_left_as_found(tmp_path_factory):
    """A test run leaves the host as it found it: set up before every other fixture and
    checked after every other is gone, it fails the run naming what was left."""
    before = HostSnapshot.take()
    yield
    left = HostSnapshot.take().left_since(before, tmp_path_factory.getbasetemp())
    if left:
        pytest.fail(f"the test run left {len(left)} thing(s): {'; '.join(left)}", pytrace=False)


@pytest.fixture(scope="session")
def ovs(tmp_path_factory):
    """ovsdb-server + ovs-vswitchd (userspace datapath) with br-int, in a private netns."""
    for tool in ("ovsdb-server", "ovs-vswitchd", "ovs-vsctl", "ip"):
        require_tool(tool)
    name = f"qhook-test-{os.getpid()}-{secrets.token_hex(3)}"
    sandbox = OvsSandbox(tmp_path_factory.mktemp("ovs"), name).start()
    yield sandbox
    sandbox.stop()


@pytest.fixture
def config_path(tmp_path):
    """Where the configuration the hooks read lives."""
    return tmp_path / "quantum.conf"


@pytest.fixture
def configure(config_path, ovs):
    """Write the [ovs] section (pointing at the sandbox) with the settings given."""

    def write(extra: str = "", wiring: Optional[Dict[str, str]] = None, **settings: str) -> None:
        # No binding to read here: plugged straight, as an operator who said so.
        values = {"connection": ovs.connection, "timeout": "5", "hybrid_plug": "no", **settings}
        lines = "".join(f"{key} = {value}\n" for key, value in values.items())
        # No agent runs in most tests: they do not wait for one unless they ask to.
        waiting = "".join(f"{k} = {v}\n" for k, v in (wiring or {"wait": "no"}).items())
        config_path.write_text(f"[ovs]\n{lines}[wiring]\n{waiting}{extra}")

    write()
    return write


@pytest.fixture
def env(config_path, configure):
    return hook_env({"QHOOK_CONFIG": str(config_path)})


@pytest.fixture
def vdsm(env, ovs):
    """VDSM's hook runner, emulated, over hooks/ of this checkout, inside the sandbox."""
    return VdsmEmulator(HOOKS_DIR, env, wrapper=ovs.netns_exec)


@pytest.fixture
def hook(ovs):
    """Run one of our hook scripts on a data file inside the sandbox."""

    def run(point, data_file, env):
        return run_hook(point, data_file, env, ovs.netns_exec)

    return run


@pytest.fixture
def forwarding(ovs):
    """Be the agent: br-int (fail-mode secure) forwards our test frames, nothing else."""
    ovs.ofctl("add-flow", f"priority=1,dl_type={ETHERTYPE},actions=normal")
    yield
    ovs.ofctl("del-flows", f"dl_type={ETHERTYPE}")


@pytest.fixture(scope="module")
def ovn_host(tmp_path_factory):
    """A host whose agent is OVN: Open vSwitch plus NB/SB, ovn-northd, ovn-controller."""
    for tool in ("ovn-northd", "ovn-controller", "ovn-nbctl"):
        require_tool(tool)
    ovs = OvsSandbox(
        tmp_path_factory.mktemp("ovn-host"), f"qhook-ovn-{os.getpid()}-{secrets.token_hex(3)}"
    ).start()
    try:
        ovn = OvnSandbox(ovs).start()
        ovn.nbctl("ls-add", "tenant")
        yield ovs, ovn
        ovn.stop()
    finally:
        ovs.stop()


NEUTRON_VENV = Path(os.environ.get("QHOOK_NEUTRON_VENV", REPO / ".venv-neutron"))


@pytest.fixture(scope="session")
def neutron(tmp_path_factory):
    require_program(NEUTRON_VENV / "bin" / "neutron-openvswitch-agent", "Neutron")
    stack = NeutronStack(
        tmp_path_factory.mktemp("neutron"),
        NEUTRON_VENV,
        f"qhook-neutron-{os.getpid()}-{secrets.token_hex(3)}",
    )
    stack.start()
    yield stack
    stack.stop()


@pytest.fixture(scope="session")
def host_b(neutron):
    """A second hypervisor host on the same Neutron: its own Open vSwitch in a namespace of
    its own and its own neutron-openvswitch-agent (host HOST_B), for migrations."""
    host = neutron.add_host(HOST_B)
    yield host
    neutron.remove_host(HOST_B)


@pytest.fixture(scope="session")
def api(neutron):
    """The real Neutron API (noauth) at an http://127.0.0.1:PORT address."""
    relay = Relay(str(neutron.dir / "api.sock"))
    yield relay.url
    relay.stop()


@pytest.fixture(scope="session")
def keystone(neutron, tmp_path_factory):
    """A real Keystone with a second Neutron API server (same database) behind it."""
    require_program(NEUTRON_VENV / "bin" / "keystone-manage", "Keystone")
    both = keystone_in_front_of(neutron, tmp_path_factory.mktemp("keystone"), NEUTRON_VENV)
    yield both
    both.stop()
