# SPDX-License-Identifier: GPL-2.0-or-later
"""A real Keystone (PyPI) for the tests: SQLite, fernet tokens, served by gunicorn on a
unix socket with a TCP relay in front, in the host's namespace.

Two servers share the database and the keys: the main one issues tokens that live an
hour; the second ("short") issues tokens that live SHORT_LIFE seconds, for the tests of
renewal. Keystone reads its configuration from OS_KEYSTONE_CONFIG_DIR/_FILES; like
Neutron it would parse sys.argv, so the WSGI module resets it.
"""

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional

from daemons import DaemonGroup, run_tool, unix_http
from relay import Relay

SHORT_LIFE = 5
REGION = "RegionOne"
_WSGI = """import sys
sys.argv = ["keystone-api"]  # oslo.config must not parse gunicorn's arguments
from keystone.wsgi.api import application  # noqa: E402,F401
"""


class KeystoneStack(DaemonGroup):
    """start() and stop(); url and short_url are the v3 endpoints over TCP."""

    def __init__(self, directory: Path, venv: Path):
        super().__init__(directory, venv)
        self.admin_password = "admin-" + secrets.token_hex(8)
        self.relays: Dict[str, Relay] = {}
        self.url = self.short_url = ""

    def _conf(self, expiration: int) -> str:
        d = self.dir
        return f"""[DEFAULT]
log_file = {d}/keystone-{expiration}.log
[database]
connection = sqlite:///{d}/keystone.db
[token]
provider = fernet
expiration = {expiration}
[fernet_tokens]
key_repository = {d}/fernet-keys
[fernet_receipts]
key_repository = {d}/receipt-keys
[credential]
key_repository = {d}/credential-keys
[identity]
password_hash_rounds = 4
[cache]
enabled = true
backend = dogpile.cache.memory
"""

    def _serve(self, label: str, etc: Path) -> None:
        sock = self.dir / f"{label}.sock"
        self._spawn(
            label,
            [
                f"{self.venv}/bin/gunicorn",
                *("--workers", "1", "--bind", f"unix:{sock}", "--timeout", "120"),
                *("--chdir", str(self.dir), "qhook_keystone_api:application"),
            ],
            OS_KEYSTONE_CONFIG_DIR=str(etc),
            OS_KEYSTONE_CONFIG_FILES="keystone.conf",
        )

    def start(self) -> "KeystoneStack":
        self.dir.mkdir(parents=True, exist_ok=True)
        try:
            for label in ("keystone", "keystone-short"):
                self.relays[label] = Relay(str(self.dir / f"{label}.sock"))
            self.url = self.relays["keystone"].url + "/v3"
            self.short_url = self.relays["keystone-short"].url + "/v3"
            (self.dir / "qhook_keystone_api.py").write_text(_WSGI)
            for label, life in (("keystone", 3600), ("keystone-short", SHORT_LIFE)):
                (self.dir / label).mkdir(exist_ok=True)
                (self.dir / label / "keystone.conf").write_text(self._conf(life))
            manage = [
                f"{self.venv}/bin/keystone-manage",
                "--config-file",
                str(self.dir / "keystone" / "keystone.conf"),
            ]
            owner = ["--keystone-user", "root", "--keystone-group", "root"]
            run_tool([*manage, "db_sync"], self._env(), timeout=300)
            run_tool([*manage, "fernet_setup", *owner], self._env())
            run_tool([*manage, "credential_setup", *owner], self._env())
            run_tool(
                [
                    *manage,
                    "bootstrap",
                    "--bootstrap-password",
                    self.admin_password,
                    *("--bootstrap-admin-url", self.url, "--bootstrap-public-url", self.url),
                    *("--bootstrap-internal-url", self.url, "--bootstrap-region-id", REGION),
                ],
                self._env(),
                timeout=300,
            )
            for label in ("keystone", "keystone-short"):
                self._serve(label, self.dir / label)
            for label in ("keystone", "keystone-short"):
                self._wait(
                    label,
                    lambda label=label: (
                        unix_http(self.dir / f"{label}.sock", "GET", "/v3")[0] == 200
                    ),
                    120,
                    [label],
                )
        except BaseException:
            self.stop()
            raise
        return self

    # -- the identity API, as admin ------------------------------------------------
    def call(
        self,
        method: str,
        path: str,
        body: Optional[Dict[str, Any]] = None,
        token: Optional[str] = None,
    ) -> Any:
        headers = {"X-Auth-Token": token or self.token("admin", self.admin_password, "admin")}
        status, _, data = unix_http(
            self.dir / "keystone.sock", method, f"/v3/{path}", body, headers
        )
        if status >= 400:
            raise RuntimeError(f"{method} {path}: {status} {str(data)[:500]}")
        return data

    def token(self, user: str, password: str, project: str) -> str:
        body = {
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {
                        "user": {"name": user, "domain": {"name": "Default"}, "password": password}
                    },
                },
                "scope": {"project": {"name": project, "domain": {"name": "Default"}}},
            }
        }
        status, headers, data = unix_http(
            self.dir / "keystone.sock", "POST", "/v3/auth/tokens", body
        )
        if status != 201:
            raise RuntimeError(f"no token for {user}: {status} {data}")
        return headers["X-Subject-Token"]

    def add_user(self, name: str, password: str, project: str, roles=("admin",)) -> None:
        """A user with these roles in a project (made if missing) of the Default domain."""
        admin = self.token("admin", self.admin_password, "admin")
        found = self.call("GET", f"projects?name={project}", token=admin)["projects"]
        if found:
            project_id = found[0]["id"]
        else:
            project_id = self.call(
                "POST", "projects", {"project": {"name": project, "domain_id": "default"}}, admin
            )["project"]["id"]
        user = self.call(
            "POST",
            "users",
            {"user": {"name": name, "password": password, "domain_id": "default"}},
            admin,
        )["user"]
        known = {r["name"]: r["id"] for r in self.call("GET", "roles", token=admin)["roles"]}
        for role in roles:
            self.call(
                "PUT", f"projects/{project_id}/users/{user['id']}/roles/{known[role]}", token=admin
            )

    def add_network_endpoint(self, url: str) -> None:
        admin = self.token("admin", self.admin_password, "admin")
        service = self.call(
            "POST", "services", {"service": {"type": "network", "name": "neutron"}}, admin
        )["service"]
        self.call(
            "POST",
            "endpoints",
            {
                "endpoint": {
                    "service_id": service["id"],
                    "interface": "public",
                    "url": url,
                    "region_id": REGION,
                }
            },
            admin,
        )

    def revoke(self, token: str) -> None:
        """Revoke a token: Neutron refuses it (401) at once."""
        admin = self.token("admin", self.admin_password, "admin")
        status, _, data = unix_http(
            self.dir / "keystone.sock",
            "DELETE",
            "/v3/auth/tokens",
            headers={"X-Auth-Token": admin, "X-Subject-Token": token},
        )
        if status != 204:
            raise RuntimeError(f"revoking a token: {status} {data}")

    def stop(self) -> None:
        self._stop_groups([(["keystone", "keystone-short"], 10)])
        for relay in self.relays.values():
            relay.stop()
        self.relays.clear()


@dataclass
class KeystoneNeutron:
    """Keystone, and a Neutron API server behind it listed in its catalog as the network."""

    keystone: KeystoneStack
    neutron_url: str
    relay: Relay

    def stop(self) -> None:
        self.relay.stop()
        self.keystone.stop()


def keystone_in_front_of(neutron: Any, directory: Path, venv: Path) -> KeystoneNeutron:
    """Start a Keystone, and a second API server of this NeutronStack behind it."""
    stack = KeystoneStack(directory, venv).start()
    try:
        service_password = secrets.token_hex(12)
        stack.add_user("neutron", service_password, "service", roles=("admin", "service"))
        sock = neutron.start_keystone_api(stack.url, "neutron", service_password)
        relay = Relay(str(sock))
        stack.add_network_endpoint(relay.url)
    except BaseException:
        stack.stop()
        raise
    return KeystoneNeutron(stack, relay.url, relay)
