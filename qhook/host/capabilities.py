# SPDX-License-Identifier: GPL-2.0-or-later
"""What this host can do for Quantum vNICs, for after_get_caps: not every host of a data
center reaches the same networks or runs the same plugin."""

import os
import socket
from typing import Any, Dict

from qhook import __version__
from qhook.errors import QhookError
from qhook.host.ovsdb import Ovsdb, map_value
from qhook.vocabulary.config import Config, HybridPlug

CAPS_KEY = "vdsm_hook_quantum"
CAPS_TIMEOUT = 3.0  # getCaps must stay quick even with Open vSwitch hung


def agent_host(config: Config, external_ids: Dict[str, str]) -> str:
    """The host id the agents run as and ports are bound to (binding:host_id): [host]
    agent_host, else Open vSwitch's external_ids:hostname (OVN's chassis hostname), else
    the host name (the Neutron agents' default `host`)."""
    return config.host.agent_host or external_ids.get("hostname") or socket.gethostname()


def switch_ids(db: Ovsdb) -> Dict[str, str]:
    """The Open_vSwitch row's external_ids."""
    (switch,) = db.transact(
        [{"op": "select", "table": "Open_vSwitch", "where": [], "columns": ["external_ids"]}],
        "reading the host's ids",
    )
    return map_value(switch["rows"][0]["external_ids"]) if switch["rows"] else {}


def agent_host_here(config: Config) -> str:
    """agent_host, asking Open vSwitch only when [host] agent_host is not set."""
    if config.host.agent_host:
        return config.host.agent_host
    try:
        with Ovsdb(config.ovs.connection, min(config.ovs.timeout, CAPS_TIMEOUT)) as db:
            return agent_host(config, switch_ids(db))
    except QhookError:
        return agent_host(config, {})


BRIDGE_NETFILTER = "/proc/sys/net/bridge/bridge-nf-call-iptables"


def ovs_plugging(config: Config) -> str:
    """How this host plugs Open vSwitch vNICs: as each port's binding says ("binding",
    where root can read Quantum), else as [ovs] hybrid_plug says ("hybrid", "straight")."""
    from qhook.host.trust import MissingFile, read_file

    try:
        read_file(config.on_demand.settings, "Quantum settings", secret=True)
        return "binding"
    except MissingFile:
        pass
    except QhookError:
        pass  # unreadable as it is: the plug says why, each time
    return "hybrid" if config.ovs.hybrid_plug is HybridPlug.YES else "straight"


def host_capabilities(config: Config) -> Dict[str, Any]:
    """The plugins usable here, the integration bridge, the host id the agents use, and
    how Open vSwitch vNICs are plugged (straight into the bridge, or hybrid for the
    iptables_hybrid firewall, which needs bridge netfilter)."""
    caps: Dict[str, Any] = {
        "version": __version__,
        "integration_bridge": config.ovs.integration_bridge,
        "plug": config.ovs.plug.value,
        "ovs_plugging": ovs_plugging(config),
        "hybrid_plug": config.ovs.hybrid_plug.value,
        "bridge_netfilter": os.path.exists(BRIDGE_NETFILTER),
        "ovs_reachable": False,
        "bridge_present": False,
        "plugins": ["linuxbridge"] if os.path.exists("/dev/net/tun") else [],
        "host_id": agent_host(config, {}),
        "ovn_chassis": None,
        "error": None,
    }
    try:
        with Ovsdb(config.ovs.connection, min(config.ovs.timeout, CAPS_TIMEOUT)) as db:
            switch, bridge = db.transact(
                [
                    {
                        "op": "select",
                        "table": "Open_vSwitch",
                        "where": [],
                        "columns": ["external_ids"],
                    },
                    {
                        "op": "select",
                        "table": "Bridge",
                        "where": [["name", "==", config.ovs.integration_bridge]],
                        "columns": ["name"],
                    },
                ],
                "reading the host's capabilities",
            )
    except QhookError as error:
        caps["error"] = str(error)
        return caps
    caps["ovs_reachable"] = True
    ids = map_value(switch["rows"][0]["external_ids"]) if switch["rows"] else {}
    caps["host_id"] = agent_host(config, ids)
    caps["ovn_chassis"] = ids.get("system-id") if ids.get("ovn-remote") else None
    caps["bridge_present"] = bool(bridge["rows"])
    if caps["bridge_present"]:
        caps["plugins"].append("openvswitch")
        if caps["bridge_netfilter"]:
            caps["plugins"].append("openvswitch_hybrid")
        if caps["ovn_chassis"]:
            caps["plugins"].append("ovn")
    return caps
