# SPDX-License-Identifier: GPL-2.0-or-later
"""A VM's start and stop as VDSM runs them, on every captured oVirt domain, for each
plugin, mode and form, against a real Open vSwitch in a private network namespace.

Each Quantum vNIC must come out in its plugin's shape, with everything else kept;
every other vNIC and the rest of the domain must come out unchanged; the result must
pass libvirt's schema and libvirt's own parser; the taps and OVS ports must be there
as the agents expect them, and gone after after_vm_destroy.
"""

import copy
import time
from typing import Callable, Dict

import hoststate
import pytest
from domains import (
    add_interface,
    by_mac,
    canonical,
    fixture_names,
    load_fixture,
    new_id,
    openstacknet_properties,
    seed_properties,
    set_vnic_properties,
    skeleton_with,
    to_bytes,
    without,
)
from lxml import etree

from tools import error_lines, libvirt_defines, schema_valid

HOST_SIDE = {"source", "virtualport", "target", "filterref", "vlan"}
OVS_PLUGINS = {"openvswitch", "ovn", "OPEN_VSWITCH", "OPENSTACK_OVN", "OVIRT_PROVIDER_OVN"}

Maker = Callable[[int], Dict[str, str]]


def _mixed(index: int) -> Dict[str, str]:
    makers = [
        lambda: seed_properties("openvswitch", q_attachment_id=new_id()),
        lambda: seed_properties("linuxbridge", port_id=new_id().upper()),
        lambda: openstacknet_properties("OVIRT_PROVIDER_OVN", provider="EXTERNAL_NETWORK"),
        lambda: seed_properties("ovn"),
    ]
    return makers[index % len(makers)]()


SCENARIOS: Dict[str, tuple] = {
    # name: (plug mode, properties of the n-th Quantum vNIC)
    "seed-openvswitch-hook": ("hook", lambda i: seed_properties("openvswitch")),
    "seed-openvswitch-libvirt": ("libvirt", lambda i: seed_properties("openvswitch")),
    "seed-linuxbridge": ("hook", lambda i: seed_properties("linuxbridge")),
    "seed-linuxbridge-libvirt-mode": ("libvirt", lambda i: seed_properties("linuxbridge")),
    "seed-ovn": ("hook", lambda i: seed_properties("ovn")),
    "openstacknet-ovs": ("hook", lambda i: openstacknet_properties("OPEN_VSWITCH")),
    "openstacknet-ovs-libvirt": ("libvirt", lambda i: openstacknet_properties("OPEN_VSWITCH")),
    "openstacknet-linuxbridge": ("hook", lambda i: openstacknet_properties("LINUX_BRIDGE")),
    "openstacknet-ovn": ("hook", lambda i: openstacknet_properties("OPENSTACK_OVN")),
    "mixed-hook": ("hook", _mixed),
    "mixed-libvirt": ("libvirt", _mixed),
}

MULTIQUEUE = '<driver name="vhost" queues="4"/>'
MTU_AND_QOS = (
    '<mtu size="1400"/><bandwidth><inbound average="1000" peak="5000" burst="1024"/>'
    '<outbound average="1000"/></bandwidth>'
)


def _host_id(properties: Dict[str, str]) -> str:
    chosen = (
        properties.get("q_attachment_id")
        or properties.get("q_port_id")
        or properties.get("vnic_id")
    )
    return chosen.lower()


def _plugin(properties: Dict[str, str]) -> str:
    return properties.get("plugin") or properties["plugin_type"]


def _build(fixture: str, maker: Maker):
    """The fixture with its bridge vNICs made Quantum, plus more vNICs beside them."""
    domain = load_fixture(fixture)
    quantum: Dict[str, Dict[str, str]] = {}
    untouched = []
    count = 0

    def make_quantum(mac: str) -> None:
        nonlocal count
        quantum[mac] = maker(count)
        count += 1
        set_vnic_properties(domain, mac, quantum[mac])

    for mac, interface in by_mac(domain).items():
        if interface.get("type") == "hostdev":
            # Passthrough vNICs are never ours, whatever their properties say.
            set_vnic_properties(domain, mac, seed_properties("openvswitch"))
            untouched.append(mac)
        else:
            make_quantum(mac)
    make_quantum(add_interface(domain, "02:00:00:00:01:01", MULTIQUEUE).find("mac").get("address"))
    make_quantum(add_interface(domain, "02:00:00:00:01:02", MTU_AND_QOS).find("mac").get("address"))
    add_interface(domain, "02:00:00:00:01:03")  # no metadata at all
    add_interface(domain, "02:00:00:00:01:04")
    set_vnic_properties(domain, "02:00:00:00:01:04", {})  # an empty custom entry
    untouched += ["02:00:00:00:01:03", "02:00:00:00:01:04"]
    return domain, quantum, untouched


def _check_shape(interface: etree._Element, properties: Dict[str, str], plug: str) -> None:
    host_id = _host_id(properties)
    tap = "tap" + host_id[:11]
    assert len(tap) == 14
    target = interface.findall("target")
    assert len(target) == 1 and target[0].get("dev") == tap
    assert interface.find("filterref") is None
    if plug == "libvirt" and _plugin(properties) in OVS_PLUGINS:
        assert interface.get("type") == "bridge"
        assert "managed" not in target[0].attrib
        assert [s.attrib for s in interface.findall("source")] == [{"bridge": "br-int"}]
        virtualport = interface.findall("virtualport")
        assert len(virtualport) == 1 and virtualport[0].get("type") == "openvswitch"
        assert [p.attrib for p in virtualport[0]] == [{"interfaceid": host_id}]
    else:
        assert interface.get("type") == "ethernet"
        assert target[0].get("managed") == "no"
        assert interface.find("source") is None
        assert interface.find("virtualport") is None


def _kept(interface: etree._Element):
    return [canonical(c) for c in interface if isinstance(c.tag, str) and c.tag not in HOST_SIDE]


def _schema_check(before: bytes, after: bytes, rewritten, tmp_path) -> None:
    """The output passes libvirt's schema and parser wherever its input did.

    Inputs the engine writes with placeholders do not validate as a whole; then each
    rewritten interface is checked inside a minimal valid domain.
    """
    for check in (schema_valid, libvirt_defines):
        if check(before, tmp_path, "before.xml").returncode == 0:
            result = check(after, tmp_path, "after.xml")
            assert result.returncode == 0, result.stdout + result.stderr
        for mac, interface in rewritten.items():
            result = check(skeleton_with(interface), tmp_path, "one-interface.xml")
            assert result.returncode == 0, f"{mac}: {result.stdout}{result.stderr}"


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
@pytest.mark.parametrize("fixture", fixture_names())
def test_vm_start_rewrites_and_plugs_quantum_vnics_only(
    fixture, scenario, vdsm, ovs, configure, tmp_path
):
    plug, maker = SCENARIOS[scenario]
    configure(plug=plug)
    domain, quantum, untouched = _build(fixture, maker)
    before_xml = to_bytes(domain)

    started = vdsm.start_vm(before_xml)

    assert not any(error_lines(run.stderr) for run in started.runs), started.runs
    devices_hooked = [r for r in started.runs if r.point == "before_device_create"]
    assert len(devices_hooked) == len(quantum) + len(untouched) - ("02:00:00:00:01:03" in untouched)
    after = etree.fromstring(started.domain_xml)
    before_nics, after_nics = by_mac(domain), by_mac(after)
    assert sorted(after_nics) == sorted(before_nics)
    for mac, properties in quantum.items():
        _check_shape(after_nics[mac], properties, plug)
        assert _kept(after_nics[mac]) == _kept(before_nics[mac]), mac
    for mac in untouched:
        assert canonical(after_nics[mac]) == canonical(before_nics[mac]), mac
    assert canonical(without(after, ["interface"])) == canonical(without(domain, ["interface"]))
    if any(i.get("type") == "hostdev" for i in before_nics.values()):
        assert "type='hostdev' interface cannot join a Quantum network" in "".join(
            run.stderr for run in started.runs
        )
    _schema_check(before_xml, started.domain_xml, {m: after_nics[m] for m in quantum}, tmp_path)

    # VDSM versions and flows without before_device_create get the same result
    # from before_vm_start alone, and a second run of it changes nothing.
    alone = vdsm.run_point("before_vm_start", before_xml)
    alone_nics = by_mac(etree.fromstring(alone.data_out))
    assert {m: canonical(i) for m, i in alone_nics.items()} == {
        m: canonical(i) for m, i in after_nics.items()
    }
    again = vdsm.run_point("before_vm_start", started.domain_xml)
    assert again.data_out == started.domain_xml

    vm_id = after.findtext("uuid").lower()
    _check_plugged(ovs, quantum, {m: after_nics[m] for m in quantum}, plug, vm_id)
    destroyed = vdsm.destroy_vm(started.domain_xml)
    assert not destroyed.failed, destroyed.stderr
    taps = {"tap" + _host_id(p)[:11] for p in quantum.values()}
    assert not taps & set(hoststate.links(ovs)), "a tap is left after after_vm_destroy"
    assert not taps & set(hoststate.ovs_interfaces(ovs)), "a port is left after after_vm_destroy"


def _check_plugged(ovs, quantum, interfaces, plug, vm_id) -> None:
    """Taps with the queues and MTU asked for; OVS rows the agents recognise."""
    links = hoststate.links(ovs)
    rows = hoststate.ovs_interfaces(ovs)
    hook_made_ovs = []
    for mac, properties in quantum.items():
        host_id = _host_id(properties)
        tap = "tap" + host_id[:11]
        on_ovs = _plugin(properties) in OVS_PLUGINS
        if plug == "libvirt" and on_ovs:
            assert tap not in links and tap not in rows  # libvirt plugs these itself
            continue
        link = links[tap]
        driver = interfaces[mac].find("driver")
        mtu = interfaces[mac].find("mtu")
        assert hoststate.tun_info(link)["type"] == "tap"
        assert hoststate.tun_info(link)["multi_queue"] == (driver is not None), link
        assert link["mtu"] == (int(mtu.get("size")) if mtu is not None else 1500)
        assert "UP" in link["flags"]
        mark, since = link["ifalias"].rsplit(" since=", 1)
        assert mark == f"vdsm-hook-quantum vnic={host_id} vm={vm_id}"
        assert 0 <= time.time() - int(since) < 300
        if on_ovs:
            hook_made_ovs.append(tap)
            expected = {
                "iface-id": host_id,
                "attached-mac": mac,
                "iface-status": "active",
                "vm-uuid": vm_id,
                "vdsm-hook-quantum": "owned",
            }
            if "q_network_id" in properties:  # which ports a mirror of the network selects
                expected["vdsm-hook-quantum-network"] = properties["q_network_id"].lower()
            assert rows[tap]["external_ids"] == expected
        else:
            assert tap not in rows  # the Linux bridge agent bridges the tap itself
    assert set(hook_made_ovs) <= hoststate.bridge_ports(ovs)
    hoststate.wait_for_ofports(ovs, hook_made_ovs)


def test_a_captured_fixture_validates_as_a_whole(tmp_path):
    """So the whole-domain schema checks above are exercised, not skipped."""
    domain = load_fixture("vm_hibernated.xml")
    assert schema_valid(to_bytes(domain), tmp_path).returncode == 0
    assert libvirt_defines(to_bytes(domain), tmp_path).returncode == 0


def test_other_hooks_in_the_directory_run_around_ours(env, ovs, tmp_path):
    """VDSM runs every executable in name order; ours sees and keeps earlier edits."""
    from qhook import install
    from qhook.lab.vdsm_emulator import VdsmEmulator

    hooks = tmp_path / "hooks"
    points = ["before_vm_start", "after_vm_destroy"]
    install.write_tree(hooks, points, install.SOURCE_INTERPRETER)
    earlier = hooks / "before_vm_start" / "10_rename"
    earlier.write_text('#!/bin/sh\nsed -i "s/<name>a2</<name>renamed</" "$_hook_domxml"\n')
    later = hooks / "before_vm_start" / "90_record"
    later.write_text(f'#!/bin/sh\ncp "$_hook_domxml" {tmp_path}/seen.xml\n')
    (hooks / "before_vm_start" / ".hidden").write_text("#!/bin/sh\nexit 2\n")
    for script in (earlier, later, hooks / "before_vm_start" / ".hidden"):
        script.chmod(0o755)
    domain = load_fixture("vm_hibernated.xml")
    set_vnic_properties(domain, "00:1a:4a:16:01:00", seed_properties("openvswitch"))

    vdsm = VdsmEmulator(hooks, env, wrapper=ovs.netns_exec)
    run = vdsm.run_point("before_vm_start", to_bytes(domain))

    seen = etree.fromstring((tmp_path / "seen.xml").read_bytes())
    assert seen.findtext("name") == "renamed"
    assert seen.find("devices/interface").get("type") == "ethernet"
    assert [s.returncode for s in run.scripts] == [0, 0, 0]
    assert run.data_out == (tmp_path / "seen.xml").read_bytes()
    tap = seen.find("devices/interface/target").get("dev")
    assert tap in hoststate.links(ovs)
    assert not vdsm.destroy_vm(run.data_out).failed
    assert tap not in hoststate.links(ovs)


def test_device_hook_output_is_what_vdsm_puts_in_the_domain(vdsm):
    """The moved, rewritten device is the one before_device_create wrote."""
    domain = load_fixture("vm_replace_md_base.xml")
    properties = seed_properties("linuxbridge")
    set_vnic_properties(domain, "00:1a:4a:16:01:12", properties)
    started = vdsm.start_vm(to_bytes(domain))
    device_run = started.runs[0]
    written = etree.fromstring(device_run.data_out)
    last = etree.fromstring(started.domain_xml).find("devices")[-1]
    assert canonical(last) == canonical(written)
    assert written.find("target").get("dev") == "tap" + properties["q_port_id"][:11]
    assert copy.deepcopy(written).get("type") == "ethernet"


def test_the_validators_catch_a_broken_interface(tmp_path):
    """The schema checks above can fail: a bad interface is refused by both."""
    broken = etree.fromstring(
        b'<interface type="ethernet"><mac address="02:00:00:00:00:01"/>'
        b'<target dev="tap0" managed="maybe"/></interface>'
    )
    xml = skeleton_with(broken)
    assert schema_valid(xml, tmp_path).returncode != 0
    assert libvirt_defines(xml, tmp_path).returncode != 0
    fine = skeleton_with(
        etree.fromstring(b'<interface type="ethernet"><target dev="tap0"/></interface>')
    )
    assert schema_valid(fine, tmp_path).returncode == 0
