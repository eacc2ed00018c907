# SPDX-License-Identifier: GPL-2.0-or-later
"""The sync's record of the Quantum networks it owns: which oVirt logical network each
one stands for, and whether the sync made it or adopted it.

Quantum cannot hold this record everywhere (ovirt-provider-ovn keeps neither a
network's description nor tags), and a logical network that is gone leaves nothing in
the engine to say which Quantum network was its own; so it is a file on the engine
machine, root's, replaced whole on every change (never half-written).
"""

import contextlib
import fcntl
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from typing import Dict, Iterator, Optional

from qhook.errors import ConfigError, one_line

VERSION = 1


@dataclass(frozen=True)
class Record:
    """A Quantum network the sync owns."""

    ovirt_id: str  # the logical network's id in the engine
    name: str  # its name when last synced
    data_center: str
    adopted: bool = False  # made by someone else, taken over with --adopt


class Records:
    """The records at `path`, by Quantum network id."""

    def __init__(self, path: str, networks: Optional[Dict[str, Record]] = None):
        self.path = path
        self.networks: Dict[str, Record] = dict(networks or {})

    @classmethod
    def load(cls, path: str) -> "Records":
        try:
            with open(path, encoding="utf-8") as stream:
                data = json.load(stream)
            networks = {
                quantum_id: Record(**fields) for quantum_id, fields in data["networks"].items()
            }
        except FileNotFoundError:
            return cls(path)
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as error:
            raise ConfigError(
                f"the sync's records {path} are unreadable ({one_line(str(error))[:120]}): "
                "move the file away and run qhook engine sync --adopt to rebuild them"
            ) from None
        return cls(path, networks)

    def quantum_id_of(self, ovirt_id: str) -> Optional[str]:
        for quantum_id, record in self.networks.items():
            if record.ovirt_id == ovirt_id:
                return quantum_id
        return None

    def put(self, quantum_id: str, record: Record) -> None:
        self.networks[quantum_id] = record
        self.save()

    def drop(self, quantum_id: str) -> None:
        if self.networks.pop(quantum_id, None) is not None:
            self.save()

    def save(self) -> None:
        """Replace the file whole: a new file beside it (mode 0600), then a rename."""
        directory = os.path.dirname(self.path) or "."
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
            descriptor, temporary = tempfile.mkstemp(prefix=".engine-sync.", dir=directory)
        except OSError as error:
            raise ConfigError(
                f"cannot write the sync's records in {directory}: {error.strerror}"
            ) from None
        try:
            with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
                networks = {key: asdict(value) for key, value in sorted(self.networks.items())}
                json.dump({"version": VERSION, "networks": networks}, stream, indent=1)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temporary, self.path)
        except OSError as error:
            os.unlink(temporary)
            raise ConfigError(f"cannot write {self.path}: {error.strerror}") from None


@contextlib.contextmanager
def held(path: str, timeout: float) -> Iterator[None]:
    """The records' lock (PATH.lock) for one pass: two syncs at once (the service and an
    admin's run) would both make the same network. Waits at most `timeout` seconds."""
    directory = os.path.dirname(path) or "."
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        descriptor = os.open(path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as error:
        raise ConfigError(f"cannot lock {path}: {error.strerror}") from None
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise ConfigError(
                        f"another qhook engine sync holds {path}.lock: not two at once "
                        "(systemctl status vdsm-hook-quantum-engine-sync)"
                    ) from None
                time.sleep(0.05)
        yield
    finally:
        os.close(descriptor)
