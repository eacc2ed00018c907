# SPDX-License-Identifier: GPL-2.0-or-later
"""What the engine side does with Quantum: networks for `Q_` logical networks, ports for
the vNICs of starting VMs, and the vNIC custom properties that point the hooks at them.

Quantum is the only record. A network belongs to the logical network of the same name;
a port belongs to a vNIC by device_id (the VM's UUID), mac_address (the vNIC's MAC) and
device_owner (this package). Creating twice finds what the first call made; deleting
what is gone is not an error; ports of other owners are never changed.
"""

import ipaddress
import re
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from qhook import PROGRAM, plugins
from qhook.errors import QhookError, shown
from qhook.plugins import Plugin
from qhook.quantum.client import QuantumClient, QuantumError
from qhook.vocabulary.ids import MTU_RANGE
from qhook.vocabulary.properties import MTU

OWNER = PROGRAM
NETWORK_NAME = re.compile(r"Q_[A-Za-z0-9_.-]{1,253}")
HOST_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,254}")
PROVIDER_TYPES = ("flat", "vlan", "vxlan", "geneve", "gre", "local")
SEGMENT_RANGE = (1, 16777215)


class UsageError(QhookError):
    """A value on the command line is unusable; nothing was sent."""


def network_name(name: str) -> str:
    """An oVirt logical network name of the seed's convention: Q_<name>."""
    if not NETWORK_NAME.fullmatch(name):
        raise UsageError(
            f"network {shown(name)} is not named Q_<name> "
            "(letters, digits, '_', '.' and '-' after Q_)"
        )
    return name


def host_name(name: str) -> str:
    if not HOST_NAME.fullmatch(name):
        raise UsageError(f"host {shown(name)} is not a host name")
    return name


@dataclass(frozen=True)
class NetworkRequest:
    """What `qhook network create` asks for; None leaves the choice to Quantum."""

    name: str
    provider_type: Optional[str] = None
    physical_network: Optional[str] = None
    segmentation_id: Optional[int] = None
    mtu: Optional[int] = None
    subnet: Optional[str] = None
    dhcp: bool = True

    def attributes(self) -> Dict[str, Any]:
        wanted = {
            "provider:network_type": self.provider_type,
            "provider:physical_network": self.physical_network,
            "provider:segmentation_id": self.segmentation_id,
            "mtu": self.mtu,
        }
        return {key: value for key, value in wanted.items() if value is not None}

    def check(self) -> "NetworkRequest":
        network_name(self.name)
        if self.provider_type is not None and self.provider_type not in PROVIDER_TYPES:
            raise UsageError(
                f"provider type {shown(self.provider_type)} is not one of "
                f"{', '.join(PROVIDER_TYPES)}"
            )
        if self.mtu is not None and not MTU_RANGE[0] <= self.mtu <= MTU_RANGE[1]:
            raise UsageError(f"MTU {self.mtu} is not within {MTU_RANGE[0]}-{MTU_RANGE[1]}")
        if self.segmentation_id is not None and not (
            SEGMENT_RANGE[0] <= self.segmentation_id <= SEGMENT_RANGE[1]
        ):
            raise UsageError(f"segmentation id {self.segmentation_id} is out of range")
        if self.subnet is not None:
            try:
                ipaddress.ip_network(self.subnet)
            except ValueError:
                raise UsageError(
                    f"subnet {shown(self.subnet)} is not a CIDR such as 10.0.0.0/24"
                ) from None
        return self


def _project(project_id: Optional[str]) -> Dict[str, str]:
    """Neutron without Keystone (noauth) wants the project in every create."""
    return {"project_id": project_id} if project_id else {}


def find_network(client: QuantumClient, name: str) -> Optional[Dict[str, Any]]:
    found = list(client.list("networks", name=network_name(name)))
    if len(found) > 1:
        ids = ", ".join(n["id"] for n in found)
        raise QuantumError(
            f"{len(found)} networks are named {name} ({ids}): delete the extra ones",
            kind="NetworkNameNotUnique",
        )
    return found[0] if found else None


def the_network(client: QuantumClient, name: str) -> Dict[str, Any]:
    network = find_network(client, name)
    if network is None:
        raise QuantumError(
            f"network {name} does not exist in Quantum (qhook network create {name})",
            kind="NetworkNotFound",
            status=404,
        )
    return network


def create_network(
    client: QuantumClient, request: NetworkRequest, project_id: Optional[str] = None
) -> Tuple[Dict[str, Any], bool, Optional[Dict[str, Any]]]:
    """The network (made unless it exists, as asked), its subnet if one was asked for, and
    whether the network was made now."""
    request.check()
    wanted = request.attributes()
    network = find_network(client, request.name)
    created = network is None
    if network is None:
        try:
            network = client.create("networks", name=request.name, **wanted, **_project(project_id))
        except QuantumError:
            network = find_network(client, request.name)  # made meanwhile by another call
            if network is None:
                raise
            created = False
    differing = [
        f"{key} is {network.get(key)}, not {value}"
        for key, value in wanted.items()
        if network.get(key) != value
    ]
    if differing:
        raise QuantumError(
            f"network {request.name} exists and differs: {'; '.join(differing)}",
            kind="NetworkConflict",
            status=409,
        )
    subnet = None
    if request.subnet is not None:
        subnet = _ensure_subnet(client, network, request, project_id)
    return network, created, subnet


def _ensure_subnet(
    client: QuantumClient,
    network: Dict[str, Any],
    request: NetworkRequest,
    project_id: Optional[str],
) -> Dict[str, Any]:
    cidr = str(ipaddress.ip_network(request.subnet, strict=False))  # type: ignore[arg-type]
    for subnet in client.list("subnets", network_id=network["id"]):
        if subnet.get("cidr") == cidr:
            return subnet
    return client.create(
        "subnets",
        network_id=network["id"],
        cidr=cidr,
        ip_version=ipaddress.ip_network(cidr).version,
        enable_dhcp=request.dhcp,
        name=request.name,
        **_project(project_id),
    )


def delete_network(client: QuantumClient, name: str) -> Optional[Dict[str, Any]]:
    """Delete the network of this name; None when there was none."""
    network = find_network(client, name)
    if network is None:
        return None
    client.delete("networks", network["id"])
    return network


def list_networks(client: QuantumClient) -> List[Dict[str, Any]]:
    """The networks of `Q_` logical networks, by name."""
    return sorted(
        (n for n in client.list("networks") if NETWORK_NAME.fullmatch(n.get("name") or "")),
        key=lambda n: (n["name"], n["id"]),
    )


def ports_of(client: QuantumClient, vm: str, mac: Optional[str] = None) -> List[Dict[str, Any]]:
    """This package's ports of a VM (one vNIC's when a MAC is given)."""
    filters = {"device_id": vm, "device_owner": OWNER}
    if mac:
        filters["mac_address"] = mac
    return sorted(client.list("ports", **filters), key=lambda p: (p["mac_address"], p["id"]))


def _port_name(vm: str, mac: str) -> str:
    return f"ovirt-{vm}-{mac.replace(':', '')}"


def _ours(port: Dict[str, Any], network: Dict[str, Any]) -> Dict[str, Any]:
    """A found port may stand for the vNIC only if it is ours and on the same network."""
    if port.get("device_owner") != OWNER:
        raise QuantumError(
            f"port {port['id']} of VM {port.get('device_id')} with MAC {port.get('mac_address')} "
            f"belongs to {port.get('device_owner')!a}, not {OWNER}: left alone",
            kind="PortNotOurs",
            status=409,
        )
    if port.get("network_id") != network["id"]:
        raise QuantumError(
            f"the vNIC {port.get('mac_address')} of VM {port.get('device_id')} already has port "
            f"{port['id']} on network {port.get('network_id')}, not on {network['name']}: "
            "qhook port delete it first",
            kind="PortConflict",
            status=409,
        )
    return port


def create_ports(
    client: QuantumClient,
    network_name_: str,
    vm: str,
    macs: List[str],
    host: Optional[str] = None,
    project_id: Optional[str] = None,
    _again: bool = False,
) -> Tuple[Dict[str, Any], List[Tuple[Dict[str, Any], bool]]]:
    """The network, and one port per MAC of the VM on it, found or made (all missing ones
    in one bulk request); ports found on another host are bound to the given one."""
    network = the_network(client, network_name_)
    existing = {}
    for port in client.list("ports", device_id=vm):
        if port.get("mac_address") in macs:
            existing[port["mac_address"]] = _ours(port, network)
    missing = [mac for mac in macs if mac not in existing]
    made: Dict[str, Dict[str, Any]] = {}
    if missing:
        binding = {"binding:host_id": host} if host else {}
        items = [
            {
                "network_id": network["id"],
                "mac_address": mac,
                "device_id": vm,
                "device_owner": OWNER,
                "name": _port_name(vm, mac),
                "admin_state_up": True,
                **binding,
                **_project(project_id),
            }
            for mac in missing
        ]
        try:
            created = (
                [client.create("ports", **items[0])]
                if len(items) == 1
                else client.create_many("ports", items)
            )
        except QuantumError as error:
            # Another call may have made them meanwhile: then they are found now.
            if error.kind != "MacAddressInUse" or _again:
                raise
            return create_ports(client, network_name_, vm, macs, host, project_id, _again=True)
        made = {port["mac_address"]: port for port in created}
    result = []
    for mac in macs:
        if mac in made:
            result.append((made[mac], True))
            continue
        port = existing[mac]
        if host and port.get("binding:host_id") != host:
            port = client.update("ports", port["id"], **{"binding:host_id": host})
        result.append((port, False))
    return network, result


def delete_ports(client: QuantumClient, vm: str, mac: Optional[str] = None) -> List[Dict]:
    """Delete this package's ports of the VM (or of one vNIC); the ones deleted now."""
    return [port for port in ports_of(client, vm, mac) if client.delete("ports", port["id"])]


def bind_ports(client: QuantumClient, vm: str, host: str) -> List[Tuple[Dict[str, Any], bool]]:
    """Bind the VM's ports to the host it runs on; (port, moved) for each."""
    ports = ports_of(client, vm)
    if not ports:
        raise QuantumError(f"VM {vm} has no ports of {OWNER}", kind="PortNotFound", status=404)
    bound = []
    for port in ports:
        if port.get("binding:host_id") == host:
            bound.append((port, False))
        else:
            bound.append((client.update("ports", port["id"], **{"binding:host_id": host}), True))
    return bound


def vnic_properties(
    port: Dict[str, Any], plugin: Plugin, mtu: Optional[int] = None
) -> Dict[str, str]:
    """The vNIC's custom properties, in the seed's names, that lead the hooks to the port
    (and give it the network's MTU)."""
    properties = {
        "plugin": plugin.value,
        "q_network_id": port["network_id"],
        "q_port_id": port["id"],
        "q_attachment_id": port["id"],
    }
    if mtu:
        properties[MTU] = str(mtu)
    return properties


def profile_properties(network: Dict[str, Any], plugin: Plugin) -> Dict[str, str]:
    """The custom properties of a vNIC profile for the network, with ports on demand:
    every vNIC of the profile gets its own port from the host it starts on."""
    properties = {"plugin": plugin.value, "q_network_id": network["id"]}
    if network.get("mtu"):
        properties[MTU] = str(network["mtu"])
    return properties


def engine_form(properties: Dict[str, str]) -> str:
    """The engine's key=value;key=value form of custom properties."""
    return ";".join(f"{key}={value}" for key, value in properties.items())


def plugin_named(name: str) -> Plugin:
    plugin = plugins.named(name)
    if plugin is None:
        names = ", ".join(plugin.value for plugin in plugins.SEED_PLUGINS)
        raise UsageError(f"plugin {shown(name)} is not one of {names}")
    return plugin
