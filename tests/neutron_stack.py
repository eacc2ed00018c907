# SPDX-License-Identifier: GPL-2.0-or-later
"""A real Neutron for the tests: API (gunicorn), RPC server and neutron-openvswitch-agent,
with MariaDB and RabbitMQ, on a private Open vSwitch in its own network namespace.

Neutron 29 (PyPI) has no neutron-server command: the API is the WSGI app
`neutron.wsgi.api:application` served by gunicorn. MariaDB runs in the host namespace
without networking and is reached by its unix socket; RabbitMQ, the three Neutron
processes and ovs-vswitchd share the sandbox namespace, where ovs-vswitchd connects to
the agent's OpenFlow controller on 127.0.0.1. Every daemon is stopped by PID.

add_host() starts a further hypervisor host: an Open vSwitch in a namespace of its own
with its own neutron-openvswitch-agent, which reaches RabbitMQ (and its processes reach
the API) at the same 127.0.0.1 addresses through relays between the namespaces.
"""

import contextlib
import os
import secrets
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from daemons import DaemonGroup, kill, run_tool, unix_http
from netns_relay import NetnsRelay

from qhook.lab.sandbox import OvsSandbox

AGENT_HOST = "qhook-neutron-host"
HOST_B = "qhook-neutron-host-b"  # a second hypervisor host (add_host), for migrations
RABBIT_PORT = 5673
API_PORT = 9696
_OVS_DIRS = ("OVS_RUNDIR", "OVS_LOGDIR", "OVS_DBDIR")  # where ovs-* tools look
_WSGI = """import sys
sys.argv = ["neutron-api"]  # oslo.config must not parse gunicorn's arguments
from neutron.wsgi.api import application  # noqa: E402,F401
"""


@dataclass
class AgentHost:
    """A further hypervisor host: its Open vSwitch (ovs, in namespace ovs.name), the
    `host` its neutron-openvswitch-agent reports (name), and the relays that give it
    RabbitMQ and the API at 127.0.0.1:RABBIT_PORT and 127.0.0.1:API_PORT."""

    name: str
    ovs: OvsSandbox
    directory: Path
    relays: List[NetnsRelay] = field(default_factory=list)

    @property
    def label(self) -> str:
        """The agent's label among the stack's processes."""
        return f"agent@{self.name}"

    @property
    def log(self) -> Path:
        return self.directory / "agent.log"


class NeutronStack(DaemonGroup):
    """Start with start(), stop with stop(); api() talks to the API over a unix socket."""

    # The L2 agent and its ML2 mechanism driver (a subclass may run another).
    AGENT = "neutron-openvswitch-agent"
    AGENT_INI = "openvswitch_agent.ini"
    MECHANISM = "openvswitch"

    def __init__(self, directory: Path, venv: Path, netns: str, api_workers: int = 1):
        super().__init__(directory, venv)
        self.api_workers = api_workers  # gunicorn workers serving the API
        self.ovs = OvsSandbox(self.dir / "ovs", netns)
        self.hosts: Dict[str, AgentHost] = {}

    # -- helpers ---------------------------------------------------------------
    def _env(self, **extra: str) -> Dict[str, str]:
        env = self.ovs.env
        env["PATH"] = f"{self.venv}/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        env.update(extra)
        return env

    def _prefix(self, netns: bool) -> List[str]:
        return self.ovs.netns_exec if netns else []

    def api(
        self,
        method: str,
        path: str,
        body: Optional[Dict[str, Any]] = None,
        sock: str = "api.sock",
        headers: Optional[Dict[str, str]] = None,
    ) -> Any:
        status, _, data = unix_http(self.dir / sock, method, path, body, headers)
        if status >= 400:
            raise RuntimeError(f"{method} {path}: {status} {str(data)[:1000]}")
        return data

    def vlan_network(self, name: str, project: str, segment: int) -> Dict[str, Any]:
        """A Quantum network the agents can wire: VLAN `segment` of physnet1."""
        body = {
            "name": name,
            "project_id": project,
            "provider:network_type": "vlan",
            "provider:physical_network": "physnet1",
            "provider:segmentation_id": segment,
        }
        return self.api("POST", "/v2.0/networks", {"network": body})["network"]

    def bound_port(
        self, network: Dict[str, Any], host: str, device_id: str, **extra: Any
    ) -> Dict[str, Any]:
        """A port of this package on the network, for a VM, bound to an agent's host."""
        body = {
            "network_id": network["id"],
            "project_id": network["project_id"],
            "binding:host_id": host,
            "device_owner": "vdsm-hook-quantum",
            "device_id": device_id,
            **extra,
        }
        return self.api("POST", "/v2.0/ports", {"port": body})["port"]

    # -- configuration -----------------------------------------------------------
    def _neutron_conf(self, auth_strategy: str, transport: str, extra: str = "") -> str:
        state = self.dir / "state"
        database = (
            f"mysql+pymysql://neutron:qhook@localhost/neutron?unix_socket={self.dir}/mysql/"
            "mysql.sock&charset=utf8mb4"
        )
        return f"""[DEFAULT]
host = {AGENT_HOST}
core_plugin = ml2
service_plugins =
auth_strategy = {auth_strategy}
api_paste_config = {self.venv}/etc/neutron/api-paste.ini
state_path = {state}
transport_url = {transport}
notify_nova_on_port_status_changes = false
notify_nova_on_port_data_changes = false
api_workers = 1
rpc_workers = 1
rpc_state_report_workers = 1
dhcp_agent_notification = false
[database]
connection = {database}
[oslo_concurrency]
lock_path = {state}/lock
[agent]
root_helper = env
use_helper_for_ns_read = false
{extra}"""

    def _configure(self) -> None:
        etc, state = self.dir / "etc", self.dir / "state"
        for path in (etc, state / "lock", self.dir / "mysql"):
            path.mkdir(parents=True, exist_ok=True)
        transport = f"rabbit://guest:guest@127.0.0.1:{RABBIT_PORT}/"
        (etc / "neutron.conf").write_text(self._neutron_conf("noauth", transport))
        (etc / "ml2_conf.ini").write_text(self._ml2_ini())
        (etc / self.AGENT_INI).write_text(self._agent_ini(AGENT_HOST, self.ovs, state))
        (self.dir / "qhook_neutron_api.py").write_text(_WSGI)

    def _ml2_ini(self) -> str:
        return f"""[ml2]
type_drivers = flat,vlan
tenant_network_types = vlan
mechanism_drivers = {self.MECHANISM}
extension_drivers = port_security
[ml2_type_flat]
flat_networks = physnet1
[ml2_type_vlan]
network_vlan_ranges = physnet1:100:199
"""

    def _agent_ini(self, host: str, ovs: OvsSandbox, state: Path, firewall: str = "noop") -> str:
        """The Open vSwitch agent's settings on `host`, whose switch is `ovs`, with this
        security group firewall (noop: none)."""
        return f"""[DEFAULT]
host = {host}
state_path = {state}
transport_url = rabbit://guest:guest@127.0.0.1:{RABBIT_PORT}/
[agent]
root_helper = env
root_helper_daemon =
tunnel_types =
l2_population = false
minimize_polling = true
[ovs]
integration_bridge = br-int
bridge_mappings = physnet1:br-phys1
datapath_type = netdev
ovsdb_connection = {ovs.connection}
of_listen_address = 127.0.0.1
of_listen_port = 6633
[securitygroup]
firewall_driver = {firewall}
enable_security_group = {"false" if firewall == "noop" else "true"}
[oslo_concurrency]
lock_path = {state}/lock
"""

    # -- services ----------------------------------------------------------------
    def _mariadb(self) -> None:
        data, sock = self.dir / "mysql" / "data", self.dir / "mysql" / "mysql.sock"
        run_tool(
            [
                "mariadb-install-db",
                "--no-defaults",
                f"--datadir={data}",
                "--user=root",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ]
        )
        self._spawn(
            "mariadbd",
            [
                "mariadbd",
                "--no-defaults",
                f"--datadir={data}",
                f"--socket={sock}",
                "--skip-networking",
                f"--pid-file={self.dir}/mysql/mysqld.pid",
                "--user=root",
                f"--log-error={self.dir}/mysql/error.log",
                "--skip-name-resolve",
                "--innodb-buffer-pool-size=64M",
                "--innodb-flush-log-at-trx-commit=2",
            ],
            netns=False,
        )
        ping = ["mariadb-admin", "--no-defaults", "-S", str(sock), "-uroot", "ping"]
        self._wait(
            "MariaDB",
            lambda: subprocess.run(ping, capture_output=True).returncode == 0,
            60,
            ["mariadbd"],
        )
        run_tool(
            [
                "mariadb",
                "--no-defaults",
                "-S",
                str(sock),
                "-uroot",
                "-e",
                "CREATE DATABASE neutron CHARACTER SET utf8mb4;"
                "CREATE USER 'neutron'@'localhost' IDENTIFIED BY 'qhook';"
                "GRANT ALL ON neutron.* TO 'neutron'@'localhost';",
            ]
        )

    def _rabbit_env(self) -> Dict[str, str]:
        base = self.dir / "rabbit"
        return {
            "HOME": str(base / "home"),
            "RABBITMQ_NODENAME": "qhook@localhost",
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(RABBIT_PORT),
            "RABBITMQ_DIST_PORT": "25673",
            "ERL_EPMD_PORT": "4370",
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(base / "log"),
            "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(base / "rabbit.pid"),
            "RABBITMQ_CONF_ENV_FILE": str(base / "rabbitmq-env.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(base / "advanced.config"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }

    def _rabbitmq(self) -> None:
        base = self.dir / "rabbit"
        for sub in ("home", "mnesia", "log"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        (base / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{RABBIT_PORT}\nloopback_users.guest = true\n"
        )
        (base / "enabled_plugins").write_text("[].\n")
        (base / "rabbitmq-env.conf").write_text("")
        env = self._rabbit_env()
        # Our own epmd in the foreground, or Erlang daemonizes one we could not stop.
        self._spawn("epmd", ["epmd", "-port", "4370", "-address", "127.0.0.1"], **env)
        time.sleep(0.2)
        self._spawn("rabbitmq", ["/usr/lib/rabbitmq/bin/rabbitmq-server"], **env)
        run_tool(
            [
                *self.ovs.netns_exec,
                "/usr/lib/rabbitmq/bin/rabbitmqctl",
                "wait",
                "--timeout",
                "90",
                str(base / "rabbit.pid"),
            ],
            self._env(**env),
            timeout=120,
        )

    def start(self) -> "NeutronStack":
        self.dir.mkdir(parents=True, exist_ok=True)
        try:
            self.ovs.start()
            self.ovs.add_bridge("br-phys1")
            self._configure()
            self._mariadb()
            self._rabbitmq()
            etc = self.dir / "etc"
            configs = [
                "--config-file",
                f"{etc}/neutron.conf",
                "--config-file",
                f"{etc}/ml2_conf.ini",
            ]
            run_tool(
                [f"{self.venv}/bin/neutron-db-manage", *configs, "upgrade", "heads"],
                self._env(),
                timeout=600,
            )
            self._spawn(
                "neutron-api",
                [
                    f"{self.venv}/bin/gunicorn",
                    "--workers",
                    str(self.api_workers),
                    "--bind",
                    f"127.0.0.1:{API_PORT}",
                    "--bind",
                    f"unix:{self.dir}/api.sock",
                    "--timeout",
                    "300",
                    "--chdir",
                    str(self.dir),
                    "qhook_neutron_api:application",
                ],
                OS_NEUTRON_CONFIG_DIR=str(etc),
                OS_NEUTRON_CONFIG_FILES="neutron.conf;ml2_conf.ini",
            )
            self._wait(
                "the API",
                lambda: self.api("GET", "/v2.0/networks") is not None,
                180,
                ["neutron-api"],
            )
            self._spawn(
                "neutron-rpc-server",
                [
                    f"{self.venv}/bin/neutron-rpc-server",
                    *configs,
                    "--log-file",
                    f"{self.dir}/rpc-server.log",
                ],
            )
            self._before_agents()
            self._spawn(
                self.AGENT,
                [
                    f"{self.venv}/bin/{self.AGENT}",
                    "--config-file",
                    f"{etc}/neutron.conf",
                    "--config-file",
                    f"{etc}/{self.AGENT_INI}",
                    "--log-file",
                    f"{self.dir}/agent.log",
                ],
            )
            self._wait(
                f"the agent ({self.AGENT})",
                self._agent_alive,
                180,
                [self.AGENT, "neutron-rpc-server", "neutron-api"],
            )
        except BaseException:
            self.stop()
            raise
        return self

    def _before_agents(self) -> None:
        """What the agents need in the stack's namespace before they start."""

    def _agent_alive(self, host: str = AGENT_HOST) -> bool:
        agents = self.api("GET", f"/v2.0/agents?binary={self.AGENT}")["agents"]
        return any(a["host"] == host and a["alive"] for a in agents)

    # -- further hosts -------------------------------------------------------------
    def add_host(self, name: str, netns: Optional[str] = None, firewall: str = "noop") -> AgentHost:
        """Start a further hypervisor host whose agent reports `host = name`: an
        OvsSandbox (br-int, br-phys1) in namespace `netns` (by default a new unique
        name), relays from there to RabbitMQ and to the API, and the agent, with this
        security group firewall (iptables_hybrid, openvswitch; noop: none); returns
        once the API lists that agent alive. stop() (or remove_host) ends it all."""
        if name in self.hosts or name == AGENT_HOST:
            raise ValueError(f"there is a host {name} already")
        directory = self.dir / "hosts" / name
        (directory / "state" / "lock").mkdir(parents=True, exist_ok=True)
        netns = netns or f"qhook-host-{os.getpid()}-{secrets.token_hex(3)}"
        host = AgentHost(name, OvsSandbox(directory / "ovs", netns), directory)
        self.hosts[name] = host
        try:
            host.ovs.start()
            host.ovs.add_bridge("br-phys1")
            host.relays.append(NetnsRelay(netns, RABBIT_PORT, to_netns=self.ovs.name))
            host.relays.append(NetnsRelay(netns, API_PORT, to_unix=str(self.dir / "api.sock")))
            self._before_host_agent(host)
            config = directory / self.AGENT_INI
            config.write_text(self._agent_ini(name, host.ovs, directory / "state", firewall))
            self._spawn(
                host.label,
                [
                    *host.ovs.netns_exec,
                    f"{self.venv}/bin/{self.AGENT}",
                    *("--config-file", f"{self.dir}/etc/neutron.conf"),
                    *("--config-file", str(config)),
                    *("--log-file", str(host.log)),
                ],
                netns=False,
                **{key: str(host.ovs.directory) for key in _OVS_DIRS},
            )
            self._wait(
                f"the agent on {name}",
                lambda: self._agent_alive(name),
                180,
                [host.label, "neutron-rpc-server", "neutron-api"],
            )
        except BaseException:
            self.remove_host(name)
            raise
        return host

    def _before_host_agent(self, host: AgentHost) -> None:
        """What a further host's agent needs in its namespace before it starts."""

    def remove_host(self, name: str) -> None:
        """Stop a host add_host() started: its agent (its record deleted from Neutron),
        its relays, what is left in its namespace, its Open vSwitch; safe to call twice."""
        host = self.hosts.pop(name, None)
        if host is None:
            return
        self._stop_hosts([host])
        with contextlib.suppress(Exception):
            agents = self.api("GET", f"/v2.0/agents?host={name}")["agents"]
            for agent in agents:
                self.api("DELETE", f"/v2.0/agents/{agent['id']}")

    def _stop_hosts(self, hosts: List[AgentHost]) -> None:
        self._stop_groups([([host.label for host in hosts], 5)])
        for host in hosts:
            for relay in host.relays:
                relay.stop()
            self._kill_leftovers(host.ovs)
            host.ovs.stop()

    def _kill_leftovers(self, ovs: OvsSandbox) -> None:
        """SIGKILL what is left in the namespace (privsep-helper, an ovsdb-client monitor,
        ...), but the sandbox's own daemons."""
        keep = {process.pid for process in ovs.processes.values()}
        listed = subprocess.run(
            ["ip", "netns", "pids", ovs.name], capture_output=True, text=True, check=False
        ).stdout.split()
        kill([int(pid) for pid in listed if int(pid) not in keep], signal.SIGKILL)

    def start_keystone_api(self, auth_url: str, username: str, password: str) -> Path:
        """A second API server on the same database, behind Keystone (keystonemiddleware
        checks every token with the Keystone at auth_url, caching none); its unix socket.

        It sends no RPC (transport fake://): the agent keeps to the first one."""
        etc = self.dir / "etc"
        authtoken = f"""[keystone_authtoken]
www_authenticate_uri = {auth_url}
auth_url = {auth_url}
auth_type = password
project_domain_name = Default
user_domain_name = Default
project_name = service
username = {username}
password = {password}
service_token_roles_required = true
token_cache_time = -1
"""
        (etc / "neutron-keystone.conf").write_text(
            self._neutron_conf("keystone", "fake://", authtoken)
        )
        sock = self.dir / "api-keystone.sock"
        self._spawn(
            "neutron-api-keystone",
            [
                f"{self.venv}/bin/gunicorn",
                *("--workers", "1", "--bind", f"unix:{sock}", "--timeout", "300"),
                *("--chdir", str(self.dir), "qhook_neutron_api:application"),
            ],
            netns=False,
            OS_NEUTRON_CONFIG_DIR=str(etc),
            OS_NEUTRON_CONFIG_FILES="neutron-keystone.conf;ml2_conf.ini",
        )
        self._wait(
            "the API behind Keystone",
            lambda: unix_http(sock, "GET", "/v2.0/networks")[0] == 401,
            120,
            ["neutron-api-keystone"],
        )
        return sock

    def _terminate(self, label: str, process: subprocess.Popen, tree: List[int]) -> None:
        pidfile = self.dir / "rabbit" / "rabbit.pid"
        if label == "rabbitmq" and pidfile.exists() and pidfile.read_text().strip().isdigit():
            kill([int(pidfile.read_text().strip())], signal.SIGTERM)
            process.terminate()
            return
        super()._terminate(label, process, tree)

    def stop(self) -> None:
        """Stop every daemon by PID (Neutron's take their time: 5 s, then SIGKILL), the
        further hosts' agents with the first one, then their relays and switches."""
        hosts, self.hosts = list(self.hosts.values()), {}
        self._stop_groups(
            [
                (
                    [
                        self.AGENT,
                        *(host.label for host in hosts),
                        "neutron-rpc-server",
                        "neutron-api",
                        "neutron-api-keystone",
                    ],
                    5,
                ),
            ]
        )
        self._stop_hosts(hosts)
        self._stop_groups([(["rabbitmq"], 30), (["epmd", "mariadbd"], 30)])
        self._kill_leftovers(self.ovs)
        self.ovs.stop()
