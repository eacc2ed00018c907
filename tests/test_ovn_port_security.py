# SPDX-License-Identifier: GPL-2.0-or-later
"""Port security that holds on OVN, measured with real frames: two OVN vNICs plugged
straight by the hooks, their logical ports written as ML2/OVN writes a Neutron port with
port security and security groups (addresses and port_security "MAC IP"; a port group
per security group with allow-related ACLs; the neutron_pg_drop group dropping the rest),
the "guests" being the test attached to the taps as QEMU would. ovn-northd and
ovn-controller do the filtering, in the userspace datapath's conntrack."""

import hoststate
import pytest
from domains import new_id, quantum_vm, seed_properties, to_bytes
from lxml import etree

SWITCH = "secured"
SPOOFED_MAC, SPOOFED_IP = "02:00:00:77:77:77", "10.78.0.250"
GUESTS = (("02:00:00:78:00:01", "10.78.0.1"), ("02:00:00:78:00:02", "10.78.0.2"))


def _pg(name):
    return "pg_" + name.replace("-", "_")


@pytest.fixture(scope="module")
def guests(ovn_host, tmp_path_factory):
    """Two VMs on logical ports of the default group; (ovs, ovn, [(tap, mac, ip, lsp)])."""
    from qhook.lab.vdsm_emulator import VdsmEmulator
    from tools import HOOKS_DIR, hook_env

    ovs, ovn = ovn_host
    config = tmp_path_factory.mktemp("ovn-secured") / "quantum.conf"
    config.write_text(
        f"[ovs]\nconnection = {ovs.connection}\ntimeout = 5\n[wiring]\ntimeout = 20\n"
        "on_timeout = fail\n"
    )
    vdsm = VdsmEmulator(HOOKS_DIR, hook_env({"QHOOK_CONFIG": str(config)}), wrapper=ovs.netns_exec)
    ovn.nbctl("ls-add", SWITCH)
    ovn.nbctl("pg-add", "neutron_pg_drop")
    ovn.nbctl(
        "acl-add",
        "neutron_pg_drop",
        "from-lport",
        "1001",
        "inport == @neutron_pg_drop && ip",
        "drop",
    )
    ovn.nbctl(
        "acl-add",
        "neutron_pg_drop",
        "to-lport",
        "1001",
        "outport == @neutron_pg_drop && ip",
        "drop",
    )
    default = _pg("default")
    ovn.nbctl("pg-add", default)
    ovn.nbctl(
        "acl-add", default, "from-lport", "1002", f"inport == @{default} && ip4", "allow-related"
    )
    ingress = f"outport == @{default} && ip4 && ip4.src == ${default}_ip4"
    ovn.nbctl("acl-add", default, "to-lport", "1002", ingress, "allow-related")
    found, started = [], []
    network = new_id()
    for mac, ip in GUESTS:
        lsp = new_id()
        ovn.nbctl("lsp-add", SWITCH, lsp, "--", "lsp-set-addresses", lsp, f"{mac} {ip}")
        ovn.nbctl("lsp-set-port-security", lsp, f"{mac} {ip}")
        domain = quantum_vm([seed_properties("ovn", lsp, q_network_id=network)], vm_uuid=new_id())
        domain.find("devices/interface/mac").set("address", mac)
        for device in domain.iter("{http://ovirt.org/vm/1.0}device"):
            if device.get("mac_address") == "02:00:00:00:01:01":
                device.set("mac_address", mac)
        started.append(vdsm.start_vm(to_bytes(domain)))
        assert not started[-1].runs[-1].stderr  # OVN: no hybrid_plug warning
        tap = etree.fromstring(started[-1].domain_xml).find("devices/interface/target").get("dev")
        found.append((tap, mac, ip, lsp))
    lsps = [lsp for *_, lsp in found]
    ovn.nbctl("pg-set-ports", default, *lsps)
    ovn.nbctl("pg-set-ports", "neutron_pg_drop", *lsps)
    ovn.nbctl("--wait=hv", "sync")
    yield ovs, ovn, found
    for vm in started:
        vdsm.destroy_vm(vm.domain_xml)
    for name in (default, "neutron_pg_drop"):
        ovn.nbctl("pg-del", name)
    ovn.nbctl("ls-del", SWITCH)


def _arrives(ovs, sender, receiver, mac=None, ip=None):
    tap, own_mac, own_ip, _ = sender
    return hoststate.udp_arrives(
        ovs.netns_exec, (tap, mac or own_mac, ip or own_ip), tuple(receiver[:3])
    )


def test_ovn_drops_spoofed_frames_and_honours_the_groups(guests):
    ovs, ovn, (sender, receiver) = guests
    assert _arrives(ovs, sender, receiver) == 5
    assert _arrives(ovs, sender, receiver, mac=SPOOFED_MAC) == 0
    assert _arrives(ovs, sender, receiver, ip=SPOOFED_IP) == 0

    # The receiver in a group with no ingress rule; then a rule for the port.
    closed = _pg("closed")
    ovn.nbctl("pg-add", closed)
    ovn.nbctl(
        "acl-add", closed, "from-lport", "1002", f"inport == @{closed} && ip4", "allow-related"
    )
    ovn.nbctl("pg-set-ports", _pg("default"), sender[3])
    ovn.nbctl("pg-set-ports", closed, receiver[3])
    ovn.nbctl("--wait=hv", "sync")
    assert _arrives(ovs, sender, receiver) == 0
    rule = f"outport == @{closed} && ip4 && udp.dst == 7777"
    ovn.nbctl("--wait=hv", "acl-add", closed, "to-lport", "1002", rule, "allow-related")
    assert _arrives(ovs, sender, receiver) == 5
    ovn.nbctl("pg-set-ports", _pg("default"), sender[3], receiver[3])
    ovn.nbctl("--wait=hv", "pg-del", closed)
    assert _arrives(ovs, sender, receiver) == 5


def test_without_port_security_ovn_passes_the_spoofed_frames(guests):
    ovs, ovn, (sender, receiver) = guests
    lsps = (sender[3], receiver[3])
    for lsp in lsps:
        ovn.nbctl("lsp-set-port-security", lsp)
    ovn.nbctl("clear", "Port_Group", _pg("default"), "ports")
    ovn.nbctl("--wait=hv", "clear", "Port_Group", "neutron_pg_drop", "ports")
    try:
        assert _arrives(ovs, sender, receiver, ip=SPOOFED_IP) == 5
        assert _arrives(ovs, sender, receiver, mac=SPOOFED_MAC) == 5
    finally:
        for _, mac, ip, lsp in (sender, receiver):
            ovn.nbctl("lsp-set-port-security", lsp, f"{mac} {ip}")
        ovn.nbctl("pg-set-ports", _pg("default"), *lsps)
        ovn.nbctl("--wait=hv", "pg-set-ports", "neutron_pg_drop", *lsps)
    assert _arrives(ovs, sender, receiver, ip=SPOOFED_IP) == 0
