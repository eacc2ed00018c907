# SPDX-License-Identifier: GPL-2.0-or-later
"""The Quantum network's MTU: from the mtu property (or the engine's <mtu>) to the
interface, the tap and its Open vSwitch port; and real frames of that size crossing the
integration bridge, one byte more refused."""

import json

import hoststate
import pytest
from domains import quantum_vm, seed_properties, to_bytes
from lxml import etree

from qhook.lab.vdsm_emulator import HookFailed


def _ovs_mtu(ovs, name):
    request = json.loads(ovs.vsctl("--format=json", "get", "Interface", name, "mtu_request"))
    return request, int(ovs.vsctl("get", "Interface", name, "mtu"))


def _interfaces(xml: bytes):
    return etree.fromstring(xml).findall("devices/interface")


def test_the_network_mtu_reaches_the_guest_the_tap_and_ovs(vdsm, ovs, forwarding):
    vnics = [dict(seed_properties("openvswitch"), mtu="1400") for _ in range(2)]
    vnics.append(seed_properties("openvswitch"))  # another network's vNIC: default MTU
    started = vdsm.start_vm(to_bytes(quantum_vm(vnics)))
    assert not any(run.stderr for run in started.runs), started.runs
    interfaces = _interfaces(started.domain_xml)
    assert [
        i.find("mtu").get("size") if i.find("mtu") is not None else None for i in interfaces
    ] == ["1400", "1400", None]
    taps = [i.find("target").get("dev") for i in interfaces]
    links = hoststate.links(ovs)
    assert [links[t]["mtu"] for t in taps] == [1400, 1400, 1500]
    hoststate.wait_for_ofports(ovs, taps)
    assert _ovs_mtu(ovs, taps[0]) == (1400, 1400) and _ovs_mtu(ovs, taps[1]) == (1400, 1400)
    assert _ovs_mtu(ovs, taps[2])[0] == []  # none asked for
    # The first vNIC sends; a full-size frame reaches the second, one byte more does not.
    seen = hoststate.frames_cross(ovs, taps[0], "02:00:00:00:01:01", [1400, 1401, 1000], taps[1:2])
    assert seen == {1400: [taps[1]], 1401: [], 1000: [taps[1]]}
    assert not vdsm.destroy_vm(started.domain_xml).failed
    assert not set(taps) & set(hoststate.links(ovs))


def test_an_mtu_property_that_contradicts_the_engines_mtu_is_refused(vdsm, ovs):
    vnic = dict(seed_properties("openvswitch"), mtu="1400", _extra='<mtu size="9000"/>')
    started_before = set(hoststate.links(ovs))
    with pytest.raises(HookFailed) as refused:
        vdsm.start_vm(to_bytes(quantum_vm([vnic])))
    assert str(refused.value).endswith(
        "vdsm-hook-quantum: before_device_create: vNIC 02:00:00:00:01:01: property mtu=1400 "
        "contradicts the interface's <mtu size='9000'>"
    )
    assert set(hoststate.links(ovs)) == started_before


def test_the_engines_mtu_alone_is_used_and_an_agreeing_property_changes_nothing(vdsm, ovs):
    vnics = [
        dict(seed_properties("linuxbridge"), _extra='<mtu size="9000"/>'),
        dict(seed_properties("ovn"), mtu="8950", _extra='<mtu size="8950"/>'),
    ]
    started = vdsm.start_vm(to_bytes(quantum_vm(vnics)))
    assert not any(run.stderr for run in started.runs), started.runs
    interfaces = _interfaces(started.domain_xml)
    assert [len(i.findall("mtu")) for i in interfaces] == [1, 1]
    taps = [i.find("target").get("dev") for i in interfaces]
    assert [hoststate.links(ovs)[t]["mtu"] for t in taps] == [9000, 8950]
    hoststate.wait_for_ofports(ovs, taps[1:])
    assert _ovs_mtu(ovs, taps[1]) == (8950, 8950)
    assert not vdsm.destroy_vm(started.domain_xml).failed
