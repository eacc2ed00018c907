# SPDX-License-Identifier: GPL-2.0-or-later
"""The Quantum/Neutron API client against the real Neutron API server of the tests
(noauth: creates carry project_id), reached over TCP through a relay to its socket."""

import socket
import time
import uuid

import pytest

from qhook.quantum.client import QuantumClient, QuantumError


@pytest.fixture
def client(api):
    quantum = QuantumClient(api, timeout=(5, 60))
    yield quantum
    quantum.close()


@pytest.fixture
def project():
    return uuid.uuid4().hex


def test_networks_are_made_once_by_name(client, project):
    name = f"Q_web-{project[:6]}"
    network, created = client.ensure_network(name, project_id=project)
    again, created_again = client.ensure_network(name, project_id=project)
    assert (created, created_again) == (True, False) and again["id"] == network["id"]
    assert [n["id"] for n in client.list("networks", name=name)] == [network["id"]]
    assert client.show("networks", network["id"])["name"] == name
    assert client.delete("networks", network["id"]) is True
    assert client.delete("networks", network["id"]) is False  # already gone: fine


def test_bulk_create_filters_and_paging(client, project):
    network = client.create("networks", name=f"Q_bulk-{project[:6]}", project_id=project)
    vm = str(uuid.uuid4())
    made = client.create_many(
        "ports",
        [
            {
                "network_id": network["id"],
                "project_id": project,
                "device_id": vm,
                "device_owner": "vdsm-hook-quantum",
                "name": f"p{i}",
            }
            for i in range(5)
        ],
    )
    assert len(made) == 5 and len({p["mac_address"] for p in made}) == 5
    listed = list(client.list("ports", page_size=2, device_id=vm))
    assert sorted(p["id"] for p in listed) == sorted(p["id"] for p in made)
    one = made[2]
    by_mac = list(client.list("ports", mac_address=one["mac_address"], network_id=network["id"]))
    assert [p["id"] for p in by_mac] == [one["id"]]
    for port in made:
        assert client.delete("ports", port["id"])
    assert client.delete("networks", network["id"])


def test_neutron_errors_become_one_clear_line(client, project):
    with pytest.raises(QuantumError) as missing:
        client.show("ports", str(uuid.uuid4()))
    assert missing.value.kind == "PortNotFound" and missing.value.status == 404
    assert "could not be found" in str(missing.value) and "\n" not in str(missing.value)
    network = client.create("networks", name=f"Q_err-{project[:6]}", project_id=project)
    port = client.create("ports", network_id=network["id"], project_id=project)
    with pytest.raises(QuantumError) as in_use:
        client.create(
            "ports", network_id=network["id"], project_id=project, mac_address=port["mac_address"]
        )
    assert in_use.value.kind == "MacAddressInUse" and in_use.value.status == 409
    with pytest.raises(QuantumError) as busy:
        client.delete("networks", network["id"])
    assert busy.value.kind == "NetworkInUse"
    client.delete("ports", port["id"])
    client.delete("networks", network["id"])


def test_a_server_that_never_answers_ends_within_the_timeout():
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts (the kernel does) but never answers
    quantum = QuantumClient(
        f"http://127.0.0.1:{silent.getsockname()[1]}", timeout=(2, 1), retries=0
    )
    began = time.monotonic()
    with pytest.raises(QuantumError) as stuck:
        quantum.request("GET", "networks")
    assert time.monotonic() - began < 5
    assert str(stuck.value) == (
        f"Quantum at http://127.0.0.1:{silent.getsockname()[1]} gave no answer within 1 s"
    )
    silent.close()


def test_nothing_listening_is_a_clear_line():
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()
    with pytest.raises(QuantumError) as down:
        QuantumClient(f"http://127.0.0.1:{port}", retries=1).request("GET", "networks")
    assert str(down.value) == (
        f"cannot reach Quantum at http://127.0.0.1:{port}: [Errno 111] Connection refused"
    )


def test_the_token_never_reaches_an_error(api):
    secret = "s3cr3t-token-" + uuid.uuid4().hex
    quantum = QuantumClient(api, token=secret)
    with pytest.raises(QuantumError) as missing:
        quantum.show("networks", str(uuid.uuid4()))
    assert secret not in str(missing.value) and secret not in repr(missing.value.args)
