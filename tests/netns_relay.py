# SPDX-License-Identifier: GPL-2.0-or-later
"""A TCP relay between network namespaces, without addresses or routes: it listens on
127.0.0.1:PORT inside one named namespace and connects, for every client, to
127.0.0.1:PORT inside another named namespace (or to a unix socket).

Namespaces do not share 127.0.0.1, but a socket stays in the namespace it was created
in: each socket is made by a short-lived thread of this process that setns(2)s itself
into the namespace, creates the socket and setns(2)s back (Python 3.9 to 3.11 have no
os.setns, hence ctypes). The process's other threads never change namespace.
"""

import contextlib
import ctypes
import os
import select
import socket
import threading
from typing import Callable, List, Optional, Set

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.setns.restype = ctypes.c_int
_POLL = 0.5  # how often the threads look at the stop flag, in seconds


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"setns: {os.strerror(error)}")


def _in_thread(make: Callable[[], socket.socket], timeout: float = 10) -> socket.socket:
    """Run make() in a thread of its own and return its socket (or raise its error)."""
    result: List[socket.socket] = []
    failure: List[BaseException] = []

    def run() -> None:
        try:
            result.append(make())
        except BaseException as error:  # handed to the caller
            failure.append(error)

    thread = threading.Thread(target=run, name="netns-socket", daemon=True)
    thread.start()
    thread.join(timeout)
    if failure:
        raise failure[0]
    if not result:
        raise TimeoutError(f"no socket after {timeout} s")
    return result[0]


def socket_in(
    netns: Optional[str], family: int = socket.AF_INET, kind: int = socket.SOCK_STREAM
) -> socket.socket:
    """A new socket in network namespace `netns` (/var/run/netns/NAME; None: our own)."""
    if netns is None:
        return socket.socket(family, kind)

    def make() -> socket.socket:
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            target = os.open(f"/var/run/netns/{netns}", os.O_RDONLY | os.O_CLOEXEC)
            try:
                _setns(target)
            finally:
                os.close(target)
            try:
                return socket.socket(family, kind)
            finally:
                _setns(own)  # if this failed, the thread would just end
        finally:
            os.close(own)

    return _in_thread(make)


class NetnsRelay:
    """Listen on 127.0.0.1:port in namespace `listen_netns`; relay every connection to
    127.0.0.1:to_port in namespace `to_netns`, or to the unix socket `to_unix`.

    None as a namespace means the test process's own. stop() closes every socket."""

    def __init__(
        self,
        listen_netns: Optional[str],
        port: int,
        to_netns: Optional[str] = None,
        to_port: Optional[int] = None,
        to_unix: Optional[str] = None,
    ):
        if (to_unix is not None) == (to_port is not None or to_netns is not None):
            raise ValueError("relay to a namespace's port or to a unix socket, not both")
        self.listen_netns, self.port = listen_netns, port
        self.to_netns, self.to_port, self.to_unix = to_netns, to_port or port, to_unix
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._sockets: Set[socket.socket] = set()
        self._threads: List[threading.Thread] = []
        self.listener = socket_in(listen_netns)
        try:
            self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.listener.bind(("127.0.0.1", port))
            self.listener.listen(64)
        except BaseException:
            self.listener.close()
            raise
        self._start(self._accept, "netns-relay-accept")

    def __repr__(self) -> str:
        target = self.to_unix or f"{self.to_netns}:127.0.0.1:{self.to_port}"
        return f"NetnsRelay({self.listen_netns}:127.0.0.1:{self.port} -> {target})"

    def _start(self, run: Callable[..., None], name: str, *args: object) -> None:
        thread = threading.Thread(target=run, args=args, name=name, daemon=True)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()

    def _keep(self, sock: socket.socket) -> bool:
        """Track a socket for stop(); False (and closed) if stopping already."""
        with self._lock:
            if self._stopping.is_set():
                sock.close()
                return False
            self._sockets.add(sock)
            return True

    def _drop(self, *socks: socket.socket) -> None:
        with self._lock:
            for sock in socks:
                self._sockets.discard(sock)
                sock.close()

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                readable, _, _ = select.select([self.listener], [], [], _POLL)
                if not readable:
                    continue
                client, _ = self.listener.accept()
            except (OSError, ValueError):  # closed by stop()
                return
            if self._keep(client):
                self._start(self._serve, "netns-relay-copy", client)

    def _upstream(self) -> socket.socket:
        if self.to_unix is not None:
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            address: object = self.to_unix
        else:
            upstream = socket_in(self.to_netns)
            address = ("127.0.0.1", self.to_port)
        try:
            upstream.settimeout(10)
            upstream.connect(address)
        except BaseException:
            upstream.close()
            raise
        return upstream

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = self._upstream()
        except OSError:
            self._drop(client)  # the client sees the connection closed
            return
        if not self._keep(upstream):
            self._drop(client)
            return
        try:
            self._copy(client, upstream)
        finally:
            self._drop(client, upstream)

    def _copy(self, client: socket.socket, upstream: socket.socket) -> None:
        """Copy both ways until both have ended (a half-close is passed on) or stop()."""
        for sock in (client, upstream):
            sock.settimeout(60)  # a peer that reads nothing for a minute ends the copy
        peers = {client: upstream, upstream: client}
        reading = [client, upstream]
        while reading and not self._stopping.is_set():
            try:
                readable, _, _ = select.select(reading, [], [], _POLL)
                for source in readable:
                    data = source.recv(65536)
                    if data:
                        peers[source].sendall(data)
                        continue
                    reading.remove(source)
                    with contextlib.suppress(OSError):
                        peers[source].shutdown(socket.SHUT_WR)
            except (OSError, ValueError):  # reset, timed out, or closed by stop()
                return

    def stop(self, timeout: float = 5) -> None:
        """Close the listener and every connection; wait (bounded) for the threads."""
        self._stopping.set()
        with self._lock:
            socks, self._sockets = list(self._sockets), set()
            threads = list(self._threads)
        self.listener.close()
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for thread in threads:
            thread.join(timeout)
