# SPDX-License-Identifier: GPL-2.0-or-later
"""Least privilege: the hooks run as `vdsm`, root work goes through the one helper that
the package's sudoers rule allows, and that helper refuses whatever is not ours.

The package is "installed" into a temporary tree the way the RPM lays it out (system
python3, hooks, helper), the sudoers rule is rendered from packaging/sudoers with that
tree's helper path, and everything runs inside the Open vSwitch sandbox's netns."""

import json
import os
import pwd
import subprocess
import time

import hoststate
import pytest
from domains import quantum_vm, seed_properties, to_bytes
from installed_host import (
    as_vdsm,
    attachment_request,
    emulator_as_vdsm,
    helper_as_vdsm,
    installed_host,
)

from qhook.lab.vdsm_emulator import HookFailed
from tools import ERROR_PREFIX, REPO, error_lines, hook_env, require_tool


@pytest.fixture(scope="module")
def installed(ovs):
    with installed_host(ovs.connection) as host:
        yield host


def _emulator(installed, ovs, config=None):
    return emulator_as_vdsm(installed, ovs.netns_exec, config)


def _as_vdsm(ovs, *command, stdin=b""):
    return as_vdsm(ovs.netns_exec, *command, stdin=stdin)


def _helper(installed, ovs, request):
    return helper_as_vdsm(installed, ovs.netns_exec, request)


def test_the_packaged_sudoers_rule_passes_visudo():
    result = subprocess.run(
        [require_tool("visudo"), "-cf", str(REPO / "packaging" / "sudoers")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_vm_lives_and_dies_with_the_hooks_running_as_vdsm(installed, ovs):
    domain = quantum_vm(
        [seed_properties("openvswitch"), seed_properties("linuxbridge"), seed_properties("ovn")]
    )
    taps = ["tap" + e.text[:11] for e in domain.iter("{http://ovirt.org/vm/1.0}q_port_id")]
    vdsm = _emulator(installed, ovs)
    started = vdsm.start_vm(to_bytes(domain), data_dir=str(installed.data))
    assert not any(error_lines(run.stderr) for run in started.runs)
    links, rows = hoststate.links(ovs), hoststate.ovs_interfaces(ovs)
    assert set(taps) <= set(links)
    assert rows[taps[0]]["external_ids"]["vdsm-hook-quantum"] == "owned"
    # The last XML also names a device that is not a tap of ours: it must not matter.
    last = started.domain_xml.replace(
        b"</devices>",
        b'<interface type="ethernet"><target dev="vnet7" managed="no"/></interface></devices>',
    )
    destroyed = vdsm.destroy_vm(last, data_dir=str(installed.data))
    assert (destroyed.failed, destroyed.stderr) == (False, "")
    assert not set(taps) & (set(hoststate.links(ovs)) | set(hoststate.ovs_interfaces(ovs)))


def test_vdsm_may_run_the_helper_and_nothing_else_as_root(installed, ovs):
    refused = _as_vdsm(ovs, "sudo", "-n", "/bin/true")
    assert refused.returncode != 0 and b"password is required" in refused.stderr
    listed = _as_vdsm(ovs, "sudo", "-n", "-l").stdout.decode()
    granted = listed.split("may run the following commands", 1)[1].splitlines()[1:]
    commands = [line.strip() for line in granted if line.strip()]
    assert commands == [f'(root) NOPASSWD: {installed.helper} ""'], listed
    # The helper itself cannot be made to run something else: it takes no command.
    code, answer, _ = _helper(installed, ovs, {"verb": "exec", "argv": ["/bin/sh"]})
    assert code == 2 and answer["ok"] is False and "unknown verb" in answer["error"]


def test_without_the_sudoers_rule_the_hook_fails_fast_and_says_how_to_fix_it(installed, ovs):
    config = installed.root / "etc" / "unlisted.conf"
    config.write_text(
        installed.config.read_text().replace(str(installed.helper), str(installed.unlisted))
    )
    domain = quantum_vm([seed_properties("linuxbridge")])
    started = time.monotonic()
    with pytest.raises(HookFailed) as failed:
        _emulator(installed, ovs, config).start_vm(to_bytes(domain), data_dir=str(installed.data))
    assert time.monotonic() - started < 20
    (line,) = error_lines(failed.value.run.stderr)
    assert line.startswith(
        f"{ERROR_PREFIX}before_vm_start: sudo -n did not run {installed.unlisted} as root (sudo: "
    ), line
    assert "/etc/sudoers.d/50_vdsm_hook_quantum must allow vdsm" in line
    assert not set(hoststate.links(ovs)) & {
        "tap" + e.text[:11] for e in domain.iter("{http://ovirt.org/vm/1.0}q_port_id")
    }


VM = "6a1c5e0b-7d64-4f0e-9a53-1f2b3c4d5e6f"
GOOD = attachment_request("8e5f2a1c-4b3d-4e6f-9a7b-1c2d3e4f5a6b", "02:00:00:00:bb:01")
REFUSED = {
    "not-json": (b"plug tap0 br-int", "the request is not JSON"),
    "huge": (b'{"verb": "plug", "vm": "' + b"a" * 300_000 + b'"}', "larger than"),
    "bridge-chosen-by-caller": (
        {"verb": "plug", "vm": VM, "attachments": [GOOD], "bridge": "br-phys"},
        "must have exactly the fields",
    ),
    "path-as-id": (
        {"verb": "plug", "vm": VM, "attachments": [dict(GOOD, host_id="../../x")]},
        "host_id: '../../x' is not a UUID",
    ),
    "option-as-mac": (
        {"verb": "plug", "vm": VM, "attachments": [dict(GOOD, mac="--help")]},
        "MAC address '--help' is not a MAC address",
    ),
    "other-plugin": (
        {"verb": "plug", "vm": VM, "attachments": [dict(GOOD, plugin="system")]},
        "unknown plugin 'system'",
    ),
    "mtu": (
        {"verb": "plug", "vm": VM, "attachments": [dict(GOOD, mtu=10**9)]},
        "is not a number from 68 to 65535",
    ),
    "mirror-without-network": (
        {"verb": "plug", "vm": VM, "attachments": [dict(GOOD, mirror=True)]},
        "only an Open vSwitch or OVN vNIC with a network id can mirror",
    ),
    "network-injection": (
        {"verb": "plug", "vm": VM, "attachments": [dict(GOOD, network_id="x' or '1")]},
        "network_id: \"x' or '1\" is not a UUID",
    ),
    "foreign-tap": (
        {"verb": "plug", "vm": VM, "attachments": [dict(GOOD, tap="eth0")]},
        "'eth0' is not a tap name of this package",
    ),
    "move-many": (
        {"verb": "move", "vm": VM, "attachments": [GOOD, dict(GOOD, mac="02:00:00:00:bb:02")]},
        "a move request moves exactly one vNIC",
    ),
    "end-move-undo": (
        {"verb": "end_move", "vm": VM, "macs": ["02:00:00:00:bb:01"], "undo": "yes"},
        "undo is not true or false",
    ),
    "multiqueue": (
        {"verb": "plug", "vm": VM, "attachments": [dict(GOOD, multiqueue="yes")]},
        "multiqueue is not true or false",
    ),
    "too-many": ({"verb": "plug", "vm": VM, "attachments": [GOOD] * 65}, "at most 64"),
    "vm-injection": (
        {
            "verb": "remove",
            "vm": VM + "; reboot",
            "ports": [],
            "taps": [],
            "devices": [],
            "on_demand": [],
        },
        "is not a UUID",
    ),
    "foreign-name": (
        {"verb": "remove", "vm": VM, "ports": [], "taps": ["eth0"], "devices": [], "on_demand": []},
        "'eth0' is not a tap name of this package",
    ),
    "name-with-newline": (
        {
            "verb": "remove",
            "vm": VM,
            "ports": ["tap8e5f2a1c-4b\n"],
            "taps": [],
            "devices": [],
            "on_demand": [],
        },
        "is not a port name of this package",
    ),
    "remove-on-demand-not-a-mac": (
        {
            "verb": "remove",
            "vm": VM,
            "ports": [],
            "taps": [],
            "devices": [],
            "on_demand": ["--all"],
        },
        "'--all' is not a MAC address",
    ),
    "ports-mode": (
        {"verb": "ports", "vm": VM, "mode": "delete", "vnics": []},
        "mode 'delete' is not one of start, migrate, arrived",
    ),
    "ports-none": (
        {"verb": "ports", "vm": VM, "mode": "start", "vnics": []},
        "a ports request names one or more vNICs, each MAC once",
    ),
    "ports-twice": (
        {
            "verb": "ports",
            "vm": VM,
            "mode": "start",
            "vnics": [{"mac": "02:00:00:00:bb:01", "network_id": VM, "plugin": "openvswitch"}] * 2,
        },
        "each MAC once",
    ),
    "ports-network-injection": (
        {
            "verb": "ports",
            "vm": VM,
            "mode": "start",
            "vnics": [
                {
                    "mac": "02:00:00:00:bb:01",
                    "network_id": "?device_owner=x",
                    "plugin": "openvswitch",
                }
            ],
        },
        "network_id: '?device_owner=x' is not a UUID",
    ),
    "ports-extra-field": (
        {
            "verb": "ports",
            "vm": VM,
            "mode": "start",
            "vnics": [
                {
                    "mac": "02:00:00:00:bb:01",
                    "network_id": VM,
                    "device_owner": "x",
                    "plugin": "openvswitch",
                }
            ],
        },
        "a vNIC must have exactly the fields mac, network_id",
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_the_helper_refuses_what_is_not_well_formed(case, installed, ovs):
    request, fragment = REFUSED[case]
    data = request if isinstance(request, bytes) else json.dumps(request).encode()
    done = _as_vdsm(ovs, "sudo", "-n", str(installed.helper), stdin=data)
    answer = json.loads(done.stdout)
    assert done.returncode == 2 and answer["ok"] is False
    assert fragment in answer["error"], answer["error"]
    assert done.stderr.decode().count("\n") == 1 and "Traceback" not in done.stderr.decode()


def test_the_helper_never_touches_what_is_not_ours(installed, ovs):
    ovs.in_netns("ip", "tuntap", "add", "dev", "tapdeadbeef-00", "mode", "tap")
    ovs.vsctl("add-port", "br-int", "tapdeadbeef-01")
    try:
        code, answer, _ = _helper(
            installed,
            ovs,
            {
                "verb": "remove",
                "vm": VM,
                "ports": ["tapdeadbeef-00", "tapdeadbeef-01"],
                "taps": ["tapdeadbeef-00", "tapdeadbeef-01"],
                "devices": [],
                "on_demand": [],
            },
        )
        assert (code, answer) == (0, {"ok": True, "problems": [], "notes": []})
        assert "tapdeadbeef-00" in hoststate.links(ovs)
        assert "tapdeadbeef-01" in hoststate.ovs_interfaces(ovs)
        taken = dict(GOOD, host_id="deadbeef-0000-4000-8000-000000000000")
        code, answer, _ = _helper(
            installed, ovs, {"verb": "plug", "vm": VM, "attachments": [taken]}
        )
        assert code == 2
        assert (
            answer["error"] == "device tapdeadbeef-00 already exists and belongs to something else"
        )
        assert "vdsm-hook-quantum" not in hoststate.links(ovs)["tapdeadbeef-00"].get("ifalias", "")
    finally:
        ovs.in_netns("ip", "link", "delete", "tapdeadbeef-00")
        ovs.vsctl("del-port", "tapdeadbeef-01")


def test_caps_are_read_through_the_helper_as_vdsm(installed, ovs):
    vdsm_user = pwd.getpwnam("vdsm")
    caps = installed.data / "caps.json"
    caps.write_text('{"cpuCores": "2"}')
    os.chown(caps, vdsm_user.pw_uid, vdsm_user.pw_gid)
    env = hook_env(
        {
            "QHOOK_CONFIG": str(installed.config),
            "PYTHONPATH": str(installed.site),
            "_hook_json": str(caps),
        }
    )
    done = subprocess.run(
        [
            *ovs.netns_exec,
            "runuser",
            "-u",
            "vdsm",
            "--",
            str(installed.hooks / "after_get_caps" / "50_quantum"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")
    ours = json.loads(caps.read_text())["vdsm_hook_quantum"]
    assert ours["ovs_reachable"] is True and "openvswitch" in ours["plugins"]
