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
import os
import stat
import sys
from typing import Any, Dict, List, Optional

from qhook import PROGRAM, plumbing, wire
from qhook.caps import host_capabilities
from qhook.config import DEFAULT_PATH, Config, load_config
from qhook.errors import ConfigError, QhookError, one_line


def trusted_path(path: str) -> str:
    """The real path, if it and every directory above it are root's and writable by no one
    else (a sticky world-writable directory such as /tmp is fine for a root-owned child)."""
    real = os.path.realpath(path)
    current = real
    while True:
        try:
            info = os.stat(current)
        except OSError as error:
            if current == real and isinstance(error, FileNotFoundError):
                return real  # a missing file means the defaults
            raise ConfigError(f"cannot check {current}: {error.strerror}") from None
        sticky_directory = stat.S_ISDIR(info.st_mode) and info.st_mode & stat.S_ISVTX
        if info.st_uid != 0 or (
            info.st_mode & 0o022 and not (sticky_directory and current != real)
        ):
            raise ConfigError(
                f"{real} is not trusted: {current} must be root's and writable only by root"
            )
        if current == "/":
            return real
        current = os.path.dirname(current)


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
    problems = plumbing.remove_ours(request.ports, request.taps, request.vm_id, config)
    return {"problems": problems}


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
