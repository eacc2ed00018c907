# SPDX-License-Identifier: GPL-2.0-or-later
"""The privileged helper: the one program the hooks may run as root, through `sudo -n`.

    qhook-privileged < request.json

It takes no arguments (the sudoers rule allows none, and it refuses any): its
configuration is the file fixed where it was installed (/etc/vdsm/quantum.conf, or the
path its installer baked into the script), read only if root alone could have written
it (qhook.host.trust). It reads one request (qhook.vocabulary.schema) on stdin within
READ_TIMEOUT, checks every field itself, and gives up, undoing what it made, when its
work budget is spent: whatever the caller does, the root process ends within a fixed
bound. It can only make, mark and remove taps named and marked as this package's, and
add or remove integration-bridge ports marked as ours, on the bridge root's
configuration names.
"""

import json
import os
import select
import signal
import sys
import time
from typing import Any, Dict, List, Optional

from qhook import PROGRAM
from qhook.errors import QhookError, one_line
from qhook.host import plumbing, state
from qhook.host.capabilities import host_capabilities
from qhook.host.trust import load_trusted_config
from qhook.vocabulary import schema
from qhook.vocabulary.config import DEFAULT_PATH, Config

LAST_WORDS = 5.0  # seconds to undo and answer once the budget is spent; then it is killed


class OutOfTime(BaseException):
    """The helper's budget is spent (a BaseException, so that every undo path runs)."""


def execute(request: schema.Request, config: Config) -> Dict[str, Any]:
    """Do what a checked request asks; the result is what the caller needs back."""
    if request.verb == schema.CAPS:
        return {"caps": host_capabilities(config)}
    if request.verb == schema.PLUG:
        done = plumbing.plug(request.attachments, config)
        return {
            "created_taps": done.created_taps,
            "added_ports": done.added_ports,
            "unwired": done.unwired,
            "created_devices": done.created_devices,
            "plugged_as": done.plugged_as,
            "notes": done.notes,
        }
    if request.verb == schema.MOVE:
        tap_name, unwired = plumbing.move(request.attachments[0], config)
        return {"tap": tap_name, "unwired": unwired}
    if request.verb == schema.END_MOVE:
        return {"done": plumbing.end_move(request.vm_id, request.macs, request.undo, config)}
    if request.verb == schema.REPAIR:
        repaired, problems = plumbing.repair(request.attachments, config)
        return {"repaired": repaired, "problems": problems}
    if request.verb == schema.PORTS:
        return _ports(request, config)
    if request.verb == schema.NOTE:
        return {"noted": _note(request, config)}
    problems = plumbing.remove_ours(
        request.ports, request.taps, request.vm_id, config, devices=request.devices
    )
    notes = _release(request, config) if request.on_demand else []
    return {"problems": problems, "notes": notes}


def _ports(request: schema.Request, config: Config) -> Dict[str, Any]:
    """The ports on demand of the request's vNICs (see qhook.host.ondemand)."""
    from qhook.host.ondemand import Quantum

    with Quantum(config) as quantum:
        found = quantum.ensure(request.vm_id, request.vnics, request.mode)
        ports = [
            {
                "mac": f.mac,
                "port_id": f.port_id,
                "created": f.created,
                "plugin": None if f.plugin is None else f.plugin.value,
            }
            for f in found
        ]
        return {"ports": ports, "notes": quantum.notes}


def _note(request: schema.Request, config: Config) -> str:
    """What VDSM said of the VM, kept for its ports on demand (qhook.host.ondemand)."""
    if request.event == schema.BACK:
        for event in state.EVENTS:
            state.forget_event(config, request.vm_id, event)
    else:
        state.note_event(config, request.vm_id, request.event)
    return request.event


def _release(request: schema.Request, config: Config) -> List[str]:
    """After unplugging: the ports on demand of these vNICs go (or go back). Quantum out of
    reach is a note, not a failure: the unplugging is done, and `qhook cleanup --quantum`
    deletes what is left."""
    from qhook.host.ondemand import Quantum

    try:
        with Quantum(config) as quantum:
            in_use = plumbing.plugged_here(request.vm_id, config)
            quantum.release(request.vm_id, request.on_demand, in_use)
            return quantum.notes
    except QhookError as error:
        return [
            f"the ports of vNIC {', '.join(request.on_demand)} stay in Quantum ({error}); "
            "qhook cleanup --quantum deletes them later"
        ]


def read_request(fd: int = 0, timeout: float = schema.READ_TIMEOUT) -> bytes:
    """The whole request on this descriptor, within `timeout` seconds and MAX_REQUEST_BYTES
    (one more byte is read, so that the decoder can say it is too large)."""
    deadline = time.monotonic() + timeout
    chunks: List[bytes] = []
    size = 0
    while size <= schema.MAX_REQUEST_BYTES:
        left = deadline - time.monotonic()
        try:
            ready = select.select([fd], [], [], max(left, 0))[0] if left > 0 else []
            if not ready:
                raise schema.RequestError(
                    f"no whole request on standard input within {timeout:g} s"
                )
            chunk = os.read(fd, min(65536, schema.MAX_REQUEST_BYTES + 1 - size))
        except OSError as error:
            raise schema.RequestError(f"cannot read the request: {error.strerror}") from None
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _out_of_time(budget: float) -> None:
    """From now on, the helper has `budget` seconds; then OutOfTime, and LAST_WORDS
    seconds later the default SIGALRM action ends the process."""

    def expire(_signal: int, _frame: object) -> None:
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        signal.setitimer(signal.ITIMER_REAL, LAST_WORDS)
        raise OutOfTime(budget)

    signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, budget)


def main(argv: Optional[List[str]] = None, config_path: str = DEFAULT_PATH) -> int:
    """Run one request from stdin; print the JSON answer; exit 0, or 2 with one line.

    config_path is fixed by whoever installed the helper (the script calling this), never
    by its caller."""
    arguments = sys.argv[1:] if argv is None else argv
    try:
        _out_of_time(schema.READ_TIMEOUT + 5)  # reading the configuration and the request
        if arguments:
            raise schema.RequestError(
                f"usage: qhook-privileged < REQUEST (no arguments: the configuration is "
                f"{config_path}, fixed where the helper was installed)"
            )
        config, _ = load_trusted_config(config_path)
        request = schema.decode(read_request())
        _out_of_time(schema.work_budget(request, config))
        answer: Dict[str, Any] = {"ok": True, **execute(request, config)}
        code = 0
    except QhookError as error:
        answer, code = {"ok": False, "error": one_line(str(error))}, 2
    except OutOfTime as spent:
        seconds = spent.args[0]
        answer = {"ok": False, "error": f"the privileged helper gave up after {seconds:g} s"}
        code = 2
    except Exception as error:  # one line, never a traceback
        answer = {"ok": False, "error": f"internal error: {type(error).__name__}: {error}"}
        code = 2
    try:
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
        if code:
            sys.stderr.write(f"{PROGRAM} helper: {answer['error']}\n")
            sys.stderr.flush()
    except (OSError, OutOfTime):
        code = 2
    signal.setitimer(signal.ITIMER_REAL, 0)
    return code


if __name__ == "__main__":
    sys.exit(main())
