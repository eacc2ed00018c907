# SPDX-License-Identifier: GPL-2.0-or-later
"""`qhook engine sync` against a stand-in of the oVirt engine's REST API (served over
TLS, read by the official SDK) and the tests' real Neutron: Q_ logical networks become
Quantum networks with a vNIC profile for ports on demand, follow renames and MTU changes,
and go away with their logical network once no port is left; what the sync did not make
is never changed."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid

import hoststate
import pytest
from domains import quantum_vm, to_bytes
from engine_standin import EngineStandin, self_signed
from neutron_stack import AGENT_HOST
from on_demand_host import Host

from tools import error_lines, qhook_command, without_openrc

pytest.importorskip("ovirtsdk4", reason="the oVirt engine SDK (ovirt-engine-sdk-python)")

OWNED = {"plugin", "q_network_id", "mtu"}
# What the engine's CustomDeviceProperties define for interfaces: the seed's properties
# and one another hook of the admin's uses (vdsm's macspoof hook).
DEFINED = ("plugin", "q_network_id", "q_port_id", "q_attachment_id", "mtu", "ifacemacspoof")
PASSWORD = "engine-secret"


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    """The engine's API over https, one data center, the seed's properties defined."""
    cert, key = self_signed(tmp_path_factory.mktemp("engine"))
    standin = EngineStandin(password=PASSWORD, tls=(cert, key)).start()
    standin.ca_file = cert
    standin.data_center = standin.add_data_center("Default")
    standin.define_custom_properties(DEFINED)
    yield standin
    standin.stop()


@pytest.fixture
def project():
    return uuid.uuid4().hex


@pytest.fixture
def settings(engine_settings, api, neutron):
    """Settings whose [quantum] is the tests' real Neutron; after the test, nothing of it
    is left there."""
    engine_settings(quantum_url=api)
    yield engine_settings
    _delete_this_runs_networks(neutron)


@pytest.fixture
def engine_settings(tmp_path, engine, project):
    """The engine machine's configuration file, as the RPM installs it (root's, 0640);
    its [quantum] reaches nothing until a test says where."""
    path = tmp_path / "engine.conf"
    quantum = ["http://127.0.0.1:1"]

    def write(quantum_url=None, **ovirt):
        quantum[0] = quantum_url or quantum[0]
        values = {
            "url": engine.url,
            "username": "admin@internal",
            "password": PASSWORD,
            "ca_file": engine.ca_file,
            "state_file": str(tmp_path / "state" / "engine-sync.json"),
            "resync": "600",
            "timeout": "5",
            **ovirt,
        }
        body = "".join(f"{key} = {value}\n" for key, value in values.items() if value is not None)
        path.write_text(
            f"[quantum]\nurl = {quantum[0]}\nproject_id = {project}\ntimeout = 10\n[ovirt]\n{body}"
        )
        os.chmod(path, 0o640)
        return path

    write()
    write.path = path
    write.state = tmp_path / "state" / "engine-sync.json"
    return write


@pytest.fixture
def sync(engine_settings):
    def run(*args, timeout=120):
        env = without_openrc(QHOOK_CONFIG=str(engine_settings.path))
        return qhook_command(env, "engine", "sync", *args, timeout=timeout)

    return run


RUN = uuid.uuid4().hex[:6]  # in every network name of this run


def _name(prefix="web"):
    return f"Q_{prefix}-{RUN}{uuid.uuid4().hex[:4]}"


def _delete_this_runs_networks(neutron):
    """No Quantum network of this run is left (nor its ports)."""
    for network in neutron.api("GET", "/v2.0/networks")["networks"]:
        if f"-{RUN}" in (network.get("name") or ""):
            for port in neutron.api("GET", f"/v2.0/ports?network_id={network['id']}")["ports"]:
                neutron.api("DELETE", f"/v2.0/ports/{port['id']}")
            neutron.api("DELETE", f"/v2.0/networks/{network['id']}")


def _quantum(neutron, name=None, network_id=None):
    if network_id:
        found = neutron.api("GET", f"/v2.0/networks?id={network_id}")["networks"]
    else:
        found = neutron.api("GET", f"/v2.0/networks?name={name}")["networks"]
    return found


def _profile(engine, network_id, name):
    return next(p for p in engine.profiles(network_id) if p["name"] == name)


def _ok(result):
    assert result.returncode == 0, result.stdout + result.stderr
    assert error_lines(result.stderr) == [], result.stderr
    return result.stdout.splitlines()


def test_a_new_q_network_gets_its_quantum_network_and_a_profile_for_ports_on_demand(
    engine, neutron, sync, settings
):
    name = _name()
    logical = engine.add_network(name, engine.data_center, mtu=1400)
    lines = _ok(sync())
    (network,) = _quantum(neutron, name)
    assert network["mtu"] == 1400
    assert (
        f"created Quantum network {name} {network['id']} for the logical network of data center "
        f"Default, MTU 1400" in lines
    )
    # The engine made the default profile (named as the network); the sync gave it the
    # seed's properties for ports on demand.
    profile = _profile(engine, logical, name)
    assert profile["custom_properties"] == {
        "plugin": "ovn",
        "q_network_id": network["id"],
        "mtu": "1400",
    }
    assert (
        f"corrected vNIC profile {name} of {name}: plugin (none) -> ovn; q_network_id (none) -> "
        f"{network['id']}; mtu (none) -> 1400" in lines
    )
    records = json.loads(settings.state.read_text())["networks"]
    assert records[network["id"]]["ovirt_id"] == logical
    assert oct(settings.state.stat().st_mode & 0o777) == "0o600"

    # Once in step, a pass changes nothing: the same network, the same profile.
    again = _ok(sync())
    assert not [line for line in again if name in line], again
    assert [n["id"] for n in _quantum(neutron, name)] == [network["id"]]
    assert _profile(engine, logical, name) == profile


def test_a_rename_and_an_mtu_change_are_followed(engine, neutron, settings, sync):
    name, renamed = _name(), _name("www")
    logical = engine.add_network(name, engine.data_center, mtu=1400)
    _ok(sync())
    (network,) = _quantum(neutron, name)
    engine.update_network(logical, name=renamed, mtu=1300)
    lines = _ok(sync())
    (now,) = _quantum(neutron, network_id=network["id"])
    assert (now["name"], now["mtu"]) == (renamed, 1300)
    assert (
        f"updated Quantum network {renamed} {network['id']}: name {name} -> {renamed}; mtu 1400 "
        f"-> 1300" in lines
    )
    # The engine renamed the default profile with the network; the sync corrected its MTU.
    (profile,) = engine.profiles(logical)
    assert profile["name"] == renamed
    assert profile["custom_properties"] == {
        "plugin": "ovn",
        "q_network_id": network["id"],
        "mtu": "1300",
    }
    assert f"corrected vNIC profile {renamed} of {renamed}: mtu 1400 -> 1300" in lines


def test_a_deleted_logical_network_takes_its_quantum_network_once_no_port_is_left(
    engine, neutron, sync, settings, project
):
    name = _name()
    logical = engine.add_network(name, engine.data_center)
    _ok(sync())
    (network,) = _quantum(neutron, name)
    port = neutron.api(
        "POST", "/v2.0/ports", {"port": {"network_id": network["id"], "project_id": project}}
    )["port"]
    # A DHCP server's port, which Neutron deletes with the network, keeps nothing.
    dhcp = {"network_id": network["id"], "project_id": project, "device_owner": "network:dhcp"}
    neutron.api("POST", "/v2.0/ports", {"port": dhcp})
    engine.remove_network(logical)
    lines = _ok(sync())
    assert any(
        line.startswith(
            f"reported: Quantum network {name} {network['id']}: its logical network is gone but 1 "
            f"port(s) remain ({port['id']})"
        )
        for line in lines
    ), lines
    assert _quantum(neutron, network_id=network["id"]), "deleted while a port remained"
    neutron.api("DELETE", f"/v2.0/ports/{port['id']}")
    lines = _ok(sync())
    assert f"deleted Quantum network {name} {network['id']}: its logical network is gone" in lines
    assert _quantum(neutron, network_id=network["id"]) == []
    assert network["id"] not in json.loads(settings.state.read_text())["networks"]


def test_a_q_network_the_sync_did_not_make_is_reported_and_adopted_only_when_asked(
    engine, neutron, settings, sync, project
):
    name = _name("x")
    foreign = neutron.api(
        "POST", "/v2.0/networks", {"network": {"name": name, "project_id": project}}
    )["network"]
    logical = engine.add_network(name, engine.data_center)
    lines = _ok(sync())
    assert (
        f"reported: Quantum network {name} ({foreign['id']}) was not made by the sync: left alone "
        f"(qhook engine sync --adopt takes it over)" in lines
    )
    assert _profile(engine, logical, name)["custom_properties"] == {}
    assert _quantum(neutron, network_id=foreign["id"])[0]["name"] == name

    lines = _ok(sync("--adopt"))
    assert (
        f"adopted Quantum network {name} {foreign['id']} for the logical network of data center "
        f"Default" in lines
    )
    assert _profile(engine, logical, name)["custom_properties"]["q_network_id"] == foreign["id"]
    # Adopted, it is the sync's now: it goes with its logical network.
    engine.remove_network(logical)
    _ok(sync())
    assert _quantum(neutron, network_id=foreign["id"]) == []


def test_a_quantum_network_without_a_logical_network_is_reported_never_deleted(
    engine, neutron, settings, sync, project
):
    name = _name("alone")
    foreign = neutron.api(
        "POST", "/v2.0/networks", {"network": {"name": name, "project_id": project}}
    )["network"]
    try:
        lines = _ok(sync())
        assert (
            f"reported: Quantum network {name} {foreign['id']} was not made by the sync and no "
            f"logical network of that name is synced: left alone" in lines
        )
        assert _quantum(neutron, network_id=foreign["id"])
    finally:
        neutron.api("DELETE", f"/v2.0/networks/{foreign['id']}")


def test_a_drifted_profile_is_corrected_and_keeps_what_the_sync_does_not_own(
    engine, neutron, settings, sync
):
    name = _name()
    logical = engine.add_network(name, engine.data_center, mtu=1450)
    _ok(sync())
    (network,) = _quantum(neutron, name)
    profile = _profile(engine, logical, name)
    stale = str(uuid.uuid4())
    engine.set_profile_properties(
        profile["id"], {"q_network_id": stale, "plugin": "openvswitch", "ifacemacspoof": "true"}
    )
    other = engine.add_profile(logical, f"{name}-other", {"q_network_id": stale})
    lines = _ok(sync())
    assert _profile(engine, logical, name)["custom_properties"] == {
        "q_network_id": network["id"],
        "plugin": "ovn",
        "ifacemacspoof": "true",
        "mtu": "1450",
    }
    assert (
        f"corrected vNIC profile {name}-other of {name}: q_network_id {stale} -> {network['id']}"
        in lines
    )
    assert next(p for p in engine.profiles(logical) if p["id"] == other)["custom_properties"] == {
        "q_network_id": network["id"]
    }


def test_a_dry_run_says_what_it_would_do_and_does_nothing(engine, neutron, sync, settings):
    name = _name("dry")
    logical = engine.add_network(name, engine.data_center)
    before = settings.state.read_bytes() if settings.state.exists() else None
    writes = len(_writes(engine))
    lines = _ok(sync("--dry-run"))
    assert (
        f"would have created Quantum network {name} (new) for the logical network of data center "
        f"Default" in lines
    )
    assert _quantum(neutron, name) == []
    assert _profile(engine, logical, name)["custom_properties"] == {}
    assert (settings.state.read_bytes() if settings.state.exists() else None) == before
    assert len(_writes(engine)) == writes
    engine.remove_network(logical)


def _writes(engine):
    """The API requests that change something (not the login's)."""
    return [r for r in engine.requests if r[0] != "GET" and "/ovirt-engine/api" in r[1]]


def test_json_lists_each_change(engine, neutron, settings, sync):
    name = _name("json")
    engine.add_network(name, engine.data_center)
    result = sync("--json")
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    (network,) = _quantum(neutron, name)
    mine = [c for c in body["changes"] if c["network"] == name]
    assert [c["action"] for c in mine] == ["create", "correct-profile"]
    assert mine[0]["quantum_id"] == network["id"] and body["dry_run"] is False


def test_only_the_named_data_centers_are_synced(engine, neutron, sync, settings):
    other = engine.add_data_center(f"Other-{uuid.uuid4().hex[:6]}")
    name = _name("dc")
    engine.add_network(name, other)
    settings(data_centers="Default")
    lines = _ok(sync())
    assert _quantum(neutron, name) == [] and not [line for line in lines if name in line]


class Watcher:
    """`qhook engine sync --watch` running, its output read as it comes."""

    def __init__(self, settings):
        env = without_openrc(QHOOK_CONFIG=str(settings.path))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "qhook.cli", "engine", "sync", "--watch"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.out, self.err = [], []
        for stream, lines in ((self.process.stdout, self.out), (self.process.stderr, self.err)):
            threading.Thread(target=_collect, args=(stream, lines), daemon=True).start()

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        time.sleep(0.2)  # the readers' last lines
        return self.process.returncode


def _collect(stream, lines):
    for line in stream:
        lines.append(line.rstrip("\n"))


def _wait(ready, timeout, what):
    deadline = time.monotonic() + timeout
    while not ready():
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.1)


def test_watch_follows_the_engine_events_at_once_and_ends_on_sigterm(engine, neutron, settings):
    watcher = Watcher(settings)
    try:
        _wait(lambda: any(line.startswith("watching") for line in watcher.out), 30, "first pass")
        name = _name("watch")
        logical = engine.add_network(name, engine.data_center)
        # resync is 600 s: only the engine's "network added" event can start this pass.
        _wait(lambda: _quantum(neutron, name), 10, "pass after the event")
        (network,) = _quantum(neutron, name)
        _wait(
            lambda: (
                _profile(engine, logical, name)["custom_properties"].get("q_network_id")
                == network["id"]
            ),
            10,
            "profile",
        )
        engine.remove_network(logical)
        _wait(lambda: not _quantum(neutron, network_id=network["id"]), 10, "removal's pass")
    finally:
        status = watcher.stop()
    assert status == 0, watcher.err
    assert any(f"created Quantum network {name} {network['id']}" in line for line in watcher.out)
    gone = f"deleted Quantum network {name} {network['id']}: its logical network is gone"
    assert gone in watcher.out
    assert error_lines("\n".join(watcher.err)) == [], watcher.err
    # What a pass reports and leaves is said once, not again at every pass.
    reported = [line for line in watcher.out if line.startswith("reported:")]
    assert len(reported) == len(set(reported)), reported


def test_watch_says_the_engine_is_down_and_goes_on_when_it_is_back(engine, neutron, settings):
    engine.stop()
    watcher = Watcher(settings)
    try:
        _wait(lambda: watcher.err, 30, "line about the engine")
        assert "cannot be reached" in watcher.err[0] and "again in 1 s" in watcher.err[0]
        engine.start()
        name = _name("back")
        engine.add_network(name, engine.data_center)
        _wait(lambda: _quantum(neutron, name), 30, "pass after the engine came back")
    finally:
        status = watcher.stop()
        engine.start()
    assert status == 0, watcher.err


# -- one line each, nothing done -----------------------------------------------------
def _one_line(result, status=1):
    assert result.returncode == status, result.stdout + result.stderr
    lines = error_lines(result.stderr)
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def test_the_engine_down_is_one_line(engine, sync):
    engine.stop()
    try:
        line = _one_line(sync())
    finally:
        engine.start()
    assert (
        line.startswith("qhook: the oVirt engine at https://127.0.0.1:")
        and "cannot be reached" in line
    )


def test_an_engine_that_never_answers_is_bounded(engine_settings, sync):
    settings = engine_settings
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)  # accepts connections (the kernel's backlog), never answers
    try:
        port = listener.getsockname()[1]
        settings(url=f"https://127.0.0.1:{port}/ovirt-engine/api", timeout="2")
        began = time.monotonic()
        line = _one_line(sync(timeout=60))
        took = time.monotonic() - began
    finally:
        listener.close()
    assert "cannot be reached within 2 s" in line
    assert took < 30, took  # bounded by [ovirt] timeout, not by the SDK's unbounded login


def test_bad_credentials_are_one_line(engine_settings, sync):
    settings = engine_settings
    settings(password="wrong")
    line = _one_line(sync())
    assert "refused the login of admin@internal" in line and "wrong" not in line


def test_quantum_down_is_one_line_and_the_engine_is_untouched(engine, engine_settings, sync):
    name = _name("qdown")
    logical = engine.add_network(name, engine.data_center)  # [quantum] url: a closed port
    line = _one_line(sync())
    assert "127.0.0.1:1" in line
    assert _profile(engine, logical, name)["custom_properties"] == {}
    engine.remove_network(logical)


def test_undefined_custom_properties_are_one_line_naming_the_fix(engine, settings, sync):
    engine.define_custom_properties(())
    try:
        name = _name("undef")
        engine.add_network(name, engine.data_center)
        line = _one_line(sync())
    finally:
        engine.define_custom_properties(DEFINED)
    assert "qhook engine-config --cver" in line and "restart ovirt-engine" in line


@pytest.mark.parametrize(
    "ovirt, expected",
    [
        ({"url": "http://engine/ovirt-engine/api"}, "served over https"),
        ({"password": None}, "not configured: set password (OVIRT_PASSWORD)"),
        ({"plugin": "nova"}, "[ovirt] plugin = 'nova' is invalid"),
        ({"resync": "1"}, "at least 10 seconds"),
    ],
)
def test_bad_settings_are_one_line_and_nothing_is_sent(
    engine, engine_settings, sync, ovirt, expected
):
    settings = engine_settings
    settings(**ovirt)
    count = len(engine.requests)
    line = _one_line(sync(), status=2)
    assert expected in line, line
    assert len(engine.requests) == count


def test_a_password_file_anyone_can_read_is_refused(engine, engine_settings, sync):
    settings = engine_settings
    os.chmod(settings.path, 0o644)
    line = _one_line(sync(), status=2)
    assert "holds [ovirt] password but anyone can read it" in line


def test_the_whole_story_a_vm_on_the_synced_profile_gets_its_port_and_gives_it_back(
    engine, neutron, settings, sync, tmp_path
):
    """The sync makes the profile; a VM's vNIC on it (VDSM hands the hooks the profile's
    custom properties) gets its port on demand at start, wired by the real Open vSwitch
    agent, and the port is deleted at stop; then the logical network goes, and its
    Quantum network with it."""
    settings(plugin="openvswitch")
    name = _name("story")
    logical = engine.add_network(name, engine.data_center, mtu=1400)
    _ok(sync())
    properties = _profile(engine, logical, name)["custom_properties"]
    (network,) = _quantum(neutron, name)
    assert properties == {"plugin": "openvswitch", "q_network_id": network["id"], "mtu": "1400"}

    host = Host(tmp_path / "host", neutron.ovs, AGENT_HOST)
    vm_id = str(uuid.uuid4())
    started = host.vdsm.start_vm(to_bytes(quantum_vm([properties], vm_uuid=vm_id)))
    assert error_lines(started.runs[-1].stderr) == [], started.runs[-1].stderr
    (port,) = neutron.api("GET", f"/v2.0/ports?device_id={vm_id}")["ports"]
    assert (port["network_id"], port["binding:host_id"]) == (network["id"], AGENT_HOST)
    tap = "tap" + port["id"][:11]
    interface = hoststate.ovs_interfaces(neutron.ovs)[tap]
    assert interface["external_ids"]["iface-id"] == port["id"]
    assert neutron.ovs.vsctl("get", "Interface", tap, "mtu_request").strip() == "1400"
    assert neutron.ovs.vsctl("get", "Port", tap, "tag").strip() not in ("[]", "4095")

    stopped = host.vdsm.destroy_vm(started.domain_xml)
    assert not stopped.failed, stopped.stderr
    assert neutron.api("GET", f"/v2.0/ports?device_id={vm_id}")["ports"] == []
    assert tap not in hoststate.ovs_interfaces(neutron.ovs)
    engine.remove_network(logical)
    _ok(sync())
    assert _quantum(neutron, network_id=network["id"]) == []


def test_unreadable_records_are_one_line_and_nothing_is_changed(engine, engine_settings, sync):
    engine_settings.state.parent.mkdir(parents=True, exist_ok=True)
    engine_settings.state.write_text("{not json")
    count = len(engine.requests)
    line = _one_line(sync(), status=2)
    assert "the sync's records" in line and "unreadable" in line, line
    assert engine_settings.state.read_text() == "{not json" and len(engine.requests) == count


def test_an_untrusted_engine_certificate_is_one_line_naming_ca_file(engine, engine_settings, sync):
    engine_settings(ca_file=None)
    line = _one_line(sync())
    assert "its certificate is not trusted" in line and "set [ovirt] ca_file" in line, line


def test_insecure_skips_the_check_and_says_so_once(engine, neutron, settings, sync):
    settings(ca_file=None, insecure="yes")
    result = sync()
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        "qhook: warning: [ovirt] insecure = yes: the engine's certificate is not verified "
        "(set ca_file)"
    ]


def test_two_syncs_never_run_at_once(engine, engine_settings, sync):
    """The service and an admin's run: the second waits for the first's lock, at most
    [ovirt] timeout, then says so in one line, having changed nothing."""
    import fcntl

    engine_settings(timeout="1")
    engine_settings.state.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{engine_settings.state}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        name = _name("locked")
        logical = engine.add_network(name, engine.data_center)
        line = _one_line(sync(), status=2)
    assert "another qhook engine sync holds" in line, line
    assert _profile(engine, logical, name)["custom_properties"] == {}
    assert not engine_settings.state.exists()
    engine.remove_network(logical)


def test_a_quantum_network_deleted_behind_the_syncs_back_is_made_again(
    engine, neutron, settings, sync
):
    name = _name("gone")
    logical = engine.add_network(name, engine.data_center)
    _ok(sync())
    (first,) = _quantum(neutron, name)
    neutron.api("DELETE", f"/v2.0/networks/{first['id']}")
    lines = _ok(sync())
    assert f"Quantum network {first['id']} of {name} is gone from Quantum: making it again" in lines
    (again,) = _quantum(neutron, name)
    assert again["id"] != first["id"]
    assert _profile(engine, logical, name)["custom_properties"]["q_network_id"] == again["id"]
    records = json.loads(settings.state.read_text())["networks"]
    assert first["id"] not in records and records[again["id"]]["ovirt_id"] == logical


def test_a_second_data_centers_network_of_the_same_name_is_left_alone(
    engine, neutron, settings, sync
):
    """Quantum network names are the logical networks' names: the second data center's
    Q_ network of a name already synced is reported and gets nothing."""
    name = _name("twice")
    engine.add_network(name, engine.data_center)
    _ok(sync())
    other_dc = engine.add_data_center(f"Twice-{uuid.uuid4().hex[:6]}")
    second = engine.add_network(name, other_dc)
    lines = _ok(sync())
    assert len(_quantum(neutron, name)) == 1
    assert any(line.startswith(f"reported: {name} of data center Twice-") for line in lines), lines
    assert _profile(engine, second, name)["custom_properties"] == {}
