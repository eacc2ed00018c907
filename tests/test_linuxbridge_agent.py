# SPDX-License-Identifier: GPL-2.0-or-later
"""Linux bridge vNICs wired by the real Neutron Linux bridge agent (Neutron 25, the last
release that ships it; tests/linuxbridge_stack.py): the agent finds the hooks' tap by
its name and puts it in its brq bridge, the port goes ACTIVE, real frames cross between
two vNICs of one network and not to another network's, the agent's iptables firewall
drops spoofed frames and closed groups, the network's MTU holds; ports on demand are
bound with vif_type bridge; a stopped agent fails the start cleanly; hotplug, migration
to a second host with its own agent, VXLAN between two hosts, suspend and resume, and
status and cleanup."""

import json
import os
import secrets
import time
import uuid
from pathlib import Path

import hoststate
import pytest
from domains import quantum_vm, to_bytes
from linuxbridge_stack import LinuxBridgeStack
from neutron_stack import AGENT_HOST, HOST_B

from qhook.lab.vdsm_emulator import HookFailed, VdsmEmulator
from tools import (
    ERROR_PREFIX,
    HOOKS_DIR,
    REPO,
    error_lines,
    holding_tap,
    hook_env,
    qhook_on_host,
    require_program,
)

VENV = os.environ.get("QHOOK_NEUTRON_LB_VENV", str(REPO / ".venv-neutron-lb"))
PROJECT = uuid.uuid4().hex
API = "http://127.0.0.1:9696"
SUBNET = "10.78.0.0/24"
SPOOFED_MAC = "02:00:00:78:78:78"
SPOOFED_IP = "10.78.0.250"
OVIRT = "{http://ovirt.org/vm/1.0}"
HOST_C = "qhook-neutron-host-c"  # a further host of its own, for the VXLAN test


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """Neutron 25 with the Linux bridge agent (iptables firewall) on host AGENT_HOST."""
    require_program(Path(VENV) / "bin" / "neutron-linuxbridge-agent", "Neutron 25")
    running = LinuxBridgeStack(
        tmp_path_factory.mktemp("neutron-lb"),
        Path(VENV),
        f"qhook-nlb-{os.getpid()}-{secrets.token_hex(3)}",
        firewall="iptables",
    )
    running.start()
    yield running
    running.stop()


def _subnet(stack, network):
    body = {"network_id": network["id"], "project_id": PROJECT, "ip_version": 4,
            "cidr": SUBNET, "enable_dhcp": False}  # fmt: skip
    stack.api("POST", "/v2.0/subnets", {"subnet": body})


@pytest.fixture(scope="module")
def network(stack):
    """physnet1's flat network, with a subnet (the firewall's rules name addresses)."""
    net = stack.flat_network("Q_lb_one", PROJECT, "physnet1", mtu=1400)
    _subnet(stack, net)
    yield net
    _delete_network(stack, net)


@pytest.fixture(scope="module")
def other_network(stack):
    net = stack.flat_network("Q_lb_two", PROJECT, "physnet2")
    yield net
    _delete_network(stack, net)


def _delete_network(stack, net):
    for port in stack.api("GET", f"/v2.0/ports?network_id={net['id']}")["ports"]:
        stack.api("DELETE", f"/v2.0/ports/{port['id']}")
    stack.api("DELETE", f"/v2.0/networks/{net['id']}")


class Host:
    """A host of the stack (its namespace's Open vSwitch, unused by Linux bridge vNICs,
    gives the namespace), the hooks' configuration for it, and VDSM running them."""

    def __init__(self, directory, ovs, agent=AGENT_HOST, on_demand=False, timeout=60):
        directory.mkdir(parents=True, exist_ok=True)
        settings = directory / "quantum-api.conf"
        settings.write_text(f"[quantum]\nurl = {API}\nproject_id = {PROJECT}\ntimeout = 10\n")
        settings.chmod(0o600)
        self.config = directory / "quantum.conf"
        self.config.write_text(
            f"[ovs]\nconnection = {ovs.connection}\ntimeout = 5\nhybrid_plug = no\n"
            f"[wiring]\ntimeout = {timeout}\non_timeout = fail\n"
            f"[host]\nagent_host = {agent}\nstate_dir = {directory / 'state'}\n"
            + (f"[on_demand]\nsettings = {settings}\ntimeout = 20\n" if on_demand else "")
        )
        self.ovs = ovs
        self.vdsm = VdsmEmulator(
            HOOKS_DIR, hook_env({"QHOOK_CONFIG": str(self.config)}), wrapper=ovs.netns_exec
        )

    def run(self, point, data, vm_id, **properties):
        return self.vdsm.run_point(point, data, properties, vm_id=vm_id)


@pytest.fixture(scope="module")
def host(stack, tmp_path_factory):
    return Host(tmp_path_factory.mktemp("lb-host"), stack.ovs)


def _domain(port, mtu=None):
    """A VM whose one Linux bridge vNIC is this Quantum port (its MAC the port's)."""
    properties = {"plugin": "linuxbridge", "q_network_id": port["network_id"],
                  "q_port_id": port["id"]}  # fmt: skip
    if mtu:
        properties["mtu"] = str(mtu)
    domain = quantum_vm([properties], vm_uuid=port["device_id"])
    domain.find("devices/interface/mac").set("address", port["mac_address"])
    for device in domain.iter(f"{OVIRT}device"):
        if device.get("mac_address") == "02:00:00:00:01:01":
            device.set("mac_address", port["mac_address"])
    return to_bytes(domain)


def _port(stack, network, **extra):
    return stack.bound_port(network, AGENT_HOST, str(uuid.uuid4()), **extra)


def _status(stack, port):
    return stack.api("GET", f"/v2.0/ports/{port['id']}")["port"]


def _until(what, check, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"never {what}"
        time.sleep(0.1)


def _guest(port):
    return ("tap" + port["id"][:11], port["mac_address"], port["fixed_ips"][0]["ip_address"])


def _brq(network):
    return "brq" + network["id"][:11]


def test_the_agent_bridges_the_hooks_tap_and_the_port_goes_active(stack, network, host):
    port = _port(stack, network)
    began = time.monotonic()
    started = host.vdsm.start_vm(_domain(port))
    returned = time.monotonic() - began
    try:
        assert error_lines(started.runs[-1].stderr) == [], started.runs[-1].stderr
        tap = "tap" + port["id"][:11]
        # When before_vm_start returned, the agent had put the tap in its bridge.
        assert hoststate.links(stack.ovs)[tap]["master"] == _brq(network)
        bound = _status(stack, port)
        assert (bound["binding:vif_type"], bound["binding:host_id"]) == ("bridge", AGENT_HOST)
        _until("ACTIVE", lambda: _status(stack, port)["status"] == "ACTIVE")
        active = time.monotonic() - began
        print(f"Linux bridge agent: before_vm_start {returned:.2f} s, ACTIVE {active:.2f} s")
    finally:
        stopped = host.vdsm.destroy_vm(started.domain_xml)
    assert not stopped.failed, stopped.stderr
    assert tap not in hoststate.links(stack.ovs)
    stack.api("DELETE", f"/v2.0/ports/{port['id']}")


@pytest.fixture(scope="module")
def two_vms(stack, network, host):
    """Two VMs on the network, plugged by the hooks and ACTIVE: (ports, starts)."""
    ports = [_port(stack, network) for _ in range(2)]
    starts = [host.vdsm.start_vm(_domain(port, mtu=1400)) for port in ports]
    for port in ports:
        _until("ACTIVE", lambda port=port: _status(stack, port)["status"] == "ACTIVE")
    yield ports, starts
    for start in starts:
        host.vdsm.destroy_vm(start.domain_xml)
    for port in ports:
        stack.api("DELETE", f"/v2.0/ports/{port['id']}")


def _arrives(stack, sender, receiver, **changes):
    tap, mac, ip = _guest(sender)
    fields = {"mac": mac, "ip": ip, **changes}
    return hoststate.udp_arrives(
        stack.ovs.netns_exec, (tap, fields["mac"], fields["ip"]), _guest(receiver)
    )


def test_two_vnics_of_one_network_exchange_frames_and_another_network_sees_none(
    stack, network, other_network, host, two_vms
):
    (first, second), _ = two_vms
    assert _arrives(stack, first, second) == 5
    assert _arrives(stack, second, first) == 5
    outsider = _port(stack, other_network)
    started = host.vdsm.start_vm(_domain(outsider))
    try:
        tap = "tap" + outsider["id"][:11]
        assert hoststate.links(stack.ovs)[tap]["master"] == _brq(other_network)
        seen = hoststate.frames_cross(stack.ovs, _guest(first)[0], first["mac_address"],
                                      [200], [_guest(second)[0], tap])  # fmt: skip
        assert seen == {200: [_guest(second)[0]]}
    finally:
        host.vdsm.destroy_vm(started.domain_xml)
        stack.api("DELETE", f"/v2.0/ports/{outsider['id']}")


def test_the_firewall_drops_spoofed_frames(stack, two_vms):
    (first, second), _ = two_vms
    assert _arrives(stack, first, second) == 5
    assert _arrives(stack, first, second, mac=SPOOFED_MAC) == 0
    assert _arrives(stack, first, second, ip=SPOOFED_IP) == 0


def test_a_group_without_an_ingress_rule_stops_udp_and_a_rule_lets_it_in(stack, two_vms):
    (first, second), _ = two_vms
    body = {"name": f"closed-{secrets.token_hex(3)}", "project_id": PROJECT}
    group = stack.api("POST", "/v2.0/security-groups", {"security_group": body})
    group = group["security_group"]
    default = _status(stack, second)["security_groups"]
    try:
        stack.api("PUT", f"/v2.0/ports/{second['id']}",
                  {"port": {"security_groups": [group["id"]]}})  # fmt: skip
        _until("closed the group", lambda: _arrives(stack, first, second) == 0)
        rule = {"security_group_id": group["id"], "direction": "ingress", "ethertype": "IPv4",
                "protocol": "udp", "port_range_min": 7777, "port_range_max": 7777}  # fmt: skip
        stack.api("POST", "/v2.0/security-group-rules", {"security_group_rule": rule})
        _until("opened the rule", lambda: _arrives(stack, first, second) == 5)
    finally:
        stack.api("PUT", f"/v2.0/ports/{second['id']}", {"port": {"security_groups": default}})
        _until("restored the group", lambda: _arrives(stack, first, second) == 5)
        stack.api("DELETE", f"/v2.0/security-groups/{group['id']}")


def test_without_port_security_the_spoofed_frames_arrive(stack, network, host):
    ports = [_port(stack, network, port_security_enabled=False, security_groups=[])
             for _ in range(2)]  # fmt: skip
    starts = [host.vdsm.start_vm(_domain(port)) for port in ports]
    try:
        for port in ports:
            _until("ACTIVE", lambda port=port: _status(stack, port)["status"] == "ACTIVE")
        _until("let them through", lambda: _arrives(stack, ports[0], ports[1]) == 5)
        assert _arrives(stack, ports[0], ports[1], mac=SPOOFED_MAC, ip=SPOOFED_IP) == 5
    finally:
        for start in starts:
            host.vdsm.destroy_vm(start.domain_xml)
        for port in ports:
            stack.api("DELETE", f"/v2.0/ports/{port['id']}")


def test_the_networks_mtu_is_the_taps_and_a_larger_frame_does_not_cross(stack, two_vms):
    """The tap gets the network's MTU. The kernel's bridge forwards a frame up to the
    MTU plus 4 bytes (room for an 802.1Q tag, is_skb_forwardable) and drops a larger
    one; Open vSwitch drops the first byte over (tests/test_mtu.py)."""
    (first, second), _ = two_vms
    taps = [_guest(first)[0], _guest(second)[0]]
    links = hoststate.links(stack.ovs)
    assert [links[tap]["mtu"] for tap in taps] == [1400, 1400]
    seen = hoststate.frames_cross(stack.ovs, taps[0], first["mac_address"],
                                  [1400, 1404, 1405, 1000], taps[1:])  # fmt: skip
    assert seen == {1400: [taps[1]], 1404: [taps[1]], 1405: [], 1000: [taps[1]]}


def test_ports_on_demand_are_bound_as_bridge_and_deleted_at_stop(stack, network, tmp_path):
    host = Host(tmp_path, stack.ovs, on_demand=True)
    vm_id = str(uuid.uuid4())
    domain = to_bytes(quantum_vm([{"plugin": "linuxbridge", "q_network_id": network["id"]}],
                                 vm_uuid=vm_id))  # fmt: skip
    started = host.vdsm.start_vm(domain)
    (port,) = stack.api("GET", f"/v2.0/ports?device_id={vm_id}")["ports"]
    assert (port["binding:vif_type"], port["binding:host_id"]) == ("bridge", AGENT_HOST)
    tap = "tap" + port["id"][:11]
    assert hoststate.links(stack.ovs)[tap]["master"] == _brq(network)
    stopped = host.vdsm.destroy_vm(started.domain_xml)
    assert not stopped.failed, stopped.stderr
    assert stack.api("GET", f"/v2.0/ports?device_id={vm_id}")["ports"] == []
    assert tap not in hoststate.links(stack.ovs)


def test_a_stopped_agent_fails_the_start_cleanly(stack, network, tmp_path):
    host = Host(tmp_path, stack.ovs, timeout=5)
    port = _port(stack, network)
    before = set(hoststate.links(stack.ovs))
    stack.pause_agent()
    try:
        with pytest.raises(HookFailed) as failed:
            host.vdsm.start_vm(_domain(port))
    finally:
        stack.resume_agent()
        stack.api("DELETE", f"/v2.0/ports/{port['id']}")
    assert f"{ERROR_PREFIX}before_vm_start:" in str(failed.value)
    assert f"the agent did not wire tap{port['id'][:11]}" in str(failed.value), failed.value
    assert set(hoststate.links(stack.ovs)) == before


def test_status_and_cleanup_see_the_taps_in_the_agents_bridge(stack, network, host, two_vms):
    """A crashed VM's tap, left in the agent's bridge: status lists it wired; cleanup
    (no grace) removes it, and leaves the running VMs' taps (their QEMU holds them), the
    agent's bridge and a foreign tap in it."""
    (first, second), _ = two_vms
    running = [_guest(first)[0], _guest(second)[0]]
    port = _port(stack, network)
    host.vdsm.start_vm(_domain(port))  # then the VM "crashes": no after_vm_destroy
    tap, bridge = "tap" + port["id"][:11], _brq(network)
    stack.ovs.in_netns("ip", "tuntap", "add", "dev", "tapforeign0007", "mode", "tap")
    stack.ovs.in_netns("ip", "link", "set", "tapforeign0007", "master", bridge)
    try:
        result = qhook_on_host(stack.ovs.netns_exec, host.config, "status", "--json")
        assert result.returncode == 0, result.stderr
        entries = {e["tap"]: e for e in json.loads(result.stdout)["ports"]}
        assert "tapforeign0007" not in entries
        assert (entries[tap]["bridge"], entries[tap]["wired"]) == (bridge, True)
        assert entries[tap]["in_use"] is False
        netns_exec = stack.ovs.netns_exec
        with holding_tap(netns_exec, running[0]), holding_tap(netns_exec, running[1]):
            cleaned = qhook_on_host(netns_exec, host.config, "cleanup", "--grace", "0")
        assert cleaned.returncode == 0, cleaned.stderr
        assert f"removed tap {tap} (no VM holds its tap)" in cleaned.stdout.splitlines()
        links = hoststate.links(stack.ovs)
        assert tap not in links and bridge in links
        assert all(links[name]["master"] == bridge for name in running)
        assert links["tapforeign0007"]["master"] == bridge
    finally:
        stack.ovs.in_netns("ip", "link", "delete", "tapforeign0007")
        stack.api("DELETE", f"/v2.0/ports/{port['id']}")


def test_hotplug_and_unplug_of_a_linux_bridge_vnic(stack, network, host, two_vms):
    """A vNIC hot-plugged into a running VM is bridged by the agent before the hook
    returns, and is gone after the unplug."""
    (first, _), _ = two_vms
    port = stack.bound_port(network, AGENT_HOST, first["device_id"])
    device = (
        f'<interface type="bridge"><mac address="{port["mac_address"]}"/>'
        '<model type="virtio"/><source bridge="Q_lb_one"/></interface>'
    ).encode()
    props = {"plugin": "linuxbridge", "q_network_id": network["id"], "q_port_id": port["id"]}
    tap = "tap" + port["id"][:11]
    try:
        plugged = host.run("before_nic_hotplug", device, first["device_id"], **props)
        assert (plugged.failed, error_lines(plugged.stderr)) == (False, []), plugged.stderr
        assert f'dev="{tap}"' in plugged.data_out.decode()
        assert hoststate.links(stack.ovs)[tap]["master"] == _brq(network)
        _until("ACTIVE", lambda: _status(stack, port)["status"] == "ACTIVE")
        unplugged = host.run("after_nic_hotunplug", plugged.data_out, first["device_id"], **props)
        assert not unplugged.failed, unplugged.stderr
        assert tap not in hoststate.links(stack.ovs)
    finally:
        stack.api("DELETE", f"/v2.0/ports/{port['id']}")


def test_a_vm_migrates_to_a_second_host_with_its_own_agent(stack, network, host, two_vms, tmp_path):
    """Ports on demand: the destination's hook rebinds the port to its host, its agent
    bridges the tap before the VM arrives; frames from a VM left on the first host
    reach it over the physical network; the source's stop leaves the port to it."""
    (first, _), _ = two_vms
    remote = stack.add_host(HOST_B, firewall="iptables")
    try:
        source = Host(tmp_path / "a", stack.ovs, on_demand=True)
        destination = Host(tmp_path / "b", remote.ovs, HOST_B, on_demand=True)
        vm_id = str(uuid.uuid4())
        vnic = {"plugin": "linuxbridge", "q_network_id": network["id"]}
        started = source.vdsm.start_vm(to_bytes(quantum_vm([vnic], vm_uuid=vm_id)))
        (port,) = stack.api("GET", f"/v2.0/ports?device_id={vm_id}")["ports"]
        tap = "tap" + port["id"][:11]
        incoming = destination.run("before_vm_migrate_destination", started.domain_xml, vm_id)
        assert (incoming.failed, error_lines(incoming.stderr)) == (False, []), incoming.stderr
        moved = _status(stack, port)
        assert (moved["binding:host_id"], moved["binding:vif_type"]) == (HOST_B, "bridge")
        assert hoststate.links(remote.ovs)[tap]["master"] == _brq(network)
        arrived = destination.run("after_vm_migrate_destination", started.domain_xml, vm_id)
        assert not arrived.failed, arrived.stderr
        left = source.run("after_vm_destroy", started.domain_xml, vm_id)
        assert not left.failed, left.stderr
        assert tap not in hoststate.links(stack.ovs)
        _until("ACTIVE on host B", lambda: _status(stack, port)["status"] == "ACTIVE")
        port = _status(stack, port)
        # From the first host's VM, over physnet1's wire, to the migrated one.
        sender, receiver = _guest(first), _guest(port)
        got = hoststate.udp_arrives(
            stack.ovs.netns_exec, sender, receiver, receiver_netns=remote.ovs.name
        )
        assert got == 5
        stopped = destination.run("after_vm_destroy", started.domain_xml, vm_id)
        assert not stopped.failed, stopped.stderr
        assert stack.api("GET", f"/v2.0/ports?device_id={vm_id}")["ports"] == []
    finally:
        stack.remove_host(HOST_B)


def test_suspend_and_resume_keep_the_tap_name_valid(stack, network, host):
    """Suspended (the hooks unplug after_vm_destroy) and resumed from the saved XML: the
    tap the saved XML names is made again, bridged by the agent before libvirt would
    restore, and the port goes ACTIVE again."""
    port = _port(stack, network)
    domain = _domain(port)
    started = host.vdsm.start_vm(domain)
    tap = "tap" + port["id"][:11]
    try:
        for run in host.vdsm.hibernate_vm(started.domain_xml):
            assert not run.failed and error_lines(run.stderr) == [], (run.point, run.stderr)
        assert tap not in hoststate.links(stack.ovs)
        seen = {}

        def restore(saved):
            seen["master"] = hoststate.links(stack.ovs)[tap]["master"]
            return saved

        for run in host.vdsm.restore_vm(domain, started.domain_xml, False, restore):
            assert not run.failed and error_lines(run.stderr) == [], (run.point, run.stderr)
        assert seen["master"] == _brq(network)
        _until("ACTIVE again", lambda: _status(stack, port)["status"] == "ACTIVE")
    finally:
        host.vdsm.destroy_vm(started.domain_xml)
        stack.api("DELETE", f"/v2.0/ports/{port['id']}")
    assert tap not in hoststate.links(stack.ovs)


def test_a_vxlan_network_carries_frames_between_two_hosts(stack, tmp_path):
    """A project network (VXLAN, flooding by multicast over the underlay): a vNIC on
    each host, each bridged by its own agent; UDP crosses the tunnel both ways."""
    remote = stack.add_host(HOST_C, firewall="iptables")
    net = stack.vxlan_network("Q_lb_vxlan", PROJECT)
    try:
        assert net["provider:network_type"] == "vxlan"
        body = {"network_id": net["id"], "project_id": PROJECT, "ip_version": 4,
                "cidr": "10.79.0.0/24", "enable_dhcp": False}  # fmt: skip
        stack.api("POST", "/v2.0/subnets", {"subnet": body})
        here, there = Host(tmp_path / "a", stack.ovs), Host(tmp_path / "b", remote.ovs, HOST_C)
        ports = [_port(stack, net), stack.bound_port(net, HOST_C, str(uuid.uuid4()))]
        starts = [here.vdsm.start_vm(_domain(ports[0])), there.vdsm.start_vm(_domain(ports[1]))]
        for port in ports:
            _until("ACTIVE", lambda port=port: _status(stack, port)["status"] == "ACTIVE")
        assert hoststate.links(remote.ovs)[_guest(ports[1])[0]]["master"] == _brq(net)
        vxlan = f"vxlan-{net['provider:segmentation_id']}"
        assert hoststate.links(stack.ovs)[vxlan]["master"] == _brq(net)

        def across(sender, receiver, netns_exec, netns):
            return hoststate.udp_arrives(
                netns_exec, _guest(sender), _guest(receiver), receiver_netns=netns
            )

        assert across(ports[0], ports[1], stack.ovs.netns_exec, remote.ovs.name) == 5
        assert across(ports[1], ports[0], remote.ovs.netns_exec, stack.ovs.name) == 5
        here.vdsm.destroy_vm(starts[0].domain_xml)
        there.vdsm.destroy_vm(starts[1].domain_xml)
    finally:
        _delete_network(stack, net)
        stack.remove_host(HOST_C)
