# SPDX-License-Identifier: GPL-2.0-or-later
"""Build test domains: captured oVirt fixtures with Quantum properties added to their metadata."""

import copy
import uuid
from pathlib import Path
from typing import Dict, Iterator, List, Mapping, Optional

from lxml import etree

from tools import FIXTURES_DIR

NS = "http://ovirt.org/vm/1.0"
OVIRT = f"{{{NS}}}"
FIXTURE_VM_UUID = "11111111-2222-4333-8444-555555555555"


def fixture_names() -> List[str]:
    names = sorted(p.name for p in FIXTURES_DIR.glob("*.xml"))
    assert names, f"no domain XML fixtures in {FIXTURES_DIR}"
    return names


def load_fixture(name: str) -> etree._Element:
    """A captured domain, with the {vm_uuid} placeholder of engine-style inputs filled in."""
    text = (FIXTURES_DIR / name).read_text().replace("{vm_uuid}", FIXTURE_VM_UUID)
    return etree.fromstring(text.encode(), etree.XMLParser(resolve_entities=False))


def to_bytes(domain: etree._Element) -> bytes:
    return etree.tostring(domain, encoding="UTF-8", xml_declaration=True)


def interfaces(domain: etree._Element) -> List[etree._Element]:
    return domain.find("devices").findall("interface")


def mac_of(interface: etree._Element) -> Optional[str]:
    mac = interface.find("mac")
    return None if mac is None else mac.get("address").lower()


def by_mac(domain: etree._Element) -> Dict[str, etree._Element]:
    return {mac_of(i): i for i in interfaces(domain)}


def _ovirt_vm(domain: etree._Element) -> etree._Element:
    metadata = domain.find("metadata")
    if metadata is None:
        metadata = etree.SubElement(domain, "metadata")
    vm = metadata.find(OVIRT + "vm")
    if vm is None:
        vm = etree.SubElement(metadata, OVIRT + "vm", nsmap={"ovirt-vm": NS})
    return vm


def set_vnic_properties(domain: etree._Element, mac: str, properties: Mapping[str, str]) -> None:
    """Give the vNIC with this MAC these custom properties in the oVirt metadata."""
    vm = _ovirt_vm(domain)
    device = next(
        (d for d in vm.iterfind(OVIRT + "device") if (d.get("mac_address") or "").lower() == mac),
        None,
    )
    if device is None:
        device = etree.SubElement(vm, OVIRT + "device", mac_address=mac)
    custom = device.find(OVIRT + "custom")
    if custom is None:
        custom = etree.SubElement(device, OVIRT + "custom")
    for name, value in properties.items():
        etree.SubElement(custom, OVIRT + name).text = value


def set_port_mirroring(domain: etree._Element, mac: str, networks: List[str]) -> None:
    """Port mirroring on the vNIC with this MAC, as the engine writes it in the metadata."""
    vm = _ovirt_vm(domain)
    device = next(d for d in vm.iterfind(OVIRT + "device") if d.get("mac_address") == mac)
    mirroring = etree.SubElement(device, OVIRT + "portMirroring")
    for network in networks:
        etree.SubElement(mirroring, OVIRT + "network").text = network


def add_interface(
    domain: etree._Element, mac: str, extra: str = "", kind: str = "bridge"
) -> etree._Element:
    """Add a vNIC as the engine writes one: on ovirtmgmt, with the anti-spoofing filter."""
    interface = etree.fromstring(
        f'<interface type="{kind}"><mac address="{mac}"/><model type="virtio"/>'
        f'<source bridge="ovirtmgmt"/><filterref filter="vdsm-no-mac-spoofing"/>'
        f'<link state="up"/>{extra}</interface>'
    )
    domain.find("devices").append(interface)
    return interface


def new_id() -> str:
    return str(uuid.uuid4())


_BOOTABLE = """<domain type="qemu" xmlns:ovirt-vm="http://ovirt.org/vm/1.0">
  <name>{name}</name>
  <uuid>{uuid}</uuid>
  <memory unit="MiB">96</memory>
  <vcpu>1</vcpu>
  <metadata><ovirt-vm:vm/></metadata>
  <os><type arch="x86_64" machine="pc">hvm</type><boot dev="network"/></os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
{interfaces}
  </devices>
</domain>"""


def bootable_domain(name: str, interfaces: str) -> etree._Element:
    """A small emulated QEMU domain, for a real libvirt, whose firmware boots from the
    network (so it sends DHCP requests from its first vNIC), with these interfaces."""
    text = _BOOTABLE.format(name=name, uuid=new_id(), interfaces=interfaces)
    return etree.fromstring(text.encode())


def seed_properties(plugin: str, port_id: Optional[str] = None, **extra: str) -> Dict[str, str]:
    properties = {"plugin": plugin, "q_network_id": new_id(), "q_port_id": port_id or new_id()}
    properties.update(extra)
    return properties


def openstacknet_properties(
    plugin_type: str, provider: str = "OPENSTACK_NETWORK"
) -> Dict[str, str]:
    return {"provider_type": provider, "plugin_type": plugin_type, "vnic_id": new_id()}


def without(domain: etree._Element, tags: Iterator[str]) -> etree._Element:
    """A copy of the domain without the given devices, for comparing the rest."""
    clone = copy.deepcopy(domain)
    devices = clone.find("devices")
    for tag in tags:
        for element in devices.findall(tag):
            devices.remove(element)
    return clone


def canonical(element: etree._Element) -> bytes:
    """C14N of an element, ignoring whitespace-only text between elements."""
    clone = copy.deepcopy(element)
    for node in clone.iter():
        if node.text is not None and not node.text.strip():
            node.text = None
        if node.tail is not None and not node.tail.strip():
            node.tail = None
    return etree.tostring(clone, method="c14n")


def skeleton_with(interface: etree._Element) -> bytes:
    """A minimal valid domain holding one interface: to schema-check any rewritten vNIC."""
    domain = etree.fromstring(
        b'<domain type="qemu"><name>schema-check</name>'
        b"<uuid>6a1c5e0b-7d64-4f0e-9a53-1f2b3c4d5e6f</uuid>"
        b'<memory unit="MiB">64</memory><os><type arch="x86_64">hvm</type></os>'
        b"<devices/></domain>"
    )
    clone = copy.deepcopy(interface)
    clone.tail = None
    domain.find("devices").append(clone)
    return to_bytes(domain)


EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "quantum-vm.xml"


def quantum_vm(vnics: List[Dict[str, str]], vm_uuid: Optional[str] = None) -> etree._Element:
    """vm_hibernated.xml with its own vNIC removed and one Quantum vNIC per property set.

    A property set may carry "_extra" (XML to put in the interface); vNIC n gets the
    MAC 02:00:00:00:NN:01 with NN = n + 1.
    """
    domain = load_fixture("vm_hibernated.xml")
    if vm_uuid:
        domain.find("uuid").text = vm_uuid
        for entry in domain.iter("entry"):
            if entry.get("name") == "uuid":
                entry.text = vm_uuid
    for interface in interfaces(domain):
        interface.getparent().remove(interface)
    for index, properties in enumerate(vnics):
        properties = dict(properties)
        mac = f"02:00:00:00:{index + 1:02x}:01"
        add_interface(domain, mac, properties.pop("_extra", ""))
        set_vnic_properties(domain, mac, properties)
    return domain
