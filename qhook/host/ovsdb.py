# SPDX-License-Identifier: GPL-2.0-or-later
"""A small OVSDB client (RFC 7047): one connection, `transact` only, every call bounded.

No table is monitored, so the cost of a call does not grow with the number of
ports on the bridge; each caller selects the few rows it needs by name.
"""

import codecs
import json
import socket
import time
from typing import Any, Callable, Dict, List, Optional, TypeVar

from qhook.errors import QhookError, one_line

DATABASE = "Open_vSwitch"
_READ_SIZE = 65536
# How a transaction fails when another client changed what it had read: one of its `wait`
# operations (timeout 0) found the rows changed, or a row it refers to was deleted.
CONFLICTS = frozenset({"timed out", "referential integrity violation"})
ATTEMPTS = 5  # a step whose transaction conflicts runs at most this many times
T = TypeVar("T")


class OvsdbUnreachable(QhookError):
    """Open vSwitch did not answer: not running, refused, or hung."""


class OvsdbError(QhookError):
    """Open vSwitch refused a transaction; `kind` is OVSDB's error name, if it gave one."""

    def __init__(self, message: str, kind: str = "") -> None:
        super().__init__(message)
        self.kind = kind


def uuid(value: str) -> List[str]:
    return ["uuid", value]


def named(name: str) -> List[str]:
    return ["named-uuid", name]


def ovs_map(mapping: Dict[str, str]) -> List[Any]:
    return ["map", [[key, value] for key, value in sorted(mapping.items())]]


def ovs_set(items: List[Any]) -> List[Any]:
    return ["set", items]


def map_value(column: Any) -> Dict[str, str]:
    """An OVSDB map column as a dict."""
    if isinstance(column, list) and len(column) == 2 and column[0] == "map":
        return {key: value for key, value in column[1]}
    return {}


def set_values(column: Any) -> List[Any]:
    """An OVSDB set column (or a single atom) as a list of atoms."""
    if isinstance(column, list) and len(column) == 2 and column[0] == "set":
        return list(column[1])
    return [column]


class Ovsdb:
    """A connection to ovsdb-server; use as a context manager."""

    def __init__(self, connection: str, timeout: float):
        self.connection = connection
        self.timeout = timeout
        self._deadline = time.monotonic() + timeout
        self._socket: Optional[socket.socket] = None
        self._text = ""
        self._utf8 = codecs.getincrementaldecoder("utf-8")("replace")
        self._decoder = json.JSONDecoder()
        self._next_id = 0

    def __enter__(self) -> "Ovsdb":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def _unreachable(self, reason: str) -> OvsdbUnreachable:
        self.close()
        return OvsdbUnreachable(f"cannot reach Open vSwitch at {self.connection}: {reason}")

    def _remaining(self) -> float:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise self._unreachable(f"no answer within {self.timeout:g} s")
        return left

    def _connect(self) -> socket.socket:
        if self._socket is not None:
            return self._socket
        method, _, address = self.connection.partition(":")
        try:
            if method == "unix":
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(self._remaining())
                sock.connect(address)
            elif method == "tcp":
                host, _, port = address.rpartition(":")
                sock = socket.create_connection(
                    (host.strip("[]"), int(port)), timeout=self._remaining()
                )
            else:
                raise self._unreachable(f"{method}: connections are not supported")
        except socket.timeout:
            raise self._unreachable(f"no answer within {self.timeout:g} s") from None
        except OSError as error:
            raise self._unreachable(error.strerror or str(error)) from None
        self._socket = sock
        return sock

    def _send(self, message: Dict[str, Any]) -> None:
        sock = self._connect()
        try:
            sock.settimeout(self._remaining())
            sock.sendall(json.dumps(message, separators=(",", ":")).encode())
        except socket.timeout:
            raise self._unreachable(f"no answer within {self.timeout:g} s") from None
        except OSError as error:
            raise self._unreachable(error.strerror or str(error)) from None

    def _receive(self) -> Dict[str, Any]:
        sock = self._connect()
        while True:
            text = self._text.lstrip()
            # A message is complete only when the text ends with a '}': decoding at every
            # chunk would parse a large answer over and over (quadratic in its size).
            if text and text.rstrip().endswith("}"):
                try:
                    message, end = self._decoder.raw_decode(text)
                except ValueError:
                    pass  # not complete yet: read more
                else:
                    self._text = text[end:]
                    if not isinstance(message, dict):
                        raise self._unreachable("it sent something that is not JSON-RPC")
                    return message
            try:
                sock.settimeout(self._remaining())
                chunk = sock.recv(_READ_SIZE)
            except socket.timeout:
                raise self._unreachable(f"no answer within {self.timeout:g} s") from None
            except OSError as error:
                raise self._unreachable(error.strerror or str(error)) from None
            if not chunk:
                raise self._unreachable("it closed the connection")
            self._text += self._utf8.decode(chunk)

    def call(self, method: str, params: List[Any]) -> Any:
        """One JSON-RPC request; answers the server's echo requests meanwhile."""
        self._next_id += 1
        request_id = self._next_id
        self._send({"method": method, "params": params, "id": request_id})
        while True:
            message = self._receive()
            if message.get("method") == "echo":
                self._send(
                    {"result": message.get("params", []), "error": None, "id": message.get("id")}
                )
                continue
            if message.get("id") != request_id:
                continue  # a notification or a stale reply: not ours
            if message.get("error") is not None:
                raise OvsdbError(
                    f"Open vSwitch refused {method}: {one_line(str(message['error']))}"
                )
            return message.get("result")

    def monitor(self, tables: Dict[str, List[Dict[str, Any]]]) -> None:
        """Ask for update notifications of the rows the conditions select (monitor_cond,
        whose `where` clauses are ORed); the caller re-reads rows when one arrives."""
        self.call("monitor_cond", [DATABASE, "qhook", tables])

    def fileno(self) -> int:
        return self._connect().fileno()

    def has_message(self) -> bool:
        """Whether a whole message already read from the socket waits here: select() on the
        socket does not wake for it (a notification that came in one read with a reply)."""
        text = self._text.lstrip()
        if not text:
            return False
        try:
            self._decoder.raw_decode(text)
        except ValueError:
            return False
        return True

    def drain(self) -> None:
        """Read what has arrived without blocking: answer echoes, drop notifications."""
        sock = self._connect()
        sock.setblocking(False)
        try:
            while True:
                chunk = sock.recv(_READ_SIZE)
                if not chunk:
                    raise self._unreachable("it closed the connection")
                self._text += self._utf8.decode(chunk)
        except BlockingIOError:
            pass
        except OSError as error:
            raise self._unreachable(error.strerror or str(error)) from None
        finally:
            if self._socket is not None:
                self._socket.setblocking(True)
        while True:
            text = self._text.lstrip()
            try:
                message, end = self._decoder.raw_decode(text)
            except ValueError:
                return
            self._text = text[end:]
            if isinstance(message, dict) and message.get("method") == "echo":
                self._send(
                    {"result": message.get("params", []), "error": None, "id": message.get("id")}
                )

    def transact(self, operations: List[Dict[str, Any]], what: str) -> List[Dict[str, Any]]:
        """Run operations atomically; raise OvsdbError naming what failed and why."""
        results = self.call("transact", [DATABASE, *operations])
        if not isinstance(results, list):
            raise OvsdbError(f"{what}: Open vSwitch gave no results")
        for index, result in enumerate(results):
            if isinstance(result, dict) and result.get("error"):
                details = result.get("details") or ""
                if index < len(operations):
                    details = details or json.dumps(operations[index])[:200]
                raise OvsdbError(
                    f"{what}: {result['error']}: {one_line(str(details))}", str(result["error"])
                )
        return results


def retrying(step: Callable[[], T], what: str, on_retry: Callable[[str], None]) -> T:
    """Run step (it reads rows, then transacts on what it read) again when its transaction
    failed because another client changed those rows meanwhile: another VM's hook, or an
    agent. At most ATTEMPTS runs, a few ms apart (the connection's deadline bounds them
    too); on_retry is told each time why. Any other failure, or the last, is raised."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return step()
        except OvsdbError as error:
            if error.kind not in CONFLICTS or attempt == ATTEMPTS:
                raise
            on_retry(f"{what}: {error.kind}")
            # Spread apart the clients that collided: 2-7 ms times the attempt.
            time.sleep((0.002 + (time.monotonic_ns() % 5_000_000) / 1e9) * attempt)
    raise AssertionError("unreachable")
