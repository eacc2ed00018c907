# SPDX-License-Identifier: GPL-2.0-or-later
"""`qhook network ...` and `qhook port ...`: the engine side's commands.

Exit status: 0 done; 1 Quantum or Keystone refused, or could not be reached; 2 a bad
command line or configuration (nothing was sent). With --json the result (or the
error) is printed as JSON on standard output; the error line always goes to standard
error. Secrets never reach either.
"""

import argparse
import json
import os
import sys
from typing import Any, Callable, List, Optional

from qhook.errors import ConfigError, PropertyError, QhookError, one_line

EXIT_REFUSED = 1
EXIT_USAGE = 2


# The `kind` of an error that is not the server's: what the operator has to fix.
KIND_CONFIG = "Configuration"
KIND_USAGE = "Usage"
KIND_MISSING = "MissingDependency"


def say_error(
    args: argparse.Namespace, error: QhookError, status: int, kind: Optional[str] = None
) -> int:
    """One line on stderr; with --json also {"error": {"message", "kind", "status"}} on
    stdout (status: the server's HTTP status, or null). Returns the exit status."""
    line = f"qhook: {one_line(str(error))}\n"
    sys.stderr.write(line.encode("ascii", "backslashreplace").decode("ascii"))
    if getattr(args, "json", False):
        body = {
            "message": one_line(str(error)),
            "kind": getattr(error, "kind", None) or kind,
            "status": getattr(error, "status", None),
        }
        print(json.dumps({"error": body}, indent=2))
    return status


MISSING_REQUESTS = (
    "qhook network and qhook port need the Python library requests: install "
    "vdsm-hook-quantum-engine (EL) or pip install 'vdsm-hook-quantum[engine]'"
)


def _client(args: argparse.Namespace):
    """A client built from [quantum], the OS_* variables and the command line."""
    from qhook.quantum.connect import connect
    from qhook.quantum.settings import load_quantum_settings

    env = dict(os.environ)
    if args.config:
        env["QHOOK_CONFIG"] = os.path.abspath(args.config)
    settings, warnings = load_quantum_settings(env, url=args.url)
    for warning in warnings:
        sys.stderr.write(f"qhook: warning: {warning}\n")
    trace = None
    if args.debug:
        for line in settings.described():
            sys.stderr.write(f"qhook: debug: {line}\n")

        def trace(line: str) -> None:
            sys.stderr.write(f"qhook: debug: {line}\n")

    return connect(settings, trace), settings


def _table(rows: List[List[str]], header: List[str]) -> None:
    widths = [max(len(str(v)) for v in column) for column in zip(header, *rows)]
    for row in [header, *rows]:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip())


def _dash(value: Any) -> str:
    return "-" if value is None or value == "" else str(value)


# -- network -----------------------------------------------------------------------
def _network_create(args, client, settings) -> Any:
    from qhook.engine.provisioning import NetworkRequest, create_network
    from qhook.quantum.connect import creates_need_project

    request = NetworkRequest(
        name=args.name,
        provider_type=args.provider_type,
        physical_network=args.physical_network,
        segmentation_id=args.segmentation_id,
        mtu=args.mtu,
        subnet=args.subnet,
        dhcp=not args.no_dhcp,
    )
    network, created, subnet = create_network(client, request, creates_need_project(settings))
    if not args.json:
        print(f"network {network['name']} {network['id']} {'created' if created else 'exists'}")
        if subnet:
            print(f"subnet {subnet['cidr']} {subnet['id']}")
    return {"network": network, "created": created, "subnet": subnet}


def _network_delete(args, client, settings) -> Any:
    from qhook.engine.provisioning import delete_network

    network = delete_network(client, args.name)
    if not args.json:
        print(
            f"network {args.name} {network['id']} deleted"
            if network
            else f"network {args.name}: none to delete"
        )
    return {"deleted": network}


def _network_list(args, client, settings) -> Any:
    from qhook.engine.provisioning import list_networks

    networks = list_networks(client)
    if not args.json:
        _table(
            [
                [
                    n["name"],
                    n["id"],
                    _dash(n.get("provider:network_type")),
                    _dash(n.get("provider:physical_network")),
                    _dash(n.get("provider:segmentation_id")),
                    _dash(n.get("mtu")),
                    _dash(n.get("status")),
                ]
                for n in networks
            ],
            ["NAME", "ID", "TYPE", "PHYSNET", "SEGMENT", "MTU", "STATUS"],
        )
    return {"networks": networks}


def _network_profile(args, client, settings) -> Any:
    from qhook.engine.provisioning import engine_form, plugin_named, profile_properties, the_network

    plugin = plugin_named(args.plugin)
    properties = profile_properties(the_network(client, args.name), plugin)
    if not args.json:
        print(engine_form(properties))
    return {"properties": properties, "custom_properties": engine_form(properties)}


def _network_show(args, client, settings) -> Any:
    from qhook.engine.provisioning import OWNER, the_network

    network = the_network(client, args.name)
    subnets = list(client.list("subnets", network_id=network["id"]))
    ports = list(client.list("ports", network_id=network["id"], device_owner=OWNER))
    if not args.json:
        for key in (
            "name",
            "id",
            "status",
            "provider:network_type",
            "provider:physical_network",
            "provider:segmentation_id",
            "mtu",
        ):
            print(f"{key + ':':<28}{_dash(network.get(key))}")
        for subnet in subnets:
            print(
                f"{'subnet:':<28}{subnet['cidr']} {subnet['id']}"
                f"{' dhcp' if subnet.get('enable_dhcp') else ''}"
            )
        print(f"{'vNIC ports:':<28}{len(ports)}")
    return {"network": network, "subnets": subnets, "ports": ports}


# -- port ----------------------------------------------------------------------------
def _vm(value: str) -> str:
    from qhook.vocabulary.ids import normalise_uuid

    return normalise_uuid(value, "--vm")


def _mac(value: str) -> str:
    from qhook.vocabulary.ids import normalise_mac

    return normalise_mac(value, "--mac")


def _port_create(args, client, settings) -> Any:
    from qhook.engine.provisioning import (
        create_ports,
        engine_form,
        host_name,
        plugin_named,
        vnic_properties,
    )
    from qhook.quantum.connect import creates_need_project

    plugin = plugin_named(args.plugin)
    vm = _vm(args.vm)
    macs = list(dict.fromkeys(_mac(m) for m in args.mac))
    host = host_name(args.host) if args.host else None
    network, results = create_ports(
        client, args.network, vm, macs, host, creates_need_project(settings)
    )
    vnics = []
    for port, created in results:
        properties = vnic_properties(port, plugin, network.get("mtu"))
        vnics.append(
            {
                "mac": port["mac_address"],
                "created": created,
                "port": port,
                "properties": properties,
                "custom_properties": engine_form(properties),
            }
        )
        if not args.json:
            prefix = f"{port['mac_address']} " if len(macs) > 1 else ""
            print(prefix + engine_form(properties))
    return {"vnics": vnics}


def _port_delete(args, client, settings) -> Any:
    from qhook.engine.provisioning import delete_ports

    vm = _vm(args.vm)
    deleted = delete_ports(client, vm, _mac(args.mac) if args.mac else None)
    if not args.json:
        for port in deleted:
            print(f"port {port['id']} ({port['mac_address']}) deleted")
        if not deleted:
            print(f"VM {vm}: no ports to delete")
    return {"deleted": deleted}


def _port_bind(args, client, settings) -> Any:
    from qhook.engine.provisioning import bind_ports, host_name

    host = host_name(args.host)
    bound = bind_ports(client, _vm(args.vm), host)
    if not args.json:
        for port, moved in bound:
            state = "bound to" if moved else "already on"
            print(f"port {port['id']} ({port['mac_address']}) {state} {host}")
    return {"ports": [dict(port, moved=moved) for port, moved in bound]}


def _port_list(args, client, settings) -> Any:
    from qhook.engine.provisioning import OWNER, ports_of

    if args.vm:
        ports = ports_of(client, _vm(args.vm))
    else:
        ports = sorted(
            client.list("ports", device_owner=OWNER),
            key=lambda p: (p.get("device_id"), p["mac_address"]),
        )
    if not args.json:
        _table(
            [
                [
                    p["id"],
                    p.get("device_id"),
                    p["mac_address"],
                    p.get("network_id"),
                    _dash(p.get("binding:host_id")),
                    _dash(p.get("status")),
                ]
                for p in ports
            ],
            ["ID", "VM", "MAC", "NETWORK", "HOST", "STATUS"],
        )
    return {"ports": ports}


def _runner(action: Callable[..., Any]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            from qhook.engine.provisioning import UsageError
            from qhook.quantum.client import QuantumError
        except ImportError as error:
            if error.name not in ("requests", "urllib3"):
                raise
            return say_error(args, QhookError(MISSING_REQUESTS), EXIT_USAGE, KIND_MISSING)
        try:
            client, settings = _client(args)
            with client:
                result = action(args, client, settings)
        except ConfigError as error:
            return say_error(args, error, EXIT_USAGE, KIND_CONFIG)
        except (UsageError, PropertyError) as error:
            return say_error(args, error, EXIT_USAGE, KIND_USAGE)
        except QuantumError as error:
            return say_error(args, error, EXIT_REFUSED)
        if args.json:
            print(json.dumps(result, indent=2, sort_keys=True))
        return 0

    return run


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        help="configuration file with a [quantum] section (default: $QHOOK_CONFIG, else "
        "/etc/vdsm-hook-quantum/engine.conf, else /etc/vdsm/quantum.conf)",
    )
    parser.add_argument(
        "--url",
        help="the Quantum/Neutron endpoint, e.g. "
        "http://controller:9696 (default: [quantum] url or the catalog)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show the settings used and each request (secrets masked)",
    )


def _action(group, name: str, handler, text: str) -> argparse.ArgumentParser:
    parser = group.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
    _common(parser)
    parser.set_defaults(handler=_runner(handler))
    return parser


def add_commands(commands) -> None:
    """Add `network` and `port` to the qhook command line."""
    network = commands.add_parser(
        "network",
        help="Quantum networks of the oVirt logical networks named Q_<name>",
        description="Create, delete, list and show the Quantum networks that oVirt logical "
        "networks named Q_<name> stand for. Exit status: 0 done, 1 refused by the server "
        "or unreachable, 2 bad usage or configuration.",
    )
    actions = network.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    create = _action(
        actions,
        "create",
        _network_create,
        "make the network of a logical network, unless it exists",
    )
    create.add_argument("name", help="the logical network's name, Q_<name>")
    create.add_argument("--provider-type", help="provider:network_type, e.g. vlan or flat")
    create.add_argument("--physical-network", help="provider:physical_network, e.g. physnet1")
    create.add_argument("--segmentation-id", type=int, help="the VLAN id or tunnel key")
    create.add_argument("--mtu", type=int, help="the network's MTU")
    create.add_argument("--subnet", help="also make a subnet of this CIDR, unless it exists")
    create.add_argument("--no-dhcp", action="store_true", help="the subnet without DHCP")
    delete = _action(
        actions,
        "delete",
        _network_delete,
        "delete the network of a logical network (fine if it is gone)",
    )
    delete.add_argument("name")
    _action(actions, "list", _network_list, "list the networks named Q_<name>")
    show = _action(actions, "show", _network_show, "show a network, its subnets and vNIC ports")
    show.add_argument("name")
    profile = _action(
        actions,
        "profile",
        _network_profile,
        "print the custom properties of a vNIC profile for the network (ports on demand)",
    )
    profile.add_argument("name")
    profile.add_argument(
        "--plugin",
        default="openvswitch",
        help="how hosts plug it: openvswitch (default), linuxbridge, ovn",
    )

    port = commands.add_parser(
        "port",
        help="Quantum ports of the vNICs of oVirt VMs",
        description="Create the ports of a starting VM's vNICs and print their custom "
        "properties, delete them when the VM stops, bind them to the host the VM runs on. "
        "Exit status: 0 done, 1 refused by the server or unreachable, 2 bad usage or "
        "configuration.",
    )
    actions = port.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    create = _action(
        actions,
        "create",
        _port_create,
        "make (or find) the vNIC's port and print its custom properties",
    )
    create.add_argument("--network", required=True, help="the logical network, Q_<name>")
    create.add_argument("--vm", required=True, help="the VM's UUID (the port's device_id)")
    create.add_argument(
        "--mac",
        required=True,
        action="append",
        help="the vNIC's MAC address (repeat for several vNICs: one request)",
    )
    create.add_argument("--host", help="bind the port to this host (binding:host_id)")
    create.add_argument(
        "--plugin",
        default="openvswitch",
        help="how the host plugs it: openvswitch (default), linuxbridge, ovn",
    )
    delete = _action(
        actions, "delete", _port_delete, "delete the VM's ports (or one vNIC's): the VM stopped"
    )
    delete.add_argument("--vm", required=True)
    delete.add_argument("--mac", help="only this vNIC's port")
    bind = _action(
        actions, "bind", _port_bind, "bind the VM's ports to the host it runs on (start, migration)"
    )
    bind.add_argument("--vm", required=True)
    bind.add_argument("--host", required=True)
    listing = _action(actions, "list", _port_list, "list this package's ports")
    listing.add_argument("--vm", help="only this VM's")
