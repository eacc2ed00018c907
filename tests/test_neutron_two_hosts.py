# SPDX-License-Identifier: GPL-2.0-or-later
"""Two hypervisor hosts on one real Neutron: the stack's own and host B, an Open vSwitch
in a namespace of its own with its own neutron-openvswitch-agent, which reaches RabbitMQ
and the API through relays at the same 127.0.0.1 addresses (for live-migration tests)."""

import json
import subprocess
import sys
import time
import uuid

from neutron_stack import AGENT_HOST, API_PORT, HOST_B, AgentHost

# Run inside host B's namespace: what http://127.0.0.1:API_PORT says about a port.
_GET = """import json, sys, urllib.request
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
with opener.open(sys.argv[1], timeout=30) as response:
    print(json.dumps({"status": response.status, "body": json.load(response)}))
"""


def _wait(what, ready, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        value = ready()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what} after {timeout} s"
        time.sleep(0.5)


def _tag(host: AgentHost, port: str) -> str:
    """The VLAN tag the agent gave the OVS port, or "" if none yet (or the dead 4095)."""
    tag = host.ovs.vsctl("get", "Port", port, "tag").strip()
    return "" if tag in ("[]", "4095") else tag


def test_both_agents_are_alive_on_their_own_hosts(neutron, host_b: AgentHost):
    agents = neutron.api("GET", "/v2.0/agents?binary=neutron-openvswitch-agent")["agents"]
    alive = {agent["host"] for agent in agents if agent["alive"]}
    assert {AGENT_HOST, HOST_B} <= alive
    assert host_b.ovs.name != neutron.ovs.name
    assert "br-phys1" in host_b.ovs.vsctl("list-br").split()


def test_a_port_is_wired_on_host_b_and_its_binding_moves_to_the_first_host(
    neutron, host_b: AgentHost
):
    project = uuid.uuid4().hex
    network = neutron.vlan_network("Q_two_hosts", project, 102)
    port = neutron.bound_port(network, HOST_B, str(uuid.uuid4()))
    tap = "tap" + port["id"][:11]
    try:
        assert port["binding:vif_type"] == "ovs", port
        assert port["binding:host_id"] == HOST_B

        # The API at 127.0.0.1:API_PORT, from inside host B's namespace.
        url = f"http://127.0.0.1:{API_PORT}/v2.0/ports/{port['id']}"
        seen = subprocess.run(
            [*host_b.ovs.netns_exec, sys.executable, "-c", _GET, url],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert seen.returncode == 0, seen.stderr
        answer = json.loads(seen.stdout)
        assert answer["status"] == 200 and answer["body"]["port"]["id"] == port["id"]

        # Plug it in host B's br-int as Nova/VDSM would: agent B wires it (over RabbitMQ).
        host_b.ovs.vsctl(
            "add-port",
            "br-int",
            tap,
            "--",
            "set",
            "Interface",
            tap,
            "type=internal",
            f"external_ids:iface-id={port['id']}",
            f"external_ids:attached-mac={port['mac_address']}",
            "external_ids:iface-status=active",
            wait=True,
        )
        tag = _wait("agent B never tagged the port", lambda: _tag(host_b, tap))
        other_config = host_b.ovs.vsctl("get", "Port", tap, "other_config")
        assert f'net_uuid="{network["id"]}"' in other_config, other_config
        assert 'segmentation_id="102"' in other_config, other_config
        assert tap not in neutron.ovs.vsctl("list-ports", "br-int").split()
        _wait(
            "Neutron never reported the port ACTIVE",
            lambda: neutron.api("GET", f"/v2.0/ports/{port['id']}")["port"]["status"] == "ACTIVE",
        )
        print(f"tag {tag} on host B")

        # Live migration's end: the binding moves to the first host.
        moved = neutron.api(
            "PUT", f"/v2.0/ports/{port['id']}", {"port": {"binding:host_id": AGENT_HOST}}
        )["port"]
        assert moved["binding:host_id"] == AGENT_HOST
        assert moved["binding:vif_type"] == "ovs", moved
        again = neutron.api("GET", f"/v2.0/ports/{port['id']}")["port"]
        assert (again["binding:host_id"], again["binding:vif_type"]) == (AGENT_HOST, "ovs")
    finally:
        host_b.ovs.vsctl("--if-exists", "del-port", "br-int", tap)
        neutron.api("DELETE", f"/v2.0/ports/{port['id']}")
        neutron.api("DELETE", f"/v2.0/networks/{network['id']}")
