# SPDX-License-Identifier: GPL-2.0-or-later
"""Daemons a test stack starts in its own directory and stops by PID, with their trees."""

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple


def run_tool(args: List[str], env: Optional[Dict[str, str]] = None, timeout: float = 120) -> str:
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {done.returncode}\n{done.stdout}\n{done.stderr}")
    return done.stdout


def descendants(pid: int) -> List[int]:
    found, stack = [], [pid]
    while stack:
        for task in Path(f"/proc/{stack.pop()}/task").glob("*"):
            try:
                children = [int(c) for c in (task / "children").read_text().split()]
            except (OSError, ValueError):
                children = []
            found += children
            stack += children
    return found


def kill(pids: Sequence[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def unix_http(
    sock_path: Path,
    method: str,
    path: str,
    body: Optional[Dict[str, Any]] = None,
    headers: Optional[Dict[str, str]] = None,
) -> Tuple[int, Dict[str, str], Any]:
    """One HTTP request to a server on a unix socket: (status, headers, JSON body)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(60)
    sock.connect(str(sock_path))
    connection = http.client.HTTPConnection("localhost", timeout=60)
    connection.sock = sock
    connection.request(
        method,
        path,
        body=None if body is None else json.dumps(body),
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    response = connection.getresponse()
    data = response.read()
    connection.close()
    try:
        decoded = json.loads(data) if data else None
    except ValueError:
        decoded = data.decode(errors="replace")
    return response.status, dict(response.getheaders()), decoded


class DaemonGroup:
    """Processes started in self.dir, each in a session of its own, logged to LABEL.out."""

    def __init__(self, directory: Path, venv: Path):
        self.dir = Path(directory)
        self.venv = Path(venv)
        self.processes: Dict[str, subprocess.Popen] = {}

    def _env(self, **extra: str) -> Dict[str, str]:
        env = dict(os.environ)
        env["PATH"] = f"{self.venv}/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        env.update(extra)
        return env

    def _prefix(self, netns: bool) -> List[str]:
        """What runs a command inside the stack's network namespace (none by default)."""
        return []

    def _spawn(self, label: str, args: List[str], netns: bool = True, **env: str) -> None:
        out = open(self.dir / f"{label}.out", "wb")  # noqa: SIM115 - kept by Popen
        self.processes[label] = subprocess.Popen(
            [*self._prefix(netns), *args],
            env=self._env(**env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=str(self.dir),
        )
        out.close()

    def _wait(self, what: str, ready: Callable[[], Any], timeout: float, labels: List[str]):
        deadline = time.monotonic() + timeout
        while True:
            try:
                if ready():
                    return
            except Exception:
                pass
            for label in labels:
                if self.processes[label].poll() is not None:
                    tail = (self.dir / f"{label}.out").read_text(errors="replace")[-3000:]
                    raise RuntimeError(f"{label} exited: {tail}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} not ready after {timeout} s")
            time.sleep(0.2)

    def _terminate(self, label: str, process: subprocess.Popen, tree: List[int]) -> None:
        kill(tree, signal.SIGTERM)
        process.terminate()

    def _stop_groups(self, groups: List[Tuple[List[str], float]]) -> None:
        """Stop the labelled daemons group by group: SIGTERM, then SIGKILL after the grace."""
        for labels, grace in groups:
            trees = {}
            for label in labels:
                process = self.processes.pop(label, None)
                if process is None or process.poll() is not None:
                    continue
                trees[label] = (process, descendants(process.pid))
                self._terminate(label, process, trees[label][1])
            deadline = time.monotonic() + grace
            for process, tree in trees.values():
                try:
                    process.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    kill(descendants(process.pid) + tree, signal.SIGKILL)
                    process.kill()
                    process.wait(timeout=10)
                kill([pid for pid in tree if Path(f"/proc/{pid}").exists()], signal.SIGKILL)
