# SPDX-License-Identifier: GPL-2.0-or-later
"""Bad input through the real hook scripts: exit 2, one clear line, data file untouched."""

import os

import pytest
from domains import (
    load_fixture,
    new_id,
    openstacknet_properties,
    seed_properties,
    set_vnic_properties,
    to_bytes,
)

from tools import ERROR_PREFIX, error_lines

MAC = "00:1a:4a:16:01:00"  # the vNIC of vm_hibernated.xml
DEVICE = (
    b'<interface type="bridge"><mac address="00:1a:4a:16:01:57"/><model type="virtio"/>'
    b'<source bridge="ovirtmgmt"/><filterref filter="vdsm-no-mac-spoofing"/></interface>'
)
PORT = new_id()

BAD_PROPERTIES = {
    # case: (properties, fragment the error line must contain)
    "unknown-plugin": (
        {"plugin": "vmware", "q_network_id": new_id(), "q_port_id": PORT},
        "property plugin: unknown value 'vmware'",
    ),
    "attachment-without-port": (
        {"plugin": "openvswitch", "q_network_id": new_id(), "q_attachment_id": PORT},
        "property q_port_id is missing",
    ),
    "missing-network": (
        {"plugin": "linuxbridge", "q_port_id": PORT},
        "property q_network_id is missing",
    ),
    "ids-without-plugin": (
        {"q_network_id": new_id(), "q_port_id": PORT},
        "property plugin is missing",
    ),
    "port-not-uuid": (
        seed_properties("openvswitch", port_id="port-1"),
        "property q_port_id: 'port-1' is not a UUID",
    ),
    "port-shell": (
        seed_properties("openvswitch", port_id="$(reboot)"),
        "property q_port_id: '$(reboot)' is not a UUID",
    ),
    "port-newline": (
        seed_properties("openvswitch", port_id=PORT + "\nx"),
        "property q_port_id: '" + PORT + "\\nx' is not a UUID",
    ),
    "port-option": (
        seed_properties("openvswitch", port_id="--may-exist"),
        "property q_port_id: '--may-exist' is not a UUID",
    ),
    "port-braces": (seed_properties("openvswitch", port_id="{" + PORT + "}"), "is not a UUID"),
    # A Linux environment string is at most 128 KiB, so VDSM cannot pass more.
    "port-huge": (
        seed_properties("openvswitch", port_id="a" * 100_000),
        "(100000 characters) is not a UUID",
    ),
    "network-lookalike": (
        seed_properties("openvswitch", q_network_id=PORT.replace("-", "\u2010")),
        "property q_network_id: '" + PORT[:8] + "\\u2010",
    ),
    "attachment-bad": (
        seed_properties("linuxbridge", q_attachment_id="tap1"),
        "property q_attachment_id: 'tap1' is not a UUID",
    ),
    "openstacknet-no-plugin-type": (
        {"provider_type": "OPENSTACK_NETWORK", "vnic_id": PORT},
        "property plugin_type is missing",
    ),
    "openstacknet-bad-plugin-type": (
        {"provider_type": "EXTERNAL_NETWORK", "plugin_type": "OPENVSWITCH", "vnic_id": PORT},
        "property plugin_type: unknown value 'OPENVSWITCH'",
    ),
    "openstacknet-no-vnic-id": (
        {"provider_type": "OPENSTACK_NETWORK", "plugin_type": "OPEN_VSWITCH"},
        "property vnic_id is missing",
    ),
    "openstacknet-bad-vnic-id": (
        {"provider_type": "OPENSTACK_NETWORK", "plugin_type": "OPEN_VSWITCH", "vnic_id": "1"},
        "property vnic_id: '1' is not a UUID",
    ),
    "both-forms": (
        dict(seed_properties("openvswitch"), **openstacknet_properties("OPEN_VSWITCH")),
        "use one form",
    ),
}


def _assert_refused(result, data_file, original: bytes, stat_before, fragment: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = error_lines(result.stderr)
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(ERROR_PREFIX), lines[0]
    assert fragment in lines[0], lines[0]
    assert "Traceback" not in result.stderr
    assert data_file.read_bytes() == original
    stat_after = os.stat(data_file)
    assert (stat_after.st_ino, stat_after.st_mtime_ns) == (
        stat_before.st_ino,
        stat_before.st_mtime_ns,
    )


def _write(tmp_path, data: bytes):
    path = tmp_path / "hook-data"
    path.write_bytes(data)
    return path, os.stat(path)


@pytest.mark.parametrize("case", sorted(BAD_PROPERTIES))
def test_device_hook_refuses_bad_properties(hook, case, env, tmp_path):
    properties, fragment = BAD_PROPERTIES[case]
    path, stat = _write(tmp_path, DEVICE)
    result = hook("before_device_create", path, dict(env, **properties))
    _assert_refused(result, path, DEVICE, stat, fragment)
    assert "before_device_create: vNIC 00:1a:4a:16:01:57: " in result.stderr


@pytest.mark.parametrize("case", sorted(BAD_PROPERTIES))
def test_vm_hook_refuses_bad_metadata(hook, case, env, tmp_path):
    properties, fragment = BAD_PROPERTIES[case]
    domain = load_fixture("vm_hibernated.xml")
    set_vnic_properties(domain, MAC, properties)
    data = to_bytes(domain)
    path, stat = _write(tmp_path, data)
    result = hook("before_vm_start", path, env)
    _assert_refused(result, path, data, stat, fragment)
    assert f"before_vm_start: vNIC {MAC}: " in result.stderr


def _two_vnics(second_port: str, second_interface: str) -> bytes:
    domain = load_fixture("vm_hibernated.xml")
    set_vnic_properties(domain, MAC, seed_properties("openvswitch", port_id=PORT))
    devices = domain.find("devices")
    from lxml import etree

    devices.append(etree.fromstring(second_interface))
    if second_port:
        set_vnic_properties(
            domain, "02:00:00:00:00:02", seed_properties("linuxbridge", second_port)
        )
    return to_bytes(domain)


BAD_DOMAINS = {
    "tap-clash": (
        _two_vnics(
            PORT[:11] + "f" * 2 + PORT[13:],
            '<interface type="bridge"><mac address="02:00:00:00:00:02"/>'
            '<source bridge="ovirtmgmt"/></interface>',
        ),
        f"would both use tap tap{PORT[:11]}",
    ),
    "tap-taken-by-other-vnic": (
        _two_vnics(
            "",
            f'<interface type="ethernet"><mac address="02:00:00:00:00:02"/>'
            f'<target dev="tap{PORT[:11]}"/></interface>',
        ),
        f"vNIC 02:00:00:00:00:02 already uses device tap{PORT[:11]}",
    ),
    "bad-interface-mac": (
        _two_vnics(
            "",
            '<interface type="bridge"><mac address="02:00:00:00:00"/>'
            '<source bridge="ovirtmgmt"/></interface>',
        )
        .replace(b'mac_address="00:1a:4a:16:01:00"', b'mac_address="02:00:00:00:00"')
        .replace(b"<mac address='00:1a:4a:16:01:00'/>", b""),
        "interface MAC address '02:00:00:00:00' is not a MAC address",
    ),
    "empty": (b"", "domain XML is empty"),
    "blank": (b"  \n", "domain XML is empty"),
    "truncated": (to_bytes(load_fixture("vm_hibernated.xml"))[:900], "domain XML is malformed"),
    "not-xml": (b'{"vm": 1}', "domain XML is malformed"),
    "not-utf8": (b"<domain><name>\xff\xfe</name></domain>", "domain XML is not UTF-8"),
    "entities": (
        b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaaaaaaaa">'
        b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><domain>&b;</domain>',
        "has a DOCTYPE declaration, which is refused",
    ),
    "external-entity": (
        b'<!DOCTYPE domain [<!ENTITY x SYSTEM "file:///etc/shadow">]><domain>&x;</domain>',
        "has a DOCTYPE declaration, which is refused",
    ),
    "external-dtd": (
        b'<!-- a comment first --><!DOCTYPE domain SYSTEM "http://127.0.0.1:9/x.dtd"><domain/>',
        "has a DOCTYPE declaration, which is refused",
    ),
    "undefined-entity": (b"<domain>&shadow;</domain>", "domain XML is malformed"),
    "nul-reference": (b"<domain><name>&#0;</name></domain>", "domain XML is malformed"),
    "deep-nesting": (
        b"<domain>" + b"<a>" * 5000 + b"</a>" * 5000 + b"</domain>",
        "domain XML is malformed",
    ),
    "huge": (
        b"<domain>" + b" " * (16 * 1024 * 1024) + b"</domain>",
        "more than the 16777216 accepted",
    ),
    "duplicate-metadata": (
        to_bytes(load_fixture("vm_hibernated.xml")).replace(
            b'<ovirt-vm:device mac_address="00:1a:4a:16:01:00">',
            b'<ovirt-vm:device mac_address="00:1A:4A:16:01:00"><ovirt-vm:custom/>'
            b'</ovirt-vm:device><ovirt-vm:device mac_address="00:1a:4a:16:01:00">'
            b"<ovirt-vm:custom/>",
        ),
        "the metadata has two entries for MAC address '00:1a:4a:16:01:00'",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_DOMAINS))
def test_vm_hook_refuses_bad_domains(hook, case, env, tmp_path):
    data, fragment = BAD_DOMAINS[case]
    path, stat = _write(tmp_path, data)
    result = hook("before_vm_start", path, env)
    _assert_refused(result, path, data, stat, fragment)


BAD_CONFIGS = {
    "syntax": ("plug = hook\n", "is malformed: File contains no section headers"),
    "plug": ("[ovs]\nplug = maybe\n", "[ovs] plug = 'maybe' is invalid: expected hook or libvirt"),
    "timeout": ("[ovs]\ntimeout = -1\n", "[ovs] timeout = '-1' is invalid"),
    "timeout-nan": ("[ovs]\ntimeout = nan\n", "[ovs] timeout = 'nan' is invalid"),
    "bridge": ("[ovs]\nintegration_bridge = br int;x\n", "[ovs] integration_bridge"),
    "connection": ("[ovs]\nconnection = /run/db.sock\n", "expected unix:/PATH"),
    "duplicate": ("[ovs]\nplug = hook\nplug = libvirt\n", "is malformed: While reading"),
    "not-utf8": (b"[ovs]\nplug = \xff\n", "cannot read"),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_hooks_refuse_a_bad_configuration(hook, case, env, config_path, tmp_path):
    text, fragment = BAD_CONFIGS[case]
    if isinstance(text, bytes):
        config_path.write_bytes(text)
    else:
        config_path.write_text(text)
    domain = load_fixture("vm_hibernated.xml")
    set_vnic_properties(domain, MAC, seed_properties("openvswitch"))
    data = to_bytes(domain)
    path, stat = _write(tmp_path, data)
    result = hook("before_vm_start", path, env)
    _assert_refused(result, path, data, stat, fragment)
    assert str(config_path) in result.stderr


def test_missing_data_file_variable_is_one_line(env):
    import subprocess

    from tools import HOOKS_DIR

    result = subprocess.run(
        [str(HOOKS_DIR / "before_vm_start" / "50_quantum")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr == (
        "vdsm-hook-quantum: before_vm_start: _hook_domxml is not set: "
        "this hook is meant to be run by VDSM\n"
    )


def test_a_bad_configuration_does_not_stop_vms_without_quantum_vnics(
    hook, env, config_path, tmp_path
):
    """The configuration is read only when there is a Quantum vNIC to handle."""
    config_path.write_text("[ovs]\nplug = maybe\n")
    data = to_bytes(load_fixture("vm_hibernated.xml"))
    path, _ = _write(tmp_path, data)
    result = hook("before_vm_start", path, env)
    assert (result.returncode, result.stderr) == (0, "")
    assert path.read_bytes() == data


def test_non_utf8_property_bytes_are_refused_escaped(hook, env, tmp_path):
    """VDSM's environment can carry any bytes; the error line stays ASCII and one line."""
    path, stat = _write(tmp_path, DEVICE)
    raw = {k.encode(): v.encode() for k, v in env.items()}
    raw.update(
        {
            b"plugin": b"openvswitch",
            b"q_network_id": new_id().encode(),
            b"q_port_id": b"\xff\xfe--\x1b[31m",
        }
    )
    result = hook("before_device_create", path, raw)
    _assert_refused(result, path, DEVICE, stat, "property q_port_id: '\\udcff\\udcfe--\\x1b[31m'")


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ('<mtu size="60"/>', "<mtu size>: '60' is not an MTU from 68 to 65535"),
        ('<mtu size="1e3"/>', "<mtu size>: '1e3' is not an MTU from 68 to 65535"),
        ('<driver name="vhost" queues="0"/>', "queues '0' is not a number from 1 to 256"),
    ],
)
def test_vm_hook_refuses_an_mtu_or_queues_it_cannot_give_a_tap(
    hook, env, tmp_path, extra, fragment
):
    domain = load_fixture("vm_hibernated.xml")
    set_vnic_properties(domain, MAC, seed_properties("linuxbridge"))
    from lxml import etree

    domain.find("devices/interface").append(etree.fromstring(extra))
    data = to_bytes(domain)
    path, stat = _write(tmp_path, data)
    _assert_refused(hook("before_vm_start", path, env), path, data, stat, fragment)
