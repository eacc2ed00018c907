# SPDX-License-Identifier: GPL-2.0-or-later
"""Keystone v3 authentication against a real Keystone, with a real Neutron API behind it
(keystonemiddleware validates every token, caching none)."""

import json
import time
import uuid

import pytest
import requests
from keystone_stack import SHORT_LIFE

from qhook.quantum.client import QuantumClient, QuantumError
from qhook.quantum.keystone import KeystonePassword
from tools import DEFAULTS_CONF, qhook_command, without_openrc


@pytest.fixture
def stack(keystone):
    return keystone.keystone


def _admin_auth(stack, url=None, password=None):
    return KeystonePassword(url or stack.url, "admin", password or stack.admin_password, "admin")


def _openrc(stack, password=None):
    return without_openrc(
        QHOOK_CONFIG=str(DEFAULTS_CONF),
        OS_AUTH_URL=stack.url,
        OS_USERNAME="admin",
        OS_PASSWORD=password or stack.admin_password,
        OS_PROJECT_NAME="admin",
        OS_USER_DOMAIN_NAME="Default",
        OS_PROJECT_DOMAIN_NAME="Default",
    )


def test_an_openrc_is_enough_the_endpoint_comes_from_the_catalog(keystone, stack):
    env = _openrc(stack)
    name = f"Q_ks-{uuid.uuid4().hex[:8]}"
    made = qhook_command(env, "network", "create", name, "--json", "--debug")
    assert made.returncode == 0, made.stderr
    network = json.loads(made.stdout)["network"]
    admin_project = stack.call("GET", "projects?name=admin")["projects"][0]["id"]
    assert network["project_id"] == admin_project  # the token's project, not one we sent
    assert f"POST {stack.url}/auth/tokens -> 201" in made.stderr
    assert f"GET {keystone.neutron_url}/v2.0/networks?name={name}" in made.stderr
    assert "password = ***  (OS_PASSWORD)" in made.stderr
    assert stack.admin_password not in made.stderr + made.stdout
    vm = str(uuid.uuid4())
    port = qhook_command(
        env,
        "port",
        "create",
        "--network",
        name,
        "--vm",
        vm,
        "--mac",
        "56:6f:51:00:0a:01",
        "--host",
        "host-a",
    )
    assert port.returncode == 0, port.stderr
    assert port.stdout.startswith("plugin=openvswitch;q_network_id=" + network["id"])
    assert qhook_command(env, "port", "delete", "--vm", vm).returncode == 0
    assert qhook_command(env, "network", "delete", name).returncode == 0


def test_an_expired_token_is_renewed_before_it_is_refused(keystone, stack):
    auth = _admin_auth(stack, url=stack.short_url)
    with QuantumClient(auth=auth, timeout=(5, 60)) as client:
        list(client.list("networks", name="Q_none"))
        first = auth.token(client.send)
        assert auth.issued_count == 1
        time.sleep(SHORT_LIFE + 0.5)
        # Neutron now refuses the old token: the renewal below is needed.
        stale = requests.get(
            f"{keystone.neutron_url}/v2.0/networks", headers={"X-Auth-Token": first}, timeout=30
        )
        assert stale.status_code == 401
        list(client.list("networks", name="Q_none"))
        assert auth.issued_count == 2 and auth.token(client.send) != first


def test_a_refused_token_is_replaced_once(keystone, stack):
    auth = _admin_auth(stack)
    traced = []
    with QuantumClient(auth=auth, timeout=(5, 60), trace=traced.append) as client:
        list(client.list("networks", name="Q_none"))
        stack.revoke(auth.token(client.send))
        list(client.list("networks", name="Q_none"))
    assert auth.issued_count == 2
    assert sum(" -> 401 " in line for line in traced) == 1
    assert "the token was refused: authenticating again" in traced


def test_a_static_token_that_is_refused_fails_with_one_line(keystone):
    token = "not-a-token-" + uuid.uuid4().hex
    with (
        QuantumClient(keystone.neutron_url, token=token) as client,
        pytest.raises(QuantumError) as refused,
    ):
        client.request("GET", "networks")
    assert refused.value.status == 401 and refused.value.kind == "Unauthorized"
    assert str(refused.value) == (
        "GET networks: 401 The request you have made requires authentication."
    )


def test_a_wrong_password_is_exit_1_and_never_shown(stack):
    wrong = "wrong-" + uuid.uuid4().hex
    done = qhook_command(_openrc(stack, password=wrong), "network", "list", "--debug")
    assert done.returncode == 1 and wrong not in done.stderr + done.stdout
    last = done.stderr.splitlines()[-1]
    assert last.startswith(
        f"qhook: Keystone at {stack.url} refused user 'admin' of project 'admin': 401 "
    )


def test_no_network_in_the_region_is_a_clear_line(stack):
    auth = KeystonePassword(
        stack.url, "admin", stack.admin_password, "admin", region_name="Elsewhere"
    )
    with QuantumClient(auth=auth) as client, pytest.raises(QuantumError) as missing:
        client.request("GET", "networks")
    assert str(missing.value) == (
        f"the catalog of Keystone at {stack.url} has no public network endpoint in region "
        "Elsewhere: set [quantum] url"
    )
