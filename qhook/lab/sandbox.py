# SPDX-License-Identifier: GPL-2.0-or-later
"""A private Open vSwitch in its own network namespace, for the demo and the tests.

ovsdb-server and ovs-vswitchd (userspace datapath, so no kernel module is needed)
run inside a new network namespace with every socket, pid and log file in one
directory; `stop` ends them by PID and deletes the namespace with all its devices.
"""

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Dict, List, Optional

SCHEMA_PATHS = ("/usr/share/openvswitch/vswitch.ovsschema",)


class SandboxError(RuntimeError):
    """The sandbox could not be started."""


def _run(args: List[str], env: Optional[Dict[str, str]] = None, timeout: float = 30) -> str:
    done = subprocess.run(
        args, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise SandboxError(f"{' '.join(args)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


def _spawn(
    directory: Path, label: str, command: List[str], env: Dict[str, str]
) -> subprocess.Popen:
    """Start a daemon in the foreground, its output in DIRECTORY/LABEL.out."""
    with open(directory / f"{label}.out", "wb") as out:
        return subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )


def _stop(processes: Dict[str, subprocess.Popen], labels: List[str]) -> None:
    """Stop these daemons by PID, in this order: SIGTERM, then SIGKILL after 10 s. One
    that outlives even that (the kernel closing 10,000 sockets of an ovs-vswitchd takes
    minutes) does not keep the others running: they are stopped, then it is named."""
    lingering = []
    for label in labels:
        process = processes.pop(label, None)
        if process is None:
            continue
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGCONT)  # in case a test left it stopped
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            try:
                process.wait(timeout=300)
            except subprocess.TimeoutExpired:
                lingering.append(f"{label} (PID {process.pid})")
    if lingering:
        raise SandboxError(f"still exiting after SIGKILL: {', '.join(lingering)}")


def _in_namespace(pid: str, namespace: Optional[os.stat_result]) -> bool:
    if namespace is None:
        return False
    try:
        mine = os.stat(f"/proc/{pid}/ns/net")
    except OSError:
        return False
    return (mine.st_dev, mine.st_ino) == (namespace.st_dev, namespace.st_ino)


def _alive(pid: int) -> bool:
    """Running, not a zombie (PID 1 in a container may not reap orphans)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def delete_netns(name: str, timeout: float = 5) -> None:
    """Delete network namespace `name`, trying again while the kernel says it is busy
    (`ip netns delete` can lose a race with another namespace being added or deleted
    at the same moment, as Neutron's agents do); gone or not, it returns by `timeout`."""
    deadline = time.monotonic() + timeout
    while os.path.exists(f"/run/netns/{name}"):
        subprocess.run(
            ["ip", "netns", "delete", name], capture_output=True, timeout=timeout, check=False
        )
        if not os.path.exists(f"/run/netns/{name}") or time.monotonic() > deadline:
            return
        time.sleep(0.05)


def processes_of(netns: str, directory: Path) -> List[int]:
    """Every process running in this network namespace, or whose command line names
    this directory (the daemons a sandbox started outside the namespace)."""
    try:
        namespace: Optional[os.stat_result] = os.stat(f"/run/netns/{netns}")
    except OSError:
        namespace = None
    mark = str(directory)
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, UnicodeDecodeError):
            continue
        if _in_namespace(pid, namespace) or mark in command:
            found.append(int(pid))
    return sorted(pid for pid in found if _alive(pid))


def stop_everything(netns: str, directory: Path, timeout: float = 10) -> int:
    """Stop, by PID, whatever runs in the namespace or from the directory (SIGTERM, then
    SIGKILL after `timeout`), then delete the namespace; the number of processes."""
    pids = processes_of(netns, directory)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in pids:
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    delete_netns(netns)
    return len(pids)


class OvsSandbox:
    """ovsdb-server + ovs-vswitchd in network namespace `name`, files under `directory`."""

    def __init__(self, directory: Path, name: str, bridge: str = "br-int"):
        self.directory = Path(directory)
        self.name = name
        self.bridge = bridge
        self.processes: Dict[str, subprocess.Popen] = {}

    @property
    def socket(self) -> Path:
        return self.directory / "db.sock"

    @property
    def connection(self) -> str:
        return f"unix:{self.socket}"

    @property
    def netns_exec(self) -> List[str]:
        return ["ip", "netns", "exec", self.name]

    @property
    def env(self) -> Dict[str, str]:
        env = dict(os.environ)
        for variable in ("OVS_RUNDIR", "OVS_LOGDIR", "OVS_DBDIR", "OVS_PKGDATADIR"):
            env.pop(variable, None)
        directory = str(self.directory)
        env.update(OVS_RUNDIR=directory, OVS_LOGDIR=directory, OVS_DBDIR=directory)
        return env

    def vsctl(self, *args: str, wait: bool = False) -> str:
        options = [f"--db={self.connection}", "--timeout=10"]
        if not wait:
            options.append("--no-wait")
        return _run(["ovs-vsctl", *options, *args], self.env)

    def in_netns(self, *args: str) -> str:
        return _run([*self.netns_exec, *args], self.env)

    def ofctl(self, command: str, *args: str, bridge: Optional[str] = None) -> str:
        """ovs-ofctl COMMAND on a bridge (by default the integration bridge)."""
        mgmt = f"unix:{self.directory}/{bridge or self.bridge}.mgmt"
        return _run(["ovs-ofctl", command, mgmt, *args], self.env)

    def _daemon(self, label: str, args: List[str]) -> None:
        self.processes[label] = _spawn(self.directory, label, [*self.netns_exec, *args], self.env)

    def _wait_for(self, what: str, ready, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            for label, process in self.processes.items():
                if process.poll() is not None:
                    output = (self.directory / f"{label}.out").read_text()[-2000:]
                    raise SandboxError(f"{label} exited with {process.returncode}: {output}")
            if time.monotonic() > deadline:
                raise SandboxError(f"{what} not ready after {timeout:g} s")
            time.sleep(0.02)

    def start(self) -> "OvsSandbox":
        self.directory.mkdir(parents=True, exist_ok=True)
        schema = next((p for p in SCHEMA_PATHS if os.path.exists(p)), None)
        if schema is None:
            raise SandboxError("Open vSwitch is not installed (no vswitch.ovsschema)")
        _run(["ip", "netns", "add", self.name])
        try:
            self.in_netns("ip", "link", "set", "lo", "up")
            database = self.directory / "conf.db"
            _run(["ovsdb-tool", "create", str(database), schema], self.env)
            self._start_ovsdb()
            self.vsctl("init")
            self._daemon(
                "ovs-vswitchd",
                [
                    "ovs-vswitchd",
                    self.connection,
                    f"--unixctl={self.directory / 'ovs-vswitchd.ctl'}",
                    f"--log-file={self.directory / 'ovs-vswitchd.log'}",
                    "--no-chdir",
                ],
            )
            self._wait_for("ovs-vswitchd", (self.directory / "ovs-vswitchd.ctl").exists)
            self.add_bridge(self.bridge)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_ovsdb(self) -> None:
        self._daemon(
            "ovsdb-server",
            [
                "ovsdb-server",
                str(self.directory / "conf.db"),
                f"--remote=punix:{self.socket}",
                f"--unixctl={self.directory / 'ovsdb-server.ctl'}",
                f"--log-file={self.directory / 'ovsdb-server.log'}",
                "--no-chdir",
            ],
        )
        self._wait_for("ovsdb-server", self.socket.exists)

    def restart_ovsdb(self) -> None:
        """Stop ovsdb-server by PID and start it again on the same database (a fault;
        ovs-vswitchd and the clients reconnect)."""
        _stop(self.processes, ["ovsdb-server"])
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()
        self._start_ovsdb()

    def add_bridge(self, name: str) -> None:
        self.vsctl(
            "--may-exist",
            "add-br",
            name,
            "--",
            "set",
            "Bridge",
            name,
            "datapath_type=netdev",
            "fail-mode=secure",
            wait=True,
        )

    def pid(self, label: str) -> int:
        return self.processes[label].pid

    def stop(self) -> None:
        """Stop the daemons by PID and delete the namespace; safe to call twice."""
        _stop(self.processes, ["ovs-vswitchd", "ovsdb-server"])
        delete_netns(self.name)


_LIBVIRTD_CONF = """\
unix_sock_dir = "/run/libvirt"
auth_unix_rw = "none"
auth_unix_ro = "none"
log_outputs = "2:file:/var/log/libvirt/libvirtd.log"
"""
# Root QEMU without confinement, cgroups or per-domain mount namespaces: none of them
# is available in a container; stdio_handler=file spares running virtlogd.
_QEMU_CONF = """\
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
stdio_handler = "file"
namespaces = [ ]
cgroup_controllers = [ ]
"""
# Runs inside the sandbox's network namespace and a private mount namespace: libvirtd
# sees its own /run, /etc/libvirt and /var/{lib,cache,log}/libvirt, and the sandbox's
# Open vSwitch at the default path, where the ovs-vsctl that libvirt runs looks for it.
_LIBVIRTD_START = """\
set -e
mount -t tmpfs tmpfs /run
mkdir -p /run/libvirt /run/openvswitch
mount --bind "$2" /run/openvswitch
mount --bind "$1/run" /run/libvirt
mount --bind "$1/etc" /etc/libvirt
mount --bind "$1/lib" /var/lib/libvirt
mount --bind "$1/cache" /var/cache/libvirt
mount --bind "$1/log" /var/log/libvirt
exec libvirtd --config /etc/libvirt/libvirtd.conf
"""
_MOUNT_POINTS = ("/etc/libvirt", "/var/lib/libvirt", "/var/cache/libvirt", "/var/log/libvirt")


class LibvirtSandbox:
    """libvirtd (QEMU driver) in an OvsSandbox's network namespace, files under `directory`."""

    def __init__(self, directory: Path, ovs: OvsSandbox):
        self.directory = Path(directory)
        self.ovs = ovs
        self.process: Optional[subprocess.Popen] = None

    @property
    def uri(self) -> str:
        return f"qemu:///system?socket={self.directory / 'run' / 'libvirt-sock'}"

    def virsh(self, *args: str, timeout: float = 120) -> str:
        return _run(["virsh", "-q", "-c", self.uri, *args], timeout=timeout)

    def start(self) -> "LibvirtSandbox":
        try:
            import pwd

            pwd.getpwnam("libvirt-qemu")
        except KeyError:
            raise SandboxError(
                "libvirt needs the user libvirt-qemu: useradd --system libvirt-qemu"
            ) from None
        for sub in ("etc", "run", "lib", "cache", "log"):
            (self.directory / sub).mkdir(parents=True, exist_ok=True)
        (self.directory / "etc" / "libvirtd.conf").write_text(_LIBVIRTD_CONF)
        (self.directory / "etc" / "qemu.conf").write_text(_QEMU_CONF)
        for path in _MOUNT_POINTS:
            os.makedirs(path, exist_ok=True)  # empty mount points, as the package makes
        command = [
            *self.ovs.netns_exec,
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            _LIBVIRTD_START,
            "libvirtd",
            str(self.directory.resolve()),
            str(self.ovs.directory.resolve()),
        ]
        self.process = _spawn(self.directory, "libvirtd", command, dict(os.environ))
        socket = self.directory / "run" / "libvirt-sock"
        deadline = time.monotonic() + 60
        while not socket.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                output = (self.directory / "libvirtd.out").read_text()[-2000:]
                self.stop()
                raise SandboxError(f"libvirtd did not start: {output}")
            time.sleep(0.05)
        self.virsh("version", timeout=120)  # the first call probes QEMU for seconds
        return self

    def stop(self) -> None:
        """Destroy every domain, then stop libvirtd by PID; safe to call twice."""
        if self.process is None:
            return
        if self.process.poll() is None:
            with contextlib.suppress(SandboxError, subprocess.TimeoutExpired):
                for name in self.virsh("list", "--name").split():
                    self.virsh("destroy", name)
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)
        for pidfile in (self.directory / "run" / "qemu").glob("*.pid"):
            text = pidfile.read_text().strip()
            if text.isdigit():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(text), signal.SIGKILL)
        self.process = None


class OvnSandbox:
    """OVN as the agent of an OvsSandbox: NB and SB databases, ovn-northd, ovn-controller.

    ovn-controller runs in the sandbox's network namespace, binds the OVS Interfaces
    whose iface-id names a logical switch port, and marks them ovn-installed.
    """

    def __init__(self, ovs: OvsSandbox, system_id: str = "qhook-host"):
        self.ovs = ovs
        self.directory = ovs.directory / "ovn"
        self.system_id = system_id
        self.processes: Dict[str, subprocess.Popen] = {}

    @property
    def env(self) -> Dict[str, str]:
        env = self.ovs.env
        directory = str(self.directory)
        env.update(OVN_RUNDIR=directory, OVN_LOGDIR=directory, OVN_DBDIR=directory)
        return env

    def db(self, name: str) -> str:
        return f"unix:{self.directory / (name + '.sock')}"

    def nbctl(self, *args: str) -> str:
        return _run(["ovn-nbctl", f"--db={self.db('nb')}", "--timeout=10", *args], self.env)

    def sbctl(self, *args: str) -> str:
        return _run(["ovn-sbctl", f"--db={self.db('sb')}", "--timeout=10", *args], self.env)

    def _daemon(self, label: str, args: List[str], in_netns: bool = False) -> None:
        prefix = self.ovs.netns_exec if in_netns else []
        self.processes[label] = _spawn(self.directory, label, [*prefix, *args], self.env)

    def _wait_for(self, path: Path, label: str) -> None:
        deadline = time.monotonic() + 20
        while not path.exists():
            process = self.processes[label]
            if process.poll() is not None or time.monotonic() > deadline:
                output = (self.directory / f"{label}.out").read_text()[-2000:]
                raise SandboxError(f"{label} did not start: {output}")
            time.sleep(0.02)

    def start(self) -> "OvnSandbox":
        self.directory.mkdir(parents=True, exist_ok=True)
        try:
            for name in ("nb", "sb"):
                database = self.directory / f"{name}.db"
                schema = f"/usr/share/ovn/ovn-{name}.ovsschema"
                if not os.path.exists(schema):
                    raise SandboxError("OVN is not installed (no ovn-nb.ovsschema)")
                _run(["ovsdb-tool", "create", str(database), schema], self.env)
                self._daemon(
                    f"{name}-server",
                    [
                        "ovsdb-server",
                        str(database),
                        f"--remote=punix:{self.directory / name}.sock",
                        f"--unixctl={self.directory / name}-server.ctl",
                        f"--log-file={self.directory / name}-server.log",
                        "--no-chdir",
                    ],
                )
                self._wait_for(self.directory / f"{name}.sock", f"{name}-server")
            self._daemon(
                "ovn-northd",
                [
                    "ovn-northd",
                    f"--ovnnb-db={self.db('nb')}",
                    f"--ovnsb-db={self.db('sb')}",
                    f"--unixctl={self.directory / 'ovn-northd.ctl'}",
                    f"--log-file={self.directory / 'ovn-northd.log'}",
                    "--no-chdir",
                ],
            )
            self.ovs.vsctl(
                "set",
                "Open_vSwitch",
                ".",
                f"external_ids:system-id={self.system_id}",
                # The chassis's hostname, which Neutron binds ports to (binding:host_id).
                f"external_ids:hostname={self.system_id}-node",
                f"external_ids:ovn-remote={self.db('sb')}",
                "external_ids:ovn-encap-type=geneve",
                "external_ids:ovn-encap-ip=127.0.0.1",
                "external_ids:ovn-bridge-datapath-type=netdev",
            )
            self._daemon(
                "ovn-controller",
                [
                    "ovn-controller",
                    self.ovs.connection,
                    f"--log-file={self.directory / 'ovn-controller.log'}",
                    "--no-chdir",
                ],
                in_netns=True,
            )
            deadline = time.monotonic() + 20
            while self.system_id not in self.sbctl("--columns=name", "list", "Chassis"):
                if time.monotonic() > deadline:
                    raise SandboxError("ovn-controller did not register its chassis")
                time.sleep(0.05)
        except BaseException:
            self.stop()
            raise
        return self

    def pid(self, label: str) -> int:
        return self.processes[label].pid

    def stop(self) -> None:
        _stop(self.processes, ["ovn-controller", "ovn-northd", "sb-server", "nb-server"])
