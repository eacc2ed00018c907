# SPDX-License-Identifier: GPL-2.0-or-later
"""Ports on demand, with the real Neutron and its Open vSwitch agents: a vNIC profile names
only the Quantum network; the hooks make the port, bind it to the agent's host, wait until
the agent has wired it, rebind it on migration, and delete it when the VM is gone."""

import contextlib
import http.server
import json
import os
import re
import secrets
import subprocess
import threading
import time
import uuid
from typing import Dict, Iterator, List, Tuple

import hoststate
import pytest
from daemons import unix_http
from domains import quantum_vm, to_bytes
from installed_host import emulator_as_vdsm, installed_host
from lxml import etree
from netns_relay import socket_in
from neutron_stack import AGENT_HOST, HOST_B
from on_demand_host import API, PROJECT, Host

from qhook.lab.sandbox import OvsSandbox
from qhook.lab.vdsm_emulator import HookFailed
from tools import ERROR_PREFIX, error_lines, holding_tap, qhook_on_host

OWNER = "vdsm-hook-quantum"
OVIRT = "{http://ovirt.org/vm/1.0}"


@pytest.fixture(scope="module")
def network(neutron):
    """A Quantum network the agents can wire (VLAN 103 on physnet1)."""
    created = neutron.vlan_network("Q_on_demand", PROJECT, 103)
    yield created
    for port in neutron.api("GET", f"/v2.0/ports?network_id={created['id']}")["ports"]:
        neutron.api("DELETE", f"/v2.0/ports/{port['id']}")
    neutron.api("DELETE", f"/v2.0/networks/{created['id']}")


def _vm(network_id: str, count: int = 1) -> Tuple[bytes, str, List[str]]:
    """A VM whose vNICs carry only plugin and q_network_id, with MACs of its own."""
    vm_id = str(uuid.uuid4())
    macs = [f"02:{secrets.token_hex(1)}:{secrets.token_hex(1)}:{i:02x}:00:01" for i in range(count)]
    vnics = [{"plugin": "openvswitch", "q_network_id": network_id} for _ in macs]
    domain = to_bytes(quantum_vm(vnics, vm_uuid=vm_id))
    for index, mac in enumerate(macs):
        domain = domain.replace(f"02:00:00:00:{index + 1:02x}:01".encode(), mac.encode())
    return domain, vm_id, macs


def _ports(neutron, vm_id: str) -> Dict[str, Dict]:
    """The VM's Neutron ports by MAC."""
    found = neutron.api("GET", f"/v2.0/ports?device_id={vm_id}")["ports"]
    return {port["mac_address"]: port for port in found}


def _wait_for(what, ready, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while not ready():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def _tag(ovs: OvsSandbox, tap: str) -> str:
    return ovs.vsctl("get", "Port", tap, "tag").strip()


def test_the_hooks_make_bind_and_wire_the_port_and_delete_it(neutron, network, tmp_path):
    host = Host(tmp_path, neutron.ovs, AGENT_HOST)
    domain, vm_id, (mac,) = _vm(network["id"])

    began = time.monotonic()
    started = host.vdsm.start_vm(domain)
    took = time.monotonic() - began
    assert started.runs[-1].stderr == ""
    (port,) = _ports(neutron, vm_id).values()
    assert port["mac_address"] == mac and port["network_id"] == network["id"]
    assert port["device_owner"] == OWNER and port["name"].startswith("qhook-on-demand-")
    assert (port["binding:host_id"], port["binding:vif_type"]) == (AGENT_HOST, "ovs")
    tap = "tap" + port["id"][:11]
    assert f'<target dev="{tap}" managed="no"/>' in started.domain_xml.decode()
    # Wired by the agent when the hook returned: the wait covers ports on demand too.
    assert _tag(neutron.ovs, tap) not in ("[]", "4095")
    assert hoststate.ovs_interfaces(neutron.ovs)[tap]["external_ids"]["iface-id"] == port["id"]
    _wait_for(
        "the port never became ACTIVE", lambda: _ports(neutron, vm_id)[mac]["status"] == "ACTIVE"
    )
    print(f"start with a port on demand to wired: {took:.2f} s")

    # A retried start finds the port it made: one port, not two.
    again = host.vdsm.start_vm(domain)
    assert again.runs[-1].stderr == "" and again.domain_xml == started.domain_xml
    assert [p["id"] for p in _ports(neutron, vm_id).values()] == [port["id"]]

    stopped = host.vdsm.destroy_vm(started.domain_xml)
    assert (stopped.failed, stopped.stderr) == (False, "")
    assert _ports(neutron, vm_id) == {}
    assert tap not in hoststate.ovs_interfaces(neutron.ovs)
    assert tap not in hoststate.links(neutron.ovs)


def test_concurrent_starts_of_one_vm_make_one_port_per_vnic(neutron, network, tmp_path):
    """Two runs of before_vm_start for the same VM at once (a retried start overlapping the
    first): the one that loses the race for a MAC finds the winner's port."""
    host = Host(tmp_path, neutron.ovs, AGENT_HOST)
    host.write_config(wait=False)
    domain, vm_id, macs = _vm(network["id"], 4)
    runs: List = []
    starts = [
        threading.Thread(target=lambda: runs.append(host.vdsm.run_point("before_vm_start", domain)))
        for _ in range(2)
    ]
    for start in starts:
        start.start()
    for start in starts:
        start.join()
    ports = _ports(neutron, vm_id)
    assert sorted(ports) == sorted(macs)  # one port per vNIC, not two
    succeeded = [run for run in runs if not run.failed]
    assert succeeded, [run.stderr for run in runs]
    for run in runs:
        assert run.failed or f'dev="tap{ports[macs[0]]["id"][:11]}"' in run.data_out.decode()
    stopped = host.vdsm.destroy_vm(succeeded[0].data_out)
    assert (stopped.failed, stopped.stderr) == (False, "")
    assert _ports(neutron, vm_id) == {}


def test_a_port_given_by_id_is_never_deleted_and_hotplug_makes_its_own(neutron, network, tmp_path):
    host = Host(tmp_path, neutron.ovs, AGENT_HOST)
    domain, vm_id, macs = _vm(network["id"], 2)
    given = neutron.bound_port(network, AGENT_HOST, vm_id, mac_address=macs[1])
    domain = _with_port_id(domain, macs[1], given["id"])
    started = host.vdsm.start_vm(domain)
    assert started.runs[-1].stderr == ""
    ports = _ports(neutron, vm_id)
    assert set(ports) == set(macs) and ports[macs[1]]["id"] == given["id"]

    # A vNIC hot-plugged from a profile that names only the network gets its own port.
    hot_mac = f"02:{secrets.token_hex(1)}:00:aa:bb:cc"
    device = (
        f'<interface type="bridge"><mac address="{hot_mac}"/><model type="virtio"/>'
        '<source bridge="Q_on_demand"/></interface>'
    ).encode()
    props = {"plugin": "openvswitch", "q_network_id": network["id"]}
    plugged = host.run("before_nic_hotplug", device, vm_id, **props)
    assert (plugged.failed, plugged.stderr) == (False, "")
    hot = _ports(neutron, vm_id)[hot_mac]
    assert f'dev="tap{hot["id"][:11]}"' in plugged.data_out.decode()
    unplugged = host.run("after_nic_hotunplug", plugged.data_out, vm_id, **props)
    assert (unplugged.failed, unplugged.stderr) == (False, "")
    assert hot_mac not in _ports(neutron, vm_id)

    stopped = host.vdsm.destroy_vm(started.domain_xml)
    assert (stopped.failed, stopped.stderr) == (False, "")
    # The port made on demand is gone; the one given by id stays, as the engine made it.
    assert list(_ports(neutron, vm_id)) == [macs[1]]
    neutron.api("DELETE", f"/v2.0/ports/{given['id']}")


def _with_port_id(domain: bytes, mac: str, port_id: str) -> bytes:
    """The domain with q_port_id added to one vNIC's properties: its port made explicit."""
    root = etree.fromstring(domain)
    (device,) = [d for d in root.iter(f"{OVIRT}device") if d.get("mac_address") == mac]
    etree.SubElement(device.find(f"{OVIRT}custom"), f"{OVIRT}q_port_id").text = port_id
    return etree.tostring(root)


def _nothing_of(neutron, host: Host, vm_id: str) -> None:
    assert _ports(neutron, vm_id) == {}
    ours = [
        n
        for n, row in hoststate.ovs_interfaces(host.ovs).items()
        if row["external_ids"].get("vm-uuid") == vm_id
    ]
    assert ours == []


def test_a_start_that_fails_after_making_the_ports_deletes_them(neutron, network, tmp_path):
    host = Host(tmp_path, neutron.ovs, AGENT_HOST)
    host.write_config(bridge="br-none")  # plugging fails once the ports are made
    domain, vm_id, _ = _vm(network["id"], 2)
    links = set(hoststate.links(neutron.ovs))
    with pytest.raises(HookFailed) as failed:
        host.vdsm.start_vm(domain)
    assert error_lines(failed.value.run.stderr) == [
        f"{ERROR_PREFIX}before_vm_start: integration bridge br-none does not exist in Open vSwitch"
    ]
    _nothing_of(neutron, host, vm_id)
    assert set(hoststate.links(neutron.ovs)) == links


def test_what_cannot_be_done_is_refused_in_one_line(neutron, network, tmp_path):
    host = Host(tmp_path, neutron.ovs, AGENT_HOST)
    domain, vm_id, (mac,) = _vm(network["id"])
    links = set(hoststate.links(neutron.ovs))

    # No settings: nothing is sent, nothing made.
    host.settings.unlink()
    with pytest.raises(HookFailed) as failed:
        host.vdsm.start_vm(domain)
    assert error_lines(failed.value.run.stderr) == [
        f"{ERROR_PREFIX}before_vm_start: ports on demand need [on_demand] settings: "
        f"{host.settings} does not exist"
    ]
    _nothing_of(neutron, host, vm_id)
    assert set(hoststate.links(neutron.ovs)) == links

    # The vNIC's port is on another network than its profile now says: not taken over.
    host = Host(tmp_path / "again", neutron.ovs, AGENT_HOST)
    started = host.vdsm.start_vm(domain)
    (port,) = _ports(neutron, vm_id).values()
    other = neutron.vlan_network("Q_other", PROJECT, 104)
    try:
        moved = domain.replace(network["id"].encode(), other["id"].encode())
        with pytest.raises(HookFailed) as failed:
            host.vdsm.run_point("before_vm_start", moved)
        assert error_lines(failed.value.run.stderr) == [
            f"{ERROR_PREFIX}before_vm_start: vNIC {mac} of VM {vm_id} already has port "
            f"{port['id']} on network {network['id']}, not on {other['id']}: "
            f"qhook port delete --vm {vm_id} --mac {mac} removes it"
        ]
        # Untouched (its status is the agent's to change meanwhile).
        kept = [
            (p["id"], p["network_id"], p["binding:host_id"])
            for p in _ports(neutron, vm_id).values()
        ]
        assert kept == [(port["id"], network["id"], AGENT_HOST)]
    finally:
        neutron.api("DELETE", f"/v2.0/networks/{other['id']}")

    # After a migration, a port deleted behind the hooks' back: said, not fatal.
    neutron.api("DELETE", f"/v2.0/ports/{port['id']}")
    arrived = host.run("after_vm_migrate_destination", started.domain_xml, vm_id)
    assert not arrived.failed
    assert arrived.stderr == (
        f"vdsm-hook-quantum: warning: after_vm_migrate_destination: vNIC {mac} not checked: "
        f"VM {vm_id} has no port for vNIC {mac}\n"
    )
    assert not host.vdsm.destroy_vm(started.domain_xml).failed
    _nothing_of(neutron, host, vm_id)


def test_quantum_down_or_mute_at_start_fails_cleanly(neutron, network, tmp_path):
    down = Host(tmp_path / "down", neutron.ovs, AGENT_HOST, url="http://127.0.0.1:1")
    domain, vm_id, _ = _vm(network["id"])
    links = set(hoststate.links(neutron.ovs))
    with pytest.raises(HookFailed) as failed:
        down.vdsm.start_vm(domain)
    assert error_lines(failed.value.run.stderr) == [
        f"{ERROR_PREFIX}before_vm_start: cannot reach Quantum at http://127.0.0.1:1: "
        "[Errno 111] Connection refused"
    ]
    _nothing_of(neutron, down, vm_id)
    assert set(hoststate.links(neutron.ovs)) == links

    # A server that takes the connection and never answers: the hook ends within its budget.
    mute = socket_in(neutron.ovs.name)
    mute.bind(("127.0.0.1", 0))
    mute.listen(16)
    try:
        slow = Host(
            tmp_path / "slow",
            neutron.ovs,
            AGENT_HOST,
            url=f"http://127.0.0.1:{mute.getsockname()[1]}",
        )
        slow.write_config(budget=2)
        began = time.monotonic()
        with pytest.raises(HookFailed) as failed:
            slow.vdsm.start_vm(domain)
        took = time.monotonic() - began
    finally:
        mute.close()
    (line,) = error_lines(failed.value.run.stderr)
    assert line.startswith(f"{ERROR_PREFIX}before_vm_start: Quantum at http://127.0.0.1:")
    assert re.search(r"gave no answer within (2|1\.9\d*) s$", line), line
    assert took < 2 + 5, took
    _nothing_of(neutron, slow, vm_id)


def test_quantum_down_at_destroy_unplugs_and_cleanup_deletes_the_orphan(neutron, network, tmp_path):
    host = Host(tmp_path / "up", neutron.ovs, AGENT_HOST)
    down = Host(tmp_path / "down", neutron.ovs, AGENT_HOST, url="http://127.0.0.1:1")
    domain, vm_id, (mac,) = _vm(network["id"])
    started = host.vdsm.start_vm(domain)
    port = _ports(neutron, vm_id)[mac]
    tap = "tap" + port["id"][:11]
    running, running_id, _ = _vm(network["id"])
    other = host.vdsm.start_vm(running)  # a VM that keeps running here

    stopped = down.vdsm.destroy_vm(started.domain_xml)
    assert not stopped.failed
    (warning,) = stopped.stderr.splitlines()
    assert warning.startswith(
        f"vdsm-hook-quantum: warning: after_vm_destroy: the ports of vNIC {mac} stay in Quantum "
        "(cannot reach Quantum at http://127.0.0.1:1"
    ), warning
    assert warning.endswith("qhook cleanup --quantum deletes them later")
    assert tap not in hoststate.ovs_interfaces(neutron.ovs) and tap not in hoststate.links(
        neutron.ovs
    )
    assert _ports(neutron, vm_id)[mac]["id"] == port["id"]  # the orphan

    (running_port,) = _ports(neutron, running_id).values()
    with holding_tap(neutron.ovs.netns_exec, "tap" + running_port["id"][:11]):
        dry = qhook_on_host(
            neutron.ovs.netns_exec, host.config, "cleanup", "--quantum", "--grace", "0", "--dry-run"
        )
        assert dry.returncode == 0, dry.stderr
        assert f"would delete Quantum port {port['id']}" in dry.stdout
        assert _ports(neutron, vm_id)
        done = qhook_on_host(
            neutron.ovs.netns_exec, host.config, "cleanup", "--quantum", "--grace", "0"
        )
        assert done.returncode == 0, done.stderr
        assert (
            f"deleted Quantum port {port['id']} (VM {vm_id} has nothing plugged on {AGENT_HOST})"
            in done.stdout
        )
        assert _ports(neutron, vm_id) == {}
        assert len(_ports(neutron, running_id)) == 1  # the running VM's port stays
    assert not host.vdsm.destroy_vm(other.domain_xml).failed
    assert _ports(neutron, running_id) == {}


def test_migration_moves_the_binding_and_a_failed_one_gives_it_back(
    neutron, network, host_b, tmp_path
):
    source = Host(tmp_path / "a", neutron.ovs, AGENT_HOST)
    destination = Host(tmp_path / "b", host_b.ovs, HOST_B)
    domain, vm_id, (mac,) = _vm(network["id"])
    started = source.vdsm.start_vm(domain)
    port = _ports(neutron, vm_id)[mac]
    tap = "tap" + port["id"][:11]
    assert port["binding:host_id"] == AGENT_HOST

    # The destination's own hook fails (it cannot plug): the binding goes back to the
    # source at once, and the migration does not start.
    destination.write_config(bridge="br-none")
    with pytest.raises(HookFailed):
        destination.run("before_vm_migrate_destination", started.domain_xml, vm_id)
    assert _ports(neutron, vm_id)[mac]["binding:host_id"] == AGENT_HOST
    assert list(destination.state.glob("migrating-*")) == []
    destination.write_config()

    # A migration that fails: the destination gives the port back when the VM is gone there.
    incoming = destination.run("before_vm_migrate_destination", started.domain_xml, vm_id)
    assert (incoming.failed, incoming.stderr) == (False, "")
    moved = _ports(neutron, vm_id)[mac]
    assert (moved["binding:host_id"], moved["binding:vif_type"]) == (HOST_B, "ovs")
    assert _tag(host_b.ovs, tap) not in ("[]", "4095")  # wired by agent B before QEMU came
    note = json.loads((destination.state / f"migrating-{vm_id}.json").read_text())
    assert note == {port["id"]: AGENT_HOST}  # where the port goes back if this fails
    failed = destination.run("after_vm_destroy", started.domain_xml, vm_id)
    assert not failed.failed
    assert "the VM's migration here did not complete" in failed.stderr
    assert _ports(neutron, vm_id)[mac]["binding:host_id"] == AGENT_HOST
    assert tap not in hoststate.links(host_b.ovs)
    assert list(destination.state.glob("migrating-*")) == []

    # A migration that completes: the port ends bound to the destination, where it stays
    # when the source destroys its side.
    incoming = destination.run("before_vm_migrate_destination", started.domain_xml, vm_id)
    assert (incoming.failed, incoming.stderr) == (False, "")
    arrived = destination.run("after_vm_migrate_destination", started.domain_xml, vm_id)
    assert (arrived.failed, arrived.stderr) == (False, "")
    assert list(destination.state.glob("migrating-*")) == []
    left = source.run("after_vm_destroy", started.domain_xml, vm_id)
    assert not left.failed
    assert f"port {port['id']} of vNIC {mac} left to {HOST_B}, where the VM runs now" in left.stderr
    assert tap not in hoststate.links(neutron.ovs)
    assert _ports(neutron, vm_id)[mac]["binding:host_id"] == HOST_B
    _wait_for(
        "Neutron never reported the port ACTIVE on host B",
        lambda: _ports(neutron, vm_id)[mac]["status"] == "ACTIVE",
    )

    stopped = destination.run("after_vm_destroy", started.domain_xml, vm_id)
    assert (stopped.failed, stopped.stderr) == (False, "")
    assert _ports(neutron, vm_id) == {}


class _HideBinding(http.server.BaseHTTPRequestHandler):
    """Relays to the real API, but its list of extensions lacks port binding."""

    def _relay(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        status, _, answer = unix_http(self.server.api_sock, self.command, self.path, body)
        if self.path.split("?")[0] == "/v2.0/extensions" and status == 200:
            answer["extensions"] = [e for e in answer["extensions"] if e["alias"] != "binding"]
        elif self.path.startswith("/v2.0/extensions/binding"):
            message = "Extension with alias binding does not exist"
            status, answer = 404, {"NeutronError": {"type": "HTTPNotFound", "message": message}}
        data = b"" if answer is None else json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = _relay

    def log_message(self, *args) -> None:
        pass


@contextlib.contextmanager
def _without_binding(neutron) -> Iterator[str]:
    """The real API, minus the binding extension, at a 127.0.0.1 URL of the stack's netns."""
    listener = socket_in(neutron.ovs.name)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HideBinding, False)
    server.socket.close()
    server.socket = listener
    server.api_sock = neutron.dir / "api.sock"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_binding_is_learnt_from_what_the_server_answers(neutron, network, tmp_path):
    """The extension list is not the only word: a server that does not list `binding`
    (the real API, the extension hidden) but answers a port bound as asked does bind, and
    the host treats it so (no warning; the stop deletes the port). A server that ignores
    binding:host_id is ovirt-provider-ovn's default (tests/test_provider.py)."""
    domain, vm_id, (mac,) = _vm(network["id"])
    with _without_binding(neutron) as url:
        host = Host(tmp_path, neutron.ovs, AGENT_HOST, url=url)
        host.write_config(wait=False)
        started = host.vdsm.start_vm(domain)
        assert started.runs[-1].stderr == ""
        port = _ports(neutron, vm_id)[mac]
        assert port["binding:host_id"] == AGENT_HOST and port["name"].startswith("qhook-on-")
        tap = "tap" + port["id"][:11]
        assert hoststate.ovs_interfaces(neutron.ovs)[tap]["external_ids"]["iface-id"] == port["id"]

        stopped = host.vdsm.destroy_vm(started.domain_xml)
        assert (stopped.failed, stopped.stderr) == (False, "")
        assert tap not in hoststate.ovs_interfaces(neutron.ovs)
        assert _ports(neutron, vm_id) == {}


def test_vdsms_events_decide_what_becomes_of_the_ports(neutron, network, tmp_path):
    """Suspended (after_vm_hibernate): the release that follows keeps the port, and the
    resume finds it. Migrated away (after_vm_migrate_source): the source's release leaves
    it, bound where it was. Started afresh (after_vm_start): an older suspension no longer
    keeps anything, and the stop deletes it."""
    host = Host(tmp_path, neutron.ovs, AGENT_HOST)
    host.write_config(wait=False)
    domain, vm_id, (mac,) = _vm(network["id"])
    started = host.vdsm.start_vm(domain)
    port = _ports(neutron, vm_id)[mac]

    hibernated = host.vdsm.hibernate_vm(started.domain_xml)
    assert [run.failed for run in hibernated] == [False, False, False]
    assert f"port {port['id']} of vNIC {mac} kept: VM {vm_id} is suspended" in hibernated[2].stderr
    assert _ports(neutron, vm_id)[mac]["id"] == port["id"]
    resumed = host.vdsm.restore_vm(domain, started.domain_xml, from_snapshot=False)
    assert not any(run.failed for run in resumed), [run.stderr for run in resumed]
    assert _ports(neutron, vm_id)[mac]["id"] == port["id"]

    away = host.vdsm.migrate_away(started.domain_xml)
    assert f"port {port['id']} of vNIC {mac} left to the host VM {vm_id}" in away[-1].stderr
    assert _ports(neutron, vm_id)[mac]["binding:host_id"] == AGENT_HOST

    # It comes back later and is started afresh: then a stop is a stop.
    host.vdsm.hibernate_vm(host.vdsm.start_vm(domain).domain_xml)
    again = host.vdsm.start_vm(domain)
    started_afresh = host.vdsm.run_point("after_vm_start", again.domain_xml, vm_id=vm_id)
    assert (started_afresh.failed, started_afresh.stderr) == (False, "")
    stopped = host.vdsm.destroy_vm(again.domain_xml)
    assert (stopped.failed, stopped.stderr) == (False, "")
    assert _ports(neutron, vm_id) == {}


def test_through_sudo_as_vdsm_with_settings_only_root_can_read(neutron, network, tmp_path):
    settings = tmp_path / "quantum-api.conf"
    settings.write_text(f"[quantum]\nurl = {API}\nproject_id = {PROJECT}\n")
    os.chmod(settings, 0o600)
    host = f"agent_host = {AGENT_HOST}\nstate_dir = {tmp_path}/state\n"
    with installed_host(
        neutron.ovs.connection, host, f"[on_demand]\nsettings = {settings}\n"
    ) as installed:
        vdsm = emulator_as_vdsm(installed, neutron.ovs.netns_exec)
        peek = subprocess.run(
            ["runuser", "-u", "vdsm", "--", "cat", str(settings)], capture_output=True, check=False
        )
        assert peek.returncode != 0 and peek.stdout == b""  # the hooks never see it

        domain, vm_id, (mac,) = _vm(network["id"])
        started = vdsm.start_vm(domain, data_dir=str(installed.data))
        assert started.runs[-1].stderr == ""
        port = _ports(neutron, vm_id)[mac]
        assert port["binding:host_id"] == AGENT_HOST
        assert "tap" + port["id"][:11] in hoststate.links(neutron.ovs)
        stopped = vdsm.destroy_vm(started.domain_xml, data_dir=str(installed.data))
        assert (stopped.failed, stopped.stderr) == (False, "")
        assert _ports(neutron, vm_id) == {}

        os.chmod(settings, 0o644)
        with pytest.raises(HookFailed) as failed:
            vdsm.start_vm(domain, data_dir=str(installed.data))
        assert error_lines(failed.value.run.stderr) == [
            f"{ERROR_PREFIX}before_vm_start: ports on demand need [on_demand] settings: "
            f"{settings} holds credentials but others can read it: "
            f"chown root:root {settings} && chmod 0600 {settings}"
        ]
        assert _ports(neutron, vm_id) == {}
