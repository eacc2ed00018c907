# SPDX-License-Identifier: GPL-2.0-or-later
"""The guest boots onto a wired port: the hooks wait for the agent, event-driven and
bounded. OVN's ovn-controller is the real agent here, in its own sandbox."""

import os
import secrets
import threading
import time

import hoststate
import pytest
from domains import openstacknet_properties, quantum_vm, seed_properties, to_bytes

from qhook.lab.vdsm_emulator import HookFailed, VdsmEmulator
from tools import ERROR_PREFIX, HOOKS_DIR, error_lines, hook_env

OVIRT = "{http://ovirt.org/vm/1.0}"


def _vdsm(ovs, tmp_path, **wiring):
    config = tmp_path / "quantum.conf"
    settings = "".join(f"{key} = {value}\n" for key, value in wiring.items())
    config.write_text(
        f"[ovs]\nconnection = {ovs.connection}\ntimeout = 5\nhybrid_plug = no\n[wiring]\n{settings}"
    )
    return VdsmEmulator(HOOKS_DIR, hook_env({"QHOOK_CONFIG": str(config)}), wrapper=ovs.netns_exec)


def _ports(domain):
    """(tap name, port id, MAC) of each Quantum vNIC of a domain built by quantum_vm()."""
    found = []
    for device in domain.iter(OVIRT + "device"):
        custom = device.find(OVIRT + "custom")
        if custom is None or device.get("mac_address") is None:
            continue  # a disk, or a vNIC without properties
        port = custom.find(OVIRT + "q_port_id")
        port = port if port is not None else custom.find(OVIRT + "vnic_id")
        found.append(("tap" + port.text[:11], port.text, device.get("mac_address")))
    return found


def _logical_ports(ovn, domain):
    for _, port, mac in _ports(domain):
        ovn.nbctl("lsp-add", "tenant", port, "--", "lsp-set-addresses", port, mac)


def _start_while(vdsm, domain, seconds, action):
    """Start the VM while `action` (an agent's work) runs `seconds` later; the start and
    how long it took."""
    timer = threading.Timer(seconds, action)
    timer.start()
    began = time.monotonic()
    try:
        started = vdsm.start_vm(to_bytes(domain))
    finally:
        timer.join()
    return started, time.monotonic() - began


@pytest.mark.parametrize("count", [1, 4])
def test_start_returns_once_ovn_has_installed_every_port(count, ovn_host, tmp_path):
    ovs, ovn = ovn_host
    vnics = [
        seed_properties("ovn")
        if i % 2
        else openstacknet_properties("OVIRT_PROVIDER_OVN", provider="EXTERNAL_NETWORK")
        for i in range(count)
    ]
    domain = quantum_vm(vnics)
    vdsm = _vdsm(ovs, tmp_path, timeout=20)
    # The logical ports appear only 1.5 s after the start begins: the hook must wait.
    started, took = _start_while(vdsm, domain, 1.5, lambda: _logical_ports(ovn, domain))
    assert 1.5 <= took < 15, took
    assert not any(run.stderr for run in started.runs), [r.stderr for r in started.runs]
    rows = hoststate.ovs_interfaces(ovs)
    for name, _, _ in _ports(domain):
        assert rows[name]["external_ids"].get("ovn-installed") == "true", rows[name]
    deadline = time.monotonic() + 10
    while not all(
        ovn.nbctl("get", "Logical_Switch_Port", p, "up").strip() == "true"
        for _, p, _ in _ports(domain)
    ):
        assert time.monotonic() < deadline, "the NB ports did not turn up"
        time.sleep(0.1)
    assert not vdsm.destroy_vm(started.domain_xml).failed
    for _, port, _ in _ports(domain):
        ovn.nbctl("lsp-del", port)


def test_an_unwired_port_starts_anyway_with_a_warning(ovn_host, tmp_path):
    ovs, _ = ovn_host
    domain = quantum_vm([seed_properties("ovn")])  # no logical switch port: never wired
    ((tap, _, _),) = _ports(domain)
    vdsm = _vdsm(ovs, tmp_path, timeout=1)
    began = time.monotonic()
    started = vdsm.start_vm(to_bytes(domain))
    assert 1 <= time.monotonic() - began < 6
    assert started.runs[-1].stderr == (
        f"{ERROR_PREFIX}warning: before_vm_start: the agent has not wired {tap} within 1 s; "
        "starting anyway ([wiring] on_timeout = start)\n"
    )
    assert tap in hoststate.links(ovs)
    assert not vdsm.destroy_vm(started.domain_xml).failed


def test_an_unwired_port_fails_the_start_and_unplugs_when_asked(ovn_host, tmp_path):
    ovs, _ = ovn_host
    domain = quantum_vm([seed_properties("ovn"), seed_properties("linuxbridge")])
    taps = sorted(name for name, _, _ in _ports(domain))
    vdsm = _vdsm(ovs, tmp_path, timeout=1, on_timeout="fail")
    with pytest.raises(HookFailed) as failed:
        vdsm.start_vm(to_bytes(domain))
    assert error_lines(failed.value.run.stderr) == [
        f"{ERROR_PREFIX}before_vm_start: the agent did not wire {', '.join(taps)} within 1 s "
        "([wiring] on_timeout = fail): unplugged"
    ]
    assert not set(taps) & (set(hoststate.links(ovs)) | set(hoststate.ovs_interfaces(ovs)))


def test_no_wait_when_turned_off(ovn_host, tmp_path):
    ovs, _ = ovn_host
    domain = quantum_vm([seed_properties("ovn")])
    vdsm = _vdsm(ovs, tmp_path, wait="no", timeout=30)
    began = time.monotonic()
    started = vdsm.start_vm(to_bytes(domain))
    assert time.monotonic() - began < 5 and started.runs[-1].stderr == ""
    assert not vdsm.destroy_vm(started.domain_xml).failed


def test_linux_bridge_ports_are_wired_when_the_tap_gets_a_master(ovn_host, tmp_path):
    """What the Linux bridge agent does (brq + network id, the tap enslaved), by hand."""
    ovs, _ = ovn_host
    domain = quantum_vm([seed_properties("linuxbridge")])
    ((tap, _, _),) = _ports(domain)
    bridge = "brq" + secrets.token_hex(5)[:11]
    ovs.in_netns("ip", "link", "add", bridge, "type", "bridge")
    vdsm = _vdsm(ovs, tmp_path, timeout=20)

    def enslave():
        deadline = time.monotonic() + 10
        while tap not in hoststate.links(ovs) and time.monotonic() < deadline:
            time.sleep(0.05)
        ovs.in_netns("ip", "link", "set", tap, "master", bridge)

    started, took = _start_while(vdsm, domain, 1.0, enslave)
    assert 1.0 <= took < 15
    assert started.runs[-1].stderr == ""
    assert hoststate.links(ovs)[tap].get("master") == bridge
    assert not vdsm.destroy_vm(started.domain_xml).failed
    ovs.in_netns("ip", "link", "delete", bridge)


def test_the_ovs_agent_condition_is_its_tag_and_net_uuid(ovn_host, tmp_path):
    """What the Neutron OVS agent writes when it has wired a port (a stand-in here; the
    agent itself is not run by this test): a local VLAN tag other than 4095, and
    other_config net_uuid. A dead-VLAN tag alone does not count."""
    ovs, _ = ovn_host
    domain = quantum_vm([seed_properties("openvswitch")])
    ((tap, _, _),) = _ports(domain)
    vdsm = _vdsm(ovs, tmp_path, timeout=20)

    def agent():
        deadline = time.monotonic() + 10
        while tap not in hoststate.ovs_interfaces(ovs) and time.monotonic() < deadline:
            time.sleep(0.05)
        ovs.vsctl("set", "Port", tap, "tag=4095")
        time.sleep(0.5)
        ovs.vsctl(
            "set",
            "Port",
            tap,
            "tag=7",
            "other_config:net_uuid=n1",
            "other_config:network_type=vxlan",
            "other_config:segmentation_id=101",
        )

    started, took = _start_while(vdsm, domain, 0.5, agent)
    assert 1.0 <= took < 15
    assert started.runs[-1].stderr == ""
    assert ovs.vsctl("get", "Port", tap, "tag").strip() == "7"
    assert not vdsm.destroy_vm(started.domain_xml).failed


def _caps(ovs, tmp_path, config_text, data=b'{"kvmEnabled": "true", "cpuCores": "2"}'):
    config = tmp_path / "caps.conf"
    config.write_text(config_text)
    caps = tmp_path / "caps.json"
    caps.write_bytes(data)
    env = hook_env({"QHOOK_CONFIG": str(config), "_hook_json": str(caps)})
    import subprocess

    done = subprocess.run(
        [*ovs.netns_exec, str(HOOKS_DIR / "after_get_caps" / "50_quantum")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done, caps.read_bytes()


def test_caps_report_the_plugins_usable_here_and_the_agents_host_id(ovn_host, ovs, tmp_path):
    import json

    ovn_ovs, _ = ovn_host
    done, data = _caps(ovn_ovs, tmp_path, f"[ovs]\nconnection = {ovn_ovs.connection}\n")
    assert (done.returncode, done.stderr) == (0, "")
    caps = json.loads(data)
    assert caps["kvmEnabled"] == "true" and caps["cpuCores"] == "2"  # VDSM's own, kept
    ours = caps["vdsm_hook_quantum"]
    netfilter = os.path.exists("/proc/sys/net/bridge/bridge-nf-call-iptables")  # br_netfilter
    hybrid = ["openvswitch_hybrid"] if netfilter else []
    assert ours["plugins"] == ["linuxbridge", "openvswitch", *hybrid, "ovn"]
    assert ours["bridge_netfilter"] is netfilter
    assert ours["ovs_plugging"] == "straight" and ours["hybrid_plug"] == "auto"
    # Ports are bound to the chassis's hostname; the chassis itself is named by system-id.
    assert (ours["host_id"], ours["ovn_chassis"]) == ("qhook-host-node", "qhook-host")
    assert ours["ovs_reachable"] and ours["bridge_present"] and ours["error"] is None
    # A host without OVN and another integration bridge name: fewer plugins.
    done, data = _caps(
        ovs, tmp_path, f"[ovs]\nconnection = {ovs.connection}\nintegration_bridge = br-none\n"
    )
    ours = json.loads(data)["vdsm_hook_quantum"]
    assert ours["plugins"] == ["linuxbridge"] and ours["bridge_present"] is False


def test_caps_never_fail_get_caps(ovs, tmp_path):
    import json

    done, data = _caps(ovs, tmp_path, f"[ovs]\nconnection = unix:{tmp_path}/down.sock\n")
    assert (done.returncode, done.stderr) == (0, "")
    ours = json.loads(data)["vdsm_hook_quantum"]
    assert ours["ovs_reachable"] is False and ours["plugins"] == ["linuxbridge"]
    assert ours["error"].startswith(f"cannot reach Open vSwitch at unix:{tmp_path}/down.sock")
    done, data = _caps(ovs, tmp_path, "[ovs]\nplug = maybe\n")
    assert done.returncode == 0 and "is invalid" in json.loads(data)["vdsm_hook_quantum"]["error"]
    done, data = _caps(ovs, tmp_path, "", data=b"not json")
    assert done.returncode == 0 and data == b"not json"
    assert done.stderr.startswith("vdsm-hook-quantum: warning: after_get_caps: capabilities left")
