# SPDX-License-Identifier: GPL-2.0-or-later
"""Domain and device XML: safe parsing, finding vNICs and their properties, rewriting.

Parsing resolves no entity, loads no DTD and touches no network; a document with a
DOCTYPE is refused before the parser sees it (libvirt and VDSM never write one).
"""

from __future__ import annotations

import re

from lxml import etree

from qhook.errors import XmlError, one_line, shown
from qhook.plugins import InterfaceSpec

TYPE_CHECKING = False  # typing.TYPE_CHECKING: a device hook does not import typing
if TYPE_CHECKING:
    from typing import Dict, Iterator, List, Optional

OVIRT_VM_NS = "http://ovirt.org/vm/1.0"
MAX_XML_BYTES = 16 * 1024 * 1024

# Interface types whose host side can be replaced; a hostdev/vdpa/direct/vhostuser
# vNIC is passed through or wired some other way and is never ours.
REWRITABLE_TYPES = ("bridge", "network", "ethernet")
# Host-side elements a rewrite owns: replaced when wanted, removed otherwise.
# <filterref>: port security is Quantum's job, and libvirt refuses a filterref on
# an openvswitch virtualport. <vlan>: the agent chooses the segment, not libvirt.
HOST_SIDE_TAGS = ("source", "virtualport", "target", "filterref", "vlan")

Element = etree._Element

_BOM = b"\xef\xbb\xbf"
_PROLOG_ITEM = re.compile(rb"\s+|<\?.*?\?>|<!--.*?-->", re.DOTALL)
_PARSER = etree.XMLParser(
    resolve_entities=False,
    no_network=True,
    load_dtd=False,
    dtd_validation=False,
    huge_tree=False,
    collect_ids=False,
    remove_comments=False,
    remove_pis=False,
)


class Document:
    """A parsed XML document and how to write it back."""

    __slots__ = ("declaration", "tree")

    def __init__(self, tree: etree._ElementTree, declaration: bool) -> None:
        self.tree = tree
        self.declaration = declaration

    def __repr__(self) -> str:
        return f"Document(tree={self.tree!r}, declaration={self.declaration!r})"

    @property
    def root(self) -> Element:
        return self.tree.getroot()


def _check_prolog(data: bytes, what: str) -> None:
    position = len(_BOM) if data.startswith(_BOM) else 0
    while True:
        match = _PROLOG_ITEM.match(data, position)
        if match is None or match.end() == position:
            break
        position = match.end()
    if data.startswith(b"<!DOCTYPE", position):
        raise XmlError(f"{what} has a DOCTYPE declaration, which is refused")


def parse(data: bytes, what: str = "domain XML") -> Document:
    """Parse untrusted XML safely, or raise XmlError with one line."""
    if len(data) > MAX_XML_BYTES:
        raise XmlError(f"{what} is {len(data)} bytes, more than the {MAX_XML_BYTES} accepted")
    if not data.strip():
        raise XmlError(f"{what} is empty")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise XmlError(f"{what} is not UTF-8 (bad byte at offset {error.start})") from None
    _check_prolog(data, what)
    try:
        root = etree.fromstring(data, _PARSER)
    except etree.XMLSyntaxError as error:
        reason = error.msg or str(error)
        raise XmlError(f"{what} is malformed: {one_line(reason)}") from None
    tree = root.getroottree()
    if tree.docinfo.doctype:
        raise XmlError(f"{what} has a DOCTYPE declaration, which is refused")
    declaration = data.lstrip(_BOM + b" \t\r\n").startswith(b"<?xml")
    return Document(tree=tree, declaration=declaration)


def serialize(document: Document) -> bytes:
    """The document as UTF-8 bytes, with an XML declaration if it had one."""
    return etree.tostring(document.tree, encoding="UTF-8", xml_declaration=document.declaration)


def element_bytes(element: Element) -> bytes:
    """One element as XML, without the text that follows it."""
    return etree.tostring(element, encoding="UTF-8", with_tail=False)


def local_name(element: Element) -> str:
    return etree.QName(element).localname


def _children(element: Element) -> Iterator[Element]:
    return (child for child in element if isinstance(child.tag, str))


def interfaces(domain: Element) -> List[Element]:
    """The domain's <interface> devices, in document order."""
    devices = domain.find("devices")
    return [] if devices is None else devices.findall("interface")


def interface_mac(interface: Element) -> Optional[str]:
    """The interface's <mac address>, as written."""
    mac = interface.find("mac")
    return None if mac is None else mac.get("address")


def interface_target(interface: Element) -> Optional[str]:
    """The interface's <target dev>, as written."""
    target = interface.find("target")
    return None if target is None else target.get("dev")


def _ovirt_vm(domain: Element) -> Optional[Element]:
    metadata = domain.find("metadata")
    return None if metadata is None else metadata.find(f"{{{OVIRT_VM_NS}}}vm")


def _custom(element: Element) -> Optional[Dict[str, str]]:
    custom = element.find(f"{{{OVIRT_VM_NS}}}custom")
    if custom is None:
        return None
    return {local_name(child): child.text or "" for child in _children(custom)}


def device_properties(domain: Element) -> Dict[str, Dict[str, str]]:
    """Custom properties of each vNIC in the oVirt metadata, keyed by lower-case MAC."""
    vm = _ovirt_vm(domain)
    found: Dict[str, Dict[str, str]] = {}
    if vm is None:
        return found
    for device in vm.iterfind(f"{{{OVIRT_VM_NS}}}device"):
        mac = device.get("mac_address")
        properties = _custom(device)
        if not mac or properties is None:
            continue
        key = mac.lower()
        if key in found:
            raise XmlError(f"the metadata has two entries for MAC address {shown(mac)}")
        found[key] = properties
    return found


def port_mirroring(domain: Element) -> Dict[str, List[str]]:
    """The networks each vNIC mirrors (oVirt's ovirt-vm:portMirroring), by lower-case MAC."""
    vm = _ovirt_vm(domain)
    found: Dict[str, List[str]] = {}
    if vm is None:
        return found
    for device in vm.iterfind(f"{{{OVIRT_VM_NS}}}device"):
        mirroring = device.find(f"{{{OVIRT_VM_NS}}}portMirroring")
        mac = device.get("mac_address")
        if mirroring is None or not mac:
            continue
        networks = [(n.text or "").strip() for n in mirroring.iterfind(f"{{{OVIRT_VM_NS}}}network")]
        if any(networks):
            found[mac.lower()] = [n for n in networks if n]
    return found


def vm_properties(domain: Element) -> Dict[str, str]:
    """The VM-level custom properties in the oVirt metadata."""
    vm = _ovirt_vm(domain)
    return {} if vm is None else (_custom(vm) or {})


def _equivalent(a: Element, b: Element) -> bool:
    """Same tag, attributes and child elements, whatever the whitespace between them."""
    if a.tag != b.tag or dict(a.attrib) != dict(b.attrib):
        return False
    if (a.text or "").strip() != (b.text or "").strip():
        return False
    left, right = list(_children(a)), list(_children(b))
    return len(left) == len(right) and all(map(_equivalent, left, right))


def _child_indent(parent: Element) -> Optional[str]:
    text = parent.text
    return text if text is not None and not text.strip() else None


def _remove(parent: Element, child: Element) -> None:
    """Remove a child and the text after it, keeping the indentation of what follows."""
    if child.getnext() is None:
        previous = child.getprevious()
        if previous is not None:
            previous.tail = child.tail
        else:
            parent.text = child.tail
    parent.remove(child)


def _insert_after(parent: Element, anchor: Optional[Element], new: Element) -> None:
    indent = _child_indent(parent)
    if anchor is None:
        new.tail = indent if len(parent) else parent.text
        parent.insert(0, new)
        return
    new.tail = anchor.tail
    if indent is not None:
        anchor.tail = indent
    # insert(), not addnext(): how addnext() treats tails differs between lxml versions.
    parent.insert(parent.index(anchor) + 1, new)


def append_child(parent: Element, child: Element) -> None:
    """Append a child element, indented like its siblings."""
    last = parent[-1] if len(parent) else None
    _insert_after(parent, last, child)


def _replace(old: Element, new: Element) -> None:
    # Not parent.replace(): how it carries the tail differs between lxml versions.
    parent = old.getparent()
    index = parent.index(old)
    tail = old.tail
    parent.remove(old)
    new.tail = tail
    parent.insert(index, new)


def _host_side(spec: InterfaceSpec) -> List[Element]:
    wanted = []
    if spec.source_bridge is not None:
        wanted.append(etree.Element("source", bridge=spec.source_bridge))
    if spec.ovs_interface_id is not None:
        virtualport = etree.Element("virtualport", type="openvswitch")
        etree.SubElement(virtualport, "parameters", interfaceid=spec.ovs_interface_id)
        wanted.append(virtualport)
    target = etree.Element("target", dev=spec.target_dev)
    if spec.target_managed is not None:
        target.set("managed", spec.target_managed)
    wanted.append(target)
    return wanted


def interface_mtu(interface: Element) -> Optional[str]:
    """The size of the interface's <mtu>, as written; None without one."""
    mtu = interface.find("mtu")
    return None if mtu is None else mtu.get("size")


def ensure_mtu(interface: Element, size: int) -> bool:
    """Give the interface <mtu size='N'/> unless it has it; True if it changed."""
    if interface_mtu(interface) == str(size):
        return False
    old = interface.find("mtu")
    new = etree.Element("mtu", size=str(size))
    if old is None:
        append_child(interface, new)
    else:
        _replace(old, new)
    return True


def cap_inbound(interface: Element) -> bool:
    """Give an inbound <bandwidth> average without a peak that average as its peak.

    libvirt's tc caps a tap's inbound traffic at the peak, else at the average; on an
    Open vSwitch port it only guarantees the average (QoS min-rate) and caps at the peak
    (max-rate), so without a peak nothing limits the guest. True if it changed."""
    inbound = interface.find("bandwidth/inbound")
    if inbound is None or inbound.get("peak") or not inbound.get("average"):
        return False
    inbound.set("peak", inbound.get("average"))
    return True


def rewrite_interface(interface: Element, spec: InterfaceSpec) -> bool:
    """Give the interface the host side in spec; keep everything else. True if it changed.

    Idempotent: rewriting an interface already in that shape changes nothing.
    """
    before = element_bytes(interface)
    interface.set("type", spec.type)
    wanted = {element.tag: element for element in _host_side(spec)}
    kept: Dict[str, Element] = {}
    for child in list(_children(interface)):
        if child.tag not in HOST_SIDE_TAGS:
            continue
        if child.tag in wanted and child.tag not in kept:
            kept[child.tag] = child
        else:
            _remove(interface, child)
    anchor = interface.find("mac")
    for tag, new in wanted.items():
        old = kept.get(tag)
        if old is None:
            _insert_after(interface, anchor, new)
            anchor = new
        elif _equivalent(old, new):
            anchor = old
        else:
            _replace(old, new)
            anchor = new
    return element_bytes(interface) != before
