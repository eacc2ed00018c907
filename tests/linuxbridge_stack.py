# SPDX-License-Identifier: GPL-2.0-or-later
"""The real Neutron with its Linux bridge agent, for the tests: Neutron 25 (2024.2, the
last release that ships `neutron-linuxbridge-agent` and the `linuxbridge` mechanism
driver), in a virtualenv of its own, otherwise run as NeutronStack runs Neutron 29.

Two flat physical networks, physnet1 and physnet2, each mapped to a veth the stack
makes in its namespace (this kernel has no 8021q module, so no VLANs; no dummy either),
and VXLAN project networks over a third veth, the underlay (the stack's host at
10.99.0.1, a further one at 10.99.0.2; flooding by multicast, no l2population). A
further host (add_host) gets the other end of each veth: the wires between two hosts.
"""

import contextlib
import os
import signal
from pathlib import Path
from typing import Any, Dict, Optional

from neutron_stack import AgentHost, NeutronStack

from qhook.lab.sandbox import OvsSandbox

PHYSNETS = {"physnet1": "lbph1", "physnet2": "lbph2"}  # physical network: its device
UNDERLAY = "lbul"  # the VXLAN tunnels' device
UNDERLAY_IPS = ("10.99.0.1", "10.99.0.2")  # the stack's host, a further host
VXLAN_GROUP = "239.1.1.1"
WIRES = (*PHYSNETS.values(), UNDERLAY)


class LinuxBridgeStack(NeutronStack):
    """firewall: the agents' security group driver (iptables, or noop: none)."""

    AGENT = "neutron-linuxbridge-agent"
    AGENT_INI = "linuxbridge_agent.ini"
    MECHANISM = "linuxbridge"

    def __init__(self, directory: Path, venv: Path, netns: str, firewall: str = "noop"):
        super().__init__(directory, venv, netns)
        self.firewall = firewall

    def pause_agent(self) -> None:
        """The agent stops working (SIGSTOP), as a hung or dead agent would."""
        os.kill(self.processes[self.AGENT].pid, signal.SIGSTOP)

    def resume_agent(self) -> None:
        os.kill(self.processes[self.AGENT].pid, signal.SIGCONT)

    def _neutron_conf(self, auth_strategy: str, transport: str, extra: str = "") -> str:
        """Neutron 25 runs the Linux bridge driver and agent only when told to: they
        were experimental before they were removed."""
        return super()._neutron_conf(
            auth_strategy, transport, extra + "[experimental]\nlinuxbridge = true\n"
        )

    def _ml2_ini(self) -> str:
        return f"""[ml2]
type_drivers = flat,vxlan
tenant_network_types = vxlan
mechanism_drivers = {self.MECHANISM}
extension_drivers = port_security
[ml2_type_flat]
flat_networks = {",".join(PHYSNETS)}
[ml2_type_vxlan]
vni_ranges = 1000:1999
vxlan_group = {VXLAN_GROUP}
"""

    def _agent_ini(
        self, host: str, ovs: OvsSandbox, state: Path, firewall: Optional[str] = None
    ) -> str:
        firewall = firewall or self.firewall
        mappings = ",".join(f"{net}:{device}" for net, device in PHYSNETS.items())
        enabled = "false" if firewall == "noop" else "true"
        local_ip = UNDERLAY_IPS[0 if ovs is self.ovs else 1]
        return f"""[DEFAULT]
host = {host}
state_path = {state}
transport_url = rabbit://guest:guest@127.0.0.1:5673/
[agent]
root_helper = env
root_helper_daemon =
polling_interval = 1
[linux_bridge]
physical_interface_mappings = {mappings}
[vxlan]
enable_vxlan = true
local_ip = {local_ip}
vxlan_group = {VXLAN_GROUP}
l2_population = false
[securitygroup]
firewall_driver = {firewall}
enable_security_group = {enabled}
[oslo_concurrency]
lock_path = {state}/lock
"""

    def _before_agents(self) -> None:
        """Each physical network's veth, its far end kept for a second host; bridged
        frames through iptables (the agent's firewall filters on its bridges)."""
        _bridge_netfilter(self.ovs)
        for device in WIRES:
            self.ovs.in_netns("ip", "link", "add", "name", device, "type", "veth", "peer",
                              "name", f"{device}-far")  # fmt: skip
            self.ovs.in_netns("ip", "link", "set", device, "up")
        _underlay(self.ovs, UNDERLAY_IPS[0])

    def _before_host_agent(self, host: AgentHost) -> None:
        """The far ends of the stack's veths become this host's physical interfaces."""
        _bridge_netfilter(host.ovs)
        for device in WIRES:
            self.ovs.in_netns("ip", "link", "set", f"{device}-far", "netns", host.ovs.name)
            host.ovs.in_netns("ip", "link", "set", f"{device}-far", "name", device)
            host.ovs.in_netns("ip", "link", "set", device, "up")
        _underlay(host.ovs, UNDERLAY_IPS[1])

    def flat_network(self, name: str, project: str, physnet: str = "physnet1",
                     **extra: Any) -> Dict[str, Any]:  # fmt: skip
        """A flat network on a physical network, which the agent bridges in brq<id11>."""
        body = {
            "name": name,
            "project_id": project,
            "provider:network_type": "flat",
            "provider:physical_network": physnet,
            **extra,
        }
        return self.api("POST", "/v2.0/networks", {"network": body})["network"]

    def vxlan_network(self, name: str, project: str, **extra: Any) -> Dict[str, Any]:
        """A project network: VXLAN (a VNI of 1000-1999), over the underlay."""
        body = {"name": name, "project_id": project, **extra}
        return self.api("POST", "/v2.0/networks", {"network": body})["network"]

    def remove_host(self, name: str) -> None:
        """As NeutronStack's, but the host's ends of the veths come back first (deleting
        its namespace would delete the stack's ends with them)."""
        host = self.hosts.get(name)
        if host is not None:
            for device in WIRES:
                with contextlib.suppress(Exception):
                    host.ovs.in_netns("ip", "addr", "flush", "dev", device)
                    host.ovs.in_netns("ip", "link", "set", device, "down")
                    host.ovs.in_netns("ip", "link", "set", device, "name", f"{device}-far")
                    host.ovs.in_netns("ip", "link", "set", f"{device}-far", "netns", self.ovs.name)
        super().remove_host(name)


def _underlay(ovs: OvsSandbox, address: str) -> None:
    """The tunnels' address on the underlay, and multicast (the VXLAN group) through it."""
    ovs.in_netns("ip", "addr", "add", f"{address}/24", "dev", UNDERLAY)
    ovs.in_netns("ip", "route", "add", "224.0.0.0/4", "dev", UNDERLAY)


def _bridge_netfilter(ovs: OvsSandbox) -> None:
    """In this namespace, frames crossing a Linux bridge go through iptables (the
    agent only warns when they do not)."""
    for table in ("iptables", "ip6tables", "arptables"):
        ovs.in_netns("sysctl", "-q", "-w", f"net.bridge.bridge-nf-call-{table}=1")
