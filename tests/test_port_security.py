# SPDX-License-Identifier: GPL-2.0-or-later
"""Port security that holds, measured with real frames: two vNICs plugged by the hooks on
one Quantum network with a subnet, on a host whose real Neutron OVS agent runs the
iptables_hybrid or the openvswitch firewall, the "guests" being the test attached to the
taps as QEMU would. The hooks plug as each port's binding says (read with root's Quantum
settings); a binding that failed on this host fails the start at once. OVN's port
security is in tests/test_ovn_port_security.py."""

import time
import uuid
from contextlib import contextmanager

import hoststate
import pytest
from domains import quantum_vm, to_bytes

from qhook.lab.vdsm_emulator import HookFailed, VdsmEmulator
from tools import ERROR_PREFIX, HOOKS_DIR, error_lines, hook_env

PROJECT = uuid.uuid4().hex
API = "http://127.0.0.1:9696"
SUBNET = "10.77.0.0/24"
SPOOFED_MAC = "02:00:00:77:77:77"
SPOOFED_IP = "10.77.0.250"
OVIRT = "{http://ovirt.org/vm/1.0}"
FIREWALLS = ("iptables_hybrid", "openvswitch")


class Host:
    """A hypervisor host of the stack: its Open vSwitch and agent, the hooks' settings."""

    def __init__(self, directory, ovs, agent, hybrid_plug="auto", settings=True):
        directory.mkdir(parents=True, exist_ok=True)
        self.ovs, self.agent = ovs, agent
        self.settings = directory / "quantum-api.conf"
        if settings:
            self.settings.write_text(
                f"[quantum]\nurl = {API}\nproject_id = {PROJECT}\ntimeout = 10\n"
            )
            self.settings.chmod(0o600)
        self.config = directory / "quantum.conf"
        self.config.write_text(
            f"[ovs]\nconnection = {ovs.connection}\ntimeout = 5\nhybrid_plug = {hybrid_plug}\n"
            "[wiring]\ntimeout = 60\non_timeout = fail\n"
            f"[host]\nagent_host = {agent}\nstate_dir = {directory / 'state'}\n"
            f"[on_demand]\nsettings = {self.settings}\ntimeout = 20\n"
        )
        self.vdsm = VdsmEmulator(
            HOOKS_DIR, hook_env({"QHOOK_CONFIG": str(self.config)}), wrapper=ovs.netns_exec
        )


def _domain(port):
    """A VM whose one vNIC is this Quantum port (its MAC the port's)."""
    domain = quantum_vm(
        [{"plugin": "openvswitch", "q_network_id": port["network_id"], "q_port_id": port["id"]}],
        vm_uuid=port["device_id"],
    )
    domain.find("devices/interface/mac").set("address", port["mac_address"])
    for device in domain.iter(f"{OVIRT}device"):
        if device.get("mac_address") == "02:00:00:00:01:01":
            device.set("mac_address", port["mac_address"])
    return to_bytes(domain)


def _wait_active(neutron, port):
    deadline = time.monotonic() + 30
    while neutron.api("GET", f"/v2.0/ports/{port['id']}")["port"]["status"] != "ACTIVE":
        assert time.monotonic() < deadline, "Neutron never reported the port ACTIVE"
        time.sleep(0.2)


def _guest(port):
    return ("tap" + port["id"][:11], port["mac_address"], port["fixed_ips"][0]["ip_address"])


@pytest.fixture(scope="module")
def network(neutron):
    net = neutron.vlan_network("Q_secured", PROJECT, 110)
    neutron.api(
        "POST",
        "/v2.0/subnets",
        {
            "subnet": {
                "network_id": net["id"],
                "project_id": PROJECT,
                "ip_version": 4,
                "cidr": SUBNET,
                "enable_dhcp": False,
            }
        },
    )
    yield net
    for port in neutron.api("GET", f"/v2.0/ports?network_id={net['id']}")["ports"]:
        neutron.api("DELETE", f"/v2.0/ports/{port['id']}")
    neutron.api("DELETE", f"/v2.0/networks/{net['id']}")


@contextmanager
def _two_vms(neutron, network, name, firewall, directory, **settings):
    """A host `name` whose agent runs this firewall, and two VMs the hooks started there,
    each on a port bound to it: (host, ports, VM starts); all gone afterwards."""
    agent_host = neutron.add_host(name, firewall=firewall)
    host = Host(directory, agent_host.ovs, name, **settings)
    ports, vms = [], []
    try:
        for _ in range(2):
            ports.append(neutron.bound_port(network, name, str(uuid.uuid4())))
            vms.append(host.vdsm.start_vm(_domain(ports[-1])))
        for port in ports:  # the agent sets up the firewall before it reports the port up
            _wait_active(neutron, port)
        yield host, ports, vms
    finally:
        for vm in vms:
            host.vdsm.destroy_vm(vm.domain_xml)
        for port in ports:
            neutron.api("DELETE", f"/v2.0/ports/{port['id']}")
        neutron.remove_host(name)


@pytest.fixture(scope="module", params=FIREWALLS)
def secured(request, neutron, network, tmp_path_factory):
    """A host whose agent runs this firewall, and two VMs started there by the hooks."""
    firewall = request.param
    name = f"qhook-fw-{firewall.replace('_', '-')}"
    directory = tmp_path_factory.mktemp(firewall)
    with _two_vms(neutron, network, name, firewall, directory) as (host, ports, vms):
        yield firewall, host, ports, vms


def _arrives(host, sender, receiver, **changes):
    """How many of five datagrams from the sender's guest reach the receiver's."""
    tap, mac, ip = _guest(sender)
    fields = {"mac": mac, "ip": ip, **changes}
    return hoststate.udp_arrives(
        host.ovs.netns_exec, (tap, fields["mac"], fields["ip"]), _guest(receiver)
    )


def _rule_hits(host, tap):
    """Packets counted by the iptables rules that name the tap (the agent's physdev rules:
    per-port chains, the IP/MAC source check): (rules, packets)."""
    dump = host.ovs.in_netns("iptables-save", "-c")
    counts = [line.split("]")[0].lstrip("[") for line in dump.splitlines() if tap in line]
    counted = [int(c.split(":")[0]) for c in counts if c[:1].isdigit()]
    return len(counted), sum(counted)


def _until(what, check, timeout=30.0):
    """Wait until the agent has applied a change: check() true (polled; each check sends
    frames, so no sleep between)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"the agent never {what}"


def test_the_vnic_is_plugged_as_the_binding_says(neutron, secured):
    firewall, host, ports, vms = secured
    for port, vm in zip(ports, vms):
        bound = neutron.api("GET", f"/v2.0/ports/{port['id']}")["port"]
        hybrid = bound["binding:vif_details"]["ovs_hybrid_plug"]
        assert hybrid is (firewall == "iptables_hybrid")
        tap = "tap" + port["id"][:11]
        qbr, qvo = "qbr" + tap[3:], "qvo" + tap[3:]
        links = hoststate.links(host.ovs)
        ports_on_bridge = hoststate.bridge_ports(host.ovs)
        if hybrid:
            assert links[tap]["master"] == qbr and qvo in ports_on_bridge
            assert tap not in ports_on_bridge
            ids = hoststate.ovs_interfaces(host.ovs)[qvo]["external_ids"]
        else:
            assert tap in ports_on_bridge and qbr not in links
            ids = hoststate.ovs_interfaces(host.ovs)[tap]["external_ids"]
        assert ids["iface-id"] == port["id"] and ids["attached-mac"] == port["mac_address"]
        assert ids["vm-uuid"] == port["device_id"]
        assert not vm.runs[-1].stderr  # the binding was read: no warning
        assert bound["status"] == "ACTIVE"


def test_own_frames_cross_and_spoofed_ones_do_not(secured):
    firewall, host, (sender, receiver), _ = secured
    tap = _guest(sender)[0]
    rules, before = _rule_hits(host, tap)
    assert _arrives(host, sender, receiver) == 5
    assert _arrives(host, sender, receiver, mac=SPOOFED_MAC) == 0
    assert _arrives(host, sender, receiver, ip=SPOOFED_IP) == 0
    if firewall == "iptables_hybrid":  # the agent's rules for the tap see its frames
        assert rules >= 4 and _rule_hits(host, tap)[1] >= before + 10


@contextmanager
def _group(neutron, port, group):
    """The port in this security group meanwhile, then back in its own."""
    before = neutron.api("GET", f"/v2.0/ports/{port['id']}")["port"]["security_groups"]
    neutron.api("PUT", f"/v2.0/ports/{port['id']}", {"port": {"security_groups": [group]}})
    try:
        yield
    finally:
        neutron.api("PUT", f"/v2.0/ports/{port['id']}", {"port": {"security_groups": before}})


@contextmanager
def _closed_group(neutron, name):
    """A new security group (Neutron gives it egress rules only) while in use."""
    body = {"security_group": {"name": name, "project_id": PROJECT}}
    group = neutron.api("POST", "/v2.0/security-groups", body)["security_group"]
    try:
        yield group
    finally:
        neutron.api("DELETE", f"/v2.0/security-groups/{group['id']}")


def test_a_group_without_an_ingress_rule_stops_udp_and_a_rule_lets_it_in(neutron, secured):
    _, host, (sender, receiver), _ = secured
    with _closed_group(neutron, "closed") as closed:
        with _group(neutron, receiver, closed["id"]):
            _until("closed the port", lambda: _arrives(host, sender, receiver) == 0)
            assert _arrives(host, sender, receiver) == 0
            neutron.api(
                "POST",
                "/v2.0/security-group-rules",
                {
                    "security_group_rule": {
                        "security_group_id": closed["id"],
                        "direction": "ingress",
                        "ethertype": "IPv4",
                        "protocol": "udp",
                        "port_range_min": 7777,
                        "port_range_max": 7777,
                        "project_id": PROJECT,
                    }
                },
            )
            _until("opened the port", lambda: _arrives(host, sender, receiver) == 5)
        _until("put the port back", lambda: _arrives(host, sender, receiver) == 5)


def test_without_port_security_the_spoofed_frames_arrive(neutron, secured):
    """The control: the probe can see a pass, so its drops above are the firewall's."""
    _, host, (sender, receiver), _ = secured
    unsecured = {"port_security_enabled": False, "security_groups": []}
    secured_again = {"port_security_enabled": True}
    for port in (sender, receiver):
        neutron.api("PUT", f"/v2.0/ports/{port['id']}", {"port": unsecured})
    try:
        _until("lifted port security", lambda: _arrives(host, sender, receiver, ip=SPOOFED_IP) == 5)
        assert _arrives(host, sender, receiver, mac=SPOOFED_MAC) == 5
    finally:
        for port in (sender, receiver):
            groups = neutron.api("GET", f"/v2.0/security-groups?project_id={PROJECT}&name=default")
            default = [g["id"] for g in groups["security_groups"]]
            neutron.api(
                "PUT",
                f"/v2.0/ports/{port['id']}",
                {"port": {**secured_again, "security_groups": default}},
            )
    _until("restored port security", lambda: _arrives(host, sender, receiver, ip=SPOOFED_IP) == 0)


def test_a_binding_that_failed_here_fails_the_start_at_once(neutron, network, tmp_path):
    """A port bound to a host no agent serves: one line, within a second, nothing left."""
    nowhere = f"qhook-no-agent-{uuid.uuid4().hex[:6]}"
    host = Host(tmp_path, neutron.ovs, nowhere)
    port = neutron.bound_port(network, nowhere, str(uuid.uuid4()))
    assert port["binding:vif_type"] == "binding_failed"
    tap = "tap" + port["id"][:11]
    try:
        began = time.monotonic()
        with pytest.raises(HookFailed) as failed:
            host.vdsm.start_vm(_domain(port))
        took = time.monotonic() - began
        assert error_lines(failed.value.run.stderr) == [
            f"{ERROR_PREFIX}before_vm_start: Quantum port {port['id']} is bound to host "
            f"{nowhere} but Quantum could not bind it there (binding:vif_type binding_failed): "
            f"most likely no live agent on {nowhere} serves network {network['id']} "
            f"(openstack network agent list --host {nowhere})"
        ]
        assert took < 3.0, took  # not the 60 s wiring timeout (sudo-less, in-process helper)
        assert tap not in hoststate.links(neutron.ovs)
        assert tap not in hoststate.ovs_interfaces(neutron.ovs)
    finally:
        neutron.api("DELETE", f"/v2.0/ports/{port['id']}")


def test_plugged_straight_under_iptables_hybrid_the_firewall_sees_nothing(
    neutron, network, tmp_path_factory
):
    """What the hooks did before they read bindings (and still do with hybrid_plug = no
    and no binding to read): the agent's rules are written but never match, so a spoofed
    source IP and a closed group both get through."""
    directory = tmp_path_factory.mktemp("straight")
    settings = {"hybrid_plug": "no", "settings": False}
    with _two_vms(
        neutron, network, "qhook-fw-straight", "iptables_hybrid", directory, **settings
    ) as (host, (sender, receiver), _):
        tap = _guest(sender)[0]
        assert tap in hoststate.bridge_ports(host.ovs)
        assert _arrives(host, sender, receiver) == 5
        assert _arrives(host, sender, receiver, mac=SPOOFED_MAC) == 0  # the agent's OpenFlow check
        assert _arrives(host, sender, receiver, ip=SPOOFED_IP) == 5
        with (
            _closed_group(neutron, "closed-straight") as closed,
            _group(neutron, receiver, closed["id"]),
        ):
            time.sleep(3)  # the agent rewrites its rules; they never match anyway
            assert _arrives(host, sender, receiver) == 5
        rules, packets = _rule_hits(host, tap)
        assert rules >= 4 and packets == 0  # written for the tap, and never matched


def _on_demand_vm(network):
    """A VM whose one vNIC names only the network: the host makes its port."""
    vm_id, mac = str(uuid.uuid4()), f"02:77:{uuid.uuid4().hex[:2]}:00:00:01"
    domain = quantum_vm([{"plugin": "openvswitch", "q_network_id": network["id"]}], vm_uuid=vm_id)
    return to_bytes(domain).replace(b"02:00:00:00:01:01", mac.encode()), vm_id


def test_ports_on_demand_are_plugged_as_their_binding_says(neutron, network, secured):
    firewall, host, _, _ = secured
    domain, vm_id = _on_demand_vm(network)
    started = host.vdsm.start_vm(domain)
    assert not started.runs[-1].stderr  # the binding came back with the port: no warning
    (port,) = neutron.api("GET", f"/v2.0/ports?device_id={vm_id}")["ports"]
    tap = "tap" + port["id"][:11]
    links = hoststate.links(host.ovs)
    if firewall == "iptables_hybrid":
        assert links[tap]["master"] == "qbr" + tap[3:]
        assert "qvo" + tap[3:] in hoststate.bridge_ports(host.ovs)
    else:
        assert tap in hoststate.bridge_ports(host.ovs) and "master" not in links[tap]
    assert not host.vdsm.destroy_vm(started.domain_xml).failed
    assert not neutron.api("GET", f"/v2.0/ports?device_id={vm_id}")["ports"]
    assert not {tap, "qbr" + tap[3:], "qvo" + tap[3:]} & set(hoststate.links(host.ovs))


def test_a_port_on_demand_whose_binding_fails_here_is_deleted_at_once(neutron, network, tmp_path):
    nowhere = f"qhook-no-agent-{uuid.uuid4().hex[:6]}"
    host = Host(tmp_path, neutron.ovs, nowhere)
    domain, vm_id = _on_demand_vm(network)
    before = set(hoststate.links(neutron.ovs))
    began = time.monotonic()
    with pytest.raises(HookFailed) as failed:
        host.vdsm.start_vm(domain)
    took = time.monotonic() - began
    (line,) = error_lines(failed.value.run.stderr)
    assert f"is bound to host {nowhere} but Quantum could not bind it there" in line
    assert "binding_failed" in line and f"serves network {network['id']}" in line
    assert took < 3.0, took
    assert not neutron.api("GET", f"/v2.0/ports?device_id={vm_id}")["ports"]
    assert set(hoststate.links(neutron.ovs)) == before
