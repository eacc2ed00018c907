# SPDX-License-Identifier: GPL-2.0-or-later
"""`qhook engine sync`: the oVirt engine's Q_ logical networks, made real in Quantum.

Once (the default), or with --watch for ever: the engine's events are read every half
second and a network added, removed or updated there starts a pass at once; a whole
pass also runs every [ovirt] resync seconds. In --watch an unreachable engine or
Quantum is one line and a retry; SIGTERM ends it between passes.

Exit status: 0 done (what was reported and left is not a failure); 1 the engine or
Quantum refused, or could not be reached; 2 a bad command line or configuration.
"""

import argparse
import json
import os
import signal
import sys
import threading
import time
from typing import Any, Callable, List, Optional, Set

from qhook.engine.commands import (
    EXIT_REFUSED,
    EXIT_USAGE,
    KIND_CONFIG,
    KIND_MISSING,
    MISSING_REQUESTS,
    say_error,
)
from qhook.errors import ConfigError, QhookError, one_line

# The engine's audit log codes (AuditLogType) that start a pass in --watch: a logical
# network added to, removed from or updated in a data center (the engine logs the start
# of the command, "NOTHING_TO_DO" when no host is affected, then its end), and a vNIC
# profile added, updated or removed (the admin's edit of a profile the sync owns).
NETWORK_EVENTS = {
    942: "NETWORK_ADD_NETWORK",
    9423: "NETWORK_ADD_NOTHING_TO_DO",
    944: "NETWORK_REMOVE_NETWORK",
    9444: "NETWORK_REMOVE_NOTHING_TO_DO",
    1114: "NETWORK_UPDATE_NETWORK",
    11143: "NETWORK_UPDATE_NOTHING_TO_DO",
    1122: "ADD_VNIC_PROFILE",
    1124: "UPDATE_VNIC_PROFILE",
    1126: "REMOVE_VNIC_PROFILE",
}
POLL = 0.5  # seconds between two reads of the engine's events
RETRY = (1.0, 30.0)  # first and longest wait before trying again, in --watch


def add_commands(commands) -> None:
    engine = commands.add_parser(
        "engine",
        help="keep the oVirt engine's Q_ networks and Quantum in step",
        description="Keep the oVirt engine's logical networks named Q_<name> and their "
        "Quantum networks in step (on the engine machine).",
    )
    actions = engine.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    sync = actions.add_parser(
        "sync",
        help="make each Q_ network's Quantum network and vNIC profile; delete what is gone",
        description="For every logical network named Q_<name>: its Quantum network (made "
        "if missing, renamed and re-MTUd as the logical network is) and a vNIC profile of "
        "its name for ports on demand (plugin, q_network_id, mtu); a Quantum network the "
        "sync made whose logical network is gone is deleted once it has no ports. "
        "Exit status: 0 done, 1 the engine or Quantum refused or could not be reached, "
        "2 bad usage or configuration.",
    )
    sync.add_argument(
        "--config",
        help="configuration file with [ovirt] and [quantum] (default: $QHOOK_CONFIG, else "
        "/etc/vdsm-hook-quantum/engine.conf)",
    )
    sync.add_argument("--dry-run", action="store_true", help="say what it would do; do nothing")
    sync.add_argument(
        "--adopt",
        action="store_true",
        help="take over Quantum networks named as a Q_ logical network that the sync did not make",
    )
    sync.add_argument("--watch", action="store_true", help="follow the engine's events for ever")
    sync.add_argument("--json", action="store_true", help="print JSON for scripts")
    sync.add_argument(
        "--debug", action="store_true", help="show the settings used and each request"
    )
    sync.set_defaults(handler=run_sync)


def run_sync(args: argparse.Namespace) -> int:
    try:
        import requests  # noqa: F401  (the Quantum client's and the engine login's)
    except ImportError:
        return say_error(args, QhookError(MISSING_REQUESTS), EXIT_USAGE, KIND_MISSING)
    from qhook.engine.ovirt import EngineError
    from qhook.engine.ovirt_settings import load_ovirt_settings
    from qhook.engine.records import Records, held
    from qhook.quantum.client import QuantumError
    from qhook.quantum.connect import connect, creates_need_project
    from qhook.quantum.settings import load_quantum_settings

    env = dict(os.environ)
    if args.config:
        env["QHOOK_CONFIG"] = os.path.abspath(args.config)
    trace = _debug if args.debug else None
    try:
        ovirt, warnings = load_ovirt_settings(env)
        quantum, more = load_quantum_settings(env)
        for warning in warnings + more:
            sys.stderr.write(f"qhook: warning: {warning}\n")
        if args.debug:
            for line in ovirt.described() + quantum.described():
                _debug(line)
        Records.load(ovirt.state_file)  # unreadable: said before anything is sent
    except ConfigError as error:
        return say_error(args, error, EXIT_USAGE, KIND_CONFIG)

    def one_pass(engine) -> Any:
        """One pass, holding the records' lock, on the records as they are now."""
        from qhook.engine.sync import Options, SyncPass

        options = Options(
            plugin=ovirt.plugin,
            data_centers=ovirt.data_centers,
            adopt=args.adopt,
            dry_run=args.dry_run,
            project_id=creates_need_project(quantum),
        )
        with held(ovirt.state_file, ovirt.timeout):
            records = Records.load(ovirt.state_file)
            with connect(quantum, trace) as client:
                return SyncPass(engine, client, records, options).run()

    from qhook.engine.ovirt import Engine

    if args.watch:
        return _watch(args, lambda: Engine(ovirt, trace), one_pass, ovirt.resync)
    try:
        with Engine(ovirt, trace) as engine:
            outcome = one_pass(engine)
    except ConfigError as error:
        return say_error(args, error, EXIT_USAGE, KIND_CONFIG)
    except (EngineError, QuantumError) as error:
        return say_error(args, error, EXIT_REFUSED)
    _print(args, outcome)
    return 0


def _debug(line: str) -> None:
    sys.stderr.write(f"qhook: debug: {line}\n")


def _print(args: argparse.Namespace, outcome: Any, said: Optional[Set[str]] = None) -> Set[str]:
    """Print a pass's changes and what it reported; in --watch (`said`: the reports
    printed before) a report is printed once, and a pass without changes says nothing.
    Returns the reports' lines."""
    reports = {change.line for change in outcome.reported}
    if args.json:
        print(
            json.dumps(
                {
                    "dry_run": args.dry_run,
                    "changes": [c.as_json() for c in outcome.changes],
                    "reported": [c.as_json() for c in outcome.reported],
                },
                indent=None if said is not None else 2,
                sort_keys=True,
            )
        )
        sys.stdout.flush()
        return reports
    prefix = "would have " if args.dry_run else ""
    for change in outcome.changes:
        print(f"{prefix}{change.line}")
    for change in outcome.reported:
        if said is None or change.line not in said:
            print(f"reported: {change.line}")
    if not outcome.changes and said is None and not args.dry_run:
        print("in step: nothing to change")
    sys.stdout.flush()
    return reports


def _watch(
    args: argparse.Namespace,
    session: Callable[[], Any],
    one_pass: Callable[[Any], Any],
    resync: float,
) -> int:
    """Passes for ever: at start, after each network event, every `resync` seconds."""
    from qhook.engine.ovirt import EVENTS_PAGE, EngineError
    from qhook.quantum.client import QuantumError

    stop = threading.Event()
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: stop.set())
    wait = RETRY[0]
    last_event: Optional[int] = None
    said: Set[str] = set()
    while not stop.is_set():
        try:
            with session() as engine:
                first = last_event is None
                if last_event is None:
                    last_event = engine.last_event()
                said = _print(args, one_pass(engine), said)
                if first and not args.json:
                    print(f"watching the engine's network events; a whole pass every {resync:g} s")
                    sys.stdout.flush()
                next_pass = time.monotonic() + resync
                wait = RETRY[0]
                while not stop.wait(POLL):
                    events = engine.events_after(last_event)
                    if events:
                        last_event = events[-1][0]
                    codes: List[str] = [NETWORK_EVENTS[c] for _, c in events if c in NETWORK_EVENTS]
                    if len(events) >= EVENTS_PAGE:  # older ones may be unread: look anyway
                        codes.append("(a page of events)")
                    if codes or time.monotonic() >= next_pass:
                        if codes and args.debug:
                            _debug(f"events: {', '.join(codes)}")
                        said = _print(args, one_pass(engine), said)
                        next_pass = time.monotonic() + resync
        except ConfigError as error:
            return say_error(args, error, EXIT_USAGE, KIND_CONFIG)
        except (EngineError, QuantumError) as error:
            sys.stderr.write(f"qhook: {one_line(str(error))}; again in {wait:g} s\n")
            sys.stderr.flush()
            stop.wait(wait)
            wait = min(wait * 2, RETRY[1])
    return 0
