# SPDX-License-Identifier: GPL-2.0-or-later
"""Ports on demand on oVirt's own provider, ovirt-provider-ovn (a real peer kept in
../shared/peers: skipped, in one line, where it is not), over a real OVN whose
ovn-controller wires the hooks' taps, in both of its ovs-version-2.9 settings: false
(the shipped default: binding:host_id is ignored) and true (it becomes OVN's
requested-chassis and is answered back). The host and the engine side log in to its
Keystone v2.0 stand-in, as oVirt's engine does."""

import os
import secrets
import time
import uuid

import hoststate
import pytest
from domains import quantum_vm, to_bytes
from provider_stack import ProviderStack, require_provider

from qhook.lab.sandbox import OvnSandbox, OvsSandbox
from qhook.lab.vdsm_emulator import HookFailed, VdsmEmulator
from tools import (
    ERROR_PREFIX,
    HOOKS_DIR,
    error_lines,
    hook_env,
    qhook_command,
    qhook_on_host,
    without_openrc,
)

CHASSIS_HOST = "qhook-host-node"  # the OVN sandbox's external_ids:hostname


@pytest.fixture(scope="module", params=[False, True], ids=["ignores-host", "binds-host"])
def provider(request, tmp_path_factory):
    """An OVN host and the provider over its northbound database; the hooks' settings."""
    require_provider()
    work = tmp_path_factory.mktemp("provider")
    ovs = OvsSandbox(work / "ovs", f"qhook-prov-{os.getpid()}-{secrets.token_hex(3)}").start()
    ovn = stack = None
    try:
        ovn = OvnSandbox(ovs).start()
        stack = ProviderStack(work / "provider", ovn, binds_host=request.param).start()
        network = stack.api("POST", "/v2.0/networks", {"network": {"name": "Q_web"}})["network"]
        settings = work / "quantum-api.conf"
        settings.write_text(
            "[quantum]\nauth = keystone\n"
            f"auth_url = {stack.auth_url}\nusername = admin@internal\npassword = secret\n"
            "project_name = tenant\ntimeout = 10\n"
        )
        settings.chmod(0o600)
        config = work / "quantum.conf"
        config.write_text(
            f"[ovs]\nconnection = {ovs.connection}\ntimeout = 5\n"
            "[wiring]\ntimeout = 20\non_timeout = fail\n"
            f"[host]\nstate_dir = {work}/state\n"
            f"[on_demand]\nsettings = {settings}\ntimeout = 20\n"
        )
        vdsm = VdsmEmulator(
            HOOKS_DIR, hook_env({"QHOOK_CONFIG": str(config)}), wrapper=ovs.netns_exec
        )
        yield stack, network, ovs, vdsm, config
    finally:
        if stack is not None:
            stack.stop()
        if ovn is not None:
            ovn.stop()
        ovs.stop()


def _vm(network_id, plugins=("ovn",)):
    """A VM whose vNICs name only the network (ports on demand), MACs of its own."""
    vm_id = str(uuid.uuid4())
    vnics = [{"plugin": plugin, "q_network_id": network_id} for plugin in plugins]
    domain = to_bytes(quantum_vm(vnics, vm_uuid=vm_id))
    macs = []
    for index in range(len(plugins)):
        mac = f"02:{secrets.token_hex(1)}:{secrets.token_hex(1)}:{index:02x}:00:01"
        domain = domain.replace(f"02:00:00:00:{index + 1:02x}:01".encode(), mac.encode())
        macs.append(mac)
    return domain, vm_id, macs


def _ports(stack, vm_id):
    found = stack.api("GET", f"/v2.0/ports?device_id={vm_id}")["ports"]
    return {port["mac_address"]: port for port in found}


def _clean(runs):
    for run in runs if isinstance(runs, list) else [runs]:
        assert (run.failed, error_lines(run.stderr)) == (False, []), (run.point, run.stderr)


def test_ports_on_demand_come_and_go_with_the_vm_and_never_leak(provider):
    stack, network, ovs, vdsm, _ = provider
    domain, vm_id, (mac,) = _vm(network["id"])
    for _ in range(3):  # every start makes the port, every stop deletes it
        started = vdsm.start_vm(domain)
        _clean(started.runs)
        (port,) = _ports(stack, vm_id).values()
        assert port["mac_address"] == mac and port["network_id"] == network["id"]
        tap = "tap" + port["id"][:11]
        ids = hoststate.ovs_interfaces(ovs)[tap]["external_ids"]
        assert ids["iface-id"] == port["id"] and ids["ovn-installed"] == "true"
        if stack.binds_host:  # honoured, and answered back: bound to this chassis
            assert port["binding:host_id"] == CHASSIS_HOST
        else:
            assert "binding:host_id" not in port
        _clean(vdsm.destroy_vm(started.domain_xml))
        assert _ports(stack, vm_id) == {}
        assert tap not in hoststate.links(ovs) and tap not in hoststate.ovs_interfaces(ovs)


def test_a_suspended_vm_keeps_its_ports_and_finds_them_again(provider):
    stack, network, ovs, vdsm, _ = provider
    domain, vm_id, _ = _vm(network["id"])
    started = vdsm.start_vm(domain)
    _clean(started.runs)
    (port,) = _ports(stack, vm_id).values()
    hibernated = vdsm.hibernate_vm(started.domain_xml)
    _clean(hibernated[:2])
    assert "kept: VM" in hibernated[2].stderr and "is suspended" in hibernated[2].stderr
    assert [p["id"] for p in _ports(stack, vm_id).values()] == [port["id"]]
    tap = "tap" + port["id"][:11]
    assert tap not in hoststate.links(ovs)  # no QEMU: no tap

    # Resumed: the saved XML names the tap of the same port, plugged before the restore.
    restored = vdsm.restore_vm(domain, started.domain_xml, from_snapshot=False)
    _clean(restored)
    assert [p["id"] for p in _ports(stack, vm_id).values()] == [port["id"]]
    assert hoststate.ovs_interfaces(ovs)[tap]["external_ids"]["ovn-installed"] == "true"
    _clean(vdsm.destroy_vm(started.domain_xml))  # back, then stopped: the port goes
    assert _ports(stack, vm_id) == {}


def test_a_snapshot_restored_after_a_stop_gets_a_new_port_under_its_saved_tap(provider):
    """The stop deleted the port; the restore makes a new one. Open vSwitch and OVN find
    a port by its ids, so the saved tap name carries the new port; the Linux bridge agent
    finds it by name, so that vNIC cannot come back, and the restore says why."""
    stack, network, ovs, vdsm, config = provider
    domain, vm_id, _ = _vm(network["id"])
    started = vdsm.start_vm(domain)
    _clean(started.runs)
    (old,) = _ports(stack, vm_id).values()
    saved_tap = "tap" + old["id"][:11]
    _clean(vdsm.destroy_vm(started.domain_xml))  # stopped normally after the snapshot
    assert _ports(stack, vm_id) == {}

    restored = vdsm.restore_vm(domain, started.domain_xml, from_snapshot=True)
    _clean(restored)
    (new,) = _ports(stack, vm_id).values()
    assert new["id"] != old["id"]
    rows = hoststate.ovs_interfaces(ovs)
    assert rows[saved_tap]["external_ids"]["iface-id"] == new["id"]
    assert rows[saved_tap]["external_ids"]["ovn-installed"] == "true"
    assert "tap" + new["id"][:11] not in rows  # before_vm_start's, on this path: gone
    _clean(vdsm.destroy_vm(started.domain_xml))
    assert _ports(stack, vm_id) == {}

    # No Linux bridge agent runs here: this VM's hooks do not wait for one.
    nowait = config.parent / "nowait.conf"
    nowait.write_text(config.read_text().replace("[wiring]\n", "[wiring]\nwait = no\n"))
    lb_vdsm = VdsmEmulator(
        HOOKS_DIR, hook_env({"QHOOK_CONFIG": str(nowait)}), wrapper=ovs.netns_exec
    )
    lb_domain, lb_vm, _ = _vm(network["id"], plugins=("linuxbridge",))
    lb_started = lb_vdsm.start_vm(lb_domain)
    _clean(lb_started.runs)
    _clean(lb_vdsm.destroy_vm(lb_started.domain_xml))
    with pytest.raises(HookFailed) as refused:
        lb_vdsm.restore_vm(lb_domain, lb_started.domain_xml, from_snapshot=True)
    (line,) = error_lines(refused.value.run.stderr)
    assert line.startswith(f"{ERROR_PREFIX}before_vm_dehibernate: vNIC ")
    assert "cannot restore: the saved VM names tap" in line
    assert "the Linux bridge agent finds a tap by its port's id" in line
    _clean(lb_vdsm.destroy_vm(lb_started.domain_xml))  # VDSM releases the VM: nothing stays
    assert _ports(stack, lb_vm) == {}


def test_a_vm_that_migrated_away_leaves_its_ports_to_its_new_host(provider):
    stack, network, ovs, vdsm, _ = provider
    domain, vm_id, _ = _vm(network["id"])
    started = vdsm.start_vm(domain)
    _clean(started.runs)
    (port,) = _ports(stack, vm_id).values()
    runs = vdsm.migrate_away(started.domain_xml)
    _clean(runs[:-1])
    assert "left to the host VM" in runs[-1].stderr
    assert [p["id"] for p in _ports(stack, vm_id).values()] == [port["id"]]
    assert "tap" + port["id"][:11] not in hoststate.links(ovs)
    stack.api("DELETE", f"/v2.0/ports/{port['id']}")  # the new host's to delete


def test_cleanup_keeps_a_suspended_vms_ports_until_keep_suspended(provider):
    stack, network, ovs, vdsm, config = provider
    if not stack.binds_host:
        pytest.skip("cleanup --quantum judges ports bound to this host: with binding only")
    domain, vm_id, _ = _vm(network["id"])
    started = vdsm.start_vm(domain)
    _clean(started.runs)
    (port,) = _ports(stack, vm_id).values()
    vdsm.hibernate_vm(started.domain_xml)
    kept = qhook_on_host(ovs.netns_exec, config, "cleanup", "--quantum", "--grace", "0")
    assert kept.returncode == 0, kept.stderr
    assert f"port {port['id']} of suspended VM {vm_id} kept" in kept.stderr
    assert [p["id"] for p in _ports(stack, vm_id).values()] == [port["id"]]
    expiring = config.parent / "expiring.conf"
    expiring.write_text(config.read_text() + "keep_suspended = 0\n")
    gone = qhook_on_host(ovs.netns_exec, expiring, "cleanup", "--quantum", "--grace", "0")
    assert gone.returncode == 0, gone.stderr
    assert f"deleted Quantum port {port['id']}" in gone.stdout
    assert _ports(stack, vm_id) == {}


def test_the_engine_side_logs_in_with_keystone_v2(provider):
    stack, network, *_ = provider
    env = without_openrc(
        **hook_env(),
        OS_AUTH_URL=stack.auth_url,
        OS_USERNAME="admin@internal",
        OS_PASSWORD="secret",
        OS_PROJECT_NAME="tenant",
    )
    listed = qhook_command(env, "network", "list", "--json", "--debug")
    assert listed.returncode == 0, listed.stderr
    assert network["id"] in listed.stdout
    assert f"{stack.auth_url}/tokens" in listed.stderr  # --debug shows each request
    env["OS_IDENTITY_API_VERSION"] = "3"  # asked for v3: the stand-in has none
    refused = qhook_command(env, "network", "list")
    assert refused.returncode == 1 and "404" in refused.stderr


def test_keystone_v2_tokens_are_renewed_before_they_expire(provider, tmp_path):
    """Its stand-in's tokens made to last 4 s: the client takes a new one before the old
    one runs out, as with Keystone v3."""
    from qhook.quantum.connect import connect
    from qhook.quantum.keystone import KeystonePasswordV2
    from qhook.quantum.settings import load_quantum_settings

    stack = provider[0]
    short = ProviderStack(tmp_path / "short", stack.ovn, stack.binds_host, token_seconds=4)
    short.start()
    try:
        env = {
            "OS_AUTH_URL": short.auth_url,
            "OS_USERNAME": "admin@internal",
            "OS_PASSWORD": "secret",
            "OS_PROJECT_NAME": "tenant",
        }
        settings, _ = load_quantum_settings(env)
        with connect(settings) as client:
            assert isinstance(client.auth, KeystonePasswordV2)
            list(client.list("networks"))
            assert client.auth.issued_count == 1
            list(client.list("networks"))
            assert client.auth.issued_count == 1  # still fresh: no new one
            time.sleep(4.5)
            list(client.list("networks"))
            # Renewed (its stand-in hands out the same id each time: the count tells).
            assert client.auth.issued_count == 2
    finally:
        short.stop()


def test_engine_sync_with_the_provider_as_quantum(provider, tmp_path):
    """qhook engine sync with ovirt-provider-ovn as Quantum (Keystone v2.0, the engine's
    user): a Q_ logical network becomes a provider network with its MTU and a profile for
    ports on demand, a rename and an MTU change are followed, and it goes with its
    logical network. The provider keeps no description or tags: the sync's records do."""
    from engine_standin import EngineStandin, self_signed

    pytest.importorskip("ovirtsdk4", reason="the oVirt engine SDK (ovirt-engine-sdk-python)")
    stack = provider[0]
    cert, key = self_signed(tmp_path)
    engine = EngineStandin(password="engine-secret", tls=(cert, key)).start()
    try:
        data_center = engine.add_data_center("Default")
        engine.define_custom_properties(("plugin", "q_network_id", "mtu"))
        conf = tmp_path / "engine.conf"
        conf.write_text(
            f"[quantum]\nauth = keystone\nauth_url = {stack.auth_url}\n"
            "username = admin@internal\npassword = secret\nproject_name = tenant\ntimeout = 10\n"
            f"[ovirt]\nurl = {engine.url}\nusername = admin@internal\npassword = engine-secret\n"
            f"ca_file = {cert}\nstate_file = {tmp_path}/records.json\ntimeout = 10\n"
        )
        conf.chmod(0o600)
        env = without_openrc(QHOOK_CONFIG=str(conf))

        def sync():
            result = qhook_command(env, "engine", "sync")
            assert result.returncode == 0 and error_lines(result.stderr) == [], result.stderr
            return result.stdout

        def named(name):
            found = stack.api("GET", "/v2.0/networks")["networks"]
            return [n for n in found if n["name"] == name]

        name = f"Q_synced-{secrets.token_hex(3)}"
        logical = engine.add_network(name, data_center, mtu=1400)
        sync()
        (network,) = named(name)
        assert network["mtu"] == 1400
        (profile,) = engine.profiles(logical)
        assert profile["custom_properties"] == {
            "plugin": "ovn",
            "q_network_id": network["id"],
            "mtu": "1400",
        }
        renamed = name + "-2"
        engine.update_network(logical, name=renamed, mtu=1300)
        sync()
        assert [(n["id"], n["mtu"]) for n in named(renamed)] == [(network["id"], 1300)]
        engine.remove_network(logical)
        said = sync()
        assert f"deleted Quantum network {renamed} {network['id']}" in said
        assert named(renamed) == []
    finally:
        engine.stop()
