# SPDX-License-Identifier: GPL-2.0-or-later
"""The package "installed" into a temporary tree the way the RPM lays it out (system
python3, hooks, helper, configuration), with the sudoers rule rendered from
packaging/sudoers for that tree's helper: hooks run as `vdsm`, root work through sudo."""

import contextlib
import json
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator, Sequence, Tuple

import pytest

from qhook import install
from qhook.lab.vdsm_emulator import VdsmEmulator
from qhook.vdsm.points import HOOK_POINTS
from tools import REPO, hook_env, require_tool

PACKAGED_HELPER = "/usr/libexec/vdsm-hook-quantum/qhook-privileged"
SYSTEM_PYTHON = "/usr/bin/python3"


def _helper_script(site: Path, config: Path) -> str:
    """The helper as an installer writes it: -I, its configuration fixed in the script
    (here also where the tree's qhook is, which the RPM's system python3 has built in)."""
    return (
        f"#!{SYSTEM_PYTHON} -I\nimport sys\nsys.path.insert(0, {str(site)!r})\n"
        f"from qhook.host.helper import main\nsys.exit(main(config_path={str(config)!r}))\n"
    )


@contextlib.contextmanager
def installed_host(
    connection: str,
    host_settings: str = "",
    extra_config: str = "",
    ovs_settings: str = "timeout = 5\n",
    wiring_settings: str = "wait = no\n",
) -> Iterator[SimpleNamespace]:
    """The installed tree, its configuration naming this Open vSwitch (ovs_settings go into
    [ovs], host_settings into [host], wiring_settings into [wiring], extra_config after),
    and the sudoers rule in place until the end."""
    for tool in ("sudo", "visudo", "runuser"):
        require_tool(tool)
    try:
        vdsm_user = pwd.getpwnam("vdsm")
    except KeyError:
        pytest.fail("the user vdsm must exist (tools/bootstrap adds it)")
    probe = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import lxml, requests"], capture_output=True, check=False
    )
    assert probe.returncode == 0, "the system python3 needs python3-lxml and python3-requests"
    root = Path(tempfile.mkdtemp(prefix=f"qhook-host-{os.getpid()}-"))
    os.chmod(root, 0o755)
    site = root / "site"
    shutil.copytree(REPO / "qhook", site / "qhook", ignore=shutil.ignore_patterns("__pycache__"))
    install.write_tree(root / "hooks", HOOK_POINTS, SYSTEM_PYTHON)
    helper = root / "libexec" / "qhook-privileged"
    helper.parent.mkdir()
    (root / "etc").mkdir()
    config = root / "etc" / "quantum.conf"
    helper.write_text(_helper_script(site, config))
    helper.chmod(0o755)
    unlisted = root / "libexec" / "not-in-sudoers"
    unlisted.write_text(_helper_script(site, config))
    unlisted.chmod(0o755)
    config.write_text(
        f"[ovs]\nconnection = {connection}\nhybrid_plug = no\n{ovs_settings}"
        f"[host]\nhelper = {helper}\n"
        f"{host_settings}[wiring]\n{wiring_settings}{extra_config}"
    )
    config.chmod(0o644)
    data = root / "data"
    data.mkdir()
    os.chown(data, vdsm_user.pw_uid, vdsm_user.pw_gid)
    rule = (REPO / "packaging" / "sudoers").read_text().replace(PACKAGED_HELPER, str(helper))
    staged = root / "sudoers"
    staged.write_text(rule)
    checked = subprocess.run(["visudo", "-cf", str(staged)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    sudoers = Path(f"/etc/sudoers.d/qhook-test-{os.getpid()}-{secrets.token_hex(3)}")
    shutil.copy(staged, sudoers)
    sudoers.chmod(0o440)
    try:
        yield SimpleNamespace(
            root=root,
            site=site,
            hooks=root / "hooks",
            helper=helper,
            unlisted=unlisted,
            config=config,
            data=data,
        )
    finally:
        sudoers.unlink()
        shutil.rmtree(root)


def emulator_as_vdsm(installed: SimpleNamespace, wrapper: Sequence[str], config=None):
    """VDSM running the installed tree's hooks as vdsm, inside `wrapper` (a netns)."""
    env = hook_env(
        {"QHOOK_CONFIG": str(config or installed.config), "PYTHONPATH": str(installed.site)}
    )
    return VdsmEmulator(installed.hooks, env, wrapper=wrapper, run_as="vdsm")


def as_vdsm(
    wrapper: Sequence[str], *command: str, stdin: bytes = b"", timeout: float = 60
) -> subprocess.CompletedProcess:
    """Run a command as vdsm, inside `wrapper` (a netns)."""
    return subprocess.run(
        [*wrapper, "runuser", "-u", "vdsm", "--", *command],
        input=stdin,
        capture_output=True,
        timeout=timeout,
        check=False,
    )


def helper_as_vdsm(
    installed: SimpleNamespace, wrapper: Sequence[str], request, *arguments: str
) -> Tuple[int, object, str]:
    """What vdsm gets from `sudo -n HELPER ARGUMENTS < request` (a dict is sent as JSON):
    (exit code, the JSON answer or None, stderr)."""
    data = request if isinstance(request, bytes) else json.dumps(request).encode()
    done = as_vdsm(wrapper, "sudo", "-n", str(installed.helper), *arguments, stdin=data)
    try:
        answer = json.loads(done.stdout.decode() or "null")
    except ValueError:
        answer = done.stdout.decode(errors="replace")
    return done.returncode, answer, done.stderr.decode(errors="replace")


def attachment_request(host_id: str, mac: str, **extra) -> dict:
    """One attachment of a plug, repair or move request, as the hooks send it."""
    return {
        "host_id": host_id,
        "mac": mac,
        "plugin": "openvswitch",
        "multiqueue": False,
        "mtu": None,
        "network_id": None,
        "mirror": False,
        "tap": None,
        "decided": False,
        **extra,
    }
