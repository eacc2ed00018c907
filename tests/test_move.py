# SPDX-License-Identifier: GPL-2.0-or-later
"""Moving a running vNIC to another Quantum network (VDSM's update_device hooks), with a
real OVN: the tap QEMU holds stays, its port is re-keyed to the new logical port,
ovn-installed comes back, and frames reach the new network and no longer the old."""

import hoststate
import pytest
from domains import new_id, quantum_vm, seed_properties, to_bytes
from lxml import etree

from qhook.lab.vdsm_emulator import HookFailed, VdsmEmulator
from tools import HOOKS_DIR, hook_env

RED, BLUE = new_id(), new_id()
MOVER = "02:00:00:00:01:01"


def _vdsm(ovs, tmp_path):
    config = tmp_path / "quantum.conf"
    config.write_text(
        f"[ovs]\nconnection = {ovs.connection}\ntimeout = 5\n[wiring]\ntimeout = 20\n"
        "on_timeout = fail\n"
    )
    return VdsmEmulator(HOOKS_DIR, hook_env({"QHOOK_CONFIG": str(config)}), wrapper=ovs.netns_exec)


def _vm_on(ovn, vdsm, switch, network, mac=MOVER):
    """A VM with one OVN vNIC on a new logical port of the switch: (start, tap, port)."""
    port = new_id()
    ovn.nbctl("lsp-add", switch, port, "--", "lsp-set-addresses", port, mac)
    domain = quantum_vm([seed_properties("ovn", port, q_network_id=network)], vm_uuid=new_id())
    domain.find("devices/interface/mac").set("address", mac)
    for device in domain.iter("{http://ovirt.org/vm/1.0}device"):
        if device.get("mac_address") == "02:00:00:00:01:01":
            device.set("mac_address", mac)
    started = vdsm.start_vm(to_bytes(domain))
    tap = etree.fromstring(started.domain_xml).find("devices/interface/target").get("dev")
    return started, tap, port


def _profile_change(port, network, plugin="ovn"):
    """The device XML VDSM sends when a vNIC's profile changes, and its new properties."""
    device = (
        f'<interface type="bridge"><mac address="{MOVER}"/><model type="virtio"/>'
        '<source bridge="ovirtmgmt"/><link state="up"/></interface>'
    ).encode()
    return device, {"plugin": plugin, "q_network_id": network, "q_port_id": port}


@pytest.fixture
def switches(ovn_host):
    ovs, ovn = ovn_host
    for name in ("red", "blue"):
        ovn.nbctl("--may-exist", "ls-add", name)
    yield ovs, ovn


def test_a_running_vnic_moves_to_another_network(switches, tmp_path):
    ovs, ovn = switches
    vdsm = _vdsm(ovs, tmp_path)
    red_peer, red_tap, _ = _vm_on(ovn, vdsm, "red", RED, "02:00:00:00:0a:01")
    blue_peer, blue_tap, _ = _vm_on(ovn, vdsm, "blue", BLUE, "02:00:00:00:0b:01")
    mover, tap, red_port = _vm_on(ovn, vdsm, "red", RED)
    vm_id = etree.fromstring(mover.domain_xml).findtext("uuid")
    assert hoststate.frames_cross(ovs, tap, MOVER, [500], [red_tap, blue_tap]) == {500: [red_tap]}

    blue_port = new_id()
    ovn.nbctl("lsp-add", "blue", blue_port, "--", "lsp-set-addresses", blue_port, MOVER)
    device, properties = _profile_change(blue_port, BLUE)
    before, after = vdsm.update_device(device, properties, vm_id)
    assert not before.stderr and not after.stderr, (before.stderr, after.stderr)
    rewritten = etree.fromstring(before.data_out)
    assert rewritten.get("type") == "ethernet"
    assert rewritten.find("target").get("dev") == tap  # the tap QEMU holds
    ids = hoststate.ovs_interfaces(ovs)[tap]["external_ids"]
    assert ids["iface-id"] == blue_port and ids["ovn-installed"] == "true"
    assert ids["vdsm-hook-quantum-network"] == BLUE
    assert not any("previous" in key for key in ids)  # the update went through
    assert f"vnic={blue_port} " in hoststate.links(ovs)[tap]["ifalias"]
    assert ovn.nbctl("get", "Logical_Switch_Port", red_port, "up").strip() == "false"
    assert hoststate.frames_cross(ovs, tap, MOVER, [500], [red_tap, blue_tap]) == {500: [blue_tap]}

    # libvirt refuses the next change: the vNIC stays where it is.
    other = new_id()
    ovn.nbctl("lsp-add", "red", other, "--", "lsp-set-addresses", other, MOVER)
    device, properties = _profile_change(other, RED)
    before, after = vdsm.update_device(device, properties, vm_id, libvirt_accepts=False)
    assert after.point == "after_update_device_fail" and not after.stderr
    ids = hoststate.ovs_interfaces(ovs)[tap]["external_ids"]
    assert ids["iface-id"] == blue_port and ids["vdsm-hook-quantum-network"] == BLUE

    # The stop removes the tap though its name is not the new port's.
    domain = etree.fromstring(mover.domain_xml)
    assert not vdsm.destroy_vm(etree.tostring(domain)).failed
    assert tap not in hoststate.links(ovs) and tap not in hoststate.ovs_interfaces(ovs)
    for peer in (red_peer, blue_peer):
        assert not vdsm.destroy_vm(peer.domain_xml).failed


def test_a_port_the_agent_never_wires_moves_back(switches, tmp_path):
    ovs, ovn = switches
    vdsm = _vdsm(ovs, tmp_path)
    config = tmp_path / "quantum.conf"
    config.write_text(config.read_text().replace("timeout = 20", "timeout = 1.5"))
    mover, tap, red_port = _vm_on(ovn, vdsm, "red", RED)
    vm_id = etree.fromstring(mover.domain_xml).findtext("uuid")
    device, properties = _profile_change(new_id(), BLUE)  # no such logical port
    with pytest.raises(HookFailed) as refused:
        vdsm.update_device(device, properties, vm_id)
    assert "did not wire" in str(refused.value) and "moved back" in str(refused.value)
    ids = hoststate.ovs_interfaces(ovs)[tap]["external_ids"]
    assert ids["iface-id"] == red_port and ids["vdsm-hook-quantum-network"] == RED
    assert not any("previous" in key for key in ids)
    assert f"vnic={red_port} " in hoststate.links(ovs)[tap]["ifalias"]
    assert not vdsm.destroy_vm(mover.domain_xml).failed


@pytest.mark.parametrize(
    ("plugin", "says"),
    [
        (
            "linuxbridge",
            "a Linux bridge vNIC cannot move to another Quantum port while the VM runs",
        ),
        ("openvswitch", "has no port of this package on this host"),
    ],
)
def test_what_cannot_move_is_refused_in_one_line(switches, tmp_path, plugin, says):
    ovs, _ = switches
    device, properties = _profile_change(new_id(), BLUE, plugin)
    with pytest.raises(HookFailed) as refused:
        _vdsm(ovs, tmp_path).update_device(device, properties, new_id())
    assert says in str(refused.value) and "\n" not in str(refused.value)
