# SPDX-License-Identifier: GPL-2.0-or-later
"""Ids and the names made from them: canonical UUIDs and MACs, MTUs, and the rule that
names a vNIC's tap after its host id. The hooks apply them to what the engine says; the
helper applies them again to what the hooks say, and to what it reads back."""

from __future__ import annotations

import re

from qhook.errors import PropertyError, shown

TYPE_CHECKING = False  # typing.TYPE_CHECKING: a device hook does not import typing
if TYPE_CHECKING:
    from typing import Optional, Tuple

TAP_PREFIX = "tap"
ID_CHARS_IN_NAME = 11
# Hybrid plugging's devices, named as os-vif names them: the vNIC's own Linux bridge and
# the two ends of the veth pair from it to the integration bridge.
HYBRID_BRIDGE_PREFIX, BRIDGE_END_PREFIX, OVS_END_PREFIX = "qbr", "qvb", "qvo"
# The compiled patterns TAP_NAME, PORT_NAME and HYBRID_NAME of the names this package
# gives host devices, each made on first use (__getattr__ below): a device hook uses none.
_NAME_PATTERNS = {
    # Taps: 'tap' + the first 11 characters of a lower-case UUID.
    "TAP_NAME": r"tap[0-9a-f]{8}-[0-9a-f]{2}",
    # The integration-bridge ports this package adds: a tap, or a hybrid vNIC's qvo end.
    "PORT_NAME": r"(?:tap|qvo)[0-9a-f]{8}-[0-9a-f]{2}",
    # A hybrid vNIC's Linux bridge and veth ends.
    "HYBRID_NAME": r"(?:qbr|qvb|qvo)[0-9a-f]{8}-[0-9a-f]{2}",
}
MTU_RANGE = (68, 65535)  # Linux's IPv4 minimum to the 16-bit maximum

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_MAC = re.compile(r"[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}")


def __getattr__(name: str) -> re.Pattern[str]:
    """TAP_NAME, PORT_NAME, HYBRID_NAME: compiled at the first look-up, then module globals."""
    try:
        pattern = re.compile(_NAME_PATTERNS[name])
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    globals()[name] = pattern
    return pattern


def tap_name_of(host_id: str) -> str:
    """The host device name of a vNIC: 'tap' + the first 11 characters of its host id."""
    return TAP_PREFIX + host_id[:ID_CHARS_IN_NAME]


def tap_name_behind(name: str) -> str:
    """The tap name of the vNIC a hybrid device (or an integration-bridge port) is of."""
    return TAP_PREFIX + name[len(TAP_PREFIX) :]


def hybrid_names(tap_name: str) -> Tuple[str, str, str]:
    """A hybrid vNIC's Linux bridge, its veth end in that bridge and the end on the
    integration bridge: the tap's name with another prefix (os-vif's rule)."""
    suffix = tap_name[len(TAP_PREFIX) :]
    return (HYBRID_BRIDGE_PREFIX + suffix, BRIDGE_END_PREFIX + suffix, OVS_END_PREFIX + suffix)


def normalise_mac(value: Optional[str], what: str = "MAC address") -> str:
    """A MAC address as six lower-case hex octets, or PropertyError."""
    if value is None or not _MAC.fullmatch(value):
        raise PropertyError(f"{what} {shown(value)} is not a MAC address")
    return value.lower()


def parse_mtu(value: Optional[str], what: str) -> Optional[int]:
    """An MTU from outside (a property, an XML attribute): None if not given."""
    if value is None or value == "":
        return None
    lowest, highest = MTU_RANGE
    if not (value.isascii() and value.isdigit()) or not lowest <= int(value) <= highest:
        raise PropertyError(f"{what}: {shown(value)} is not an MTU from {lowest} to {highest}")
    return int(value)


def normalise_uuid(value: Optional[str], what: str) -> str:
    """A UUID in lower case, or PropertyError naming what it is."""
    if value is None or not _UUID.fullmatch(value):
        raise PropertyError(f"{what}: {shown(value)} is not a UUID")
    return value.lower()
