# SPDX-License-Identifier: GPL-2.0-or-later
"""What a test run may leave on the host: nothing. A snapshot of the host's own network
namespace (links), the network namespaces, the /tmp entries and sudoers files named by
this package, and the daemons the tests start, taken before the run and compared after.

A daemon counts as the run's when its command line names the run's own temporary
directory or one of this package's /tmp entries made during the run. A namespace, /tmp
entry or sudoers file whose name carries the PID of another test run that is still going
is that run's; what another run on the same machine makes without its PID in the name
may be seen too."""

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, FrozenSet, List

PREFIX = "qhook-"
SYS_NET = Path("/sys/class/net")
NETNS = Path("/run/netns")
SUDOERS = Path("/etc/sudoers.d")


def _names(directory: Path, prefix: str = "") -> FrozenSet[str]:
    try:
        return frozenset(n for n in os.listdir(directory) if n.startswith(prefix))
    except OSError:
        return frozenset()


def _processes() -> Dict[int, str]:
    """Every process's command line, by PID."""
    found = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if raw:
            found[int(pid)] = raw.replace(b"\0", b" ").decode(errors="replace").strip()
    return found


def _another_runs(name: str) -> bool:
    """The name carries the PID of another test run that is still going."""
    for digits in re.findall(r"\d{2,}", name):
        pid = int(digits)
        if pid == os.getpid():
            continue
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"pytest" in command:
            return True
    return False


@dataclass(frozen=True)
class HostSnapshot:
    links: FrozenSet[str]
    namespaces: FrozenSet[str]
    temporary: FrozenSet[str]
    sudoers: FrozenSet[str]
    processes: FrozenSet[int]

    @classmethod
    def take(cls) -> "HostSnapshot":
        return cls(
            links=_names(SYS_NET),
            namespaces=_names(NETNS),
            temporary=_names(Path(tempfile.gettempdir()), PREFIX),
            sudoers=_names(SUDOERS, PREFIX),
            processes=frozenset(_processes()),
        )

    def left_since(self, before: "HostSnapshot", own_directory: Path) -> List[str]:
        """What exists now that did not before and that this run made, one line each."""
        left = [f"link {n} in the host's namespace" for n in sorted(self.links - before.links)]
        left += [
            f"network namespace {n}"
            for n in sorted(self.namespaces - before.namespaces)
            if not _another_runs(n)
        ]
        new_temporary = [
            n for n in sorted(self.temporary - before.temporary) if not _another_runs(n)
        ]
        directory = tempfile.gettempdir()
        left += [f"{directory}/{n}" for n in new_temporary]
        sudoers = sorted(self.sudoers - before.sudoers)
        left += [f"{SUDOERS}/{n}" for n in sudoers if not _another_runs(n)]
        marks = [str(own_directory), *(f"{directory}/{n}" for n in new_temporary)]
        for pid, command in sorted(_processes().items()):
            if pid not in before.processes and any(mark in command for mark in marks):
                left.append(f"process {pid}: {command[:160]}")
        return left
