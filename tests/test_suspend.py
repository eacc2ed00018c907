# SPDX-License-Identifier: GPL-2.0-or-later
"""A VM's life beyond start and stop, as VDSM drives it (lib/vdsm/virt/vm.py), with a real
libvirt and QEMU on a host whose agent is OVN: suspended to a file and resumed, a memory
snapshot restored after a normal stop, a running vNIC moved to another port and then
suspended. Each time the restore must succeed: every tap the saved XML names exists, is
ours, is plugged for the vNIC's port (and wired, on the integration bridge) before
libvirt restores, and the guest's firmware goes on sending its DHCP requests through it.
"""

import os
import secrets
import time

import hoststate
import pytest
from domains import NS, bootable_domain, new_id, seed_properties, set_vnic_properties
from lxml import etree

from qhook.lab.sandbox import LibvirtSandbox, OvnSandbox, OvsSandbox
from qhook.lab.vdsm_emulator import VdsmEmulator
from tools import HOOKS_DIR, error_lines, hook_env, require_tool

INTERFACES = """\
    <interface type="bridge">
      <mac address="02:00:00:00:5a:01"/><model type="virtio"/><source bridge="ovirtmgmt"/>
    </interface>
    <interface type="bridge">
      <mac address="02:00:00:00:5a:02"/><model type="virtio"/><source bridge="ovirtmgmt"/>
    </interface>
    <interface type="bridge">
      <mac address="02:00:00:00:5a:03"/><model type="e1000"/><source bridge="ovirtmgmt"/>
    </interface>"""
MACS = ("02:00:00:00:5a:01", "02:00:00:00:5a:02", "02:00:00:00:5a:03")


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    """A host whose agent is OVN, with its own libvirtd, and the hooks' configuration."""
    for tool in ("ovn-controller", "libvirtd", "virsh", "qemu-system-x86_64"):
        require_tool(tool)
    work = tmp_path_factory.mktemp("suspend")
    ovs = OvsSandbox(work / "ovs", f"qhook-susp-{os.getpid()}-{secrets.token_hex(3)}").start()
    ovn = libvirt = None
    try:
        ovn = OvnSandbox(ovs).start()
        ovn.nbctl("ls-add", "tenant")
        libvirt = LibvirtSandbox(work / "libvirt", ovs).start()
        config = work / "quantum.conf"
        # The Linux bridge vNIC has no agent here: the wait gives up on it, and starts.
        config.write_text(
            f"[ovs]\nconnection = {ovs.connection}\nhybrid_plug = no\n[wiring]\ntimeout = 5\n"
            f"[host]\nstate_dir = {work}/state\n"
        )
        vdsm = VdsmEmulator(
            HOOKS_DIR, hook_env({"QHOOK_CONFIG": str(config)}), wrapper=ovs.netns_exec
        )
        yield ovs, ovn, libvirt, vdsm, work
    finally:
        if libvirt is not None:
            libvirt.stop()
        if ovn is not None:
            ovn.stop()
        ovs.stop()


def _vm(ovn, name):
    """A VM with an Open vSwitch, an OVN and a Linux bridge vNIC on explicit ports; the
    first two ports are OVN logical ports (ovn-controller wires them)."""
    domain = bootable_domain(f"qhook-suspend-{name}", INTERFACES)
    properties = [
        seed_properties("openvswitch"),
        seed_properties("ovn"),
        seed_properties("linuxbridge"),
    ]
    for mac, vnic in zip(MACS, properties):
        set_vnic_properties(domain, mac, vnic)
    for mac, vnic in zip(MACS[:2], properties[:2]):
        port = vnic["q_port_id"]
        ovn.nbctl("lsp-add", "tenant", port, "--", "lsp-set-addresses", port, mac)
    return domain, [vnic["q_port_id"] for vnic in properties]


def _running(libvirt, name) -> bytes:
    return libvirt.virsh("dumpxml", name).encode()


def _rx(ovs, tap) -> int:
    return int(ovs.in_netns("cat", f"/sys/class/net/{tap}/statistics/rx_packets"))


def _frames_flow(ovs, tap, timeout=60):
    """The guest's firmware sends through this tap: its count of frames grows."""
    first = _rx(ovs, tap)
    deadline = time.monotonic() + timeout
    while _rx(ovs, tap) <= first:
        assert time.monotonic() < deadline, f"no frame from the guest on {tap}"
        time.sleep(0.5)


def _targets(xml: bytes):
    domain = etree.fromstring(xml)
    return {
        i.find("mac").get("address"): i.find("target").get("dev") for i in domain.iter("interface")
    }


def _plugged_as_saved(ovs, saved: bytes, ports, vm_id):
    """What must hold before libvirt restores: each tap the saved XML names is ours, this
    VM's, for the vNIC's port; the Open vSwitch ones are on br-int and wired by OVN."""
    links, rows = hoststate.links(ovs), hoststate.ovs_interfaces(ovs)
    targets = _targets(saved)
    for mac, port in zip(MACS, ports):
        tap = targets[mac]
        assert tap in links, f"{tap} of vNIC {mac} is missing"
        assert f"vnic={port} vm={vm_id} " in links[tap]["ifalias"], links[tap]["ifalias"]
        if mac != MACS[2]:
            ids = rows[tap]["external_ids"]
            assert ids["iface-id"] == port and ids["vdsm-hook-quantum"] == "owned"
            assert ids.get("ovn-installed") == "true", ids


def _restore(libvirt, work, saved, paused=False):
    def restore(xml: bytes) -> bytes:
        path = work / f"saved-{secrets.token_hex(3)}.xml"
        path.write_bytes(xml)
        libvirt.virsh("restore", str(work / "image"), "--xml", str(path), *(["--paused"] * paused))
        return xml

    return restore


def _undefine(libvirt, vm, work):
    if vm in libvirt.virsh("list", "--name").split():
        libvirt.virsh("destroy", vm)
    libvirt.virsh("undefine", vm)
    (work / "image").unlink(missing_ok=True)


def _nothing_left(ovs, taps):
    assert not set(taps) & (set(hoststate.links(ovs)) | set(hoststate.ovs_interfaces(ovs)))


def _check_runs(runs):
    for run in runs:
        assert error_lines(run.stderr) == [], (run.point, run.stderr)


@pytest.mark.parametrize("snapshot", [False, True], ids=["suspend-resume", "snapshot-restore"])
def test_a_vm_comes_back_from_a_file_plugged_as_its_saved_xml_says(host, snapshot):
    ovs, ovn, libvirt, vdsm, work = host
    name = f"{'snap' if snapshot else 'susp'}-{secrets.token_hex(2)}"
    domain, ports = _vm(ovn, name)
    vm_id = domain.findtext("uuid")
    engine_xml = etree.tostring(domain)
    started = vdsm.start_vm(engine_xml)
    (work / f"{name}.xml").write_bytes(started.domain_xml)
    vm = domain.findtext("name")
    libvirt.virsh("define", str(work / f"{name}.xml"))
    taps = list(_targets(started.domain_xml).values())
    try:
        libvirt.virsh("start", vm)
        _frames_flow(ovs, taps[0])
        running = _running(libvirt, vm)
        image = work / "image"
        if snapshot:  # the memory kept at snapshot time; later the VM stops normally
            libvirt.virsh("save", vm, str(image))
            _check_runs([vdsm.destroy_vm(running)])
        else:
            runs = vdsm.hibernate_vm(running, save=lambda: libvirt.virsh("save", vm, str(image)))
            _check_runs(runs)
        _nothing_left(ovs, taps)  # the VM is gone from the host: so are its taps

        saved = libvirt.virsh("save-image-dumpxml", str(image)).encode()
        assert _targets(saved) == _targets(started.domain_xml)
        restore = _restore(libvirt, work, saved, paused=snapshot)

        def checked_restore(xml: bytes) -> bytes:
            _plugged_as_saved(ovs, xml, ports, vm_id)  # before libvirt restores
            return restore(xml)

        runs = vdsm.restore_vm(engine_xml, saved, snapshot, restore=checked_restore)
        _check_runs(runs)
        if snapshot:
            libvirt.virsh("resume", vm)
        _frames_flow(ovs, taps[0])
        _plugged_as_saved(ovs, saved, ports, vm_id)
        assert "LOWER_UP" in hoststate.links(ovs)[taps[2]]["flags"]  # QEMU holds it again
        last = _running(libvirt, vm)
    finally:
        _undefine(libvirt, vm, work)
    _check_runs([vdsm.destroy_vm(last)])
    _nothing_left(ovs, taps)


def test_a_moved_vnic_comes_back_on_its_tap_and_its_new_port(host):
    """A running vNIC moved to another port keeps the tap its QEMU holds (not named after
    the new port); the VM saved so comes back on that tap, re-keyed to the new port, and
    the tap before_vm_start made on the restore path for the new port's name goes."""
    ovs, ovn, libvirt, vdsm, work = host
    name = f"moved-{secrets.token_hex(2)}"
    domain, ports = _vm(ovn, name)
    vm_id = domain.findtext("uuid")
    started = vdsm.start_vm(etree.tostring(domain))
    (work / f"{name}.xml").write_bytes(started.domain_xml)
    vm = domain.findtext("name")
    libvirt.virsh("define", str(work / f"{name}.xml"))
    old_taps = _targets(started.domain_xml)
    try:
        libvirt.virsh("start", vm)
        # The engine moves the OVN vNIC to another port (another profile).
        new_port = new_id()
        ovn.nbctl("lsp-add", "tenant", new_port, "--", "lsp-set-addresses", new_port, MACS[1])
        running = etree.fromstring(_running(libvirt, vm))
        device = next(
            i for i in running.iter("interface") if i.find("mac").get("address") == MACS[1]
        )
        props = {"plugin": "ovn", "q_network_id": new_id(), "q_port_id": new_port}
        update = vdsm.update_device(etree.tostring(device), props, vm_id)
        _check_runs(update)
        moved_tap = old_taps[MACS[1]]
        assert hoststate.ovs_interfaces(ovs)[moved_tap]["external_ids"]["iface-id"] == new_port
        # VDSM keeps the new properties in the metadata.
        set_vnic_properties(domain, MACS[1], props)
        ports = [ports[0], new_port, ports[2]]
        with_new = _running(libvirt, vm)
        image = work / "image"
        _check_runs(vdsm.hibernate_vm(with_new, save=lambda: libvirt.virsh("save", vm, str(image))))
        saved = etree.fromstring(libvirt.virsh("save-image-dumpxml", str(image)).encode())
        metadata = saved.find("metadata")
        metadata.remove(metadata.find(f"{{{NS}}}vm"))
        metadata.append(domain.find("metadata").find(f"{{{NS}}}vm"))  # the engine's, after the move
        saved_xml = etree.tostring(saved)
        derived = "tap" + new_port[:11]

        def checked_restore(xml: bytes) -> bytes:
            _plugged_as_saved(ovs, xml, ports, vm_id)
            assert derived not in hoststate.links(ovs)  # before_vm_start's, gone
            return _restore(libvirt, work, xml)(xml)

        _check_runs(vdsm.restore_vm(etree.tostring(domain), saved_xml, False, checked_restore))
        _frames_flow(ovs, old_taps[MACS[0]])
        last = _running(libvirt, vm)
    finally:
        _undefine(libvirt, vm, work)
    _check_runs([vdsm.destroy_vm(last)])
    _nothing_left(ovs, [*old_taps.values(), "tap" + new_port[:11]])


def test_nothing_happens_before_a_suspension_or_a_migration_away(host):
    """before_vm_hibernate and before_vm_migrate_source change nothing, even with Quantum
    vNICs: everything stays plugged until libvirt says the domain left."""
    ovs, ovn, _, vdsm, _ = host
    domain, _ = _vm(ovn, f"quiet-{secrets.token_hex(2)}")
    started = vdsm.start_vm(etree.tostring(domain))
    before = (hoststate.links(ovs).keys(), hoststate.ovs_interfaces(ovs))
    for point in ("before_vm_hibernate", "before_vm_migrate_source"):
        run = vdsm.run_point(point, started.domain_xml, vm_id=domain.findtext("uuid"))
        assert (run.failed, run.stderr) == (False, "")
    assert (hoststate.links(ovs).keys(), hoststate.ovs_interfaces(ovs)) == before
    _check_runs([vdsm.destroy_vm(started.domain_xml)])
    _nothing_left(ovs, list(_targets(started.domain_xml).values()))


def test_libvirt_plug_mode_comes_back_too(host):
    """[ovs] plug = libvirt: libvirt plugs the Open vSwitch and OVN vNICs itself, at the
    start and again at the restore; the hooks make the Linux bridge vNIC's tap, which must
    be there (ours, this VM's) before libvirt restores."""
    ovs, ovn, libvirt, _, work = host
    config = work / "libvirt-mode.conf"
    config.write_text(
        f"[ovs]\nconnection = {ovs.connection}\nhybrid_plug = no\n"
        f"plug = libvirt\n[wiring]\ntimeout = 5\n"
        f"[host]\nstate_dir = {work}/state\n"
    )
    vdsm = VdsmEmulator(HOOKS_DIR, hook_env({"QHOOK_CONFIG": str(config)}), wrapper=ovs.netns_exec)
    name = f"lvmode-{secrets.token_hex(2)}"
    domain, ports = _vm(ovn, name)
    vm_id = domain.findtext("uuid")
    engine_xml = etree.tostring(domain)
    started = vdsm.start_vm(engine_xml)
    _check_runs(started.runs)
    (work / f"{name}.xml").write_bytes(started.domain_xml)
    vm = domain.findtext("name")
    libvirt.virsh("define", str(work / f"{name}.xml"))
    taps = list(_targets(started.domain_xml).values())
    try:
        libvirt.virsh("start", vm)
        _frames_flow(ovs, taps[0])
        image = work / "image"
        running = _running(libvirt, vm)
        _check_runs(vdsm.hibernate_vm(running, save=lambda: libvirt.virsh("save", vm, str(image))))
        saved = libvirt.virsh("save-image-dumpxml", str(image)).encode()

        def checked_restore(xml: bytes) -> bytes:
            links = hoststate.links(ovs)
            assert f"vnic={ports[2]} vm={vm_id} " in links[taps[2]]["ifalias"]  # the hook's
            return _restore(libvirt, work, xml)(xml)

        _check_runs(vdsm.restore_vm(engine_xml, saved, False, restore=checked_restore))
        _frames_flow(ovs, taps[0])
        rows = hoststate.ovs_interfaces(ovs)
        for tap, port in zip(taps[:2], ports[:2]):  # libvirt's own ports again
            ids = rows[tap]["external_ids"]
            assert ids["iface-id"] == port and "vdsm-hook-quantum" not in ids
        last = _running(libvirt, vm)
    finally:
        _undefine(libvirt, vm, work)
    _check_runs([vdsm.destroy_vm(last)])
    _nothing_left(ovs, taps)
