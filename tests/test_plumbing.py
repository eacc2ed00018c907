# SPDX-License-Identifier: GPL-2.0-or-later
"""Plugging and unplugging against a real Open vSwitch and real taps, in a private netns:
leftovers, foreign objects, failures half-way, Open vSwitch down or hung, concurrency,
hotplug and migration between two "hosts"."""

import os
import signal
import threading
import time

import hoststate
import pytest
from domains import new_id, quantum_vm, seed_properties, to_bytes
from lxml import etree

from qhook.lab.sandbox import OvsSandbox
from qhook.lab.vdsm_emulator import HookFailed, VdsmEmulator
from tools import ERROR_PREFIX, HOOKS_DIR, error_lines, hook_env


def _taps(domain) -> list:
    """The tap names the Quantum vNICs of a domain built by quantum_vm() get."""
    metadata = domain.find("metadata")
    names = []
    for element in metadata.iter("{http://ovirt.org/vm/1.0}q_port_id"):
        custom = element.getparent()
        attachment = custom.find("{http://ovirt.org/vm/1.0}q_attachment_id")
        names.append("tap" + (attachment if attachment is not None else element).text[:11])
    return names


def _mine(ovs, names):
    """Which of these names exist as devices or OVS interfaces in the sandbox."""
    return set(names) & (set(hoststate.links(ovs)) | set(hoststate.ovs_interfaces(ovs)))


def _foreign_tap(ovs, name):
    ovs.in_netns("ip", "tuntap", "add", "dev", name, "mode", "tap")


def _foreign_port(ovs, name, iface_id):
    """Somebody else's port: a row only (no device behind it, so vswitchd just complains)."""
    hoststate.add_port(ovs, "br-int", name, **{"iface-id": iface_id})


def test_start_refuses_a_foreign_tap_and_changes_nothing(vdsm, ovs):
    domain = quantum_vm([seed_properties("openvswitch"), seed_properties("linuxbridge")])
    first, second = _taps(domain)
    _foreign_tap(ovs, second)
    before = hoststate.links(ovs)[second]
    with pytest.raises(HookFailed) as failed:
        vdsm.start_vm(to_bytes(domain))
    line = error_lines(failed.value.run.stderr)
    assert line == [
        f"{ERROR_PREFIX}before_vm_start: device {second} already exists and belongs to "
        "something else"
    ]
    assert first not in hoststate.links(ovs) and first not in hoststate.ovs_interfaces(ovs)
    assert hoststate.links(ovs)[second] == before
    ovs.in_netns("ip", "link", "delete", second)


def test_start_refuses_a_foreign_port_and_changes_nothing(vdsm, ovs):
    domain = quantum_vm([seed_properties("linuxbridge"), seed_properties("openvswitch")])
    first, second = _taps(domain)
    _foreign_port(ovs, second, "somebody-else")
    with pytest.raises(HookFailed) as failed:
        vdsm.start_vm(to_bytes(domain))
    assert (
        f"Open vSwitch port {second} already exists and belongs to something else"
        in failed.value.run.stderr
    )
    assert first not in hoststate.links(ovs)
    assert hoststate.ovs_interfaces(ovs)[second]["external_ids"] == {"iface-id": "somebody-else"}
    ovs.vsctl("del-port", second)


def test_leftovers_of_the_same_vnic_are_taken_over(vdsm, ovs):
    """A crashed run left a tap and a port; the next start of the vNIC reuses them."""
    port = new_id()
    crashed = quantum_vm([seed_properties("openvswitch", port)], vm_uuid=new_id())
    vdsm.start_vm(to_bytes(crashed))  # and never destroyed: the host crashed
    (tap,) = _taps(crashed)
    again = quantum_vm(
        [seed_properties("openvswitch", port, _extra='<driver name="vhost" queues="2"/>')],
        vm_uuid=new_id(),
    )
    started = vdsm.start_vm(to_bytes(again))
    link = hoststate.links(ovs)[tap]
    assert hoststate.tun_info(link)["multi_queue"] is True  # remade for the new queues
    vm_id = again.findtext("uuid")
    assert f" vm={vm_id} " in link["ifalias"]
    assert hoststate.ovs_interfaces(ovs)[tap]["external_ids"]["vm-uuid"] == vm_id
    # The crashed VM's after_vm_destroy, arriving late, must not unplug the new VM.
    assert not vdsm.destroy_vm(to_bytes(crashed)).failed
    assert _mine(ovs, [tap]) == {tap}
    assert not vdsm.destroy_vm(started.domain_xml).failed
    assert _mine(ovs, [tap]) == set()


def test_ports_made_before_they_carried_the_vm_id_are_still_found(vdsm, ovs):
    """Earlier versions marked the Port with our mark alone; the VM's id was only on the
    Interface. The lookup on our mark and the VM must not miss such a port."""
    domain = quantum_vm([seed_properties("openvswitch")], vm_uuid=new_id())
    started = vdsm.start_vm(to_bytes(domain))
    (tap,) = _taps(domain)
    vm_id = domain.findtext("uuid")
    assert hoststate.ovs_ports(ovs)[tap]["external_ids"] == {
        "vdsm-hook-quantum": "owned",
        "vm-uuid": vm_id,
    }
    ovs.vsctl("remove", "Port", tap, "external_ids", "vm-uuid")
    repaired = vdsm.run_point("after_vm_migrate_destination", started.domain_xml, vm_id=vm_id)
    assert (repaired.failed, repaired.stderr) == (False, "")
    assert hoststate.ovs_interfaces(ovs)[tap]["external_ids"]["vm-uuid"] == vm_id
    assert not vdsm.destroy_vm(started.domain_xml).failed
    assert _mine(ovs, [tap]) == set()


def test_destroy_leaves_foreign_and_other_vms_objects_alone(vdsm, ovs):
    domain = quantum_vm([seed_properties("openvswitch"), seed_properties("linuxbridge")])
    other = quantum_vm([seed_properties("openvswitch")], vm_uuid=new_id())
    started = vdsm.start_vm(to_bytes(domain))
    other_started = vdsm.start_vm(to_bytes(other))
    _foreign_tap(ovs, "tapdeadbeef-a1")
    _foreign_port(ovs, "tapdeadbeef-a2", "x")
    # The destroyed VM's XML also names the other VM's tap and the foreign ones.
    xml = started.domain_xml
    for name in ["tapdeadbeef-a1", "tapdeadbeef-a2", *_taps(other)]:
        xml = xml.replace(
            b"</devices>",
            f'<interface type="ethernet"><target dev="{name}"'
            f' managed="no"/></interface></devices>'.encode(),
        )
    destroyed = vdsm.destroy_vm(xml)
    assert not destroyed.failed, destroyed.stderr
    assert _mine(ovs, _taps(domain)) == set()
    assert _mine(ovs, ["tapdeadbeef-a1", "tapdeadbeef-a2", *_taps(other)]) == {
        "tapdeadbeef-a1",
        "tapdeadbeef-a2",
        *_taps(other),
    }
    # Idempotent: destroying again finds nothing to do and says nothing.
    assert vdsm.destroy_vm(xml).stderr == ""
    vdsm.destroy_vm(other_started.domain_xml)
    ovs.in_netns("ip", "link", "delete", "tapdeadbeef-a1")
    ovs.vsctl("del-port", "tapdeadbeef-a2")


def test_a_failure_half_way_undoes_the_taps_already_made(vdsm, ovs):
    domain = quantum_vm(
        [
            seed_properties("linuxbridge"),
            seed_properties("openvswitch"),
            seed_properties("linuxbridge", _extra='<mtu size="65535"/>'),  # above a tap's maximum
        ]
    )
    with pytest.raises(HookFailed) as failed:
        vdsm.start_vm(to_bytes(domain))
    (line,) = error_lines(failed.value.run.stderr)
    assert line.endswith(f"cannot set up tap {_taps(domain)[2]}: Invalid argument"), line
    assert _mine(ovs, _taps(domain)) == set()


def test_a_data_file_that_cannot_be_written_undoes_the_plugging(env, ovs, tmp_path):
    """The last step fails (the file size limit stands in for a full disk): all undone."""
    domain = quantum_vm([seed_properties("openvswitch"), seed_properties("linuxbridge")])
    limited = VdsmEmulator(HOOKS_DIR, env, wrapper=["prlimit", "--fsize=2000", *ovs.netns_exec])
    data = to_bytes(domain)
    assert len(data) > 2000
    with pytest.raises(HookFailed) as failed:
        limited.run_point("before_vm_start", data)
    (line,) = error_lines(failed.value.run.stderr)
    assert "cannot write" in line and "File too large" in line, line
    assert failed.value.run.data_out == data
    assert _mine(ovs, _taps(domain)) == set()


def test_open_vswitch_down_is_one_clear_line_and_nothing_made(vdsm, ovs, configure, tmp_path):
    configure(connection=f"unix:{tmp_path}/no-such.sock")
    domain = quantum_vm([seed_properties("linuxbridge"), seed_properties("openvswitch")])
    with pytest.raises(HookFailed) as failed:
        vdsm.start_vm(to_bytes(domain))
    assert error_lines(failed.value.run.stderr) == [
        f"{ERROR_PREFIX}before_vm_start: cannot reach Open vSwitch at "
        f"unix:{tmp_path}/no-such.sock: No such file or directory"
    ]
    assert _mine(ovs, _taps(domain)) == set()


def test_open_vswitch_hung_ends_within_the_timeout(vdsm, ovs, configure):
    configure(timeout="1")
    domain = quantum_vm([seed_properties("linuxbridge"), seed_properties("ovn")])
    os.kill(ovs.pid("ovsdb-server"), signal.SIGSTOP)
    try:
        started = time.monotonic()
        with pytest.raises(HookFailed) as failed:
            vdsm.start_vm(to_bytes(domain))
        elapsed = time.monotonic() - started
    finally:
        os.kill(ovs.pid("ovsdb-server"), signal.SIGCONT)
    assert error_lines(failed.value.run.stderr) == [
        f"{ERROR_PREFIX}before_vm_start: cannot reach Open vSwitch at {ovs.connection}: "
        "no answer within 1 s"
    ]
    assert elapsed < 5, elapsed  # the bound plus a few interpreter starts
    assert _mine(ovs, _taps(domain)) == set()


def test_concurrent_starts_and_stops_do_not_disturb_each_other(vdsm, ovs):
    domains = [
        quantum_vm(
            [
                seed_properties("openvswitch"),
                seed_properties("ovn"),
                seed_properties("linuxbridge"),
            ],
            vm_uuid=new_id(),
        )
        for _ in range(8)
    ]
    results, errors = {}, []

    def run(index, action):
        try:
            results[index] = action()
        except Exception as error:
            errors.append(error)

    def in_parallel(actions):
        threads = [threading.Thread(target=run, args=(i, a)) for i, a in enumerate(actions)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert not errors, errors

    in_parallel([lambda d=d: vdsm.start_vm(to_bytes(d)) for d in domains])
    every_tap = [name for d in domains for name in _taps(d)]
    assert _mine(ovs, every_tap) == set(every_tap)
    ovs_taps = [name for d in domains for name in _taps(d)[:2]]
    assert set(ovs_taps) <= hoststate.bridge_ports(ovs)
    hoststate.wait_for_ofports(ovs, ovs_taps)
    started = [results[i].domain_xml for i in range(len(domains))]
    results.clear()
    in_parallel([lambda x=x: vdsm.destroy_vm(x) for x in started])
    assert not any(r.failed for r in results.values())
    assert _mine(ovs, every_tap) == set()


def _device_env(env, properties, vm_id):
    return dict(env, vmId=vm_id, **properties)


def test_hotplug_then_unplug_and_a_failed_hotplug(env, ovs, hook, tmp_path):
    vm_id = new_id()
    for undo_point in ("after_nic_hotunplug", "after_nic_hotplug_fail"):
        properties = seed_properties("openvswitch")
        tap = "tap" + properties["q_port_id"][:11]
        device = tmp_path / "nic.xml"
        device.write_bytes(
            b'<interface type="bridge"><mac address="02:00:00:00:aa:01"/><model type="virtio"/>'
            b'<source bridge="ovirtmgmt"/></interface>'
        )
        plugged = hook("before_nic_hotplug", device, _device_env(env, properties, vm_id))
        assert plugged.returncode == 0, plugged.stderr
        rewritten = etree.fromstring(device.read_bytes())
        assert rewritten.get("type") == "ethernet"
        assert rewritten.find("target").get("dev") == tap
        assert _mine(ovs, [tap]) == {tap}
        assert hoststate.ovs_interfaces(ovs)[tap]["external_ids"]["vm-uuid"] == vm_id
        # VDSM hands the unplug hooks NIC XML of its own making.
        unplugged = hook(undo_point, device, _device_env(env, properties, vm_id))
        assert (unplugged.returncode, unplugged.stderr) == (0, "")
        assert _mine(ovs, [tap]) == set()


@pytest.fixture
def second_host(tmp_path):
    """Another "host": its own Open vSwitch in its own network namespace."""
    name = f"qhook-dst-{os.getpid()}-{os.urandom(3).hex()}"
    sandbox = OvsSandbox(tmp_path / "dst", name).start()
    yield sandbox
    sandbox.stop()


def test_migration_plugs_the_destination_and_repairs_it(vdsm, ovs, second_host, tmp_path):
    config = tmp_path / "dst.conf"
    config.write_text(
        f"[ovs]\nconnection = {second_host.connection}\ntimeout = 5\nhybrid_plug = no\n"
        f"[wiring]\nwait = no\n"
    )
    destination = VdsmEmulator(
        HOOKS_DIR, hook_env({"QHOOK_CONFIG": str(config)}), wrapper=second_host.netns_exec
    )
    domain = quantum_vm([seed_properties("openvswitch"), seed_properties("linuxbridge")])
    ovs_tap, lb_tap = _taps(domain)
    started = vdsm.start_vm(to_bytes(domain))
    vm_id = domain.findtext("uuid")

    incoming = destination.run_point(
        "before_vm_migrate_destination", started.domain_xml, vm_id=vm_id
    )
    assert incoming.stderr == ""
    assert _mine(second_host, [ovs_tap, lb_tap]) == {ovs_tap, lb_tap}
    arrived = destination.run_point("after_vm_migrate_destination", started.domain_xml, vm_id=vm_id)
    assert (arrived.failed, arrived.stderr) == (False, "")

    second_host.vsctl("del-port", ovs_tap)  # behind our back
    repaired = destination.run_point(
        "after_vm_migrate_destination", started.domain_xml, vm_id=vm_id
    )
    assert not repaired.failed
    assert "plugged it again" in repaired.stderr
    assert hoststate.ovs_interfaces(second_host)[ovs_tap]["external_ids"]["iface-id"]

    second_host.in_netns("ip", "link", "delete", lb_tap)
    broken = destination.run_point("after_vm_migrate_destination", started.domain_xml, vm_id=vm_id)
    assert error_lines(broken.stderr) == [
        f"{ERROR_PREFIX}after_vm_migrate_destination: tap {lb_tap} of vNIC "
        "02:00:00:00:02:01 is missing"
    ]

    # The source is cleaned by its own after_vm_destroy; the destination keeps its ports.
    assert not vdsm.destroy_vm(started.domain_xml).failed
    assert _mine(ovs, [ovs_tap, lb_tap]) == set()
    assert _mine(second_host, [ovs_tap]) == {ovs_tap}


def test_libvirt_mode_clears_our_stale_tap_and_refuses_a_foreign_one(vdsm, ovs, configure):
    port = new_id()
    domain = quantum_vm([seed_properties("openvswitch", port)])
    (tap,) = _taps(domain)
    vdsm.start_vm(to_bytes(domain))  # hook mode: our tap and port, then a crash
    configure(plug="libvirt")
    started = vdsm.start_vm(to_bytes(domain))
    assert _mine(ovs, [tap]) == set()  # libvirt will make both itself
    interface = etree.fromstring(started.domain_xml).find("devices/interface")
    assert interface.find("virtualport/parameters").get("interfaceid") == port
    _foreign_tap(ovs, tap)
    with pytest.raises(HookFailed) as failed:
        vdsm.start_vm(to_bytes(domain))
    assert f"device {tap} already exists and belongs to something else" in (failed.value.run.stderr)
    ovs.in_netns("ip", "link", "delete", tap)


def test_metadata_alone_finds_what_to_unplug(vdsm, ovs):
    """after_vm_destroy may get XML whose interfaces VDSM rebuilt: the metadata suffices."""
    domain = quantum_vm([seed_properties("openvswitch"), seed_properties("linuxbridge")])
    vdsm.start_vm(to_bytes(domain))
    assert not vdsm.destroy_vm(to_bytes(domain)).failed  # the original, unrewritten XML
    assert _mine(ovs, _taps(domain)) == set()


def test_unplug_reports_open_vswitch_down_but_removes_taps(vdsm, ovs, configure, tmp_path):
    domain = quantum_vm([seed_properties("openvswitch")])
    started = vdsm.start_vm(to_bytes(domain))
    (tap,) = _taps(domain)
    configure(connection=f"unix:{tmp_path}/gone.sock")
    destroyed = vdsm.destroy_vm(started.domain_xml)
    assert error_lines(destroyed.stderr) == [
        f"{ERROR_PREFIX}after_vm_destroy: cannot reach Open vSwitch at "
        f"unix:{tmp_path}/gone.sock: No such file or directory"
    ]
    assert tap not in hoststate.links(ovs)
    assert tap in hoststate.ovs_interfaces(ovs)  # left for `qhook cleanup`
    configure()
    assert not vdsm.destroy_vm(started.domain_xml).failed
    assert _mine(ovs, [tap]) == set()


def test_waiting_for_ovs_vswitchd_to_apply_is_bounded(ovs):
    """What the cleanup waits on: true once ovs-vswitchd applied the database; false, in
    the bound, while it does not (stopped here), and nothing raised."""
    from qhook.host import ovsports

    assert ovsports.wait_applied(ovs.connection, 10)
    os.kill(ovs.pid("ovs-vswitchd"), signal.SIGSTOP)
    try:
        began = time.monotonic()
        assert not ovsports.wait_applied(ovs.connection, 0.5)
        assert time.monotonic() - began < 5
    finally:
        os.kill(ovs.pid("ovs-vswitchd"), signal.SIGCONT)
    assert ovsports.wait_applied(ovs.connection, 10)
    assert ovs.vsctl("get", "Open_vSwitch", ".", "cur_cfg") == ovs.vsctl(
        "get", "Open_vSwitch", ".", "next_cfg"
    )
