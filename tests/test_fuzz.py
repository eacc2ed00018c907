# SPDX-License-Identifier: GPL-2.0-or-later
"""Property-based fuzzing (hypothesis) of what comes from outside: custom properties,
device XML and requests to the privileged helper. For any input: a valid result, or
exit 2 with a single clear line; never another exception."""

import io
import json
import os
import re
import subprocess
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qhook.errors import PropertyError
from qhook.vdsm.contract import run
from qhook.vdsm.points.start import before_device_create
from qhook.vdsm.vnic import claims, parse_vnic
from qhook.vocabulary import schema
from tools import DEFAULTS_CONF, require_tool

FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
LINE = re.compile(r"vdsm-hook-quantum: before_device_create: [\x20-\x7e]+\n")
KEYS = [
    "plugin",
    "q_network_id",
    "q_port_id",
    "q_attachment_id",
    "provider_type",
    "plugin_type",
    "vnic_id",
    "network",
    "queues",
]
WORDS = [
    "openvswitch",
    "linuxbridge",
    "ovn",
    "OPEN_VSWITCH",
    "LINUX_BRIDGE",
    "OPENSTACK_OVN",
    "OVIRT_PROVIDER_OVN",
    "OPENSTACK_NETWORK",
    "EXTERNAL_NETWORK",
    "",
]
values = st.one_of(
    st.sampled_from(WORDS),
    st.uuids().map(str),
    st.uuids().map(lambda u: str(u).upper()),
    st.text(max_size=80),
    st.text(alphabet="0123456789abcdef-", min_size=30, max_size=40),
)
properties = st.dictionaries(st.sampled_from(KEYS), values, max_size=6)
macs = st.one_of(
    st.none(),
    st.lists(st.integers(0, 255), min_size=6, max_size=6).map(
        lambda b: ":".join(f"{x:02x}" for x in b)
    ),
    st.text(max_size=20),
)


@FUZZ
@given(properties, macs)
def test_property_parser(props, mac):
    try:
        vnic = parse_vnic(props, mac)
    except PropertyError as error:
        text = str(error)
        assert text.isascii() and "\n" not in text and len(text) < 400
        return
    if vnic is None:
        assert not claims(props)
        return
    assert str(uuid.UUID(vnic.host_id)) == vnic.host_id
    assert vnic.tap_name == "tap" + vnic.host_id[:11] and len(vnic.tap_name) == 14
    assert vnic.mac == mac.lower()


GROUPS = {
    "model": ['<model type="virtio"/>', '<model type="e1000"/>'],
    "source": ['<source bridge="ovirtmgmt"/>', '<source network="default" portgroup="x"/>'],
    "target": ['<target dev="vnet0"/>', '<target dev="tapx" managed="yes"/>'],
    "filterref": ['<filterref filter="vdsm-no-mac-spoofing"/>'],
    "virtualport": ['<virtualport type="openvswitch"><parameters interfaceid="x"/></virtualport>'],
    "vlan": ['<vlan><tag id="5"/></vlan>'],
    "mtu": ['<mtu size="1400"/>'],
    "driver": ['<driver name="vhost" queues="4"/>'],
    "link": ['<link state="down"/>'],
    "bandwidth": ['<bandwidth><inbound average="10"/></bandwidth>'],
    "comment": ["<!-- note -->"],
    "boot": ['<boot order="2"/>'],
    "alias": ['<alias name="ua-1"/>'],
    "rom": ['<rom enabled="no"/>'],
}
PIECES = [piece for pieces in GROUPS.values() for piece in pieces]
# At most one element of each kind, in any order: the interface is valid apart from
# its host side, which is what the rewrite replaces.
interface_pieces = st.fixed_dictionaries(
    {tag: st.one_of(st.none(), st.sampled_from(options)) for tag, options in GROUPS.items()}
).flatmap(lambda chosen: st.permutations([p for p in chosen.values() if p is not None]))
VALID_TYPES = ["bridge", "network", "ethernet"]


def _run_device_hook(tmp_path, data: bytes, props):
    path = tmp_path / "device.xml"
    path.write_bytes(data)
    err = io.StringIO()
    env = {"_hook_domxml": str(path), "QHOOK_CONFIG": str(DEFAULTS_CONF), **props}
    code = run("before_device_create", before_device_create, env=env, stderr=err)
    return code, err.getvalue(), path.read_bytes()


def _schema_valid(tmp_path, interface: bytes) -> bool:
    domain = (
        b'<domain type="qemu"><name>f</name><memory>65536</memory><os><type>hvm</type>'
        b"</os><devices>" + interface + b"</devices></domain>"
    )
    path = tmp_path / "domain.xml"
    path.write_bytes(domain)
    done = subprocess.run(
        [require_tool("virt-xml-validate"), str(path), "domain"], capture_output=True, check=False
    )
    return done.returncode == 0


@FUZZ
@given(
    kind=st.sampled_from(VALID_TYPES),
    pieces=interface_pieces,
    props=st.one_of(
        properties,
        st.builds(
            lambda p, n, a: {"plugin": p, "q_network_id": n, "q_port_id": a},
            st.sampled_from(["openvswitch", "linuxbridge", "ovn"]),
            st.uuids().map(str),
            st.uuids().map(str),
        ),
        st.builds(
            lambda t, v: {"provider_type": "OPENSTACK_NETWORK", "plugin_type": t, "vnic_id": v},
            st.sampled_from(["OPEN_VSWITCH", "LINUX_BRIDGE", "OPENSTACK_OVN"]),
            st.uuids().map(str),
        ),
    ),
)
def test_device_rewrite_is_valid_or_one_line(tmp_path, kind, pieces, props):
    """Well-formed interfaces: a rewrite libvirt's schema accepts, or one error line."""
    data = (
        f'<interface type="{kind}"><mac address="02:00:00:00:00:01"/>'
        + "".join(pieces)
        + "</interface>"
    ).encode()
    code, err, out = _run_device_hook(tmp_path, data, props)
    if code == 2:
        assert LINE.fullmatch(err), err
        assert out == data
        return
    assert code == 0 and "Traceback" not in err
    if out != data:
        assert _schema_valid(tmp_path, out), out.decode()


@FUZZ
@given(
    data=st.one_of(
        st.binary(max_size=300),
        st.text(max_size=300).map(str.encode),
        st.sampled_from(
            [
                *PIECES,
                "<interface>",
                "</interface>",
                "<!DOCTYPE x>",
                "&amp;",
                "&bogus;",
                "\x00",
                "\udcff",
            ]
        ).map(lambda p: p.encode("utf-8", "surrogateescape")),
        st.lists(
            st.sampled_from(
                [
                    *PIECES,
                    '<interface type="bridge">',
                    "</interface>",
                    '<mac address="02:00:00:00:00:01"/>',
                    "<",
                    ">",
                    '"',
                    "<!DOCTYPE d [<!ENTITY e 'x'>]>",
                ]
            ),
            max_size=12,
        ).map(lambda p: "".join(p).encode()),
    ),
    props=properties,
)
def test_any_device_input_ends_in_success_or_one_line(tmp_path, data, props):
    """Junk of every kind: never a traceback, never a half-written file."""
    code, err, out = _run_device_hook(tmp_path, data, props)
    assert code in (0, 2)
    if code == 2:
        assert LINE.fullmatch(err), err
        assert out == data
    else:
        assert all(line.startswith("vdsm-hook-quantum: warning: ") for line in err.splitlines())


json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.text(max_size=40),
        st.uuids().map(str),
        st.sampled_from(["plug", "remove", "repair", "move", "end_move", "tap0"]),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.sampled_from(
                [
                    "verb",
                    "vm",
                    "attachments",
                    "ports",
                    "taps",
                    "host_id",
                    "mac",
                    "plugin",
                    "multiqueue",
                    "mtu",
                    "network_id",
                    "mirror",
                    "tap",
                    "macs",
                    "undo",
                    "x",
                ]
            ),
            children,
            max_size=8,
        ),
    ),
    max_leaves=20,
)


@FUZZ
@given(json_values)
def test_helper_requests_are_decoded_or_refused(value):
    try:
        request = schema.decode(json.dumps(value).encode())
    except schema.RequestError as error:
        assert "\n" not in str(error)
        return
    except PropertyError as error:  # a bad UUID or MAC, named
        assert "\n" not in str(error)
        return
    assert request.verb in ("plug", "remove", "repair", "move", "end_move")
    assert all(schema.TAP_NAME.fullmatch(n) for n in request.taps + request.ports)


@pytest.mark.parametrize("size", [1, 200_000])
def test_large_property_values_in_the_metadata_are_refused_quickly(size):
    with pytest.raises(PropertyError, match=r"\(200000 characters\)|is not a UUID"):
        parse_vnic(
            {"plugin": "openvswitch", "q_network_id": "x" * size, "q_port_id": "y"},
            "02:00:00:00:00:01",
        )


@FUZZ
@given(st.integers(1, 300_000), st.sampled_from(["[", '{"a":', '{"verb": [']))
def test_helper_requests_nested_at_any_depth_are_refused_in_one_line(depth, opening):
    closing = {"[": "]", '{"a":': "}", '{"verb": [': "]}"}[opening]
    data = (opening * depth + "1" + closing * depth).encode()
    with pytest.raises(schema.RequestError) as refused:
        schema.decode(data)
    assert "\n" not in str(refused.value)


@FUZZ
@given(st.one_of(st.text(max_size=40), st.sampled_from(["tap0123abcd-ef", "../etc", "/tmp/x"])))
def test_a_name_from_anywhere_is_a_tap_name_of_ours_or_refused(name):
    """Names read back from Open vSwitch or the kernel are checked like the caller's: a
    tap name of this package, or one line; never a path under /sys/class/net."""
    from qhook.host import tap

    try:
        checked = tap.checked(name)
    except tap.TapError as error:
        assert "\n" not in str(error) and not schema.TAP_NAME.fullmatch(name)
        with pytest.raises(tap.TapError):
            tap.state(name)
        return
    assert checked == name and schema.TAP_NAME.fullmatch(name)
    assert os.path.dirname(os.path.join(tap.SYS_NET, name)) == tap.SYS_NET


TRUSTED = "[ovs]\nintegration_bridge = br-int\n"


@pytest.fixture(scope="module")
def trap_tree(tmp_path_factory):
    """Root's files beside traps: a directory vdsm owns, a link of vdsm's in a sticky
    directory, a root link into vdsm's directory, a FIFO, a loop, a group-writable file."""
    import pwd

    vdsm = pwd.getpwnam("vdsm")
    top = tmp_path_factory.mktemp("trust")
    (top / "etc").mkdir()
    (top / "etc" / "root.conf").write_text(TRUSTED)
    (top / "etc" / "writable.conf").write_text("x")
    os.chmod(top / "etc" / "writable.conf", 0o664)
    os.mkfifo(top / "etc" / "fifo", 0o600)
    (top / "etc" / "loop").symlink_to(top / "etc" / "loop")
    (top / "etc" / "alias.conf").symlink_to("root.conf")
    (top / "vdsm").mkdir()
    (top / "vdsm" / "mine.conf").write_text("[ovs]\nintegration_bridge = br-evil\n")
    for path in (top / "vdsm", top / "vdsm" / "mine.conf"):
        os.chown(path, vdsm.pw_uid, vdsm.pw_gid)
    (top / "etc" / "to-vdsm.conf").symlink_to(top / "vdsm" / "mine.conf")
    (top / "tmp").mkdir()
    os.chmod(top / "tmp", 0o1777)
    (top / "tmp" / "vlink").symlink_to(top / "etc" / "root.conf")
    os.lchown(top / "tmp" / "vlink", vdsm.pw_uid, vdsm.pw_gid)
    return top


PIECES_OF_PATHS = [
    "etc", "root.conf", "alias.conf", "writable.conf", "fifo", "loop", "to-vdsm.conf",
    "vdsm", "mine.conf", "tmp", "vlink", "..", ".", "", "missing",
]  # fmt: skip


@FUZZ
@given(st.lists(st.sampled_from(PIECES_OF_PATHS), min_size=1, max_size=6))
def test_root_reads_only_what_root_alone_could_have_written(trap_tree, pieces):
    """Any path through the traps: root's file, or one line, at once; never vdsm's."""
    import time

    from qhook.errors import ConfigError
    from qhook.host.trust import read_file

    path = str(trap_tree) + "/" + "/".join(pieces)
    started = time.monotonic()
    try:
        data = read_file(path, "fuzz")
    except ConfigError as error:
        assert "\n" not in str(error) and str(error).startswith("fuzz: ")
    else:
        assert data == TRUSTED.encode(), path
        assert os.path.realpath(path) == str(trap_tree / "etc" / "root.conf")
    assert time.monotonic() - started < 1
