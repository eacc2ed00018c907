# SPDX-License-Identifier: GPL-2.0-or-later
"""VDSM's hook contract through the real scripts: untouched when idle, atomic when writing."""

import io
import os

import pytest
from domains import EXAMPLE, load_fixture, seed_properties, set_vnic_properties, to_bytes
from lxml import etree

from qhook.vdsm import contract
from qhook.vdsm.contract import run
from tools import ERROR_PREFIX

DISK = b'<disk type="file" device="disk"><source file="/x"/><target dev="vda"/></disk>'
PLAIN_NIC = b'<interface type="bridge"><mac address="00:1a:4a:16:01:57"/></interface>'


def _untouched(hook, point, data, env, tmp_path, extra=None):
    path = tmp_path / "hook-data"
    path.write_bytes(data)
    before = os.stat(path)
    result = hook(point, path, dict(env, **(extra or {})))
    after = os.stat(path)
    assert result.returncode == 0, result.stderr
    assert path.read_bytes() == data
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    return result


def test_device_hook_leaves_other_devices_untouched(hook, env, tmp_path):
    quantum = seed_properties("openvswitch")
    _untouched(hook, "before_device_create", DISK, env, tmp_path, quantum)
    _untouched(hook, "before_device_create", PLAIN_NIC, env, tmp_path)
    hostdev = b'<interface type="hostdev"><mac address="00:1a:4a:16:01:57"/></interface>'
    result = _untouched(hook, "before_device_create", hostdev, env, tmp_path, quantum)
    assert result.stderr.startswith(ERROR_PREFIX + "warning: before_device_create: vNIC ")


@pytest.mark.parametrize("fixture", ["vm_hibernated.xml", "domain.xml", "testSRiovVm.xml"])
def test_vm_hook_leaves_a_domain_without_quantum_vnics_untouched(hook, fixture, env, tmp_path):
    result = _untouched(hook, "before_vm_start", to_bytes(load_fixture(fixture)), env, tmp_path)
    assert result.stderr == ""


def test_rewritten_file_is_replaced_whole_keeping_its_mode(hook, env, tmp_path):
    (tmp_path / "data").mkdir()
    path = tmp_path / "data" / "hook-data"
    path.write_bytes(EXAMPLE.read_bytes())
    os.chmod(path, 0o600)
    result = hook("before_vm_start", path, env)
    assert result.returncode == 0, result.stderr
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    assert [p.name for p in path.parent.iterdir()] == ["hook-data"]  # no temporary left
    out = etree.fromstring(path.read_bytes())
    types = [i.get("type") for i in out.find("devices").findall("interface")]
    assert types == ["ethernet", "ethernet", "ethernet", "bridge"]
    # The second run finds nothing to do and leaves the file alone.
    again = tmp_path / "again"
    again.mkdir()
    _untouched(hook, "before_vm_start", path.read_bytes(), env, again)
    assert hook("after_vm_destroy", path, env).returncode == 0


@pytest.mark.parametrize("point", ["after_vm_destroy", "after_vm_migrate_destination"])
def test_after_hooks_never_fail_the_operation(hook, point, env, tmp_path):
    domain = load_fixture("vm_hibernated.xml")
    set_vnic_properties(domain, "00:1a:4a:16:01:00", seed_properties("openvswitch"))
    if point == "after_vm_destroy":  # nothing was plugged: nothing to do, no complaint
        assert _untouched(hook, point, to_bytes(domain), env, tmp_path).stderr == ""
    _untouched(hook, point, b"", env, tmp_path)
    bad = load_fixture("vm_hibernated.xml")
    set_vnic_properties(bad, "00:1a:4a:16:01:00", {"plugin": "nope"})
    result = _untouched(hook, point, to_bytes(bad), env, tmp_path)
    assert result.stderr.startswith(ERROR_PREFIX + f"warning: {point}: vNIC 00:1a:4a:16:01:00")


def test_unreadable_data_file_is_one_line(hook, env, tmp_path):
    result = hook("before_vm_start", tmp_path, env)
    assert result.returncode == 2
    assert result.stderr == (
        f"{ERROR_PREFIX}before_vm_start: cannot read {tmp_path}: Is a directory\n"
    )


def test_unknown_config_keys_warn_but_the_hook_works(hook, env, configure, config_path, tmp_path):
    configure(plug="libvirt", future_knob="1")
    path = tmp_path / "hook-data"
    path.write_bytes(EXAMPLE.read_bytes())
    result = hook("before_vm_start", path, env)
    assert result.returncode == 0
    assert result.stderr == (
        f"{ERROR_PREFIX}warning: before_vm_start: {config_path}: "
        "unknown key future_knob in [ovs] ignored\n"
    )
    assert b'<virtualport type="openvswitch">' in path.read_bytes()
    assert hook("after_vm_destroy", path, env).returncode == 0


def test_a_bug_ends_in_one_line_not_a_traceback(tmp_path):
    """The contract wrapper turns any exception into exit 2 and one line."""

    def broken(context):
        raise KeyError("boom\nsecond line")

    err = io.StringIO()
    code = run("before_vm_start", broken, env={"QHOOK_CONFIG": str(tmp_path / "none")}, stderr=err)
    assert code == 2
    assert err.getvalue() == (
        "vdsm-hook-quantum: before_vm_start: internal error: KeyError: 'boom\\nsecond line'\n"
    )


def test_the_temporary_file_is_new_private_and_of_its_own_name(tmp_path):
    """What write_data writes first: as tempfile.mkstemp would make it (without tempfile)."""
    made = []
    for _ in range(3):
        fd, name = contract._create_temporary(str(tmp_path))
        os.close(fd)
        made.append(name)
    assert len(set(made)) == 3
    for name in made:
        assert os.path.dirname(name) == str(tmp_path)
        assert os.path.basename(name).startswith(".qhook-")
        assert oct(os.stat(name).st_mode & 0o777) == "0o600"
