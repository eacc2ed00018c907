# SPDX-License-Identifier: GPL-2.0-or-later
"""Hooks of different VMs run at once (VDSM does not serialise them), and the agents write
to the same rows: a transaction that read rows another client changed before it committed
is run again on what is there now (bounded), and the retry is noted in root's state_dir.

The collisions are made to happen at the worst moment: the other client's change is
slipped in between the step's reads and its transaction, on a real ovsdb-server.
"""

import uuid

import pytest

from qhook.host import mirrors, ovsdb, ovsports, plumbing, state
from qhook.vocabulary.config import load_config

NETWORK = "9a1f6c0e-4c1b-4a55-8f0e-1d2c3b4a5f60"


def _name() -> str:
    return "tap" + uuid.uuid4().hex[:8] + "-00"


def _add(ovs, name: str, vm_id: str, network: str = NETWORK) -> None:
    """A port of ours on the network, as a plug makes it."""
    ids = {
        "iface-id": str(uuid.uuid4()),
        "vm-uuid": vm_id,
        ovsports.OWNER_KEY: ovsports.OWNER_VALUE,
        mirrors.NETWORK_KEY: network,
    }
    with ovsdb.Ovsdb(ovs.connection, 10) as db:
        ovsports.add(db, "br-int", [ovsports.NewPort(name, ids)], [])


def _selected(ovs, mirror: str) -> set:
    """The names of the ports a mirror selects."""
    with ovsdb.Ovsdb(ovs.connection, 10) as db:
        (found,) = [m for m in mirrors.find(db) if m.name == mirror]
        ports = mirrors.network_ports(db, [NETWORK])[NETWORK]
    return {name for name, port in ports.items() if port in found.selected}


@pytest.fixture
def clean(ovs):
    """Remove what the test made: ports and mirrors of ours."""
    made = []
    yield made
    with ovsdb.Ovsdb(ovs.connection, 10) as db:
        mirrors.remove_outputs(db, {name: vm for name, vm in made})
        ovsports.remove(db, [row for row in ovsports.ours(db)])


@pytest.fixture
def config(ovs, tmp_path):
    path = tmp_path / "quantum.conf"
    path.write_text(
        f"[ovs]\nconnection = {ovs.connection}\ntimeout = 5\n[host]\nstate_dir = {tmp_path}/state\n"
    )
    return load_config({"QHOOK_CONFIG": str(path)})[0]


def _slip_in(monkeypatch, module, function: str, change) -> None:
    """Make `change` happen right after the first call of module.function (a read)."""
    real = getattr(module, function)
    calls = []

    def read_then_change(*args, **kwargs):
        result = real(*args, **kwargs)
        calls.append(1)
        if len(calls) == 1:
            change()
        return result

    monkeypatch.setattr(module, function, read_then_change)


def test_a_port_plugged_while_its_networks_mirror_is_made_is_selected(ovs, clean, monkeypatch):
    vm, other_vm = str(uuid.uuid4()), str(uuid.uuid4())
    watcher, neighbour, newcomer = _name(), _name(), _name()
    _add(ovs, watcher, vm)
    _add(ovs, neighbour, other_vm)
    clean.append((watcher, vm))
    # Another VM's port joins the network after the mirror's step read its ports; that
    # VM saw no mirror yet, so only this step can put the port in the mirror.
    _slip_in(monkeypatch, mirrors, "find", lambda: _add(ovs, newcomer, other_vm))
    reasons = []
    with ovsdb.Ovsdb(ovs.connection, 10) as db:
        wanted = [mirrors.WantedMirror(watcher, NETWORK, vm)]
        mirrors.update(db, "br-int", [NETWORK], wanted, reasons.append)
    assert _selected(ovs, mirrors.mirror_name(watcher)) == {neighbour, newcomer}
    assert reasons == ["mirroring: timed out"]  # read again once


def test_an_unplug_whose_ports_the_agent_marked_meanwhile_removes_them(
    ovs, clean, config, monkeypatch
):
    vm = str(uuid.uuid4())
    names = [_name(), _name()]
    for name in names:
        _add(ovs, name, vm)
    # ovn-controller marks a port ovn-installed after the unplug read the VM's rows.
    mark = ("set", "Interface", names[1], "external_ids:ovn-installed=true")
    _slip_in(monkeypatch, ovsports, "find_ours", lambda: ovs.vsctl(*mark))
    problems = plumbing.remove_ours(names, [], vm, config)
    assert problems == []
    with ovsdb.Ovsdb(ovs.connection, 10) as db:
        assert ovsports.find(db, names) == {}
    assert state.retries(config) == {"unplugging: timed out": 1}


def test_a_conflict_that_does_not_end_is_surfaced_after_the_last_attempt():
    runs, reasons = [], []

    def always_conflicting():
        runs.append(1)
        raise ovsdb.OvsdbError("adding tapx: timed out: the rows changed", "timed out")

    with pytest.raises(ovsdb.OvsdbError, match="timed out"):
        ovsdb.retrying(always_conflicting, "plugging", reasons.append)
    assert len(runs) == ovsdb.ATTEMPTS
    assert reasons == ["plugging: timed out"] * (ovsdb.ATTEMPTS - 1)


def test_a_refusal_is_not_retried():
    runs = []

    def refused():
        runs.append(1)
        raise ovsdb.OvsdbError("adding tapx: constraint violation", "constraint violation")

    with pytest.raises(ovsdb.OvsdbError):
        ovsdb.retrying(refused, "plugging", lambda _: pytest.fail("retried"))
    assert runs == [1]
