# SPDX-License-Identifier: GPL-2.0-or-later
"""A TCP (optionally TLS) front for a service listening on a unix socket, such as the
tests' Neutron API: clients get a real http(s)://127.0.0.1:PORT address."""

import select
import socket
import socketserver
import ssl
import threading
from typing import Optional


class _Copy(socketserver.BaseRequestHandler):
    """Copies one connection to the unix socket and back."""

    def handle(self):
        client = self.request
        context = self.server.tls
        if context is not None:
            try:
                client = context.wrap_socket(client, server_side=True)
            except (ssl.SSLError, OSError):
                return  # the client refused our certificate: nothing to copy
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        upstream.connect(self.server.target)
        peers = {client: upstream, upstream: client}
        try:
            while True:
                readable, _, _ = select.select(list(peers), [], [], 60)
                if not readable:
                    return
                for source in readable:
                    data = source.recv(65536)
                    if not data:
                        return
                    peers[source].sendall(data)
        except OSError:
            return
        finally:
            upstream.close()


class Relay:
    """Listen on 127.0.0.1 (a free port) and relay to a unix socket; stop() ends it."""

    def __init__(self, target: str, tls: Optional[ssl.SSLContext] = None):
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Copy)
        self.server.daemon_threads = True
        self.server.target = target
        self.server.tls = tls
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
