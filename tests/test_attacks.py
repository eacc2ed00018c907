# SPDX-License-Identifier: GPL-2.0-or-later
"""The privilege boundary, attacked as the hook user. Each test is one attack that an
unprivileged `vdsm` can mount through the installed sudoers rule (packaging/sudoers, as
the RPM installs it), and asserts what matters on the host afterwards: the canary file
unchanged, the foreign port still on its bridge with its ids, the foreign tap's alias
unchanged, the root process gone within its bound; not just an exit code."""

import json
import os
import pwd
import shutil
import subprocess
import threading
import time
from pathlib import Path

import hoststate
import pytest
from domains import new_id
from installed_host import attachment_request, helper_as_vdsm, installed_host

from qhook.vocabulary import schema
from tools import holding_tap, qhook_on_host

CANARY = "root's file: nobody but root writes here\n"
SUDO_REFUSED = "a password is required"


@pytest.fixture(scope="module")
def host(ovs):
    with installed_host(ovs.connection) as installed:
        yield installed


@pytest.fixture
def canary(tmp_path):
    """A file of root's that no attack may change."""
    path = tmp_path / "canary"
    path.write_text(CANARY)
    yield path
    assert path.read_text() == CANARY, "an attack wrote into root's file"


def _vdsm_owned(path: Path) -> Path:
    user = pwd.getpwnam("vdsm")
    os.chown(path, user.pw_uid, user.pw_gid)
    return path


def _plug(vm: str, host_id: str, mac: str) -> dict:
    return {"verb": "plug", "vm": vm, "attachments": [attachment_request(host_id, mac)]}


def _remove(vm: str, names) -> dict:
    return {
        "verb": "remove",
        "vm": vm,
        "ports": list(names),
        "taps": list(names),
        "devices": [],
        "on_demand": [],
    }


def _tap(host_id: str) -> str:
    return "tap" + host_id[:11]


def _one_clear_line(answer, stderr: str) -> str:
    """The helper's refusal: JSON with ok false and one line on stderr, never a bug's."""
    assert isinstance(answer, dict) and answer["ok"] is False, answer
    assert stderr.count("\n") == 1 and "Traceback" not in stderr, stderr
    assert "internal error" not in answer["error"], answer["error"]
    return answer["error"]


# -- 1, 2: root's configuration is root's ----------------------------------------------


def test_no_argument_passes_sudo_so_no_race_can_choose_the_configuration(host, ovs):
    """The caller races a configuration of its own into place, for a few hundred tries:
    sudo runs the helper with no arguments only, so not one try gets a helper to read it."""
    evil = f"brq{new_id()[:8]}"
    ovs.add_bridge(evil)
    staged = host.data / "staged.conf"
    staged.write_text(
        f"[ovs]\nconnection = {ovs.connection}\nhybrid_plug = no\n"
        f"integration_bridge = {evil}\n[wiring]\nwait = no\n"
    )
    _vdsm_owned(staged)
    target = host.data / "race.conf"
    stop = threading.Event()

    def flip() -> None:
        while not stop.is_set():
            try:
                os.link(staged, target)
                os.unlink(target)
            except OSError:
                pass

    flipper = threading.Thread(target=flip)
    flipper.start()
    vm, port = new_id(), new_id()
    answers = set()
    try:
        for _ in range(300):
            code, answer, stderr = helper_as_vdsm(
                host, ovs.netns_exec, _plug(vm, port, "02:00:00:0a:00:01"), "--config", str(target)
            )
            answers.add((code, answer is None, SUDO_REFUSED in stderr))
    finally:
        stop.set()
        flipper.join()
    assert answers == {(1, True, True)}  # sudo refused every try; no helper ever answered
    assert hoststate.bridge_ports(ovs, evil) == set()
    assert _tap(port) not in hoststate.links(ovs)


@pytest.mark.parametrize("given", ["missing", "vdsm-owned", "root-owned"])
def test_a_configuration_named_by_the_caller_is_refused(host, ovs, tmp_path, given):
    """--config naming a missing file (the built-in defaults: br-int, the default socket),
    the caller's own file, or any of root's: sudo refuses; and the helper, were it
    reached with arguments, refuses them itself."""
    path = {
        "missing": tmp_path / "no-such.conf",
        "vdsm-owned": host.data / "mine.conf",
        "root-owned": host.config,
    }[given]
    if given == "vdsm-owned":
        path.write_text("[ovs]\nintegration_bridge = br-evil\n")
        _vdsm_owned(path)
    vm, port = new_id(), new_id()
    code, answer, stderr = helper_as_vdsm(
        host, ovs.netns_exec, _plug(vm, port, "02:00:00:0a:00:02"), "--config", str(path)
    )
    assert (code, answer) == (1, None) and SUDO_REFUSED in stderr
    # The helper itself, run with an argument (as root: as if a rule allowed them).
    direct = subprocess.run(
        [*ovs.netns_exec, str(host.helper), "--config", str(path)],
        input=json.dumps(_plug(vm, port, "02:00:00:0a:00:02")).encode(),
        capture_output=True,
        timeout=30,
        check=False,
    )
    error = _one_clear_line(json.loads(direct.stdout), direct.stderr.decode())
    assert error.startswith("usage: qhook-privileged < REQUEST (no arguments"), error
    assert _tap(port) not in hoststate.links(ovs)


def _root_helper(host, tmp_path: Path, config: Path) -> Path:
    """A helper installed (by root) with another configuration baked in."""
    helper = tmp_path / "helper"
    text = host.helper.read_text().replace(repr(str(host.config)), repr(str(config)))
    helper.write_text(text)
    helper.chmod(0o755)
    return helper


@pytest.mark.parametrize("flaw", ["missing", "vdsm-writable", "symlink-to-vdsm", "fifo"])
def test_root_reads_no_configuration_anyone_else_could_have_written(host, ovs, tmp_path, flaw):
    """What the installer baked in must be a real file of root's: missing, writable by
    vdsm, a link to vdsm's file, or a FIFO: one line at once, nothing done."""
    config = tmp_path / "etc" / "quantum.conf"
    config.parent.mkdir()
    mine = host.data / f"{flaw}.conf"
    mine.write_text("[ovs]\nintegration_bridge = br-evil\n")
    _vdsm_owned(mine)
    if flaw == "vdsm-writable":
        shutil.copy(host.config, config)
        _vdsm_owned(config)
    elif flaw == "symlink-to-vdsm":
        config.symlink_to(mine)
    elif flaw == "fifo":
        os.mkfifo(config, 0o600)
    helper = _root_helper(host, tmp_path, config)
    port = new_id()
    started = time.monotonic()
    done = subprocess.run(
        [*ovs.netns_exec, str(helper)],
        input=json.dumps(_plug(new_id(), port, "02:00:00:0a:00:03")).encode(),
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert time.monotonic() - started < 10
    error = _one_clear_line(json.loads(done.stdout), done.stderr.decode())
    assert error.startswith("the configuration: "), error
    assert {
        "missing": "does not exist",
        "vdsm-writable": "is not trusted",
        "symlink-to-vdsm": "is not trusted",
        "fifo": "is not a regular file",
    }[flaw] in error
    assert _tap(port) not in hoststate.links(ovs)


# -- 3: a name read back from Open vSwitch is never a path -------------------------------


def test_an_interface_name_from_open_vswitch_is_never_a_path(host, ovs, tmp_path, canary):
    """An Interface of ours named like a path, whose `ifalias` under it links to root's
    file: moving the vNIC, and putting it back, never write through the name."""
    trap = tmp_path / "trap"
    trap.mkdir()
    (trap / "ifalias").symlink_to(canary)
    vm, old, new, mac = new_id(), new_id(), new_id(), "02:00:00:0a:00:04"
    name = str(trap)
    ours = {"vdsm-hook-quantum": "owned", "vm-uuid": vm, "attached-mac": mac, "iface-id": old}
    hoststate.add_port(ovs, "br-int", name, **ours, **{"vdsm-hook-quantum-previous-iface-id": new})
    try:
        move = {"verb": "move", "vm": vm, "attachments": [attachment_request(new, mac)]}
        code, answer, stderr = helper_as_vdsm(host, ovs.netns_exec, move)
        assert code == 2
        assert "has no port of this package" in _one_clear_line(answer, stderr)
        for undo in (True, False):
            end = {"verb": "end_move", "vm": vm, "macs": [mac], "undo": undo}
            code, answer, _ = helper_as_vdsm(host, ovs.netns_exec, end)
            assert (code, answer) == (0, {"ok": True, "done": []})
        assert hoststate.ovs_interfaces(ovs)[name]["external_ids"]["iface-id"] == old
    finally:
        ovs.vsctl("del-port", name)


# -- 1: root's notes ---------------------------------------------------------------------


def test_root_keeps_no_notes_in_a_directory_others_can_write(ovs, api, tmp_path, canary):
    """[host] state_dir is a directory vdsm can write (misconfigured), with links planted
    at every name root might write a note under: refused before anything is written."""
    state = tmp_path / "state"
    state.mkdir()
    _vdsm_owned(state)
    for pid in range(os.getpid(), os.getpid() + 3000):
        (state / f"extensions.{pid}.tmp").symlink_to(canary)
    (state / "extensions.json").symlink_to(canary)
    settings = tmp_path / "quantum-api.conf"
    settings.write_text(f"[quantum]\nurl = {api}\nproject_id = {new_id()}\n")
    settings.chmod(0o600)
    with installed_host(
        ovs.connection,
        f"agent_host = qhook-attack\nstate_dir = {state}\n",
        f"[on_demand]\nsettings = {settings}\n",
    ) as installed:
        request = {
            "verb": "ports",
            "vm": new_id(),
            "mode": "start",
            "vnics": [
                {"mac": "02:00:00:0a:00:05", "network_id": new_id(), "plugin": "openvswitch"}
            ],
        }
        # In the host's namespace, where the API is: ports on demand touch no device.
        code, answer, stderr = helper_as_vdsm(installed, [], request)
    assert code == 2
    assert _one_clear_line(answer, stderr) == (
        f"[host] state_dir: {state} must be root's and mode 0700: chown root:root {state} "
        f"&& chmod 0700 {state}"
    )


# -- 3: foreign Open vSwitch ports --------------------------------------------------------


def _interface_where(ovs, name: str):
    """(the bridge holding the port of this name, its Interface's external_ids)."""
    bridge = ovs.vsctl("port-to-br", name).strip()
    return bridge, hoststate.ovs_interfaces(ovs)[name]["external_ids"]


@pytest.mark.parametrize("where", ["br-int", "another bridge"])
def test_a_foreign_port_with_the_vnics_ids_is_never_taken(host, ovs, where):
    """A Neutron DHCP port, an os-vif port on br-ex, ...: named like the vNIC's tap, with
    the iface-id and attached-mac the caller names, but not ours: the plug is refused, the
    port stays where it is with its ids, and the refusal names none of them."""
    bridge = "br-int" if where == "br-int" else f"brx{new_id()[:8]}"
    if bridge != "br-int":
        ovs.add_bridge(bridge)
    vm, port, mac = new_id(), new_id(), "02:00:00:0a:00:06"
    name = _tap(port)
    ids = {"iface-id": port, "attached-mac": mac, "owner": "neutron-dhcp"}
    hoststate.add_port(ovs, bridge, name, **ids)
    try:
        code, answer, stderr = helper_as_vdsm(host, ovs.netns_exec, _plug(vm, port, mac))
        assert code == 2
        error = _one_clear_line(answer, stderr)
        assert error == f"Open vSwitch port {name} already exists and belongs to something else"
        assert _interface_where(ovs, name) == (bridge, ids)
        assert name not in hoststate.links(ovs)
    finally:
        ovs.vsctl("del-port", name)


@pytest.fixture(scope="module")
def libvirt_host(ovs):
    """The same installed tree with [ovs] plug = libvirt: libvirt makes and plugs."""
    with installed_host(ovs.connection, ovs_settings="timeout = 5\nplug = libvirt\n") as installed:
        yield installed


def test_libvirt_plug_mode_never_clears_a_port_it_cannot_prove_is_the_vms(libvirt_host, ovs):
    """libvirt replaces whatever port has the tap's name: the hook lets it only for what
    libvirt made for this VM's vNIC (its vm-id), and refuses a foreign port of the name."""
    vm, port, mac = new_id(), new_id(), "02:00:00:0a:00:07"
    name = _tap(port)
    ids = {"iface-id": port, "attached-mac": mac}
    hoststate.add_port(ovs, "br-int", name, **ids)
    try:
        code, answer, stderr = helper_as_vdsm(libvirt_host, ovs.netns_exec, _plug(vm, port, mac))
        assert code == 2
        assert _one_clear_line(answer, stderr) == (
            f"Open vSwitch port {name} already exists and belongs to something else, and "
            "libvirt would replace it"
        )
        assert _interface_where(ovs, name) == ("br-int", ids)
        # What libvirt itself made for this VM's vNIC (a crash left it): libvirt's to
        # replace, so the start goes on, and the hook does not touch it.
        ovs.vsctl("set", "Interface", name, f"external_ids:vm-id={vm}")
        code, answer, _ = helper_as_vdsm(libvirt_host, ovs.netns_exec, _plug(vm, port, mac))
        assert (code, answer["ok"]) == (0, True), answer
        assert _interface_where(ovs, name) == ("br-int", {**ids, "vm-id": vm})
    finally:
        ovs.vsctl("del-port", name)


# -- 4: foreign taps ------------------------------------------------------------------------


def _foreign_tap(ovs, name: str, alias: str) -> None:
    ovs.in_netns("ip", "tuntap", "add", "dev", name, "mode", "tap")
    ovs.in_netns("ip", "link", "set", name, "alias", alias)


def test_a_foreign_tap_is_never_plugged_remarked_or_deleted(host, ovs, tmp_path):
    """A tap that is not ours, named like a vNIC's: repair adds no port for it; a move of
    our port on that name does not mark it; remove and root's boot-time cleanup leave it.
    The cleanup removes our port of that name and says why, truly."""
    vm, old, new, mac = new_id(), new_id(), new_id(), "02:00:00:0a:00:08"
    name = _tap(old)
    alias = "somebody else's tap"
    _foreign_tap(ovs, name, alias)
    try:
        repair = {"verb": "repair", "vm": vm, "attachments": [attachment_request(old, mac)]}
        code, answer, _ = helper_as_vdsm(host, ovs.netns_exec, repair)
        assert code == 0 and answer["repaired"] == []
        assert answer["problems"] == [f"device {name} of vNIC {mac} is not this VM's tap"]
        assert name not in hoststate.ovs_interfaces(ovs)

        # Our port of that name (its own tap gone), found by the move by VM and MAC.
        ours = {"vdsm-hook-quantum": "owned", "vm-uuid": vm, "attached-mac": mac}
        hoststate.add_port(ovs, "br-int", name, **ours, **{"iface-id": old})
        move = {"verb": "move", "vm": vm, "attachments": [attachment_request(new, mac)]}
        code, answer, stderr = helper_as_vdsm(host, ovs.netns_exec, move)
        assert code == 2
        assert _one_clear_line(answer, stderr) == (
            f"vNIC {mac}: device {name} is not this VM's tap of this package: not moved"
        )
        assert hoststate.links(ovs)[name]["ifalias"] == alias
        assert hoststate.ovs_interfaces(ovs)[name]["external_ids"]["iface-id"] == old

        code, answer, _ = helper_as_vdsm(host, ovs.netns_exec, _remove(new_id(), [name]))
        assert code == 0 and hoststate.links(ovs)[name]["ifalias"] == alias

        cleaned = qhook_on_host(ovs.netns_exec, host.config, "cleanup", "--grace", "0")
        assert cleaned.returncode == 0, cleaned.stderr
        assert f"removed OVS port {name} (the device of its name is not ours)" in cleaned.stdout
        assert f"removed tap {name}" not in cleaned.stdout
        assert hoststate.links(ovs)[name]["ifalias"] == alias
        assert name not in hoststate.ovs_interfaces(ovs)
    finally:
        ovs.in_netns("ip", "link", "delete", name)
        if name in hoststate.ovs_interfaces(ovs):
            ovs.vsctl("del-port", name)


# -- 5: another VM's objects ----------------------------------------------------------------


def test_another_running_vms_tap_and_port_are_never_taken(host, ovs):
    """VM B runs with its vNIC plugged (a process holds its tap, as QEMU does); VM A names
    B's vNIC id: refused, B's tap and port stay B's. Once B's tap is free (B crashed),
    the same plug is a takeover of a leftover, as before."""
    vm_a, vm_b, port, mac = new_id(), new_id(), new_id(), "02:00:00:0a:00:09"
    name = _tap(port)
    code, answer, _ = helper_as_vdsm(host, ovs.netns_exec, _plug(vm_b, port, mac))
    assert code == 0, answer
    try:
        before = hoststate.links(ovs)[name]["ifalias"]
        with holding_tap(ovs.netns_exec, name):
            code, answer, stderr = helper_as_vdsm(host, ovs.netns_exec, _plug(vm_a, port, mac))
            assert code == 2
            assert _one_clear_line(answer, stderr) == (
                f"device {name} is in use by another VM on this host"
            )
            assert hoststate.links(ovs)[name]["ifalias"] == before
            assert f" vm={vm_b} " in before
            assert hoststate.ovs_interfaces(ovs)[name]["external_ids"]["vm-uuid"] == vm_b
        code, answer, _ = helper_as_vdsm(host, ovs.netns_exec, _plug(vm_a, port, mac))
        assert code == 0, answer
        assert hoststate.ovs_interfaces(ovs)[name]["external_ids"]["vm-uuid"] == vm_a
    finally:
        for vm in (vm_a, vm_b):
            helper_as_vdsm(host, ovs.netns_exec, _remove(vm, [name]))
    assert name not in hoststate.links(ovs) and name not in hoststate.ovs_interfaces(ovs)


# -- 7, 8: bounded, and no bug's line from hostile input ----------------------------------


def _helpers_running(host) -> list:
    found = subprocess.run(
        ["pgrep", "-f", str(host.helper)], capture_output=True, text=True, check=False
    )
    return found.stdout.split()


def test_a_request_that_never_ends_is_given_up_within_the_bound(host, ovs, tmp_path):
    """The caller opens stdin and never closes it: the root process ends within
    READ_TIMEOUT with one line, and no helper is left running."""
    out, err = tmp_path / "out", tmp_path / "err"
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        caller = subprocess.Popen(
            [*ovs.netns_exec, "runuser", "-u", "vdsm", "--", "sudo", "-n", str(host.helper)],
            stdin=subprocess.PIPE,
            stdout=stdout,
            stderr=stderr,
        )
    started = time.monotonic()
    try:
        caller.stdin.write(b'{"verb": "plug", ')  # and never more, never closed
        caller.stdin.flush()
        caller.wait(timeout=schema.READ_TIMEOUT + 15)
    finally:
        caller.kill()
        caller.wait()
        caller.stdin.close()
    assert schema.READ_TIMEOUT - 1 < time.monotonic() - started < schema.READ_TIMEOUT + 10
    error = _one_clear_line(json.loads(out.read_text()), err.read_text())
    assert error == f"no whole request on standard input within {schema.READ_TIMEOUT:g} s"
    assert _helpers_running(host) == []


def test_a_fifo_named_as_configuration_never_blocks_root(host, ovs, tmp_path):
    """A FIFO of root's (such as /dev/initctl) named as the configuration: sudo refuses
    the argument at once, and no helper waits on the FIFO."""
    fifo = tmp_path / "initctl"
    os.mkfifo(fifo, 0o600)
    started = time.monotonic()
    code, answer, stderr = helper_as_vdsm(host, ovs.netns_exec, b"{}", "--config", str(fifo))
    assert (code, answer) == (1, None) and SUDO_REFUSED in stderr
    assert time.monotonic() - started < 10
    assert _helpers_running(host) == []


@pytest.mark.parametrize("depth", [10_000, 100_000])
def test_deeply_nested_json_is_one_clear_line(host, ovs, depth):
    code, answer, stderr = helper_as_vdsm(host, ovs.netns_exec, b"[" * depth + b"]" * depth)
    assert code == 2
    assert _one_clear_line(answer, stderr) == "the request is nested too deeply"


def test_a_request_larger_than_the_limit_is_refused_without_reading_it_all(host, ovs):
    data = b'{"verb": "plug", "vm": "' + b"a" * (schema.MAX_REQUEST_BYTES * 4) + b'"}'
    code, answer, stderr = helper_as_vdsm(host, ovs.netns_exec, data)
    assert code == 2
    assert "larger than" in _one_clear_line(answer, stderr)


def test_the_work_budget_ends_the_helper_even_in_the_middle_of_a_call():
    """The backstop behind every bounded call: once the budget is spent the helper gets
    OutOfTime wherever it is (its undo paths run), and is killed LAST_WORDS later."""
    import signal

    from qhook.host.helper import OutOfTime, _out_of_time

    previous = signal.getsignal(signal.SIGALRM)
    started = time.monotonic()
    try:
        with pytest.raises(OutOfTime):
            _out_of_time(0.2)
            time.sleep(5)
        assert 0.15 < time.monotonic() - started < 2
        assert signal.getsignal(signal.SIGALRM) == signal.SIG_DFL  # next: the kill
        assert 0 < signal.getitimer(signal.ITIMER_REAL)[0] <= 5
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
