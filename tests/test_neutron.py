# SPDX-License-Identifier: GPL-2.0-or-later
"""With the real Neutron Open vSwitch agent: a port bound to the agent's host, plugged by
the hooks; the start returns once the agent has tagged it, and Neutron says ACTIVE."""

import time
import uuid

import hoststate
from domains import quantum_vm, to_bytes
from neutron_stack import AGENT_HOST

from qhook.lab.vdsm_emulator import VdsmEmulator
from tools import HOOKS_DIR, hook_env


def _port_status(neutron, port_id):
    return neutron.api("GET", f"/v2.0/ports/{port_id}")["port"]["status"]


def test_start_returns_once_the_ovs_agent_has_wired_the_port(neutron, tmp_path):
    project = uuid.uuid4().hex
    network = neutron.vlan_network("Q_web", project, 101)
    vm_id = str(uuid.uuid4())
    port = neutron.bound_port(network, AGENT_HOST, vm_id)
    assert port["binding:vif_type"] == "ovs" and port["status"] == "DOWN"
    domain = quantum_vm(
        [{"plugin": "openvswitch", "q_network_id": network["id"], "q_port_id": port["id"]}],
        vm_uuid=vm_id,
    )
    # The vNIC takes the MAC Neutron gave the port (quantum_vm() made it 02:00:00:00:01:01).
    domain.find("devices/interface/mac").set("address", port["mac_address"])
    (device,) = [
        d
        for d in domain.iter("{http://ovirt.org/vm/1.0}device")
        if d.get("mac_address") == "02:00:00:00:01:01"
    ]
    device.set("mac_address", port["mac_address"])
    config = tmp_path / "quantum.conf"
    config.write_text(
        f"[ovs]\nconnection = {neutron.ovs.connection}\nhybrid_plug = no\n"
        f"[wiring]\ntimeout = 60\non_timeout = fail\n"
    )
    vdsm = VdsmEmulator(
        HOOKS_DIR, hook_env({"QHOOK_CONFIG": str(config)}), wrapper=neutron.ovs.netns_exec
    )
    tap = "tap" + port["id"][:11]

    began = time.monotonic()
    started = vdsm.start_vm(to_bytes(domain))
    took = time.monotonic() - began
    # Tagged by the agent by the time the hook returned: no waiting in the test.
    assert neutron.ovs.vsctl("get", "Port", tap, "tag").strip() not in ("[]", "4095")
    other_config = neutron.ovs.vsctl("get", "Port", tap, "other_config")
    assert f'net_uuid="{network["id"]}"' in other_config and 'segmentation_id="101"' in other_config
    assert not any(run.stderr for run in started.runs), [run.stderr for run in started.runs]
    deadline = time.monotonic() + 30
    while _port_status(neutron, port["id"]) != "ACTIVE":
        assert time.monotonic() < deadline, "Neutron never reported the port ACTIVE"
        time.sleep(0.2)
    print(f"start to wired: {took:.2f} s")

    assert not vdsm.destroy_vm(started.domain_xml).failed
    assert tap not in hoststate.ovs_interfaces(neutron.ovs)
    deadline = time.monotonic() + 30
    while _port_status(neutron, port["id"]) != "DOWN":
        assert time.monotonic() < deadline, "Neutron never reported the port DOWN"
        time.sleep(0.2)
