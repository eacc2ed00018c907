# SPDX-License-Identifier: GPL-2.0-or-later
"""End to end with a real libvirt and QEMU (emulated): the hooks plug, libvirt starts the
VM, the guest firmware's DHCP requests reach the integration bridge from each vNIC's
MAC, and after the stop nothing of ours is left. In both plug modes."""

import os
import re
import secrets
import subprocess
import time

import hoststate
import pytest
from domains import (
    bootable_domain,
    new_id,
    openstacknet_properties,
    seed_properties,
    set_vnic_properties,
)
from lxml import etree

from qhook.lab.sandbox import LibvirtSandbox, OvnSandbox, OvsSandbox
from qhook.lab.vdsm_emulator import VdsmEmulator
from tools import HOOKS_DIR, hook_env, require_tool

INTERFACES = """\
    <interface type="bridge">
      <mac address="02:00:00:00:e2:01"/><model type="virtio"/>
      <source bridge="ovirtmgmt"/><filterref filter="vdsm-no-mac-spoofing"/>
      <driver name="vhost" queues="2"/>
    </interface>
    <interface type="bridge">
      <mac address="02:00:00:00:e2:02"/><model type="virtio"/>
      <source bridge="ovirtmgmt"/><mtu size="1400"/>
    </interface>
    <interface type="bridge">
      <mac address="02:00:00:00:e2:03"/><model type="e1000"/>
      <source bridge="ovirtmgmt"/>
    </interface>"""
DHCP_FLOW = "priority=100,udp,dl_src={mac},tp_src=68,tp_dst=67,actions=drop"


@pytest.fixture(scope="module")
def libvirt(ovs, tmp_path_factory):
    for tool in ("libvirtd", "virsh", "qemu-system-x86_64", "unshare", "ovs-ofctl"):
        require_tool(tool)
    sandbox = LibvirtSandbox(tmp_path_factory.mktemp("libvirt"), ovs).start()
    yield sandbox
    sandbox.stop()


def _dhcp_counts(ovs, macs):
    flows = ovs.ofctl("dump-flows")
    counts = {}
    for mac in macs:
        line = next(f for f in flows.splitlines() if f"dl_src={mac}" in f)
        counts[mac] = int(re.search(r"n_packets=(\d+)", line).group(1))
    return counts


def _started_and_defined(vdsm, libvirt, domain, tmp_path):
    """before_vm_start on the domain, then the XML it returned defined in libvirt."""
    started = vdsm.start_vm(etree.tostring(domain))
    xml = tmp_path / "domain.xml"
    xml.write_bytes(started.domain_xml)
    libvirt.virsh("define", str(xml))
    return started, domain.findtext("name")


def _wait_for_dhcp(ovs, macs, timeout=60):
    """Until br-int has counted a DHCP request from each MAC."""
    deadline = time.monotonic() + timeout
    while min(_dhcp_counts(ovs, macs).values()) == 0:
        assert time.monotonic() < deadline, (
            f"no DHCP request reached br-int: {_dhcp_counts(ovs, macs)}"
        )
        time.sleep(0.5)


@pytest.mark.parametrize("mode", ["hook", "libvirt"])
def test_a_real_vm_gets_its_frames_onto_the_integration_bridge(
    mode, libvirt, ovs, vdsm, configure, tmp_path
):
    configure(plug=mode)
    domain = bootable_domain(f"qhook-e2e-{mode}", INTERFACES)
    ovs_vnic = seed_properties("openvswitch")
    ovn_vnic = openstacknet_properties("OVIRT_PROVIDER_OVN", provider="EXTERNAL_NETWORK")
    lb_vnic = seed_properties("linuxbridge")
    for mac, properties in (
        ("02:00:00:00:e2:01", ovs_vnic),
        ("02:00:00:00:e2:02", ovn_vnic),
        ("02:00:00:00:e2:03", lb_vnic),
    ):
        set_vnic_properties(domain, mac, properties)
    taps = [
        "tap" + ovs_vnic["q_port_id"][:11],
        "tap" + ovn_vnic["vnic_id"][:11],
        "tap" + lb_vnic["q_port_id"][:11],
    ]
    # The firmware boots from the first vNIC: its DHCP requests are the frames to see.
    on_bridge = ["02:00:00:00:e2:01"]
    for mac in on_bridge:
        ovs.ofctl("add-flow", DHCP_FLOW.format(mac=mac))

    started, name = _started_and_defined(vdsm, libvirt, domain, tmp_path)
    try:
        libvirt.virsh("start", name)
        links = hoststate.links(ovs)
        assert hoststate.tun_info(links[taps[0]])["multi_queue"] is True
        assert links[taps[1]]["mtu"] == 1400
        # Open vSwitch runs the port at the vNIC's MTU. The hook asks for it (mtu_request);
        # libvirt 9.0 sets the tap's MTU and leaves mtu_request empty.
        assert ovs.vsctl("get", "Interface", taps[1], "mtu").strip() == "1400"
        requested = ovs.vsctl("get", "Interface", taps[1], "mtu_request").strip()
        assert requested == ("1400" if mode == "hook" else "[]")
        assert "LOWER_UP" in links[taps[2]]["flags"]  # QEMU holds the Linux bridge tap
        assert set(taps[:2]) <= hoststate.bridge_ports(ovs)

        _wait_for_dhcp(ovs, on_bridge)
        assert all(hoststate.wait_for_ofports(ovs, taps[:2]).values())
        if mode == "libvirt":  # libvirt plugged these itself, with its own external_ids
            rows = hoststate.ovs_interfaces(ovs)
            assert rows[taps[0]]["external_ids"]["iface-id"] == ovs_vnic["q_port_id"]
            assert "vdsm-hook-quantum" not in rows[taps[0]]["external_ids"]
    finally:
        libvirt.virsh("destroy", name)
        for mac in on_bridge:
            ovs.ofctl("del-flows", f"udp,dl_src={mac}")
    destroyed = vdsm.destroy_vm(started.domain_xml)
    libvirt.virsh("undefine", name)
    assert not destroyed.failed, destroyed.stderr
    assert not set(taps) & (set(hoststate.links(ovs)) | set(hoststate.ovs_interfaces(ovs)))


@pytest.mark.parametrize("mode", ["hook", "libvirt"])
def test_a_real_vm_plugged_hybrid_reaches_the_bridge_through_its_own(
    mode, libvirt, ovs, vdsm, configure, tmp_path
):
    """Hybrid plugging with a real libvirt and QEMU: the tap (the hook's, or libvirt's on
    the interface's qbr source) is a port of the vNIC's own bridge, and the firmware's
    DHCP requests reach br-int through the veth pair."""
    configure(plug=mode, hybrid_plug="yes")
    domain, tap = _one_vnic_vm(mode)
    bridge, ovs_end = "qbr" + tap[3:], "qvo" + tap[3:]
    mac = "02:00:00:00:e2:01"
    ovs.ofctl("add-flow", DHCP_FLOW.format(mac=mac))
    started, name = _started_and_defined(vdsm, libvirt, domain, tmp_path)
    try:
        libvirt.virsh("start", name)
        links = hoststate.links(ovs)
        assert links[tap]["master"] == bridge and "LOWER_UP" in links[tap]["flags"]
        ports = hoststate.bridge_ports(ovs)
        assert ovs_end in ports and tap not in ports
        _wait_for_dhcp(ovs, [mac])
    finally:
        libvirt.virsh("destroy", name)
        ovs.ofctl("del-flows", f"udp,dl_src={mac}")
    destroyed = vdsm.destroy_vm(started.domain_xml)
    libvirt.virsh("undefine", name)
    assert not destroyed.failed, destroyed.stderr
    assert not {tap, bridge, ovs_end} & set(hoststate.links(ovs))
    assert ovs_end not in hoststate.ovs_interfaces(ovs)


BANDWIDTH = (
    '<bandwidth><inbound average="2500"/><outbound average="1250"/></bandwidth>'  # 20/10 Mbit/s
)


def _one_vnic_vm(mode, extra=""):
    """A domain with one Open vSwitch vNIC (MAC 02:00:00:00:e2:01) and its properties."""
    domain = bootable_domain(f"qhook-e2e-{mode}", INTERFACES)
    interfaces = domain.findall("devices/interface")
    for other in interfaces[1:]:
        other.getparent().remove(other)
    if extra:
        interfaces[0].append(etree.fromstring(extra))
    properties = seed_properties("openvswitch")
    set_vnic_properties(domain, "02:00:00:00:e2:01", properties)
    return domain, "tap" + properties["q_port_id"][:11]


def _delivered(ovs, tap, sender, seconds=3.0):
    """Bits per second Open vSwitch hands to the tap (to the guest) while another port
    floods the bridge with broadcast frames: what the tap's qdisc lets through."""
    out = ovs.in_netns(
        "python3", hoststate.FRAMES, "blast", sender, "02:00:00:00:ee:01", str(seconds), tap
    )
    return float(out)


@pytest.fixture
def sender(ovs):
    """A plain tap on br-int to flood from."""
    name = f"qhsend{secrets.token_hex(3)}"
    ovs.in_netns("ip", "tuntap", "add", "dev", name, "mode", "tap")
    ovs.in_netns("ip", "link", "set", name, "up")
    ovs.vsctl("add-port", "br-int", name)
    yield name
    ovs.vsctl("--if-exists", "del-port", "br-int", name)
    ovs.in_netns("ip", "link", "del", name)


def test_libvirt_shapes_the_hooks_tap_itself(libvirt, vdsm, configure, ovs, tmp_path):
    """On a tap the hook made (managed='no'), libvirt still applies <bandwidth> with tc:
    the hook leaves it in the interface for libvirt."""
    configure(plug="hook")
    domain, tap = _one_vnic_vm("qos-hook", BANDWIDTH)
    started = vdsm.start_vm(etree.tostring(domain))
    assert etree.fromstring(started.domain_xml).find("devices/interface/bandwidth") is not None
    xml = tmp_path / "domain.xml"
    xml.write_bytes(started.domain_xml)
    name = domain.findtext("name")
    libvirt.virsh("define", str(xml))
    try:
        result = subprocess.run(
            ["virsh", "-c", libvirt.uri, "start", name],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if result.returncode == 0:
            assert "htb" in ovs.in_netns("tc", "qdisc", "show", "dev", tap)
        else:  # this kernel has no sfq: libvirt's tc on our tap is what failed
            assert f"tc qdisc add dev {tap} " in result.stderr, result.stderr
    finally:
        subprocess.run(["virsh", "-c", libvirt.uri, "destroy", name], capture_output=True)
        libvirt.virsh("undefine", name)
    assert not vdsm.destroy_vm(started.domain_xml).failed


def test_libvirt_limits_its_open_vswitch_port_measured(
    libvirt, vdsm, configure, ovs, forwarding, sender, tmp_path
):
    """On an Open vSwitch port libvirt plugs, libvirt enforces <bandwidth> through Open
    vSwitch (a linux-htb QoS) once the hook gave the inbound average as the peak:
    measured, and unlimited once the limit is lifted."""
    configure(plug="libvirt")
    domain, tap = _one_vnic_vm("qos-libvirt", BANDWIDTH)
    started = vdsm.start_vm(etree.tostring(domain))
    inbound = etree.fromstring(started.domain_xml).find("devices/interface/bandwidth/inbound")
    assert (inbound.get("average"), inbound.get("peak")) == ("2500", "2500")
    xml = tmp_path / "domain.xml"
    xml.write_bytes(started.domain_xml)
    name = domain.findtext("name")
    libvirt.virsh("define", str(xml))
    try:
        libvirt.virsh("start", name)
        hoststate.wait_for_ofports(ovs, [tap, sender])
        limited = _delivered(ovs, tap, sender)
        assert abs(limited - 20e6) < 0.15 * 20e6, limited
        libvirt.virsh("domiftune", name, tap, "--inbound", "0", "--live")
        unlimited = _delivered(ovs, tap, sender)
        assert unlimited > 2 * 20e6
    finally:
        subprocess.run(["virsh", "-c", libvirt.uri, "destroy", name], capture_output=True)
        libvirt.virsh("undefine", name)
    assert not vdsm.destroy_vm(started.domain_xml).failed


def test_libvirt_refuses_filterref_on_an_openvswitch_port(libvirt, vdsm, configure, tmp_path):
    """Why the rewrite drops oVirt's filterref: libvirt would not start the VM with it."""
    configure(plug="libvirt")
    domain = bootable_domain("qhook-e2e-filterref", INTERFACES)
    set_vnic_properties(domain, "02:00:00:00:e2:01", seed_properties("openvswitch"))
    started = vdsm.start_vm(etree.tostring(domain))
    kept = etree.fromstring(started.domain_xml)
    for interface in kept.iter("interface"):
        if interface.find("virtualport") is not None:
            etree.SubElement(interface, "filterref", filter="clean-traffic")
    for interface in list(kept.iter("interface"))[:-1]:
        interface.getparent().remove(interface)  # only the Open vSwitch vNIC
    xml = tmp_path / "with-filterref.xml"
    xml.write_bytes(etree.tostring(kept))
    result = subprocess.run(
        ["virsh", "-c", libvirt.uri, "create", str(xml)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert (
        "filterref is not supported for network interfaces with virtualport type "
        "openvswitch" in result.stderr
    )
    assert not vdsm.destroy_vm(started.domain_xml).failed


@pytest.fixture(scope="module")
def ovn_libvirt(tmp_path_factory):
    """A host whose agent is OVN, with its own libvirtd."""
    for tool in ("ovn-controller", "libvirtd", "tcpdump"):
        require_tool(tool)
    ovs = OvsSandbox(
        tmp_path_factory.mktemp("ovn-libvirt"), f"qhook-ovnlv-{os.getpid()}-{secrets.token_hex(3)}"
    ).start()
    ovn = libvirt = None
    try:
        ovn = OvnSandbox(ovs).start()
        ovn.nbctl("ls-add", "tenant")
        libvirt = LibvirtSandbox(ovs.directory / "libvirt", ovs).start()
        yield ovs, ovn, libvirt
    finally:
        if libvirt is not None:
            libvirt.stop()
        if ovn is not None:
            ovn.stop()
        ovs.stop()


def test_two_vms_on_one_logical_switch_see_each_other_through_ovn(ovn_libvirt, tmp_path):
    ovs, ovn, libvirt = ovn_libvirt
    config = tmp_path / "quantum.conf"
    config.write_text(
        f"[ovs]\nconnection = {ovs.connection}\nhybrid_plug = no\n"
        f"[wiring]\ntimeout = 20\non_timeout = fail\n"
    )
    vdsm = VdsmEmulator(HOOKS_DIR, hook_env({"QHOOK_CONFIG": str(config)}), wrapper=ovs.netns_exec)
    vms = []
    for index in (1, 2):
        mac = f"02:00:00:00:f{index}:01"
        port = new_id()
        ovn.nbctl("lsp-add", "tenant", port, "--", "lsp-set-addresses", port, mac)
        domain = bootable_domain(f"qhook-e2e-ovn{index}", INTERFACES)
        for extra in domain.findall("devices/interface")[1:]:
            extra.getparent().remove(extra)
        domain.find("devices/interface/mac").set("address", mac)
        set_vnic_properties(domain, mac, seed_properties("ovn", port))
        vms.append((domain.findtext("name"), mac, "tap" + port[:11], domain))
    (_, first_mac, _, _), (_, _, second_tap, _) = vms
    started = []
    try:
        for name, _, _, domain in vms:
            run = vdsm.start_vm(etree.tostring(domain))  # returns once OVN has wired it
            started.append(run)
            path = tmp_path / f"{name}.xml"
            path.write_bytes(run.domain_xml)
            libvirt.virsh("define", str(path))
        # Listen on the second VM's tap for the first VM's DHCP request, then boot both.
        listener = subprocess.Popen(
            [
                *ovs.netns_exec,
                "tcpdump",
                "-i",
                second_tap,
                "-c",
                "1",
                "-n",
                "-l",
                f"ether src {first_mac} and udp dst port 67",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(1)  # tcpdump attaches
        for name, _, _, _ in vms:
            libvirt.virsh("start", name)
        try:
            out, err = listener.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            listener.kill()
            out, err = listener.communicate()
        assert listener.returncode == 0, err
        assert first_mac in out and "BOOTP/DHCP, Request" in out, out
    finally:
        for name, _, _, _ in vms:
            subprocess.run(["virsh", "-c", libvirt.uri, "destroy", name], capture_output=True)
            subprocess.run(["virsh", "-c", libvirt.uri, "undefine", name], capture_output=True)
        for run in started:
            assert not vdsm.destroy_vm(run.domain_xml).failed
    taps = {tap for _, _, tap, _ in vms}
    assert not taps & (set(hoststate.links(ovs)) | set(hoststate.ovs_interfaces(ovs)))
