# SPDX-License-Identifier: GPL-2.0-or-later
"""`qhook status` and `qhook cleanup` on the sandbox host after a crash."""

import json

import hoststate
from domains import quantum_vm, seed_properties, to_bytes

from tools import holding_tap, qhook_on_host


def _qhook(ovs, config_path, *args):
    return qhook_on_host(ovs.netns_exec, config_path, *args, timeout=60)


def _taps(domain):
    return ["tap" + e.text[:11] for e in domain.iter("{http://ovirt.org/vm/1.0}q_port_id")]


def _about(output, names):
    """The lines of cleanup's output about these taps (other tests' leftovers aside)."""
    return [line for line in output.splitlines() if line.split(" (")[0].split()[-1] in names]


def _status(ovs, config_path, *args):
    result = _qhook(ovs, config_path, "status", "--json", *args)
    assert result.returncode == 0, result.stderr
    return {entry["tap"]: entry for entry in json.loads(result.stdout)["ports"]}


def test_status_and_cleanup_after_a_crash(vdsm, ovs, config_path):
    crashed = quantum_vm([seed_properties("openvswitch"), seed_properties("linuxbridge")])
    running = quantum_vm(
        [seed_properties("openvswitch"), seed_properties("ovn")],
        vm_uuid="6f0b3f43-0d1e-4b44-8a7e-1d3c1a0c5b01",
    )
    vdsm.start_vm(to_bytes(crashed))
    started = vdsm.start_vm(to_bytes(running))
    crashed_ovs, crashed_lb = _taps(crashed)
    running_held, running_idle = _taps(running)
    ovs.in_netns("ip", "link", "delete", crashed_ovs)  # the crash took the tap with it
    ovs.in_netns("ip", "tuntap", "add", "dev", "tapforeign0003", "mode", "tap")
    with holding_tap(ovs.netns_exec, running_held):  # QEMU stands in: tap in use
        status = _status(ovs, config_path)
        assert "tapforeign0003" not in status
        assert status[crashed_ovs]["stale"] == "its tap is gone"
        assert status[crashed_ovs]["device"] is False and status[crashed_ovs]["ovs_port"] is True
        assert status[crashed_lb]["stale"] is None  # young: could be a VM starting
        assert status[running_held]["in_use"] is True
        assert status[running_held]["vm"] == "6f0b3f43-0d1e-4b44-8a7e-1d3c1a0c5b01"
        assert isinstance(status[running_held]["ofport"], int)
        assert status[running_held]["wired"] is False  # no agent in this sandbox
        table = _qhook(ovs, config_path, "status").stdout
        assert table.splitlines()[0].split()[:3] == ["TAP", "VNIC", "VM"]
        assert f"{crashed_ovs} " in table and "its tap is gone" in table

        dry = _qhook(ovs, config_path, "cleanup", "--dry-run")
        mine = (crashed_ovs, crashed_lb, running_held, running_idle)
        assert _about(dry.stdout, mine) == [
            f"would remove OVS port {crashed_ovs} (its tap is gone)"
        ]
        assert crashed_ovs in hoststate.ovs_interfaces(ovs)

        cleaned = _qhook(ovs, config_path, "cleanup")
        assert _about(cleaned.stdout, mine) == [f"removed OVS port {crashed_ovs} (its tap is gone)"]
        assert crashed_ovs not in hoststate.ovs_interfaces(ovs)

        # With no grace, every tap no process holds is a dead VM's: ports go with them.
        cleaned = _qhook(ovs, config_path, "cleanup", "--grace", "0")
        assert cleaned.returncode == 0, cleaned.stderr
        assert sorted(_about(cleaned.stdout, mine)) == sorted(
            [
                f"removed tap {crashed_lb} (no VM holds its tap)",
                f"removed OVS port {running_idle} (no VM holds its tap)",
                f"removed tap {running_idle} (no VM holds its tap)",
            ]
        )
        links, rows = hoststate.links(ovs), hoststate.ovs_interfaces(ovs)
        assert crashed_lb not in links and running_idle not in links and running_idle not in rows
        assert running_held in links and running_held in rows  # in use: kept
        assert "tapforeign0003" in links
    vdsm.destroy_vm(started.domain_xml)
    assert not {running_held, running_idle} & set(hoststate.ovs_interfaces(ovs))
    ovs.in_netns("ip", "link", "delete", "tapforeign0003")


def test_status_and_cleanup_with_open_vswitch_down(ovs, configure, config_path, tmp_path):
    configure(connection=f"unix:{tmp_path}/none.sock")
    status = _qhook(ovs, config_path, "status")
    assert status.returncode == 2
    assert status.stderr == (
        f"qhook: cannot reach Open vSwitch at unix:{tmp_path}/none.sock: "
        f"No such file or directory (configuration: {config_path})\n"
    )
    cleanup = _qhook(ovs, config_path, "cleanup")
    assert (cleanup.returncode, cleanup.stdout) == (2, "")
    assert cleanup.stderr.endswith("; nothing removed\n")
