# SPDX-License-Identifier: GPL-2.0-or-later
"""Requests to the privileged helper: JSON in, JSON out, checked field by field on arrival.

The helper trusts nothing its caller says: every id must be a UUID, every MAC a MAC,
every tap name of this package's pattern, every number in range, and no field may be
missing, extra or of another type.
"""

import json
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from qhook import plugins
from qhook.errors import QhookError, shown
from qhook.plugins import Plugin
from qhook.vocabulary.attachment import Attachment
from qhook.vocabulary.config import Config
from qhook.vocabulary.ids import (
    HYBRID_NAME,
    MTU_RANGE,
    PORT_NAME,
    TAP_NAME,
    normalise_mac,
    normalise_uuid,
)

MAX_REQUEST_BYTES = 256 * 1024
MAX_ITEMS = 64
READ_TIMEOUT = 10.0  # seconds the helper waits for its whole request on stdin
STARTUP_ALLOWANCE = 10.0  # sudo, the interpreter and the request, on the caller's clock

PLUG = "plug"
REPAIR = "repair"
REMOVE = "remove"
CAPS = "caps"
MOVE = "move"  # re-key a running vNIC's port to another Quantum port
END_MOVE = "end_move"  # the update went through (undo false) or failed (undo true)
PORTS = "ports"  # find or make the Quantum ports of vNICs whose profile names only a network
NOTE = "note"  # what VDSM said happened to a VM, for its ports on demand to follow
# The events a NOTE carries: saved to a file (it may come back), gone to another host by
# migration, and back (restored, or started afresh: what a suspension kept is its own).
SUSPENDED = "suspended"
LEFT = "left"
BACK = "back"
EVENTS = (SUSPENDED, LEFT, BACK)
# How PORTS treats the ports: bind them here (a start or hotplug; a migration, noting
# where each one was bound), or only find them (the VM has arrived: the note goes).
START = "start"
MIGRATE = "migrate"
ARRIVED = "arrived"
PORT_MODES = (START, MIGRATE, ARRIVED)
_FIELDS = {
    CAPS: {"verb"},
    PLUG: {"verb", "vm", "attachments"},
    REPAIR: {"verb", "vm", "attachments"},
    REMOVE: {"verb", "vm", "ports", "taps", "devices", "on_demand"},
    PORTS: {"verb", "vm", "vnics", "mode"},
    MOVE: {"verb", "vm", "attachments"},
    END_MOVE: {"verb", "vm", "macs", "undo"},
    NOTE: {"verb", "vm", "event"},
}
_ATTACHMENT_FIELDS = {
    "host_id",
    "mac",
    "plugin",
    "multiqueue",
    "mtu",
    "network_id",
    "mirror",
    "tap",
    "decided",
}


class RequestError(QhookError):
    """A request the helper refuses."""


@dataclass(frozen=True)
class PortWanted:
    """A vNIC whose port the host finds or makes: its MAC and Quantum network."""

    mac: str
    network_id: str
    plugin: Plugin  # the vNIC's, for its binding to confirm or overrule


@dataclass(frozen=True)
class Request:
    """One thing to do as root, for one VM."""

    verb: str
    vm_id: str
    attachments: List[Attachment] = field(default_factory=list)
    ports: List[str] = field(default_factory=list)  # REMOVE: port names, or taps' for both
    taps: List[str] = field(default_factory=list)
    devices: List[str] = field(default_factory=list)  # REMOVE: hybrid bridges and veths
    macs: List[str] = field(default_factory=list)
    undo: bool = False
    on_demand: List[str] = field(default_factory=list)  # REMOVE: MACs with ports on demand
    event: str = ""  # NOTE
    vnics: List[PortWanted] = field(default_factory=list)
    mode: str = START


def work_budget(request: Request, config: Config) -> float:
    """Seconds the helper may work on a request once it has read it: two bounded Open
    vSwitch sessions, the wait for the agent, and Quantum for ports on demand. The helper
    gives up at this bound; its caller waits STARTUP_ALLOWANCE longer."""
    budget = 2 * config.ovs.timeout + 5
    if config.wiring.wait and request.verb in (PLUG, MOVE):
        budget += config.wiring.timeout
    if request.verb in (PORTS, PLUG, MOVE) or request.on_demand:  # PLUG, MOVE: bindings
        budget += config.on_demand.timeout
    return budget


def encode(request: Request) -> bytes:
    body: Dict[str, Any] = {"verb": request.verb}
    if request.verb == CAPS:
        return json.dumps(body).encode()
    body["vm"] = request.vm_id
    if request.verb == REMOVE:
        body.update(
            ports=list(request.ports),
            taps=list(request.taps),
            devices=list(request.devices),
            on_demand=list(request.on_demand),
        )
    elif request.verb == PORTS:
        body.update(
            vnics=[
                {"mac": v.mac, "network_id": v.network_id, "plugin": v.plugin.value}
                for v in request.vnics
            ],
            mode=request.mode,
        )
    elif request.verb == END_MOVE:
        body.update(macs=list(request.macs), undo=request.undo)
    elif request.verb == NOTE:
        body["event"] = request.event
    else:
        body["attachments"] = [
            {
                "host_id": a.host_id,
                "mac": a.mac,
                "plugin": a.plugin.value,
                "multiqueue": a.multiqueue,
                "mtu": a.mtu,
                "network_id": a.network_id,
                "mirror": a.mirror,
                "tap": a.tap,
                "decided": a.decided,
            }
            for a in request.attachments
        ]
    return json.dumps(body).encode()


def _object(value: Any, fields: set, what: str) -> Dict[str, Any]:
    if not isinstance(value, dict):
        raise RequestError(f"{what} is not an object")
    if set(value) != fields:
        raise RequestError(f"{what} must have exactly the fields {', '.join(sorted(fields))}")
    return value


def _list(value: Any, what: str) -> List[Any]:
    if not isinstance(value, list) or len(value) > MAX_ITEMS:
        raise RequestError(f"{what} is not a list of at most {MAX_ITEMS} items")
    return value


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise RequestError(f"{what} is not a string")
    return value


def _tap_name(value: Any) -> str:
    name = _text(value, "a tap name")
    if not TAP_NAME.fullmatch(name):
        raise RequestError(f"{shown(name)} is not a tap name of this package")
    return name


def _name(value: Any, pattern: "re.Pattern[str]", what: str) -> str:
    name = _text(value, what)
    if not pattern.fullmatch(name):
        raise RequestError(f"{shown(name)} is not {what} of this package")
    return name


def _mtu(value: Any) -> Optional[int]:
    if value is None:
        return None
    lowest, highest = MTU_RANGE
    if type(value) is not int or not lowest <= value <= highest:
        raise RequestError(f"MTU {shown(str(value))} is not a number from {lowest} to {highest}")
    return value


def _plugin(value: Any) -> Plugin:
    try:
        return Plugin(_text(value, "plugin"))
    except ValueError:
        raise RequestError(f"unknown plugin {shown(value)}") from None


def _attachment(value: Any, vm_id: str) -> Attachment:
    body = _object(value, _ATTACHMENT_FIELDS, "an attachment")
    plugin = _plugin(body["plugin"])
    for flag in ("multiqueue", "mirror", "decided"):
        if type(body[flag]) is not bool:
            raise RequestError(f"{flag} is not true or false")
    network_id = body["network_id"]
    if network_id is not None:
        network_id = normalise_uuid(_text(network_id, "network_id"), "network_id")
    if body["mirror"] and (network_id is None or plugins.of(plugin).cannot_mirror):
        labels = [p.label for p in map(plugins.of, Plugin) if not p.cannot_mirror]
        raise RequestError(f"only an {' or '.join(labels)} vNIC with a network id can mirror")
    return Attachment(
        host_id=normalise_uuid(_text(body["host_id"], "host_id"), "host_id"),
        mac=normalise_mac(_text(body["mac"], "mac")),
        plugin=plugin,
        vm_id=vm_id,
        multiqueue=body["multiqueue"],
        mtu=_mtu(body["mtu"]),
        network_id=network_id,
        mirror=body["mirror"],
        tap=None if body["tap"] is None else _tap_name(body["tap"]),
        decided=body["decided"],
    )


def _ports_request(body: Dict[str, Any], vm_id: str) -> Request:
    mode = body["mode"]
    if not isinstance(mode, str) or mode not in PORT_MODES:
        raise RequestError(f"mode {shown(str(mode))} is not one of {', '.join(PORT_MODES)}")
    vnics = []
    for value in _list(body["vnics"], "vnics"):
        item = _object(value, {"mac", "network_id", "plugin"}, "a vNIC")
        vnics.append(
            PortWanted(
                normalise_mac(_text(item["mac"], "mac")),
                normalise_uuid(_text(item["network_id"], "network_id"), "network_id"),
                _plugin(item["plugin"]),
            )
        )
    if not vnics or len({v.mac for v in vnics}) != len(vnics):
        raise RequestError("a ports request names one or more vNICs, each MAC once")
    return Request(PORTS, vm_id, vnics=vnics, mode=mode)


def decode(data: bytes) -> Request:
    """A request, checked in full; RequestError (one line) for anything else."""
    if len(data) > MAX_REQUEST_BYTES:
        raise RequestError(f"the request is larger than {MAX_REQUEST_BYTES} bytes")
    try:
        body = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise RequestError("the request is not JSON") from None
    except RecursionError:
        raise RequestError("the request is nested too deeply") from None
    verb = body.get("verb") if isinstance(body, dict) else None
    if not isinstance(verb, str) or verb not in _FIELDS:
        raise RequestError(f"unknown verb: expected one of {', '.join(sorted(_FIELDS))}")
    _object(body, _FIELDS[verb], f"a {verb} request")
    if verb == CAPS:
        return Request(verb, "")
    vm_id = normalise_uuid(_text(body["vm"], "vm"), "vm")
    if verb == REMOVE:
        return Request(
            verb,
            vm_id,
            ports=[_name(v, PORT_NAME, "a port name") for v in _list(body["ports"], "ports")],
            taps=[_tap_name(v) for v in _list(body["taps"], "taps")],
            devices=[
                _name(v, HYBRID_NAME, "a device name") for v in _list(body["devices"], "devices")
            ],
            on_demand=[normalise_mac(_text(v, "mac")) for v in _list(body["on_demand"], "macs")],
        )
    if verb == PORTS:
        return _ports_request(body, vm_id)
    if verb == NOTE:
        event = body["event"]
        if not isinstance(event, str) or event not in EVENTS:
            raise RequestError(f"event {shown(str(event))} is not one of {', '.join(EVENTS)}")
        return Request(verb, vm_id, event=event)
    if verb == END_MOVE:
        if type(body["undo"]) is not bool:
            raise RequestError("undo is not true or false")
        macs = [normalise_mac(_text(v, "mac")) for v in _list(body["macs"], "macs")]
        return Request(verb, vm_id, macs=macs, undo=body["undo"])
    attachments = [_attachment(v, vm_id) for v in _list(body["attachments"], "attachments")]
    if verb == MOVE and len(attachments) != 1:
        raise RequestError("a move request moves exactly one vNIC")
    if len({a.tap_name for a in attachments}) != len(attachments):
        raise RequestError("two attachments share a tap name")
    return Request(verb, vm_id, attachments=attachments)
