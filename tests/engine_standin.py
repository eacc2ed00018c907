# SPDX-License-Identifier: GPL-2.0-or-later
"""A small stand-in of the oVirt engine: its SSO token endpoint and the part of its REST API
that deals with data centers, logical networks, vNIC profiles and events.

It serves the XML the engine serves, so the official Python SDK (ovirtsdk4) can talk to it, and
it reproduces the engine's behaviour where the hook depends on it: adding a VM network also
adds a vNIC profile named like the network, removing a network removes its profiles, renaming
it renames that default profile, a profile's ``custom_properties`` may only name properties
defined in CustomDeviceProperties, and every change is recorded as an event with the engine's
AuditLogType code and message. Where each fact comes from: tests/fixtures/engine/README.md.
"""

import contextlib
import json
import secrets
import socket
import ssl
import string
import subprocess
import threading
import time
import urllib.parse
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Set, Tuple

from lxml import etree

API = "/ovirt-engine/api"
SSO_TOKEN = "/ovirt-engine/sso/oauth/token"
SSO_LOGOUT = "/ovirt-engine/services/sso-logout"
VERSION = (4, 5, 6, 0)  # major, minor, build, revision of the engine we pretend to be
DC_LEVEL = (4, 7)  # the newest compatibility version of an oVirt 4.5 engine

Answer = Tuple[int, Optional["etree._Element"]]  # HTTP status, XML document (None: empty body)
Writer = Callable[["etree._Element", dict], None]

# AuditLogType name -> (code, AuditLogMessages.properties text).
AUDIT: Dict[str, Tuple[int, str]] = {
    "USER_ADD_STORAGE_POOL": (
        950,
        "Data Center ${StoragePoolName}, Compatibility Version ${CompatibilityVersion} and "
        "Quota Type ${QuotaEnforcementType} was added by ${UserName}",
    ),
    "NETWORK_ADD_NOTHING_TO_DO": (
        9423,
        "Start adding Network ${NetworkName} to Data Center: ${StoragePoolName}; no hosts affected",
    ),
    "NETWORK_ADD_NETWORK": (
        942,
        "Finished adding Network ${NetworkName} to Data Center: ${StoragePoolName}",
    ),
    "NETWORK_UPDATE_NOTHING_TO_DO": (
        11143,
        "Start Network ${NetworkName} update on Data Center: ${StoragePoolName}; no hosts affected",
    ),
    "NETWORK_UPDATE_NETWORK": (
        1114,
        "Finished Network ${NetworkName} update on Data Center: ${StoragePoolName}",
    ),
    "NETWORK_REMOVE_NOTHING_TO_DO": (
        9444,
        "Start Network ${NetworkName} removal from Data Center: ${StoragePoolName}; "
        "no hosts affected",
    ),
    "NETWORK_REMOVE_NETWORK": (
        944,
        "Finished Network ${NetworkName} removal from Data Center: ${StoragePoolName}",
    ),
    "ADD_VNIC_PROFILE": (
        1122,
        "VM network interface profile ${VnicProfileName} was added to network ${NetworkName} "
        "in Data Center: ${DataCenterName}. (User: ${UserName})",
    ),
    "UPDATE_VNIC_PROFILE": (
        1124,
        "VM network interface profile ${VnicProfileName} was updated for network "
        "${NetworkName} in Data Center: ${DataCenterName}. (User: ${UserName})",
    ),
    "REMOVE_VNIC_PROFILE": (
        1126,
        "VM network interface profile ${VnicProfileName} was removed from network "
        "${NetworkName} in Data Center: ${DataCenterName}. (User: ${UserName})",
    ),
}

# AppErrors.properties texts, already resolved the way the engine's ErrorTranslator does.
INVALID_KEYS = (
    "Cannot {action} VM network interface profile if some of the specified custom properties "
    "are not configured by the system. The keys are: {keys}"
)
PROFILE_NAME_IN_USE = (
    "Cannot {action} VM network interface profile. The VM network interface profile's name is "
    "already used by an existing profile for the same network.\n-Please choose a different name."
)
NETWORK_NAME_IN_USE = (
    "Cannot {action} Network. The name of the logical network '{name}' is already used by an "
    "existing logical network in the same data-center.\n-Please choose a different name."
)
BAD_LOGIN = (
    "Cannot authenticate user '{user}': Unable to log in. Verify your login information or "
    "contact the system administrator.."
)

# Elements the API model defines for the bodies we accept; anything else is refused.
_IDENTIFIED = {"name", "description", "comment", "link"}
NETWORK_ELEMENTS = _IDENTIFIED | {
    "ip", "vlan", "stp", "status", "display", "mtu", "usages", "required", "profile_required",
    "dns_resolver_configuration", "vdsm_name", "data_center", "cluster", "qos",
    "network_labels", "permissions", "vnic_profiles", "external_provider",
    "external_provider_physical_network", "port_isolation",
}  # fmt: skip
PROFILE_ELEMENTS = _IDENTIFIED | {
    "port_mirroring", "custom_properties", "pass_through", "migratable", "network", "qos",
    "network_filter", "failover", "permissions",
}  # fmt: skip


class Fault(Exception):
    """An error answer; ``reason`` None means an empty body, as the engine gives for a missing
    entity."""

    def __init__(self, status: int, reason: Optional[str] = None, detail: str = "") -> None:
        super().__init__(f"{status} {reason}: {detail}")
        self.status, self.reason, self.detail = status, reason, detail


def _failed(status: int, message: str) -> Fault:
    """A refused backend action: the REST layer puts the translated message list in the detail."""
    return Fault(status, "Operation Failed", f"[{message}]")


def _el(parent: etree._Element, tag: str, text: object = None, **attrs: str) -> etree._Element:
    child = etree.SubElement(parent, tag, **attrs)
    if text is not None:
        child.text = str(text).lower() if isinstance(text, bool) else str(text)
    return child


def _version(parent: etree._Element, tag: str, parts: Tuple[int, ...]) -> None:
    ver = _el(parent, tag)
    for name, value in zip(("major", "minor", "build", "revision"), parts):
        _el(ver, name, value)
    if len(parts) == 4:
        _el(ver, "full_version", "{}.{}.{}-1.el9".format(*parts[:3]))


class EngineStandin:
    """The engine, in one process: admin actions as methods, the REST API over real HTTP."""

    def __init__(
        self,
        username: str = "admin@internal",
        password: str = "engine-standin",
        token_lifetime: float = 3600,
        tls: Optional[Tuple[str, str]] = None,
    ) -> None:
        """tls: (certificate, key) PEM files to serve https with, as the engine does."""
        self.username, self.password, self.token_lifetime = username, password, token_lifetime
        self.tls = tls
        self.requests: List[Tuple[str, str]] = []
        self.port = 0
        self._lock = threading.RLock()
        self._dcs: Dict[str, dict] = {}
        self._networks: Dict[str, dict] = {}
        self._profiles: Dict[str, dict] = {}
        self._events: List[dict] = []
        self._custom_properties: Set[str] = set()
        self._tokens: Dict[str, float] = {}
        self._server: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None
        self._sockets: Set[socket.socket] = set()

    # -- life cycle -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}{API}"

    def start(self) -> "EngineStandin":
        """Listen (again) on 127.0.0.1; the first start picks a free port, later ones reuse it."""
        if self._server is not None:
            return self  # already up
        handler = type("Handler", (_Handler,), {"engine": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        self._server.daemon_threads = True
        if self.tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*self.tls)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Take the engine down: stop listening and cut the open keep-alive connections."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            for sock in list(self._sockets):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            self._sockets.clear()
        if self._thread is not None:
            self._thread.join(5)
        self._server = self._thread = None

    # -- what an administrator does ---------------------------------------------------------

    def add_data_center(self, name: str) -> str:
        with self._lock:
            dc = {"id": str(uuid.uuid4()), "name": name}
            self._dcs[dc["id"]] = dc
            self._event(
                "USER_ADD_STORAGE_POOL", dc, StoragePoolName=name,
                CompatibilityVersion="{}.{}".format(*DC_LEVEL), QuotaEnforcementType="DISABLED",
            )  # fmt: skip
            return dc["id"]

    def add_network(self, name: str, data_center: str, mtu: int = 0, vm: bool = True) -> str:
        """Add a logical network; a VM network gets its default vNIC profile, as in the engine."""
        return self._add_network(name, data_center, mtu, vm)["id"]

    def update_network(
        self, network_id: str, name: Optional[str] = None, mtu: Optional[int] = None
    ) -> None:
        self._update_network(self._get(self._networks, network_id), name, mtu, None)

    def remove_network(self, network_id: str) -> None:
        self._remove_network(self._get(self._networks, network_id))

    def add_profile(self, network_id: str, name: str, properties: Dict[str, str]) -> str:
        """Add a vNIC profile to a network (checked as the engine checks it)."""
        return self._add_profile(self._get(self._networks, network_id), name, properties)["id"]

    def define_custom_properties(self, names: Iterable[str]) -> None:
        """Set CustomDeviceProperties for interfaces (names only; regexes are not checked)."""
        with self._lock:
            self._custom_properties = set(names)

    def set_profile_properties(self, profile_id: str, properties: Dict[str, str]) -> None:
        """An administrator's hand edit in the database: no validation, no event."""
        with self._lock:
            self._get(self._profiles, profile_id)["custom_properties"] = dict(properties)

    # -- state, for assertions ----------------------------------------------------------------

    def networks(self) -> List[dict]:
        with self._lock:
            keys = ("id", "name", "mtu", "data_center")
            return [{k: n[k] for k in keys} for n in self._networks.values()]

    def profiles(self, network_id: Optional[str] = None) -> List[dict]:
        with self._lock:
            return [
                {**p, "custom_properties": dict(p["custom_properties"])}
                for p in self._profiles.values()
                if network_id is None or p["network"] == network_id
            ]

    def events(self) -> List[dict]:
        """Every recorded event, oldest first: {"id", "code", "description", ...}."""
        with self._lock:
            return [dict(e) for e in self._events]

    # -- the engine's commands ----------------------------------------------------------------

    @staticmethod
    def _get(table: Dict[str, dict], entity_id: str) -> dict:
        try:
            return table[entity_id]
        except KeyError:
            raise Fault(404) from None

    def _user(self) -> str:
        return self.username + "-authz" if "@" in self.username else self.username

    def _event(self, kind: str, dc: Optional[dict], **values: str) -> None:
        code, text = AUDIT[kind]
        values.setdefault("UserName", self._user())
        self._events.append({
            "id": len(self._events) + 1,
            "code": code,
            "description": string.Template(text).safe_substitute(values),
            "severity": "normal",
            "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "data_center": dc["id"] if dc else None,
        })  # fmt: skip

    def _network_name_free(self, dc_id: str, name: str, action: str, own: str = "") -> None:
        for other in self._networks.values():
            if other["data_center"] == dc_id and other["name"] == name and other["id"] != own:
                raise _failed(409, NETWORK_NAME_IN_USE.format(action=action, name=name))

    def _add_network(
        self, name: str, dc_id: str, mtu: int, vm: bool, description: str = "",
        profile_required: bool = True,
    ) -> dict:  # fmt: skip
        with self._lock:
            dc = self._get(self._dcs, dc_id)
            self._network_name_free(dc_id, name, "add")
            net = {"id": str(uuid.uuid4()), "name": name, "mtu": mtu, "data_center": dc_id,
                   "vm": vm, "description": description}  # fmt: skip
            self._networks[net["id"]] = net
            if vm and profile_required:  # AddNetworkCommand.runAddVnicProfile
                self._add_profile(net, name, {})
            names = {"NetworkName": name, "StoragePoolName": dc["name"]}
            self._event("NETWORK_ADD_NOTHING_TO_DO", dc, **names)
            self._event("NETWORK_ADD_NETWORK", dc, **names)
            return net

    def _update_network(
        self, net: dict, name: Optional[str], mtu: Optional[int], description: Optional[str]
    ) -> None:
        with self._lock:
            old_name = net["name"]
            if name is not None:
                self._network_name_free(net["data_center"], name, "edit", net["id"])
                net["name"] = name
                for (
                    profile
                ) in self._profiles.values():  # NetworkCommon.updateDefaultVnicProfileName
                    if profile["network"] == net["id"] and profile["name"] == old_name:
                        profile["name"] = name
            if mtu is not None:
                net["mtu"] = mtu
            if description is not None:
                net["description"] = description
            dc = self._dcs[net["data_center"]]
            names = {"NetworkName": net["name"], "StoragePoolName": dc["name"]}
            self._event("NETWORK_UPDATE_NOTHING_TO_DO", dc, **names)
            self._event("NETWORK_UPDATE_NETWORK", dc, **names)

    def _remove_network(self, net: dict) -> None:
        with self._lock:
            for profile in self.profiles(net["id"]):  # NetworkCommon.removeVnicProfiles: no event
                del self._profiles[profile["id"]]
            del self._networks[net["id"]]
            dc = self._dcs[net["data_center"]]
            names = {"NetworkName": net["name"], "StoragePoolName": dc["name"]}
            self._event("NETWORK_REMOVE_NOTHING_TO_DO", dc, **names)
            self._event("NETWORK_REMOVE_NETWORK", dc, **names)

    def _check_profile(self, net: dict, name: str, props: Dict[str, str], action: str,
                       own: str = "") -> None:  # fmt: skip
        for other in self._profiles.values():
            if other["network"] == net["id"] and other["name"] == name and other["id"] != own:
                raise _failed(409, PROFILE_NAME_IN_USE.format(action=action))
        missing = [key for key in props if key not in self._custom_properties]
        if missing:
            raise _failed(400, INVALID_KEYS.format(action=action, keys=",".join(missing)))

    def _profile_event(self, kind: str, profile: dict, net: dict) -> None:
        dc = self._dcs[net["data_center"]]
        self._event(kind, dc, VnicProfileName=profile["name"], NetworkName=net["name"],
                    DataCenterName=dc["name"])  # fmt: skip

    def _add_profile(self, net: dict, name: str, props: Dict[str, str],
                     description: str = "") -> dict:  # fmt: skip
        with self._lock:
            self._check_profile(net, name, props, "add")
            profile = {"id": str(uuid.uuid4()), "name": name, "network": net["id"],
                       "custom_properties": dict(props), "description": description}  # fmt: skip
            self._profiles[profile["id"]] = profile
            self._profile_event("ADD_VNIC_PROFILE", profile, net)
            return profile

    # -- the REST API ---------------------------------------------------------------------------

    def _login(self, form: Dict[str, str]) -> Tuple[int, dict]:
        if form.get("grant_type") != "password":
            return 400, {"error": "unsupported_grant_type", "error_description":
                         "The authorization grant type is not supported by the authorization "
                         "server."}  # fmt: skip
        user = form.get("username", "")
        if user != self.username or form.get("password") != self.password:
            return 400, {"error": "access_denied",
                         "error_description": BAD_LOGIN.format(user=user)}  # fmt: skip
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = time.monotonic() + self.token_lifetime
        expiry_ms = int((time.time() + self.token_lifetime) * 1000)
        return 200, {"access_token": token, "scope": form.get("scope", ""),
                     "exp": str(expiry_ms), "token_type": "bearer"}  # fmt: skip

    def _authorized(self, header: Optional[str]) -> bool:
        if not header or not header.startswith("Bearer "):
            return False
        with self._lock:
            expiry = self._tokens.get(header[len("Bearer ") :].strip())
        return expiry is not None and expiry > time.monotonic()

    def _route(self, method: str, parts: List[str], query: Dict[str, str], body: bytes) -> Answer:
        """Serve one API request; returns the status and the XML document (None: empty)."""
        with self._lock:
            key = (method, tuple("{id}" if i % 2 else p for i, p in enumerate(parts)))
            handler = _ROUTES.get(key)
            if handler is None:
                if any(k[1] == key[1] for k in _ROUTES):
                    raise Fault(405, "Method Not Allowed", f"{method} is not allowed here")
                raise Fault(404, "Not Found", f"No service for path {API}/{'/'.join(parts)}")
            return handler(self, parts[1::2], query, body)

    def _parse(self, body: bytes, root_tag: str, allowed: Set[str], node: str,
               method: str) -> etree._Element:  # fmt: skip
        """Parse a request body strictly, refusing it as the engine's JAXB reader does."""
        usage = Fault(400, "Request syntactically incorrect.",
                      f"For correct usage, see: http://127.0.0.1:{self.port}/ovirt-engine/apidoc"
                      f"#services/{node}/methods/{method}")  # fmt: skip
        parser = etree.XMLParser(resolve_entities=False, no_network=True)
        try:
            root = etree.fromstring(body, parser)
        except etree.XMLSyntaxError:
            raise usage from None
        if root.tag != root_tag or any(child.tag not in allowed for child in root):
            raise usage
        props = root.find("custom_properties")
        if props is not None:
            for prop in props:
                if prop.tag != "custom_property" or any(
                    c.tag not in ("name", "value", "regexp") for c in prop
                ):
                    raise usage
        return root

    @staticmethod
    def _required(kind: str, checks: Dict[str, bool]) -> None:
        """The REST layer's CompletenessAssertor: name the fields that were not given."""
        missing = [name for name, given in checks.items() if not given]
        if missing:
            raise Fault(
                400, "Incomplete parameters", f"{kind} [{', '.join(missing)}] required for add"
            )

    @staticmethod
    def _properties(root: etree._Element) -> Optional[Dict[str, str]]:
        props = root.find("custom_properties")
        if props is None:
            return None
        return {p.findtext("name") or "": p.findtext("value") or "" for p in props}

    # XML for each entity, as the engine writes it.

    def _dc_xml(self, parent: etree._Element, dc: dict) -> None:
        href = f"{API}/datacenters/{dc['id']}"
        node = _el(parent, "data_center", href=href, id=dc["id"])
        _el(node, "name", dc["name"])
        for rel in ("clusters", "networks", "permissions", "quotas", "storagedomains"):
            _el(node, "link", href=f"{href}/{rel}", rel=rel)
        _el(node, "local", False)
        _el(node, "quota_mode", "disabled")
        _el(node, "status", "uninitialized")
        _el(node, "storage_format", "v5")
        _version(_el(node, "supported_versions"), "version", DC_LEVEL)
        _version(node, "version", DC_LEVEL)

    def _network_xml(self, parent: etree._Element, net: dict) -> None:
        href = f"{API}/networks/{net['id']}"
        node = _el(parent, "network", href=href, id=net["id"])
        _el(node, "name", net["name"])
        if net["description"]:
            _el(node, "description", net["description"])
        for rel in ("networklabels", "permissions", "vnicprofiles"):
            _el(node, "link", href=f"{href}/{rel}", rel=rel)
        _el(node, "mtu", net["mtu"])
        _el(node, "port_isolation", False)
        _el(node, "stp", False)
        usages = _el(node, "usages")
        if net["vm"]:
            _el(usages, "usage", "vm")
        _el(node, "vdsm_name", net["name"])
        dc_id = net["data_center"]
        _el(node, "data_center", href=f"{API}/datacenters/{dc_id}", id=dc_id)

    def _profile_xml(self, parent: etree._Element, profile: dict) -> None:
        href = f"{API}/vnicprofiles/{profile['id']}"
        node = _el(parent, "vnic_profile", href=href, id=profile["id"])
        _el(node, "name", profile["name"])
        if profile["description"]:
            _el(node, "description", profile["description"])
        _el(node, "link", href=f"{href}/permissions", rel="permissions")
        if profile["custom_properties"]:
            props = _el(node, "custom_properties")
            for name, value in profile["custom_properties"].items():
                prop = _el(props, "custom_property")
                _el(prop, "name", name)
                _el(prop, "value", value)
        _el(_el(node, "pass_through"), "mode", "disabled")
        _el(node, "port_mirroring", False)
        net_id = profile["network"]
        _el(node, "network", href=f"{API}/networks/{net_id}", id=net_id)

    def _event_xml(self, parent: etree._Element, event: dict) -> None:
        node = _el(parent, "event", href=f"{API}/events/{event['id']}", id=str(event["id"]))
        _el(node, "description", event["description"])
        _el(node, "code", event["code"])
        _el(node, "custom_id", -1)
        _el(node, "flood_rate", 30)
        _el(node, "index", event["id"])
        _el(node, "origin", "oVirt")
        _el(node, "severity", event["severity"])
        _el(node, "time", event["time"])
        if event["data_center"]:
            dc_id = event["data_center"]
            _el(node, "data_center", href=f"{API}/datacenters/{dc_id}", id=dc_id)

    def _many(self, tag: str, writer: Writer, items: Iterable[dict]) -> Answer:
        root = etree.Element(tag)
        for item in items:
            writer(root, item)
        return 200, root

    def _one(self, status: int, writer: Writer, item: dict) -> Answer:
        holder = etree.Element("holder")
        writer(holder, item)
        return status, holder[0]

    # Handlers: (self, ids from the path, query, body) -> (status, document).

    def _h_api(self, ids: List[str], query: Dict[str, str], body: bytes) -> Answer:
        root = etree.Element("api")
        for rel in ("datacenters", "events", "networks", "vnicprofiles"):
            _el(root, "link", href=f"{API}/{rel}", rel=rel)
        info = _el(root, "product_info")
        _el(info, "instance_id", "8f3a8e5e-6a8c-4f6e-9d3c-5b1d2c7e0a11")
        _el(info, "name", "oVirt Engine")
        _el(info, "vendor", "ovirt.org")
        _version(info, "version", VERSION)
        _el(root, "time", datetime.now(timezone.utc).isoformat(timespec="milliseconds"))
        return 200, root

    def _h_dcs(self, ids: List[str], query: Dict[str, str], body: bytes) -> Answer:
        return self._many("data_centers", self._dc_xml, self._dcs.values())

    def _h_dc(self, ids: List[str], query: Dict[str, str], body: bytes) -> Answer:
        return self._one(200, self._dc_xml, self._get(self._dcs, ids[0]))

    def _h_dc_networks(self, ids: List[str], query: Dict[str, str], body: bytes) -> Answer:
        self._get(self._dcs, ids[0])
        nets = [n for n in self._networks.values() if n["data_center"] == ids[0]]
        return self._many("networks", self._network_xml, nets)

    def _h_networks(self, ids: List[str], query: Dict[str, str], body: bytes) -> Answer:
        nets = list(self._networks.values())
        for term in (query.get("search") or "").split(" and "):
            field, _, value = (s.strip() for s in term.partition("="))
            if field == "datacenter":
                nets = [n for n in nets if self._dcs[n["data_center"]]["name"] == value]
            elif field == "name":
                nets = [n for n in nets if n["name"] == value]
        return self._many("networks", self._network_xml, nets[: int(query.get("max", 1 << 30))])

    def _h_network_add(self, ids: List[str], query: Dict[str, str], body: bytes) -> Answer:
        root = self._parse(body, "network", NETWORK_ELEMENTS, "networks", "add")
        dc_ref = root.find("data_center")
        has_dc = dc_ref is not None and bool(dc_ref.get("id") or dc_ref.findtext("name"))
        self._required(
            "Network", {"name": bool(root.findtext("name")), "dataCenter.name|id": has_dc}
        )
        dc_id = dc_ref.get("id")
        if not dc_id:
            name = dc_ref.findtext("name")
            found = [d["id"] for d in self._dcs.values() if d["name"] == name]
            if not found:
                raise Fault(404, "Operation Failed", f"Entity not found: Datacenter: name={name}")
            dc_id = found[0]
        usages = root.find("usages")
        vm = usages is None or "vm" in [u.text for u in usages]
        net = self._add_network(
            root.findtext("name"), dc_id, int(root.findtext("mtu") or 0), vm,
            root.findtext("description") or "", root.findtext("profile_required") != "false",
        )  # fmt: skip
        return self._one(201, self._network_xml, net)

    def _h_network(self, ids: List[str], query: Dict[str, str], body: bytes) -> Answer:
        return self._one(200, self._network_xml, self._get(self._networks, ids[0]))

    def _h_network_update(self, ids: List[str], query: Dict[str, str], body: bytes) -> Answer:
        net = self._get(self._networks, ids[0])
        root = self._parse(body, "network", NETWORK_ELEMENTS, "network", "update")
        mtu = root.findtext("mtu")
        self._update_network(net, root.findtext("name"), None if mtu is None else int(mtu),
                             root.findtext("description"))  # fmt: skip
        return self._one(200, self._network_xml, net)

    def _h_network_remove(self, ids: List[str], query: Dict[str, str], body: bytes) -> Answer:
        self._remove_network(self._get(self._networks, ids[0]))
        return 200, None

    def _h_profiles(self, ids: List[str], query: Dict[str, str], body: bytes) -> Answer:
        profiles = [p for p in self._profiles.values() if not ids or p["network"] == ids[0]]
        if ids:
            self._get(self._networks, ids[0])
        return self._many("vnic_profiles", self._profile_xml, profiles)

    def _h_profile_add(self, ids: List[str], query: Dict[str, str], body: bytes) -> Answer:
        node = "assigned_vnic_profiles" if ids else "vnic_profiles"
        root = self._parse(body, "vnic_profile", PROFILE_ELEMENTS, node, "add")
        net_ref = root.find("network")
        net_id = ids[0] if ids else (net_ref.get("id") if net_ref is not None else None)
        checks = {"name": bool(root.findtext("name"))}
        if not ids:
            checks["network.id"] = bool(net_id)
        self._required("VnicProfile", checks)
        if net_id not in self._networks:
            raise Fault(404, "Operation Failed", f"Entity not found: Network: id={net_id}")
        profile = self._add_profile(self._networks[net_id], root.findtext("name"),
                                    self._properties(root) or {},
                                    root.findtext("description") or "")  # fmt: skip
        return self._one(201, self._profile_xml, profile)

    def _h_profile(self, ids: List[str], query: Dict[str, str], body: bytes) -> Answer:
        return self._one(200, self._profile_xml, self._get(self._profiles, ids[0]))

    def _h_profile_update(self, ids: List[str], query: Dict[str, str], body: bytes) -> Answer:
        profile = self._get(self._profiles, ids[0])
        root = self._parse(body, "vnic_profile", PROFILE_ELEMENTS, "vnic_profile", "update")
        net = self._networks[profile["network"]]
        name = root.findtext("name") or profile["name"]
        props = self._properties(root)  # given: replaces the whole set (VnicProfileMapper)
        self._check_profile(net, name, props or {}, "edit", profile["id"])
        profile["name"] = name
        if props is not None:
            profile["custom_properties"] = props
        if root.findtext("description") is not None:
            profile["description"] = root.findtext("description")
        self._profile_event("UPDATE_VNIC_PROFILE", profile, net)
        return self._one(200, self._profile_xml, profile)

    def _h_profile_remove(self, ids: List[str], query: Dict[str, str], body: bytes) -> Answer:
        profile = self._get(self._profiles, ids[0])
        del self._profiles[profile["id"]]
        self._profile_event("REMOVE_VNIC_PROFILE", profile, self._networks[profile["network"]])
        return 200, None

    def _h_events(self, ids: List[str], query: Dict[str, str], body: bytes) -> Answer:
        newer = int(query.get("from", -1))
        events = [e for e in reversed(self._events) if e["id"] > newer]  # audit_log_id DESC
        search = (query.get("search") or "").replace(" ", "")
        if search.startswith("type="):
            events = [e for e in events if str(e["code"]) == search[len("type=") :]]
        return self._many("events", self._event_xml, events[: int(query.get("max", 1 << 30))])

    def _h_event(self, ids: List[str], query: Dict[str, str], body: bytes) -> Answer:
        found = [e for e in self._events if str(e["id"]) == ids[0]]
        if not found:
            raise Fault(404)
        return self._one(200, self._event_xml, found[0])


_ROUTES = {
    ("GET", ()): EngineStandin._h_api,
    ("GET", ("datacenters",)): EngineStandin._h_dcs,
    ("GET", ("datacenters", "{id}")): EngineStandin._h_dc,
    ("GET", ("datacenters", "{id}", "networks")): EngineStandin._h_dc_networks,
    ("GET", ("networks",)): EngineStandin._h_networks,
    ("POST", ("networks",)): EngineStandin._h_network_add,
    ("GET", ("networks", "{id}")): EngineStandin._h_network,
    ("PUT", ("networks", "{id}")): EngineStandin._h_network_update,
    ("DELETE", ("networks", "{id}")): EngineStandin._h_network_remove,
    ("GET", ("networks", "{id}", "vnicprofiles")): EngineStandin._h_profiles,
    ("POST", ("networks", "{id}", "vnicprofiles")): EngineStandin._h_profile_add,
    ("GET", ("vnicprofiles",)): EngineStandin._h_profiles,
    ("POST", ("vnicprofiles",)): EngineStandin._h_profile_add,
    ("GET", ("vnicprofiles", "{id}")): EngineStandin._h_profile,
    ("PUT", ("vnicprofiles", "{id}")): EngineStandin._h_profile_update,
    ("DELETE", ("vnicprofiles", "{id}")): EngineStandin._h_profile_remove,
    ("GET", ("events",)): EngineStandin._h_events,
    ("GET", ("events", "{id}")): EngineStandin._h_event,
}


class _Handler(BaseHTTPRequestHandler):
    """HTTP plumbing: SSO endpoints, the bearer check, and faults as XML."""

    engine: EngineStandin
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        with self.engine._lock:
            self.engine._sockets.add(self.connection)

    def finish(self) -> None:
        with self.engine._lock:
            self.engine._sockets.discard(self.connection)
        super().finish()

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def _send(self, status: int, body: bytes, ctype: str, extra: Optional[dict] = None) -> None:
        self.send_response(status)
        if body:
            self.send_header("Content-Type", ctype)
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _serve(self) -> None:
        split = urllib.parse.urlsplit(self.path)
        path = split.path.rstrip("/")
        query = dict(urllib.parse.parse_qsl(split.query))
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with self.engine._lock:
            self.engine.requests.append((self.command, path))
        if path in (SSO_TOKEN, SSO_LOGOUT):
            form = dict(urllib.parse.parse_qsl(body.decode()))
            if path == SSO_LOGOUT:
                with self.engine._lock:
                    self.engine._tokens.pop(form.get("token", ""), None)
                status, answer = 200, {}
            else:
                status, answer = self.engine._login(form)
            self._send(status, json.dumps(answer).encode(), "application/json")
            return
        if path != API and not path.startswith(API + "/"):
            self._send(404, b"<html><body>Not Found</body></html>", "text/html")
            return
        if not self.engine._authorized(self.headers.get("Authorization")):
            page = b"<html><head><title>Error</title></head><body>Unauthorized</body></html>"
            self._send(401, page, "text/html", {"WWW-Authenticate": 'Basic realm="RESTAPI"'})
            return
        parts = [p for p in path[len(API) :].split("/") if p]
        try:
            status, doc = self.engine._route(self.command, parts, query, body)
        except Fault as fault:
            status, doc = fault.status, None
            if fault.reason is not None:
                doc = etree.Element("fault")
                _el(doc, "detail", fault.detail)
                _el(doc, "reason", fault.reason)
        data = b""
        if doc is not None:
            data = etree.tostring(doc, xml_declaration=True, encoding="UTF-8", standalone=True)
        self._send(status, data, "application/xml")

    do_GET = do_POST = do_PUT = do_DELETE = _serve


def self_signed(directory: Path) -> Tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 and its key (the certificate is its own CA
    file), for EngineStandin(tls=...)."""
    key, cert = directory / "engine.key", directory / "engine.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return str(cert), str(key)
