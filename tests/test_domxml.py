# SPDX-License-Identifier: GPL-2.0-or-later
"""Parsing and rewriting in-process: safety limits, fidelity, idempotency."""

import pytest
from lxml import etree

from qhook.errors import XmlError
from qhook.plugins import InterfaceSpec
from qhook.vdsm import domxml

ETHERNET = InterfaceSpec(type="ethernet", target_dev="tap8e5f2a1c-4b", target_managed="no")
VIRTUALPORT = InterfaceSpec(
    type="bridge",
    target_dev="tap8e5f2a1c-4b",
    source_bridge="br-int",
    ovs_interface_id="8e5f2a1c-4b3d-4e6f-9a7b-1c2d3e4f5a6b",
)
PRETTY = b"""<interface type="bridge">
  <mac address="00:1a:4a:16:01:51"/>
  <source bridge="ovirtmgmt"/>
  <target dev="vnet0"/>
  <vlan><tag id="42"/></vlan>
  <model type="virtio"/>
  <!-- kept -->
  <filterref filter="vdsm-no-mac-spoofing">
    <parameter name="IP" value="10.0.0.1"/>
  </filterref>
</interface>"""


def _rewrite(data: bytes, spec: InterfaceSpec) -> bytes:
    document = domxml.parse(data, "device XML")
    domxml.rewrite_interface(document.root, spec)
    return domxml.serialize(document)


@pytest.mark.parametrize("spec", [ETHERNET, VIRTUALPORT], ids=["ethernet", "virtualport"])
def test_rewrite_is_idempotent_and_keeps_layout(spec):
    once = _rewrite(PRETTY, spec)
    twice_document = domxml.parse(once, "device XML")
    assert domxml.rewrite_interface(twice_document.root, spec) is False
    assert domxml.serialize(twice_document) == once
    assert b"<!-- kept -->" in once and b"vlan" not in once and b"filterref" not in once
    # Every remaining line keeps the two-space indentation of the original.
    lines = once.decode().splitlines()
    assert lines[0].startswith("<interface") and lines[-1] == "</interface>"
    assert all(line.startswith("  <") for line in lines[1:-1]), once.decode()


def test_switching_plug_mode_rewrites_again():
    ethernet = _rewrite(PRETTY, ETHERNET)
    bridged = _rewrite(ethernet, VIRTUALPORT)
    assert bridged == _rewrite(PRETTY, VIRTUALPORT)
    assert _rewrite(bridged, ETHERNET) == ethernet


def test_equivalent_host_side_in_other_whitespace_is_left_alone():
    spaced = (
        _rewrite(PRETTY, VIRTUALPORT)
        .replace(b"<parameters", b"\n      <parameters")
        .replace(b"/></virtualport>", b"/>\n    </virtualport>")
    )
    document = domxml.parse(spaced, "device XML")
    assert domxml.rewrite_interface(document.root, VIRTUALPORT) is False


def test_duplicated_host_side_elements_are_reduced_to_one():
    data = PRETTY.replace(
        b'<source bridge="ovirtmgmt"/>', b'<source bridge="a"/><source bridge="b"/>'
    )
    out = etree.fromstring(_rewrite(data, VIRTUALPORT))
    assert [s.get("bridge") for s in out.findall("source")] == ["br-int"]


def test_declaration_and_prolog_comments_survive():
    data = b'<?xml version="1.0" encoding="UTF-8"?>\n<!-- hi --><?pi x?>\n' + PRETTY
    out = _rewrite(data, ETHERNET)
    assert out.startswith(b"<?xml") and b"<!-- hi --><?pi x?>" in out
    assert not _rewrite(PRETTY, ETHERNET).startswith(b"<?xml")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"<a>" * 300 + b"</a>" * 300, "is malformed"),
        (b"x" * (domxml.MAX_XML_BYTES + 1), "more than the"),
        (b"\xef\xbb\xbf<!DOCTYPE a><a/>", "DOCTYPE"),
        (b"<?xml version='1.0'?>\n<!-- <a> --> <!DOCTYPE a><a/>", "DOCTYPE"),
        (b"<a xmlns:x='u'><x:b/><y:c/></a>", "is malformed"),
    ],
)
def test_parse_refuses(data, message):
    with pytest.raises(XmlError, match=message) as raised:
        domxml.parse(data)
    assert "\n" not in str(raised.value)


def test_a_doctype_word_inside_the_document_is_fine():
    root = domxml.parse(b"<a><!-- <!DOCTYPE x> --><b>&lt;!DOCTYPE</b></a>").root
    assert root.findtext("b") == "<!DOCTYPE"
