# SPDX-License-Identifier: GPL-2.0-or-later
"""The privileged helper: the one program the hooks may run as root, through `sudo -n`.

    qhook-privileged [--config PATH] < request.json

It reads one request (see qhook.wire) on stdin, checks every field itself, and can
only make, mark and remove taps named and marked as this package's, and add or remove
integration-bridge ports marked as ours, on the bridge its root-owned configuration
names. The configuration file, and every directory above it, must be root's and
writable by no one else, so the caller cannot choose another bridge or database.
"""

import json
import sys
from typing import Any, Dict, List, Optional

from qhook import PROGRAM, plumbing, wire
from qhook.caps import host_capabilities
from qhook.config import DEFAULT_PATH, Config, load_config
from qhook.errors import QhookError, one_line
from qhook.trust import trusted_path


def execute(request: wire.Request, config: Config) -> Dict[str, Any]:
    """Do what a checked request asks; the result is what the caller needs back."""
    if request.verb == wire.CAPS:
        return {"caps": host_capabilities(config)}
    if request.verb == wire.PLUG:
        done = plumbing.plug(request.attachments, config)
        return {
            "created_taps": done.created_taps,
            "added_ports": done.added_ports,
            "unwired": done.unwired,
        }
    if request.verb == wire.MOVE:
        tap_name, unwired = plumbing.move(request.attachments[0], config)
        return {"tap": tap_name, "unwired": unwired}
    if request.verb == wire.END_MOVE:
        return {"done": plumbing.end_move(request.vm_id, request.macs, request.undo, config)}
    if request.verb == wire.REPAIR:
        repaired, problems = plumbing.repair(request.attachments, config)
        return {"repaired": repaired, "problems": problems}
    if request.verb == wire.PORTS:
        return _ports(request, config)
    problems = plumbing.remove_ours(request.ports, request.taps, request.vm_id, config)
    notes = _release(request, config) if request.on_demand else []
    return {"problems": problems, "notes": notes}


def _ports(request: wire.Request, config: Config) -> Dict[str, Any]:
    """The ports on demand of the request's vNICs (see qhook.ondemand)."""
    from qhook.ondemand import Quantum

    with Quantum(config) as quantum:
        found = quantum.ensure(request.vm_id, request.vnics, request.mode)
        ports = [{"mac": f.mac, "port_id": f.port_id, "created": f.created} for f in found]
        return {"ports": ports, "notes": quantum.notes}


def _release(request: wire.Request, config: Config) -> List[str]:
    """After unplugging: the ports on demand of these vNICs go (or go back). Quantum out of
    reach is a note, not a failure: the unplugging is done, and `qhook cleanup --quantum`
    deletes what is left."""
    from qhook.ondemand import Quantum

    try:
        with Quantum(config) as quantum:
            quantum.release(request.vm_id, request.on_demand)
            return quantum.notes
    except QhookError as error:
        return [
            f"the ports of vNIC {', '.join(request.on_demand)} stay in Quantum ({error}); "
            "qhook cleanup --quantum deletes them later"
        ]


def _arguments(argv: List[str]) -> str:
    if not argv:
        return DEFAULT_PATH
    if len(argv) == 2 and argv[0] == "--config":
        return argv[1]
    raise wire.RequestError("usage: qhook-privileged [--config PATH] < REQUEST")


def main(argv: Optional[List[str]] = None) -> int:
    """Run one request from stdin; print the JSON answer; exit 0, or 2 with one line."""
    try:
        path = trusted_path(_arguments(sys.argv[1:] if argv is None else argv))
        config, _ = load_config({"QHOOK_CONFIG": path})
        request = wire.decode(sys.stdin.buffer.read(wire.MAX_REQUEST_BYTES + 1))
        answer: Dict[str, Any] = {"ok": True, **execute(request, config)}
        code = 0
    except QhookError as error:
        answer, code = {"ok": False, "error": one_line(str(error))}, 2
    except Exception as error:  # one line, never a traceback
        answer = {"ok": False, "error": f"internal error: {type(error).__name__}: {error}"}
        code = 2
    sys.stdout.write(json.dumps(answer) + "\n")
    if code:
        sys.stderr.write(f"{PROGRAM} helper: {answer['error']}\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
