# SPDX-License-Identifier: GPL-2.0-or-later
"""The property contract: which vNICs are Quantum's, and their normalised identifiers."""

import pytest

from qhook.errors import PropertyError
from qhook.plugins import SEED_PLUGINS, InterfaceSpec
from qhook.vdsm.vnic import Plugin, PropertyForm, parse_vnic

NET = "3B0C4E7A-9D2F-4C61-8A5E-0F1D2C3B4A59"
PORT = "8E5F2A1C-4B3D-4E6F-9A7B-1C2D3E4F5A6B"
ATTACHMENT = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
MAC = "00:1A:4A:16:01:51"


@pytest.mark.parametrize(
    "properties",
    [
        {},
        {"provider_type": "FOREMAN"},
        {"plugin": ""},
        {"network": "Q_web", "queues": "4"},
        {"provider_type": "", "vnic_id": PORT},
    ],
)
def test_other_vnics_are_not_ours(properties):
    assert parse_vnic(properties, MAC) is None
    assert parse_vnic(properties, None) is None


@pytest.mark.parametrize("plugin", SEED_PLUGINS)
def test_seed_form_normalises_ids_and_names_the_tap(plugin):
    vnic = parse_vnic({"plugin": plugin.value, "q_network_id": NET, "q_port_id": PORT}, MAC)
    assert vnic.plugin is plugin and vnic.form is PropertyForm.SEED
    assert vnic.network_id == NET.lower() and vnic.port_id == PORT.lower()
    assert vnic.host_id == PORT.lower() and vnic.mac == MAC.lower()
    assert vnic.tap_name == "tap8e5f2a1c-4b"


def test_attachment_id_is_the_host_id():
    vnic = parse_vnic(
        {
            "plugin": "linuxbridge",
            "q_network_id": NET,
            "q_port_id": PORT,
            "q_attachment_id": ATTACHMENT,
        },
        MAC,
    )
    assert vnic.host_id == ATTACHMENT and vnic.port_id == PORT.lower()
    assert vnic.tap_name == "tap0a1b2c3d-4e"


def test_plugin_and_network_alone_are_a_port_on_demand():
    vnic = parse_vnic({"plugin": "ovn", "q_network_id": NET, "mtu": "1400"}, MAC)
    assert vnic.on_demand and vnic.unresolved and vnic.port_id is None
    assert (vnic.network_id, vnic.mtu) == (NET.lower(), 1400)
    with pytest.raises(PropertyError, match="its port on demand is not known yet"):
        vnic.tap_name  # noqa: B018 (the property raises)
    resolved = vnic.with_port(PORT)
    assert resolved.on_demand and not resolved.unresolved
    assert resolved.host_id == resolved.port_id == PORT.lower()
    assert resolved.tap_name == "tap8e5f2a1c-4b"
    with pytest.raises(PropertyError, match="port id: 'x' is not a UUID"):
        vnic.with_port("x")


def test_an_attachment_id_needs_a_port_id():
    with pytest.raises(PropertyError, match="property q_port_id is missing"):
        parse_vnic({"plugin": "openvswitch", "q_network_id": NET, "q_attachment_id": PORT}, MAC)
    with pytest.raises(PropertyError, match="property q_network_id is missing"):
        parse_vnic({"plugin": "openvswitch"}, MAC)


@pytest.mark.parametrize(
    ("plugin_type", "plugin"),
    [
        ("OPEN_VSWITCH", Plugin.OPENVSWITCH),
        ("LINUX_BRIDGE", Plugin.LINUXBRIDGE),
        ("OPENSTACK_OVN", Plugin.OVN),
        ("OVIRT_PROVIDER_OVN", Plugin.OVN),
    ],
)
@pytest.mark.parametrize("provider", ["OPENSTACK_NETWORK", "EXTERNAL_NETWORK"])
def test_openstacknet_form(provider, plugin_type, plugin):
    vnic = parse_vnic({"provider_type": provider, "plugin_type": plugin_type, "vnic_id": PORT}, MAC)
    assert vnic.plugin is plugin and vnic.form is PropertyForm.OPENSTACKNET
    assert vnic.host_id == PORT.lower() and vnic.network_id is None


@pytest.mark.parametrize(
    "mac",
    [None, "", "00:1a:4a:16:01", "00-1a-4a-16-01-51", "00:1a:4a:16:01:5g", "00:1a:4a:16:01:51\n"],
)
def test_a_quantum_vnic_needs_a_valid_mac(mac):
    with pytest.raises(PropertyError, match="is not a MAC address"):
        parse_vnic({"plugin": "openvswitch", "q_network_id": NET, "q_port_id": PORT}, mac)


@pytest.mark.parametrize(
    "bad",
    [
        PORT + "\n",
        " " + PORT,
        PORT.replace("-", ""),
        "urn:uuid:" + PORT,
        PORT[:-1] + "\u0661",
        PORT[:-1] + "\x00",
    ],
)
def test_ids_must_be_canonical_uuids(bad):
    with pytest.raises(PropertyError, match=r"property q_port_id: .* is not a UUID"):
        parse_vnic({"plugin": "openvswitch", "q_network_id": NET, "q_port_id": bad}, MAC)


def test_error_values_are_shortened_and_escaped():
    with pytest.raises(PropertyError) as raised:
        parse_vnic({"plugin": "x\n" * 100}, MAC)
    text = str(raised.value)
    assert "\n" not in text and "'x\\nx\\nx" in text and "(200 characters)" in text
    assert text.isascii()


def test_a_vnic_is_a_frozen_value():
    """QuantumVnic (and InterfaceSpec) behave as the frozen dataclasses they were."""
    properties = {"plugin": "openvswitch", "q_network_id": NET, "q_port_id": PORT}
    vnic = parse_vnic(properties, MAC)
    same = parse_vnic(dict(properties), MAC.lower())
    assert vnic == same and hash(vnic) == hash(same) and len({vnic, same}) == 1
    assert vnic != vnic.with_port(ATTACHMENT) and vnic != (vnic.mac,)
    assert repr(vnic).startswith(f"QuantumVnic(mac={MAC.lower()!r}, plugin=<Plugin.OPENVSWITCH")
    assert repr(vnic).endswith("mtu=None, on_demand=False, plugin_decided=False)")
    with pytest.raises(AttributeError, match="cannot assign to field 'mtu'"):
        vnic.mtu = 1400
    with pytest.raises(AttributeError, match="cannot delete field 'mac'"):
        del vnic.mac
    changed = vnic.replace(mtu=1400)
    assert (changed.mtu, vnic.mtu, changed.mac) == (1400, None, vnic.mac)
    with pytest.raises(TypeError):
        vnic.replace(colour="red")
    spec = InterfaceSpec(type="ethernet", target_dev="tap8e5f2a1c-4b", target_managed="no")
    assert spec == InterfaceSpec("ethernet", "tap8e5f2a1c-4b", "no")
    assert repr(spec) == (
        "InterfaceSpec(type='ethernet', target_dev='tap8e5f2a1c-4b', target_managed='no', "
        "source_bridge=None, ovs_interface_id=None)"
    )
