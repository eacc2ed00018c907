# SPDX-License-Identifier: GPL-2.0-or-later
"""Root's notes under [host] state_dir that outlive one hook run: the migrations coming to
this host (which host each of a VM's ports was bound to before it was moved here), and
what the Quantum server said of port binding. Written by the privileged helper alone."""

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any, Dict, Optional, Set

from qhook.config import Config

BINDING_KEPT = 3600  # seconds a server's answer about port binding is trusted
_MIGRATING = "migrating-"


def _path(config: Config, name: str) -> Path:
    return Path(config.host.state_dir) / name


def _write(path: Path, value: Any) -> None:
    """Replace a note at once (a reader sees the old or the new), readable by root alone."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_suffix(f".{os.getpid()}.tmp")
    with open(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as stream:
        json.dump(value, stream)
    os.replace(temporary, path)


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def migration(config: Config, vm_id: str) -> Dict[str, Optional[str]]:
    """Port id -> the host it was bound to before it was moved here (None: made here)."""
    value = _read(_path(config, f"{_MIGRATING}{vm_id}.json"))
    return value if isinstance(value, dict) else {}


def write_migration(config: Config, vm_id: str, note: Dict[str, Optional[str]]) -> None:
    """Keep the note of a VM's migration here; an empty one is no note."""
    path = _path(config, f"{_MIGRATING}{vm_id}.json")
    if note:
        _write(path, note)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def arriving_vms(config: Config) -> Set[str]:
    """The VMs whose migration to this host has not completed."""
    directory = Path(config.host.state_dir)
    if not directory.is_dir():
        return set()
    return {path.stem[len(_MIGRATING) :] for path in directory.glob(f"{_MIGRATING}*.json")}


def known_binding(config: Config, url: str) -> Optional[bool]:
    """What the server at url said of port binding, if it said so lately."""
    known = _read(_path(config, "extensions.json"))
    try:
        same = known["url"] == url and isinstance(known["binding"], bool)
        fresh = 0 <= time.time() - float(known["checked"]) < BINDING_KEPT
    except (KeyError, TypeError, ValueError):
        return None
    return known["binding"] if same and fresh else None


def remember_binding(config: Config, url: str, binding: bool) -> None:
    """Note what the server said of port binding, for the runs that follow (best effort)."""
    with contextlib.suppress(OSError):
        _write(
            _path(config, "extensions.json"),
            {"url": url, "binding": binding, "checked": time.time()},
        )
