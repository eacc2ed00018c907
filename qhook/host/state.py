# SPDX-License-Identifier: GPL-2.0-or-later
"""Root's notes under [host] state_dir that outlive one hook run: the migrations coming to
this host (which host each of a VM's ports was bound to before it was moved here), what
VDSM said happened to a VM (suspended here, left for another host), and what the
Quantum server said of port binding. Written by the privileged helper alone.

The directory must be root's and mode 0700 (it is made so when missing; anything else
is refused): nobody else can put a file or a link there. Even so every note is opened
relative to the directory's descriptor without following links, and written under a
fresh name (O_EXCL) before it replaces the old one.
"""

import contextlib
import json
import os
import secrets
import stat
import time
from typing import Any, Dict, Iterator, Optional, Set

from qhook.errors import ConfigError, QhookError, one_line
from qhook.host.trust import private_directory
from qhook.vocabulary.config import Config

BINDING_KEPT = 3600  # seconds a server's answer about port binding is trusted
MAX_NOTE_BYTES = 1024 * 1024
_MIGRATING = "migrating-"
_SUFFIX = ".json"
# What VDSM said of a VM, each noted with when: its ports on demand follow it.
SUSPENDED = "suspended"  # after_vm_hibernate: saved to a file, it may come back
LEFT = "left"  # after_vm_migrate_source: it runs on another host now
EVENTS = (SUSPENDED, LEFT)
# A line per OVSDB transaction run again after another's change made it fail: "when why".
RETRIES_LOG = "ovsdb-retries.log"
MAX_RETRIES_LOG = 1024 * 1024


@contextlib.contextmanager
def _directory(config: Config) -> Iterator[int]:
    fd = private_directory(config.host.state_dir, "[host] state_dir")
    try:
        yield fd
    finally:
        os.close(fd)


def check(config: Config) -> None:
    """Refuse, in one line, a state_dir root cannot trust (before any work depends on it)."""
    with _directory(config):
        pass


def _write(directory: int, name: str, value: Any) -> None:
    """Replace a note at once (a reader sees the old or the new), readable by root alone."""
    temporary = f".{name}.{secrets.token_hex(8)}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(temporary, flags, 0o600, dir_fd=directory)
    try:
        with open(fd, "w", closefd=False) as stream:
            json.dump(value, stream)
        os.replace(temporary, name, src_dir_fd=directory, dst_dir_fd=directory)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary, dir_fd=directory)
        raise
    finally:
        os.close(fd)


def _read(directory: int, name: str) -> Any:
    """A note, or None if there is none (or it is not a note of ours)."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(name, flags, dir_fd=directory)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != 0 or info.st_size > MAX_NOTE_BYTES:
            return None
        with open(fd, "rb", closefd=False) as stream:
            return json.loads(stream.read(MAX_NOTE_BYTES))
    except (OSError, ValueError):
        return None
    finally:
        os.close(fd)


def _unlink(directory: int, name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(name, dir_fd=directory)


def migration(config: Config, vm_id: str) -> Dict[str, Optional[str]]:
    """Port id -> the host it was bound to before it was moved here (None: made here)."""
    with _directory(config) as directory:
        value = _read(directory, f"{_MIGRATING}{vm_id}{_SUFFIX}")
    return value if isinstance(value, dict) else {}


def write_migration(config: Config, vm_id: str, note: Dict[str, Optional[str]]) -> None:
    """Keep the note of a VM's migration here; an empty one is no note."""
    name = f"{_MIGRATING}{vm_id}{_SUFFIX}"
    with _directory(config) as directory:
        try:
            if note:
                _write(directory, name, note)
            else:
                _unlink(directory, name)
        except OSError as error:
            raise QhookError(
                f"cannot keep the migration note of VM {vm_id} in {config.host.state_dir}: "
                f"{error.strerror}"
            ) from None


def arriving_vms(config: Config) -> Set[str]:
    """The VMs whose migration to this host has not completed."""
    with _directory(config) as directory:
        names = os.listdir(directory)
    return {
        name[len(_MIGRATING) : -len(_SUFFIX)]
        for name in names
        if name.startswith(_MIGRATING) and name.endswith(_SUFFIX)
    }


def _event_file(event: str, vm_id: str) -> str:
    if event not in EVENTS:
        raise ValueError(f"not an event: {event}")
    return f"{event}-{vm_id}{_SUFFIX}"


def note_event(config: Config, vm_id: str, event: str) -> None:
    """Note that VDSM said this of the VM, now."""
    with _directory(config) as directory:
        try:
            _write(directory, _event_file(event, vm_id), {"since": time.time()})
        except OSError as error:
            raise QhookError(
                f"cannot note that VM {vm_id} is {event} in {config.host.state_dir}: "
                f"{error.strerror}"
            ) from None


def noted(config: Config, vm_id: str, event: str) -> Optional[float]:
    """When VDSM said this of the VM (seconds since the epoch), if it did."""
    with _directory(config) as directory:
        value = _read(directory, _event_file(event, vm_id))
    since = value.get("since") if isinstance(value, dict) else None
    return float(since) if isinstance(since, (int, float)) else None


def forget_event(config: Config, vm_id: str, event: str) -> None:
    with _directory(config) as directory:
        _unlink(directory, _event_file(event, vm_id))


def noted_vms(config: Config, event: str) -> Dict[str, float]:
    """The VMs VDSM said this of, and when."""
    prefix = f"{event}-"
    with _directory(config) as directory:
        names = [n for n in os.listdir(directory) if n.startswith(prefix) and n.endswith(_SUFFIX)]
        found = {}
        for name in names:
            value = _read(directory, name)
            since = value.get("since") if isinstance(value, dict) else None
            if isinstance(since, (int, float)):
                found[name[len(prefix) : -len(_SUFFIX)]] = float(since)
    return found


def known_binding(config: Config, url: str) -> Optional[bool]:
    """What the server at url said of port binding, if it said so lately."""
    with _directory(config) as directory:
        known = _read(directory, "extensions.json")
    try:
        same = known["url"] == url and isinstance(known["binding"], bool)
        fresh = 0 <= time.time() - float(known["checked"]) < BINDING_KEPT
    except (KeyError, TypeError, ValueError):
        return None
    return known["binding"] if same and fresh else None


def remember_binding(config: Config, url: str, binding: bool) -> None:
    """Note what the server said of port binding, for the runs that follow (best effort)."""
    with contextlib.suppress(OSError, ConfigError), _directory(config) as directory:
        _write(
            directory, "extensions.json", {"url": url, "binding": binding, "checked": time.time()}
        )


def note_retry(config: Config, reason: str) -> None:
    """Log that a transaction was run again, and why (best effort: appends are atomic, so
    concurrent helpers need no lock; the log stops growing at MAX_RETRIES_LOG)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC
    with contextlib.suppress(OSError, ConfigError), _directory(config) as directory:
        fd = os.open(RETRIES_LOG, flags, 0o600, dir_fd=directory)
        try:
            if os.fstat(fd).st_size < MAX_RETRIES_LOG:
                os.write(fd, f"{int(time.time())} {one_line(reason)[:200]}\n".encode())
        finally:
            os.close(fd)


def retries(config: Config) -> Dict[str, int]:
    """The transactions run again, by reason, as the log has them."""
    counts: Dict[str, int] = {}
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    with contextlib.suppress(OSError), _directory(config) as directory:
        fd = os.open(RETRIES_LOG, flags, dir_fd=directory)
        with open(fd, "rb") as stream:
            if stat.S_ISREG(os.fstat(fd).st_mode):
                for line in stream.read(MAX_RETRIES_LOG).decode(errors="replace").splitlines():
                    reason = line.partition(" ")[2]
                    counts[reason] = counts.get(reason, 0) + 1
    return counts
