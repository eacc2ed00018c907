# SPDX-License-Identifier: GPL-2.0-or-later
"""`qhook network` and `qhook port`, run as commands against the tests' real Neutron API
(noauth: the project comes from [quantum] project_id)."""

import json
import subprocess
import sys
import uuid

import pytest

from qhook.quantum.client import QuantumClient
from qhook.vdsm.vnic import PropertyForm, parse_vnic
from tools import qhook_command, without_openrc


@pytest.fixture
def project():
    return uuid.uuid4().hex


@pytest.fixture
def engine_env(tmp_path, api, project):
    """The environment of an engine machine whose [quantum] points at the API."""
    conf = tmp_path / "quantum.conf"
    conf.write_text(f"[quantum]\nurl = {api}\nauth = noauth\nproject_id = {project}\n")
    return without_openrc(QHOOK_CONFIG=str(conf))


@pytest.fixture
def qhook(engine_env):
    def run(*args):
        return qhook_command(engine_env, *args)

    return run


@pytest.fixture
def neutron_api(api):
    with QuantumClient(api, timeout=(5, 60)) as client:
        yield client


@pytest.fixture
def net_name(project):
    return f"Q_net-{project[:8]}"


def _port_create(network, vm, *macs):
    return [
        "port",
        "create",
        "--network",
        network,
        "--vm",
        vm,
        *(a for m in macs for a in ("--mac", m)),
    ]


def _json(done):
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_network_create_is_idempotent_and_delete_tolerates_gone(qhook, net_name, neutron_api):
    first = _json(
        qhook(
            "network",
            "create",
            net_name,
            "--provider-type",
            "vlan",
            "--physical-network",
            "physnet1",
            "--segmentation-id",
            "150",
            "--mtu",
            "1400",
            "--subnet",
            "10.9.0.0/24",
            "--json",
        )
    )
    again = qhook("network", "create", net_name, "--segmentation-id", "150")
    network = first["network"]
    assert first["created"] is True and first["subnet"]["cidr"] == "10.9.0.0/24"
    assert again.returncode == 0 and again.stdout.split() == [
        "network",
        net_name,
        network["id"],
        "exists",
    ]
    real = neutron_api.show("networks", network["id"])
    assert (real["provider:segmentation_id"], real["mtu"], real["name"]) == (150, 1400, net_name)
    assert len(list(neutron_api.list("subnets", network_id=network["id"]))) == 1
    listed = qhook("network", "list")
    assert listed.returncode == 0
    assert any(line.split()[:2] == [net_name, network["id"]] for line in listed.stdout.splitlines())
    shown = qhook("network", "show", net_name)
    assert f"10.9.0.0/24 {first['subnet']['id']} dhcp" in shown.stdout
    # A vNIC profile for the network: ports on demand, with the network's MTU.
    profile = qhook("network", "profile", net_name, "--plugin", "ovn")
    assert (profile.returncode, profile.stdout) == (
        0,
        f"plugin=ovn;q_network_id={network['id']};mtu=1400\n",
    )
    differs = qhook("network", "create", net_name, "--segmentation-id", "151")
    assert differs.returncode == 1
    assert "provider:segmentation_id is 150, not 151" in differs.stderr
    deleted = qhook("network", "delete", net_name)
    gone = qhook("network", "delete", net_name)
    assert deleted.returncode == 0 and f"{network['id']} deleted" in deleted.stdout
    assert gone.returncode == 0 and "none to delete" in gone.stdout
    assert not list(neutron_api.list("networks", id=network["id"]))


def test_ports_of_a_vm_from_start_to_stop(qhook, net_name, neutron_api, project):
    _json(qhook("network", "create", net_name, "--json"))
    vm = str(uuid.uuid4())
    macs = ["56:6f:51:00:00:01", "56:6F:51:00:00:02"]
    first = qhook("port", "create", "--network", net_name, "--vm", vm, "--mac", macs[0])
    assert first.returncode == 0, first.stderr
    properties = dict(item.split("=", 1) for item in first.stdout.strip().split(";"))
    vnic = parse_vnic(properties, macs[0])
    port = neutron_api.show("ports", vnic.port_id)
    assert vnic.form is PropertyForm.SEED and vnic.host_id == port["id"]
    assert (port["device_id"], port["mac_address"], port["device_owner"]) == (
        vm,
        macs[0],
        "vdsm-hook-quantum",
    )
    assert port["network_id"] == vnic.network_id
    # Both vNICs: the first is found, the second made; the same properties again.
    both = _json(qhook(*_port_create(net_name, vm, *macs), "--json"))
    assert [v["created"] for v in both["vnics"]] == [False, True]
    assert both["vnics"][0]["custom_properties"] == first.stdout.strip()
    assert len(list(neutron_api.list("ports", device_id=vm))) == 2
    # The VM starts on a host, then migrates.
    bound = _json(qhook("port", "bind", "--vm", vm, "--host", "host-a", "--json"))
    assert [p["moved"] for p in bound["ports"]] == [True, True]
    moved = qhook("port", "bind", "--vm", vm, "--host", "host-b")
    assert moved.returncode == 0 and moved.stdout.count("bound to host-b") == 2
    hosts = {p["binding:host_id"] for p in neutron_api.list("ports", device_id=vm)}
    assert hosts == {"host-b"}
    # Stop: one vNIC unplugged, then the rest; twice is fine.
    one = qhook("port", "delete", "--vm", vm, "--mac", macs[1])
    assert one.returncode == 0 and one.stdout.count("deleted") == 1
    rest = qhook("port", "delete", "--vm", vm)
    again = qhook("port", "delete", "--vm", vm)
    assert rest.returncode == 0 and f"port {port['id']}" in rest.stdout
    assert again.returncode == 0 and "no ports to delete" in again.stdout
    assert not list(neutron_api.list("ports", device_id=vm))
    assert qhook("network", "delete", net_name).returncode == 0


def test_ports_of_others_are_never_taken_or_deleted(qhook, net_name, neutron_api, project):
    network = _json(qhook("network", "create", net_name, "--json"))["network"]
    vm, mac = str(uuid.uuid4()), "56:6f:51:00:01:01"
    foreign = neutron_api.create(
        "ports",
        network_id=network["id"],
        project_id=project,
        device_id=vm,
        mac_address=mac,
        device_owner="compute:nova",
    )
    taken = qhook("port", "create", "--network", net_name, "--vm", vm, "--mac", mac, "--json")
    assert taken.returncode == 1
    error = json.loads(taken.stdout)["error"]
    assert error["kind"] == "PortNotOurs" and "compute:nova" in error["message"]
    assert taken.stderr.count("\n") == 1
    other_vm = qhook(
        "port", "create", "--network", net_name, "--vm", str(uuid.uuid4()), "--mac", mac
    )
    assert other_vm.returncode == 1 and "MacAddressInUse" not in other_vm.stderr
    assert "in use" in other_vm.stderr.lower()
    deleted = qhook("port", "delete", "--vm", vm)
    assert deleted.returncode == 0 and "no ports to delete" in deleted.stdout
    assert neutron_api.show("ports", foreign["id"])["device_owner"] == "compute:nova"
    busy = qhook("network", "delete", net_name)
    assert busy.returncode == 1 and "in use" in busy.stderr.lower()
    neutron_api.delete("ports", foreign["id"])
    assert qhook("network", "delete", net_name).returncode == 0


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["network", "create", "web"], "is not named Q_<name>"),
        (["network", "create", "Q_x", "--provider-type", "token-ring"], "provider type"),
        (["network", "create", "Q_x", "--mtu", "20"], "MTU 20"),
        (["network", "create", "Q_x", "--subnet", "10.0.0.300/24"], "is not a CIDR"),
        (
            ["port", "create", "--network", "Q_x", "--vm", "nope", "--mac", "56:6f:51:00:00:01"],
            "--vm: 'nope' is not a UUID",
        ),
        (
            ["port", "create", "--network", "Q_x", "--vm", str(uuid.uuid4()), "--mac", "56:6f"],
            "--mac '56:6f' is not a MAC address",
        ),
        (["port", "bind", "--vm", str(uuid.uuid4()), "--host=-x"], "is not a host name"),
        (
            [
                "port",
                "create",
                "--network",
                "Q_x",
                "--vm",
                str(uuid.uuid4()),
                "--mac",
                "56:6f:51:00:00:01",
                "--plugin",
                "bridge",
            ],
            "plugin 'bridge'",
        ),
    ],
)
def test_bad_usage_is_one_line_and_exit_2(qhook, args, says):
    done = qhook(*args)
    assert done.returncode == 2 and done.stdout == ""
    assert says in done.stderr and done.stderr.count("\n") == 1


def test_what_the_server_refuses_is_exit_1(qhook, net_name):
    missing = qhook(
        "port",
        "create",
        "--network",
        net_name,
        "--vm",
        str(uuid.uuid4()),
        "--mac",
        "56:6f:51:00:00:09",
    )
    assert missing.returncode == 1
    assert (
        missing.stderr == f"qhook: network {net_name} does not exist in Quantum "
        f"(qhook network create {net_name})\n"
    )
    nothing = qhook("port", "bind", "--vm", str(uuid.uuid4()), "--host", "h", "--json")
    assert nothing.returncode == 1 and json.loads(nothing.stdout)["error"]["status"] == 404
    refused = qhook(
        "network",
        "create",
        net_name,
        "--provider-type",
        "vlan",
        "--physical-network",
        "physnet9",
        "--segmentation-id",
        "120",
    )
    assert refused.returncode == 1 and "physnet9" in refused.stderr
    assert refused.stderr.count("\n") == 1


def test_unreachable_quantum_is_exit_1(engine_env, tmp_path):
    free = __import__("socket").socket()
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()
    done = qhook_command(engine_env, "network", "list", "--url", f"http://127.0.0.1:{port}")
    assert done.returncode == 1
    assert done.stderr == (
        f"qhook: cannot reach Quantum at http://127.0.0.1:{port}: [Errno 111] Connection refused\n"
    )


def test_concurrent_creates_of_one_vnic_make_one_port(engine_env, net_name, neutron_api):
    network = _json(qhook_command(engine_env, "network", "create", net_name, "--json"))["network"]
    vm, mac = str(uuid.uuid4()), "56:6f:51:00:02:01"
    command = [sys.executable, "-m", "qhook.cli", *_port_create(net_name, vm, mac), "--json"]
    racing = [
        subprocess.Popen(
            command, env=engine_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    outcomes = [(p.wait(timeout=120), p.stdout.read(), p.stderr.read()) for p in racing]
    for process in racing:
        process.stdout.close()
        process.stderr.close()
    assert [code for code, _, _ in outcomes] == [0, 0, 0, 0], outcomes
    ids = {json.loads(out)["vnics"][0]["port"]["id"] for _, out, _ in outcomes}
    ports = list(neutron_api.list("ports", device_id=vm))
    assert len(ids) == 1 and [p["id"] for p in ports] == list(ids)
    assert qhook_command(engine_env, "port", "delete", "--vm", vm).returncode == 0
    neutron_api.delete("networks", network["id"])
