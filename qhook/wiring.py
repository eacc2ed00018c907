# SPDX-License-Identifier: GPL-2.0-or-later
"""Waiting for the agent to wire the ports, so the guest boots onto a working network.

Event-driven and bounded: an OVSDB monitor (monitor_cond on just these Interface and
Port rows) wakes the wait when ovn-controller marks an Interface ovn-installed or the
Neutron OVS agent tags a Port; a netlink link-event socket wakes it when the Linux
bridge agent enslaves a tap. Each wake-up re-reads the few rows concerned; nothing
polls on a timer.
"""

import contextlib
import os
import select
import socket
import time
from typing import Dict, List, Optional, Sequence

from qhook import ovsports, tap
from qhook.config import Config
from qhook.ovsdb import Ovsdb

RTMGRP_LINK = 0x1


def _linked_to_bridge(name: str) -> bool:
    return os.path.exists(os.path.join(tap.SYS_NET, name, "master"))


def _monitor_requests(names: Sequence[str]) -> Dict[str, List[Dict[str, object]]]:
    where = [["name", "==", name] for name in names]
    return {
        "Interface": [{"columns": ["name", "external_ids"], "where": where}],
        "Port": [{"columns": ["name", "tag", "other_config"], "where": where}],
    }


def _wired(row: ovsports.PortRow, network: Optional[str]) -> bool:
    """Wired, and by the OVS agent for this network if one is named (after a move the
    old network's tag stays until the agent rewires the port)."""
    if not row.wired:
        return False
    return network is None or row.port_other_config.get("net_uuid", network) == network


def wait_until_wired(
    ovs_taps: Sequence[str],
    bridged_taps: Sequence[str],
    config: Config,
    networks: Optional[Dict[str, str]] = None,
) -> List[str]:
    """Wait until every port is wired or [wiring] timeout passes; return those still not."""
    networks = networks or {}
    deadline = time.monotonic() + config.wiring.timeout
    with contextlib.ExitStack() as stack:
        sockets = []
        db = None
        if ovs_taps:
            db = stack.enter_context(
                Ovsdb(config.ovs.connection, config.wiring.timeout + config.ovs.timeout)
            )
            db.monitor(_monitor_requests(ovs_taps))
            sockets.append(db)
        if bridged_taps:
            link_events = stack.enter_context(
                socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
            )
            link_events.bind((0, RTMGRP_LINK))
            link_events.setblocking(False)
            sockets.append(link_events)
        while True:
            pending = [name for name in bridged_taps if not _linked_to_bridge(name)]
            if db is not None:
                rows = ovsports.find(db, ovs_taps)
                pending += [
                    n for n in ovs_taps if n not in rows or not _wired(rows[n], networks.get(n))
                ]
            left = deadline - time.monotonic()
            if not pending or left <= 0:
                return sorted(pending)
            readable, _, _ = select.select(sockets, [], [], left)
            for source in readable:
                if source is db:
                    db.drain()
                else:
                    with contextlib.suppress(BlockingIOError):
                        while source.recv(65536):
                            pass
