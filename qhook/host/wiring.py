# SPDX-License-Identifier: GPL-2.0-or-later
"""Waiting for the agent to wire the ports, so the guest boots onto a working network.

Each vNIC's plugin says what wired means and what to watch (qhook.plugins). Event-driven
and bounded: an OVSDB monitor (monitor_cond on just these Interface and Port rows) wakes
the wait when ovn-controller marks an Interface ovn-installed or the Neutron OVS agent
tags a Port; a netlink link-event socket wakes it when the Linux bridge agent enslaves a
tap. Each wake-up re-reads the few rows concerned; nothing polls on a timer.
"""

import contextlib
import os
import select
import socket
import time
from typing import Dict, List, Optional, Sequence, Tuple

from qhook import plugins
from qhook.host import ovsports, tap
from qhook.host.ovsdb import Ovsdb
from qhook.plugins import Plugin, Watch
from qhook.vocabulary.config import Config

Watched = Tuple[str, Plugin]  # a vNIC's tap name, and its plugin

RTMGRP_LINK = 0x1


def _linked_to_bridge(name: str) -> bool:
    return os.path.exists(os.path.join(tap.SYS_NET, name, "master"))


def _monitor_requests(names: Sequence[str]) -> Dict[str, List[Dict[str, object]]]:
    where = [["name", "==", name] for name in names]
    return {
        "Interface": [{"columns": ["name", "external_ids"], "where": where}],
        "Port": [{"columns": ["name", "tag", "other_config"], "where": where}],
    }


def wait_until_wired(
    vnics: Sequence[Watched], config: Config, networks: Optional[Dict[str, str]] = None
) -> List[str]:
    """Wait until every vNIC is wired, as its plugin tells, or [wiring] timeout passes;
    return the taps still not (networks: by tap, the network it must be wired for)."""
    networks = networks or {}
    wanted = {name: plugins.of(plugin) for name, plugin in vnics}
    ovs_taps = [name for name, plugin in wanted.items() if plugin.watch is Watch.OVSDB]
    bridged_taps = [name for name, plugin in wanted.items() if plugin.watch is Watch.LINK]
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
        rows: Dict[str, ovsports.PortRow] = {}
        while True:
            if db is not None:
                # Rows found once are read again by uuid: a wake-up then costs ovsdb-server
                # index lookups, not a scan of its table per name.
                rows = ovsports.reread(db, rows)
                lacking = [name for name in ovs_taps if name not in rows]
                if lacking:
                    rows.update(ovsports.find(db, lacking))
            pending = [
                name
                for name, plugin in wanted.items()
                if not plugin.wired(rows.get(name), _linked_to_bridge(name), networks.get(name))
            ]
            left = deadline - time.monotonic()
            if not pending or left <= 0:
                return sorted(pending)
            if db is not None and db.has_message():
                db.drain()  # read with the rows' reply: the socket would not wake for it
                continue
            readable, _, _ = select.select(sockets, [], [], left)
            for source in readable:
                if source is db:
                    db.drain()
                else:
                    with contextlib.suppress(BlockingIOError):
                        while source.recv(65536):
                            pass
