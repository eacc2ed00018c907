# SPDX-License-Identifier: GPL-2.0-or-later
"""Tokens for the Quantum client: Keystone password authentication, v3 or v2.0.

Keystone v3 gives a project-scoped token (POST /v3/auth/tokens, the token in the
X-Subject-Token header) and the service catalog, where the network endpoint is found.
v2.0 (POST /v2.0/tokens with passwordCredentials and a tenantName) is what oVirt's
engine speaks to ovirt-provider-ovn, whose Keystone stand-in knows no other. Either way
a token is renewed shortly before it expires, and once more when the API answers 401.
"""

import datetime
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import requests

from qhook.errors import one_line
from qhook.quantum.client import QuantumError, Send


class AuthError(QuantumError):
    """Keystone refused the credentials, or its answer cannot be used."""


@dataclass
class _Issued:
    token: str = field(repr=False)
    expires: Optional[datetime.datetime]
    lifetime: float
    catalog: List[Dict[str, Any]]


def _utc(text: Optional[str]) -> Optional[datetime.datetime]:
    """Keystone's expires_at, e.g. 2026-11-25T04:00:00.000000Z."""
    if not text:
        return None
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.timezone.utc)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


class KeystonePassword:
    """Keystone v3 password authentication, scoped to a project."""

    # Renew this long before expiry (at most a tenth of the token's life).
    MARGIN = 30.0

    def __init__(
        self,
        auth_url: str,
        username: str,
        password: str,
        project_name: str,
        user_domain_name: str = "Default",
        project_domain_name: str = "Default",
        region_name: Optional[str] = None,
        interface: str = "public",
    ):
        self.auth_url = auth_url.rstrip("/")
        if not self.auth_url.endswith("/v3"):
            self.auth_url += "/v3"
        self.username = username
        self._password = password
        self.project_name = project_name
        self.user_domain_name = user_domain_name
        self.project_domain_name = project_domain_name
        self.region_name = region_name
        self.interface = interface
        self._issued: Optional[_Issued] = None
        self.issued_count = 0

    def __repr__(self) -> str:
        return f"KeystonePassword({self.auth_url!r}, user={self.username!r})"

    def _body(self) -> Dict[str, Any]:
        return {
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {
                        "user": {
                            "name": self.username,
                            "domain": {"name": self.user_domain_name},
                            "password": self._password,
                        }
                    },
                },
                "scope": {
                    "project": {
                        "name": self.project_name,
                        "domain": {"name": self.project_domain_name},
                    }
                },
            }
        }

    def _authenticate(self, send: Send) -> _Issued:
        where = f"Keystone at {self.auth_url}"
        response = send("POST", f"{self.auth_url}/auth/tokens", json=self._body())
        if response.status_code != 201:
            raise AuthError(
                f"{where} refused user {self.username!a} of project {self.project_name!a}: "
                f"{response.status_code} {_keystone_message(response)}",
                kind="Unauthorized" if response.status_code == 401 else "AuthFailed",
                status=response.status_code,
            )
        token = response.headers.get("X-Subject-Token")
        try:
            body = response.json()["token"]
        except (ValueError, KeyError, TypeError):
            body = None
        if not token or not isinstance(body, dict):
            raise AuthError(f"{where} answered without a token", kind="NoToken")
        expires = _utc(body.get("expires_at"))
        issued = _utc(body.get("issued_at")) or _now()
        lifetime = (expires - issued).total_seconds() if expires else 0.0
        self.issued_count += 1
        return _Issued(token, expires, lifetime, body.get("catalog") or [])

    def _fresh(self) -> bool:
        issued = self._issued
        if issued is None:
            return False
        if issued.expires is None:
            return True
        margin = min(self.MARGIN, issued.lifetime / 10)
        return (issued.expires - _now()).total_seconds() > margin

    def token(self, send: Send) -> Optional[str]:
        if not self._fresh():
            self._issued = self._authenticate(send)
        assert self._issued is not None
        return self._issued.token

    def forget(self) -> bool:
        """Drop the token (the API said 401); the next call authenticates again."""
        self._issued = None
        return True

    def _catalog_urls(self) -> List[str]:
        """The catalog's network endpoints of this interface and region."""
        assert self._issued is not None
        return sorted(
            {
                endpoint.get("url", "")
                for service in self._issued.catalog
                if service.get("type") == "network"
                for endpoint in service.get("endpoints", [])
                if endpoint.get("interface") == self.interface
                and self.region_name in (None, endpoint.get("region_id"), endpoint.get("region"))
            }
        )

    def endpoint(self, send: Send) -> Optional[str]:
        """The network endpoint of the catalog, for this interface and region."""
        self.token(send)
        found = self._catalog_urls()
        if not found:
            region = f" in region {self.region_name}" if self.region_name else ""
            raise AuthError(
                f"the catalog of Keystone at {self.auth_url} has no {self.interface} network "
                f"endpoint{region}: set [quantum] url",
                kind="NoEndpoint",
            )
        if len(found) > 1:
            raise AuthError(
                f"the catalog of Keystone at {self.auth_url} has {len(found)} {self.interface} "
                f"network endpoints: set [quantum] region_name or url",
                kind="NoEndpoint",
            )
        url = found[0].rstrip("/")
        return url[: -len("/v2.0")] if url.endswith("/v2.0") else url


class KeystonePasswordV2(KeystonePassword):
    """Keystone v2.0 password authentication, scoped to a tenant (the project): what the
    oVirt engine uses with ovirt-provider-ovn. Users and projects have no domains."""

    VERSION = "/v2.0"

    def __init__(
        self,
        auth_url: str,
        username: str,
        password: str,
        project_name: str,
        region_name: Optional[str] = None,
        interface: str = "public",
    ):
        super().__init__(
            auth_url, username, password, project_name, region_name=region_name, interface=interface
        )
        self.auth_url = auth_url.rstrip("/")
        if not self.auth_url.endswith(self.VERSION):
            self.auth_url += self.VERSION

    def __repr__(self) -> str:
        return f"KeystonePasswordV2({self.auth_url!r}, user={self.username!r})"

    def _authenticate(self, send: Send) -> _Issued:
        where = f"Keystone at {self.auth_url}"
        body = {
            "auth": {
                "passwordCredentials": {"username": self.username, "password": self._password},
                "tenantName": self.project_name,
            }
        }
        response = send("POST", f"{self.auth_url}/tokens", json=body)
        if response.status_code != 200:
            raise AuthError(
                f"{where} refused user {self.username!a} of project {self.project_name!a}: "
                f"{response.status_code} {_keystone_message(response)}",
                kind="Unauthorized" if response.status_code in (401, 403) else "AuthFailed",
                status=response.status_code,
            )
        try:
            access = response.json()["access"]
            token = access["token"]
            token_id = token["id"]
        except (ValueError, KeyError, TypeError):
            access, token, token_id = None, None, None
        if not isinstance(token_id, str) or not token_id:
            raise AuthError(f"{where} answered without a token", kind="NoToken")
        expires = _utc(token.get("expires"))
        issued = _utc(token.get("issued_at")) or _now()
        lifetime = (expires - issued).total_seconds() if expires else 0.0
        self.issued_count += 1
        return _Issued(token_id, expires, lifetime, access.get("serviceCatalog") or [])

    def _catalog_urls(self) -> List[str]:
        """v2.0's catalog: one entry per region, a URL per interface (publicURL, ...)."""
        assert self._issued is not None
        return sorted(
            {
                endpoint.get(f"{self.interface}URL", "")
                for service in self._issued.catalog
                if service.get("type") == "network"
                for endpoint in service.get("endpoints", [])
                if endpoint.get(f"{self.interface}URL")
                and self.region_name in (None, endpoint.get("region"))
            }
        )


def _keystone_message(response: "requests.Response") -> str:
    try:
        error = response.json().get("error", {})
        message = error.get("message") or error.get("title")
    except (ValueError, AttributeError):
        message = None
    return one_line(str(message or response.reason or ""))[:300]
