# SPDX-License-Identifier: GPL-2.0-or-later
"""Port mirroring: a Quantum vNIC with oVirt's portMirroring gets a copy of its
network's traffic through an OVS Mirror, with real frames; another network's traffic
stays out; the mirror follows ports as they come and goes with its vNIC; a mirror that
is not ours is never touched."""

import json

import hoststate
import pytest
from domains import new_id, quantum_vm, seed_properties, set_port_mirroring, to_bytes
from lxml import etree

from qhook.lab.vdsm_emulator import HookFailed
from tools import qhook_on_host

RED, BLUE = new_id(), new_id()
TAGS = {RED: "10", BLUE: "20"}  # the local VLANs an OVS agent would give the networks


def _start(vdsm, networks, mirroring=None):
    """A VM with one seed-form Open vSwitch vNIC per network given; its taps by MAC."""
    vnics = [seed_properties("openvswitch", q_network_id=n) for n in networks]
    domain = quantum_vm(vnics, vm_uuid=new_id())
    for mac in mirroring or []:
        set_port_mirroring(domain, mac, ["Q_red"])
    started = vdsm.start_vm(to_bytes(domain))
    assert not any(run.stderr for run in started.runs), started.runs
    taps = {
        i.find("mac").get("address"): i.find("target").get("dev")
        for i in etree.fromstring(started.domain_xml).findall("devices/interface")
    }
    return started, taps


def _isolate(ovs, taps, networks):
    """Be the agent: each network's ports in its own local VLAN."""
    for tap, network in zip(taps, networks):
        ovs.vsctl("set", "Port", tap, f"tag={TAGS[network]}")


def _mirrors(ovs):
    table = json.loads(
        ovs.vsctl("--format=json", "--columns=name,select_src_port", "list", "Mirror")
    )
    return {row[0]: len(row[1][1]) if row[1][0] == "set" else 1 for row in table["data"]}


@pytest.fixture
def foreign_mirror(ovs):
    """Somebody else's mirror on br-int, which must come through untouched."""
    ovs.vsctl(
        "--",
        "--id=@m",
        "create",
        "Mirror",
        "name=foreign-span",
        "select_all=true",
        "--",
        "add",
        "Bridge",
        "br-int",
        "mirrors",
        "@m",
    )
    yield
    ovs.vsctl(
        "--",
        "--id=@m",
        "get",
        "Mirror",
        "foreign-span",
        "--",
        "remove",
        "Bridge",
        "br-int",
        "mirrors",
        "@m",
    )


def test_a_mirroring_vnic_sees_its_network_only(vdsm, ovs, forwarding, foreign_mirror):
    other, other_taps = _start(vdsm, [RED, BLUE])  # already running: B (red), D (blue)
    watcher, taps = _start(vdsm, [RED, RED, BLUE], mirroring=["02:00:00:00:02:01"])
    a, m, c = (taps[f"02:00:00:00:{n:02x}:01"] for n in (1, 2, 3))
    b, d = (other_taps[f"02:00:00:00:{n:02x}:01"] for n in (1, 2))
    _isolate(ovs, [a, m, c, b, d], [RED, RED, BLUE, RED, BLUE])
    assert _mirrors(ovs) == {"foreign-span": 0, f"qhook-mirror-{m}": 2}  # a and b

    red = hoststate.frames_cross(ovs, a, "02:00:00:00:01:01", [600], [b, m, c])
    blue = hoststate.frames_cross(ovs, c, "02:00:00:00:03:01", [600], [d, m])
    assert red == {600: sorted([b, m])} and blue == {600: [d]}

    # A VM started later on the red network is mirrored too.
    late, late_taps = _start(vdsm, [RED])
    e = late_taps["02:00:00:00:01:01"]
    _isolate(ovs, [e], [RED])
    assert _mirrors(ovs)[f"qhook-mirror-{m}"] == 3
    assert hoststate.frames_cross(ovs, e, "02:00:00:00:01:01", [700], [b, m]) == {
        700: sorted([b, m])
    }
    assert not vdsm.destroy_vm(late.domain_xml).failed
    assert _mirrors(ovs)[f"qhook-mirror-{m}"] == 2  # Open vSwitch dropped the port

    assert not vdsm.destroy_vm(watcher.domain_xml).failed
    assert _mirrors(ovs) == {"foreign-span": 0}
    assert not vdsm.destroy_vm(other.domain_xml).failed


@pytest.mark.parametrize(
    ("properties", "says"),
    [
        (
            seed_properties("linuxbridge"),
            "a Linux bridge vNIC cannot: mirrors are made on Open vSwitch",
        ),
        (
            {
                "provider_type": "OPENSTACK_NETWORK",
                "plugin_type": "OPEN_VSWITCH",
                "vnic_id": new_id(),
            },
            "it needs the vNIC's Quantum network (property q_network_id)",
        ),
    ],
)
def test_mirroring_what_cannot_mirror_is_refused(vdsm, ovs, properties, says):
    domain = quantum_vm([properties])
    set_port_mirroring(domain, "02:00:00:00:01:01", ["Q_red"])
    before = set(hoststate.links(ovs))
    with pytest.raises(HookFailed) as refused:
        vdsm.start_vm(to_bytes(domain))
    assert str(refused.value).endswith(
        f"vdsm-hook-quantum: before_vm_start: vNIC 02:00:00:00:01:01: port mirroring of "
        f"Q_red: {says}"
    )
    assert set(hoststate.links(ovs)) == before


def test_cleanup_after_a_crash_takes_the_mirror_with_the_port(
    vdsm, ovs, config_path, foreign_mirror
):
    _, taps = _start(vdsm, [RED, RED], mirroring=["02:00:00:00:02:01"])
    m = taps["02:00:00:00:02:01"]
    assert f"qhook-mirror-{m}" in _mirrors(ovs)
    for tap in taps.values():  # the host crashed: the taps are gone, the OVSDB rows not
        ovs.in_netns("ip", "link", "del", tap)
    cleaned = qhook_on_host(ovs.netns_exec, config_path, "cleanup", "--grace", "0", timeout=60)
    assert cleaned.returncode == 0, cleaned.stderr
    assert f"removed OVS port {m} (its tap is gone)" in cleaned.stdout
    assert _mirrors(ovs) == {"foreign-span": 0}
    assert not set(taps.values()) & set(hoststate.ovs_interfaces(ovs))
