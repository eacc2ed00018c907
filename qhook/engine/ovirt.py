# SPDX-License-Identifier: GPL-2.0-or-later
"""The oVirt engine's REST API, through the official SDK (ovirtsdk4): its logical
networks with their vNIC profiles, the profiles' custom properties, and its events.

Every call is bounded by [ovirt] timeout. The SDK bounds its API requests but not its
single sign-on requests, so the token is fetched (and revoked) here, with the same
bound, and given to the SDK. Errors become one line: EngineUnreachable, EngineRefused
(with the engine's own reason) and, for custom properties the engine does not define,
UndefinedProperties naming the `qhook engine-config` command that defines them.
"""

import contextlib
import math
import urllib.parse
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

from qhook.engine.ovirt_settings import OvirtSettings
from qhook.errors import QhookError, one_line

MISSING_SDK = (
    "qhook engine sync needs the oVirt engine SDK: install python3-ovirt-engine-sdk4 (EL) "
    "or pip install ovirt-engine-sdk-python"
)
# What the engine says when a profile's custom properties are not in
# CustomDeviceProperties (ACTION_TYPE_FAILED_INVALID_CUSTOM_PROPERTIES and its kin).
EVENTS_PAGE = 500
_UNDEFINED_SIGNS = ("custom propert", "CUSTOM_PROPERT")


class EngineError(QhookError):
    """The engine could not be reached, or refused."""

    kind = "EngineError"

    def __init__(self, message: str, status: Optional[int] = None):
        super().__init__(message)
        self.status = status


class EngineUnreachable(EngineError):
    kind = "EngineUnreachable"


class EngineRefused(EngineError):
    kind = "EngineRefused"


class UndefinedProperties(EngineRefused):
    kind = "UndefinedProperties"


@dataclass(frozen=True)
class Profile:
    """A vNIC profile: what the sync reads and owns of it."""

    id: str
    name: str
    network_id: str
    properties: Dict[str, str]


@dataclass(frozen=True)
class LogicalNetwork:
    """An oVirt logical network, its data center and its vNIC profiles."""

    id: str
    name: str
    mtu: int  # 0: the default (the host's)
    data_center: str
    version: str  # the data center's compatibility version, e.g. 4.7
    profiles: Tuple[Profile, ...]


class Engine:
    """A session with the engine (a context manager): log in, read, write, log out."""

    def __init__(self, settings: OvirtSettings, trace: Optional[Callable[[str], None]] = None):
        self.settings = settings
        self.trace = trace
        self._connection: Any = None
        self._token: Optional[str] = None
        parts = urllib.parse.urlsplit(settings.url or "")
        self._origin = f"{parts.scheme}://{parts.netloc}"

    # -- session ---------------------------------------------------------------------
    def __enter__(self) -> "Engine":
        try:
            import ovirtsdk4
        except ImportError:
            raise EngineError(MISSING_SDK) from None
        self._token = self._sso("/ovirt-engine/sso/oauth/token", self._login_form())
        self._connection = ovirtsdk4.Connection(
            url=self.settings.url,
            token=self._token,
            ca_file=self.settings.ca_file,
            insecure=self.settings.insecure,
            timeout=max(1, math.ceil(self.settings.timeout)),
            connections=1,
        )
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._connection is not None:
            self._connection.close(logout=False)
            self._connection = None
        if self._token is not None:
            form = {"scope": "ovirt-app-api", "token": self._token}
            self._token = None
            with contextlib.suppress(EngineError):  # else the token expires by itself
                self._sso("/ovirt-engine/services/sso-logout", form)

    def _login_form(self) -> Dict[str, str]:
        return {
            "grant_type": "password",
            "scope": "ovirt-app-api",
            "username": self.settings.username or "",
            "password": self.settings.password or "",
        }

    def _sso(self, path: str, form: Dict[str, str]) -> str:
        """POST to the engine's single sign-on; the access token it answers (or '')."""
        import requests

        url = self._origin + path
        if self.trace:
            self.trace(f"POST {url}")
        verify: Any = False if self.settings.insecure else (self.settings.ca_file or True)
        if self.settings.insecure:  # said once, by the settings' warning
            import urllib3

            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        timeout = self.settings.timeout
        try:
            with requests.Session() as session:
                answer = session.post(
                    url,
                    data=form,
                    headers={"Accept": "application/json"},
                    timeout=(min(10.0, timeout), timeout),
                    verify=verify,
                    allow_redirects=False,
                )
        except requests.exceptions.SSLError as error:
            raise EngineUnreachable(
                f"the oVirt engine at {self._origin}: its certificate is not trusted "
                f"({one_line(str(error))[:200]}); set [ovirt] ca_file to the engine's CA "
                "(https://ENGINE/ovirt-engine/services/pki-resource?resource=ca-certificate)"
            ) from None
        except requests.exceptions.RequestException as error:
            raise EngineUnreachable(
                f"the oVirt engine at {self._origin} cannot be reached within "
                f"{timeout:g} s: {type(error).__name__}"
            ) from None
        try:
            body = answer.json()
        except ValueError:
            body = {}
        if isinstance(body, list):
            body = body[0] if body else {}
        if "error" in body or answer.status_code >= 400:
            reason = body.get("error_description") or body.get("error") or answer.reason
            if path.endswith("/token"):
                raise EngineRefused(
                    f"the oVirt engine at {self._origin} refused the login of "
                    f"{self.settings.username}: {one_line(str(reason))}",
                    status=answer.status_code,
                )
            raise EngineRefused(f"sso-logout: {one_line(str(reason))}", answer.status_code)
        return str(body.get("access_token") or "")

    def _call(self, what: str, call: Callable[[], Any]) -> Any:
        """Run an SDK call; its errors as one line saying what was being done."""
        import ovirtsdk4

        if self.trace:
            self.trace(f"engine: {what}")
        try:
            return call()
        except (ovirtsdk4.ConnectionError, ovirtsdk4.TimeoutError) as error:
            raise EngineUnreachable(
                f"the oVirt engine at {self._origin} cannot be reached to {what}: "
                f"{one_line(str(error))[:200]}"
            ) from None
        except ovirtsdk4.AuthError as error:
            raise EngineRefused(
                f"the oVirt engine refused {self.settings.username} to {what}: "
                f"{one_line(str(error))[:200]}",
                status=getattr(error, "code", None),
            ) from None
        except ovirtsdk4.Error as error:
            fault = getattr(error, "fault", None)
            detail = (getattr(fault, "detail", None) or getattr(fault, "reason", None)) or str(
                error
            )
            detail = one_line(str(detail)).strip("[] ")
            cls = (
                UndefinedProperties
                if any(sign in detail for sign in _UNDEFINED_SIGNS)
                else EngineRefused
            )
            raise cls(
                f"the oVirt engine refused to {what}: {detail}", getattr(error, "code", None)
            ) from None

    @property
    def _system(self) -> Any:
        return self._connection.system_service()

    # -- reading ---------------------------------------------------------------------
    def networks(self) -> List[LogicalNetwork]:
        """Every logical network of every data center, with its vNIC profiles (three
        requests, whatever their number)."""
        centers = self._call("list data centers", self._system.data_centers_service().list)
        networks = self._call("list logical networks", self._system.networks_service().list)
        profiles = self._call("list vNIC profiles", self._system.vnic_profiles_service().list)
        by_network: Dict[str, List[Profile]] = {}
        for profile in profiles:
            if profile.network is None:
                continue
            properties = {p.name: p.value or "" for p in profile.custom_properties or []}
            by_network.setdefault(profile.network.id, []).append(
                Profile(profile.id, profile.name, profile.network.id, properties)
            )
        center = {c.id: c for c in centers}
        found = []
        for network in networks:
            dc = center.get(network.data_center.id) if network.data_center else None
            version = getattr(dc, "version", None)
            found.append(
                LogicalNetwork(
                    id=network.id,
                    name=network.name,
                    mtu=network.mtu or 0,
                    data_center=dc.name if dc else "",
                    version=f"{version.major}.{version.minor}" if version else "",
                    profiles=tuple(sorted(by_network.get(network.id, []), key=_by_name)),
                )
            )
        return found

    def last_event(self) -> int:
        """The id of the engine's newest event (0: none)."""
        events = self._call("list events", lambda: self._system.events_service().list(max=1))
        return max((int(event.id) for event in events), default=0)

    def events_after(self, event_id: int) -> List[Tuple[int, int]]:
        """(id, code) of the events newer than event_id, oldest first: the newest
        EVENTS_PAGE of them (the engine answers newest first)."""
        service = self._system.events_service()
        events = self._call("list events", lambda: service.list(from_=event_id, max=EVENTS_PAGE))
        return sorted((int(e.id), int(e.code or 0)) for e in events if int(e.id) > event_id)

    # -- writing ---------------------------------------------------------------------
    def add_profile(self, network: LogicalNetwork, name: str, properties: Dict[str, str]) -> str:
        """Add a vNIC profile to the network; its id."""
        import ovirtsdk4.types as types

        profile = types.VnicProfile(
            name=name,
            network=types.Network(id=network.id),
            custom_properties=_custom(properties),
        )
        service = self._system.networks_service().network_service(network.id)
        added = self._call(
            f"add vNIC profile {name} to network {network.name}",
            lambda: service.vnic_profiles_service().add(profile),
        )
        return str(added.id)

    def set_properties(self, profile: Profile, network: str, properties: Dict[str, str]) -> None:
        """Replace the profile's custom properties (the engine replaces them whole)."""
        import ovirtsdk4.types as types

        service = self._system.vnic_profiles_service().profile_service(profile.id)
        self._call(
            f"update vNIC profile {profile.name} of network {network}",
            lambda: service.update(types.VnicProfile(custom_properties=_custom(properties))),
        )


def _custom(properties: Dict[str, str]) -> List[Any]:
    import ovirtsdk4.types as types

    return [types.CustomProperty(name=key, value=value) for key, value in properties.items()]


def _by_name(profile: Profile) -> Tuple[str, str]:
    return (profile.name, profile.id)
