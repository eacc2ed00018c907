# SPDX-License-Identifier: GPL-2.0-or-later
"""Hybrid plugging (for Neutron's iptables_hybrid firewall) on a real Open vSwitch with
real devices, `[ovs] hybrid_plug = yes` standing for a binding that says so: the tap in
a Linux bridge of its own, a veth pair from it to br-int whose end there carries the ids;
undone on failure, removed on stop, found by status and cleanup, refused where it
cannot work. tests/test_port_security.py has the real agents, bindings and frames."""

import json
import os

import hoststate
import pytest
from domains import quantum_vm, seed_properties, to_bytes
from lxml import etree

from qhook.lab.vdsm_emulator import HookFailed
from tools import ERROR_PREFIX, error_lines, qhook_on_host

MARK = "vdsm-hook-quantum "


def _names(tap):
    """The vNIC's bridge, its veth end in it, the end on br-int."""
    return "qbr" + tap[3:], "qvb" + tap[3:], "qvo" + tap[3:]


def _tap_of(properties):
    return "tap" + properties["q_port_id"][:11]


def _hybrid_vnic(configure, **settings):
    """Plug hybrid from now on; a new Open vSwitch vNIC's properties and its tap."""
    configure(hybrid_plug="yes", **settings)
    vnic = seed_properties("openvswitch")
    return vnic, _tap_of(vnic)


def _refused(vdsm, vnic):
    """Start a VM with this vNIC, which must fail: its one error line."""
    with pytest.raises(HookFailed) as failed:
        vdsm.start_vm(to_bytes(quantum_vm([vnic])))
    (line,) = error_lines(failed.value.run.stderr)
    return line


def _devices(ovs, tap):
    links = hoststate.links(ovs)
    return {name: links.get(name) for name in (tap, *_names(tap))}


def test_a_start_puts_the_tap_in_its_own_bridge_and_the_veth_on_br_int(vdsm, configure, ovs):
    configure(hybrid_plug="yes")
    vnic = seed_properties("openvswitch", mtu="1400")
    domain = quantum_vm([vnic])
    tap = _tap_of(vnic)
    bridge, bridge_end, ovs_end = _names(tap)

    started = vdsm.start_vm(to_bytes(domain))
    assert not started.runs[-1].stderr
    links = _devices(ovs, tap)
    assert links[tap]["master"] == bridge and links[bridge_end]["master"] == bridge
    info = links[bridge]["linkinfo"]
    assert info["info_kind"] == "bridge" and info["info_data"]["ageing_time"] == 0
    assert info["info_data"]["nf_call_iptables"] == 1  # filtered whatever the sysctl says
    assert {links[n]["linkinfo"]["info_kind"] for n in (bridge_end, ovs_end)} == {"veth"}
    assert {links[n]["mtu"] for n in links} == {1400}
    for name, link in links.items():
        assert link["ifalias"].startswith(f"{MARK}vnic={vnic['q_port_id']} "), name
    ports = hoststate.bridge_ports(ovs)
    assert ovs_end in ports and tap not in ports  # the firewall sees every frame
    ids = hoststate.ovs_interfaces(ovs)[ovs_end]["external_ids"]
    assert ids["iface-id"] == vnic["q_port_id"] and ids["iface-status"] == "active"
    vm_id = domain.findtext("uuid")
    assert ids["vm-uuid"] == vm_id and ids["vdsm-hook-quantum"] == "owned"
    interface = etree.fromstring(started.domain_xml).find("devices/interface")
    assert interface.get("type") == "ethernet" and interface.find("target").get("dev") == tap

    assert not vdsm.destroy_vm(started.domain_xml).failed
    assert not any(_devices(ovs, tap).values())
    assert ovs_end not in hoststate.ovs_interfaces(ovs)


def test_libvirt_plug_mode_gives_libvirt_the_vnics_bridge(vdsm, configure, ovs):
    vnic, tap = _hybrid_vnic(configure, plug="libvirt")
    bridge, bridge_end, ovs_end = _names(tap)
    started = vdsm.start_vm(to_bytes(quantum_vm([vnic])))
    interface = etree.fromstring(started.domain_xml).find("devices/interface")
    assert interface.get("type") == "bridge"
    assert interface.find("source").get("bridge") == bridge
    assert interface.find("virtualport") is None  # libvirt must not touch Open vSwitch
    assert interface.find("target").get("dev") == tap
    links = _devices(ovs, tap)
    assert links[tap] is None  # libvirt makes it, in the bridge
    assert links[bridge_end]["master"] == bridge
    assert ovs_end in hoststate.bridge_ports(ovs)

    assert not vdsm.destroy_vm(started.domain_xml).failed
    assert not any(_devices(ovs, tap).values())


def test_a_failure_half_way_leaves_nothing(vdsm, configure, ovs):
    vnic, tap = _hybrid_vnic(configure)
    _, _, ovs_end = _names(tap)
    hoststate.add_port(ovs, "br-int", ovs_end, **{"iface-id": "somebody-else"})
    try:
        assert _refused(vdsm, vnic) == (
            f"{ERROR_PREFIX}before_vm_start: Open vSwitch port {ovs_end} already exists and "
            "belongs to something else"
        )
        assert not any(_devices(ovs, tap).values())
        ids = hoststate.ovs_interfaces(ovs)[ovs_end]["external_ids"]
        assert ids == {"iface-id": "somebody-else"}  # untouched
    finally:
        ovs.vsctl("del-port", "br-int", ovs_end)


def test_a_foreign_device_of_the_bridges_name_is_refused_and_kept(vdsm, configure, ovs):
    vnic, tap = _hybrid_vnic(configure)
    bridge, _, _ = _names(tap)
    ovs.in_netns("ip", "link", "add", bridge, "type", "bridge")
    try:
        assert _refused(vdsm, vnic) == (
            f"{ERROR_PREFIX}before_vm_start: device {bridge} already exists and belongs to "
            "something else"
        )
        links = _devices(ovs, tap)
        assert links[bridge] is not None and "ifalias" not in links[bridge]
        assert [name for name, link in links.items() if link] == [bridge]
    finally:
        ovs.in_netns("ip", "link", "delete", bridge)


def test_straight_by_default_with_one_warning_and_none_when_told(vdsm, configure, ovs):
    configure(hybrid_plug="auto")  # the default
    vnic = seed_properties("openvswitch")
    tap = _tap_of(vnic)
    started = vdsm.start_vm(to_bytes(quantum_vm([vnic])))
    warnings = [line for line in started.runs[-1].stderr.splitlines() if "hybrid_plug" in line]
    assert len(warnings) == 1 and vnic["q_port_id"] in warnings[0]
    assert "no Quantum settings for root" in warnings[0]
    assert tap in hoststate.bridge_ports(ovs) and not any(
        _devices(ovs, tap)[n] for n in _names(tap)
    )
    assert not vdsm.destroy_vm(started.domain_xml).failed

    configure(hybrid_plug="no")
    started = vdsm.start_vm(to_bytes(quantum_vm([seed_properties("openvswitch")])))
    assert "hybrid_plug" not in started.runs[-1].stderr
    assert not vdsm.destroy_vm(started.domain_xml).failed


def test_a_vnic_that_was_plugged_straight_is_replugged_hybrid(vdsm, configure, ovs):
    """A retried start after the binding changed: the old port on br-int goes (it would
    carry the tap past the firewall)."""
    vnic = seed_properties("openvswitch")
    tap = _tap_of(vnic)
    domain = to_bytes(quantum_vm([vnic]))
    configure(hybrid_plug="no")
    vdsm.start_vm(domain)
    assert tap in hoststate.bridge_ports(ovs)
    configure(hybrid_plug="yes")
    started = vdsm.start_vm(domain)
    ports = hoststate.bridge_ports(ovs)
    assert tap not in ports and _names(tap)[2] in ports
    assert hoststate.links(ovs)[tap]["master"] == _names(tap)[0]
    configure(hybrid_plug="no")  # and back
    started = vdsm.start_vm(domain)
    assert tap in hoststate.bridge_ports(ovs) and _names(tap)[2] not in hoststate.bridge_ports(ovs)
    assert not any(_devices(ovs, tap)[n] for n in _names(tap))
    assert not vdsm.destroy_vm(started.domain_xml).failed


def test_status_and_cleanup_find_what_a_crash_left(vdsm, configure, ovs, config_path):
    vnic, tap = _hybrid_vnic(configure)
    bridge, bridge_end, ovs_end = _names(tap)
    vdsm.start_vm(to_bytes(quantum_vm([vnic])))  # and VDSM dies: no after_vm_destroy

    status = qhook_on_host(ovs.netns_exec, config_path, "status", "--json", "--grace", "0")
    (entry,) = [e for e in json.loads(status.stdout)["ports"] if e["tap"] == tap]
    assert entry["hybrid"] == [bridge, bridge_end, ovs_end] and entry["port"] == ovs_end
    assert entry["stale"] == "no VM holds its tap" and entry["vnic"] == vnic["q_port_id"]

    cleaned = qhook_on_host(ovs.netns_exec, config_path, "cleanup", "--grace", "0")
    assert f"removed device {bridge} (no VM holds its tap)" in cleaned.stdout
    assert f"removed OVS port {ovs_end} (no VM holds its tap)" in cleaned.stdout
    assert f"removed tap {tap} (no VM holds its tap)" in cleaned.stdout
    assert not any(_devices(ovs, tap).values())
    assert ovs_end not in hoststate.ovs_interfaces(ovs)


def test_a_hybrid_vnic_cannot_mirror(vdsm, configure, ovs):
    from domains import set_port_mirroring

    configure(hybrid_plug="yes")
    vnic = seed_properties("openvswitch")
    domain = quantum_vm([vnic])
    mac = domain.find("devices/interface/mac").get("address")
    set_port_mirroring(domain, mac, ["red"])
    with pytest.raises(HookFailed) as failed:
        vdsm.start_vm(to_bytes(domain))
    (line,) = error_lines(failed.value.run.stderr)
    assert "plugged hybrid (iptables_hybrid firewall) cannot" in line
    assert not any(_devices(ovs, _tap_of(vnic)).values())


@pytest.fixture
def destination(tmp_path):
    """Another "host": its own Open vSwitch in its own namespace, plugging hybrid."""
    from qhook.lab.sandbox import OvsSandbox
    from qhook.lab.vdsm_emulator import VdsmEmulator
    from tools import HOOKS_DIR, hook_env

    sandbox = OvsSandbox(tmp_path / "dst", f"qhook-hdst-{os.getpid()}-{os.urandom(3).hex()}")
    sandbox.start()
    config = tmp_path / "dst.conf"
    config.write_text(
        f"[ovs]\nconnection = {sandbox.connection}\ntimeout = 5\nhybrid_plug = yes\n"
        "[wiring]\nwait = no\n"
    )
    yield (
        sandbox,
        VdsmEmulator(
            HOOKS_DIR, hook_env({"QHOOK_CONFIG": str(config)}), wrapper=sandbox.netns_exec
        ),
    )
    sandbox.stop()


def test_a_migration_plugs_the_destination_hybrid_and_repairs_it(vdsm, configure, ovs, destination):
    """Hook plug mode: the source plugged straight, the destination's binding says hybrid
    (the XML is the same either way); each side undoes only its own."""
    second, there = destination
    vnic = seed_properties("openvswitch")
    tap = _tap_of(vnic)
    bridge, _, ovs_end = _names(tap)
    domain = quantum_vm([vnic])
    vm_id = domain.findtext("uuid")
    started = vdsm.start_vm(to_bytes(domain))
    assert tap in hoststate.bridge_ports(ovs)

    incoming = there.run_point("before_vm_migrate_destination", started.domain_xml, vm_id=vm_id)
    assert not incoming.failed and not incoming.stderr
    assert hoststate.links(second)[tap]["master"] == bridge
    assert ovs_end in hoststate.bridge_ports(second)
    second.vsctl("del-port", ovs_end)  # behind our back
    arrived = there.run_point("after_vm_migrate_destination", started.domain_xml, vm_id=vm_id)
    assert not arrived.failed and f"{ovs_end} was not plugged after" in arrived.stderr
    assert ovs_end in hoststate.bridge_ports(second)
    assert tap not in hoststate.bridge_ports(second)  # repaired as it was plugged

    assert not vdsm.destroy_vm(started.domain_xml).failed  # the source
    assert tap not in hoststate.links(ovs) and ovs_end in hoststate.bridge_ports(second)
    assert not there.destroy_vm(started.domain_xml).failed
    assert not {tap, bridge, ovs_end} & set(hoststate.links(second))
    assert ovs_end not in hoststate.ovs_interfaces(second)


def test_hotplug_and_unplug_of_a_hybrid_vnic(vdsm, configure, ovs):
    vnic, tap = _hybrid_vnic(configure)
    vm_id = str(__import__("uuid").uuid4())
    device = (
        b'<interface type="bridge"><mac address="02:00:00:00:0c:01"/><model type="virtio"/>'
        b'<source bridge="ovirtmgmt"/></interface>'
    )
    plugged = vdsm.run_point("before_nic_hotplug", device, vnic, vm_id=vm_id)
    assert not plugged.failed and not plugged.stderr
    assert hoststate.links(ovs)[tap]["master"] == _names(tap)[0]
    unplugged = vdsm.run_point("after_nic_hotunplug", plugged.data_out, vnic, vm_id=vm_id)
    assert not unplugged.failed
    assert not any(_devices(ovs, tap).values())
    assert _names(tap)[2] not in hoststate.ovs_interfaces(ovs)


def test_a_suspended_hybrid_vm_comes_back_hybrid(vdsm, configure, ovs):
    vnic, tap = _hybrid_vnic(configure)
    domain = to_bytes(quantum_vm([vnic]))
    started = vdsm.start_vm(domain)
    runs = vdsm.hibernate_vm(started.domain_xml)
    assert not any(run.failed for run in runs)
    assert not any(_devices(ovs, tap).values())
    runs = vdsm.restore_vm(domain, started.domain_xml, from_snapshot=False)
    assert not any(run.failed for run in runs), [run.stderr for run in runs]
    assert hoststate.links(ovs)[tap]["master"] == _names(tap)[0]
    assert _names(tap)[2] in hoststate.bridge_ports(ovs)
    assert not vdsm.destroy_vm(started.domain_xml).failed
    assert not any(_devices(ovs, tap).values())


def test_a_running_hybrid_vnic_cannot_move_to_another_port(vdsm, configure, ovs):
    from domains import new_id

    vnic, tap = _hybrid_vnic(configure)
    domain = quantum_vm([vnic])
    vm_id = domain.findtext("uuid")
    mac = domain.find("devices/interface/mac").get("address")
    started = vdsm.start_vm(to_bytes(domain))
    device = (
        f'<interface type="bridge"><mac address="{mac}"/><model type="virtio"/>'
        '<source bridge="ovirtmgmt"/></interface>'
    ).encode()
    moved = {"plugin": "openvswitch", "q_network_id": new_id(), "q_port_id": new_id()}
    with pytest.raises(HookFailed) as failed:
        vdsm.update_device(device, moved, vm_id)
    (line,) = error_lines(failed.value.run.stderr)
    assert line.endswith(
        "cannot move to another Quantum port while the VM runs: the firewall's rules name "
        "the tap after the port, and the running QEMU's tap cannot be renamed; unplug and "
        "plug the vNIC instead"
    )
    ids = hoststate.ovs_interfaces(ovs)[_names(tap)[2]]["external_ids"]
    assert ids["iface-id"] == vnic["q_port_id"]  # unchanged
    assert not vdsm.destroy_vm(started.domain_xml).failed


def test_a_device_of_another_kind_with_our_mark_is_not_ours(vdsm, configure, ovs):
    """The mark alone is not enough: a veth named like the vNIC's bridge, marked as ours
    for it by someone, is neither taken over nor deleted."""
    vnic, tap = _hybrid_vnic(configure)
    bridge, _, _ = _names(tap)
    domain = quantum_vm([vnic])
    forged = f"vdsm-hook-quantum vnic={vnic['q_port_id']} vm={domain.findtext('uuid')} since=1"
    peer = "qhp" + os.urandom(4).hex()
    ovs.in_netns("ip", "link", "add", bridge, "type", "veth", "peer", "name", peer)
    ovs.in_netns("ip", "link", "set", bridge, "alias", forged)
    try:
        assert _refused(vdsm, vnic).endswith(
            f"device {bridge} already exists and belongs to something else"
        )
        assert not vdsm.destroy_vm(to_bytes(domain)).failed
        link = hoststate.links(ovs)[bridge]
        assert link["linkinfo"]["info_kind"] == "veth" and link["ifalias"] == forged
    finally:
        ovs.in_netns("ip", "link", "delete", bridge)


def test_a_stop_leaves_a_foreign_bridge_of_the_vnics_name(vdsm, configure, ovs):
    vnic, tap = _hybrid_vnic(configure)
    bridge, _, _ = _names(tap)
    started = vdsm.start_vm(to_bytes(quantum_vm([vnic])))
    assert not vdsm.destroy_vm(started.domain_xml).failed
    ovs.in_netns("ip", "link", "add", bridge, "type", "bridge")  # somebody's, later
    try:
        assert not vdsm.destroy_vm(started.domain_xml).failed  # a late second stop
        assert bridge in hoststate.links(ovs)
    finally:
        ovs.in_netns("ip", "link", "delete", bridge)
