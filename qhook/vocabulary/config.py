# SPDX-License-Identifier: GPL-2.0-or-later
"""Host configuration: an ini file, /etc/vdsm/quantum.conf or the path in $QHOOK_CONFIG.
The hooks read it as vdsm; root reads its own copy only as qhook.host.trust allows."""

from __future__ import annotations

import configparser
import enum
import math
import re
from collections import namedtuple

from qhook.errors import ConfigError, one_line, shown

TYPE_CHECKING = False  # typing.TYPE_CHECKING: a device hook does not import typing
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

DEFAULT_PATH = "/etc/vdsm/quantum.conf"
PATH_VARIABLE = "QHOOK_CONFIG"

MAX_TIMEOUT = 3600.0

# Patterns compiled when a file sets the key (re's cache), not at every hook's import.
_BRIDGE_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,14}"
_CONNECTION = (
    r"unix:/[^\x00-\x1f]*"
    r"|tcp:(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}"
)


class PlugMode(enum.Enum):
    """Who plugs an Open vSwitch vNIC: this hook (a tap it made) or libvirt."""

    HOOK = "hook"
    LIBVIRT = "libvirt"


class HybridPlug(enum.Enum):
    """Whether an Open vSwitch vNIC whose port binding the host cannot read is plugged
    hybrid (for Neutron's iptables_hybrid firewall); a readable binding always decides."""

    AUTO = "auto"  # straight on the integration bridge, with a warning
    YES = "yes"
    NO = "no"


def _settings(name: str, doc: str, **defaults: Any) -> Any:
    """A named tuple of these fields, each defaulting to its value, in this order (as a
    typing.NamedTuple class would be, without importing typing)."""
    settings = namedtuple(name, list(defaults), defaults=list(defaults.values()))
    settings.__doc__ = doc
    return settings


OvsConfig = _settings(
    "OvsConfig",
    "The [ovs] section.",
    connection="unix:/var/run/openvswitch/db.sock",
    integration_bridge="br-int",
    plug=PlugMode.HOOK,
    timeout=10.0,
    hybrid_plug=HybridPlug.AUTO,
)


class OnTimeout(enum.Enum):
    """What a VM start does when the agent has not wired its ports in time."""

    START = "start"
    FAIL = "fail"


WiringConfig = _settings(
    "WiringConfig",
    "The [wiring] section: waiting for the agent to wire the ports before the VM runs.",
    wait=True,
    timeout=30.0,
    on_timeout=OnTimeout.START,
)


HostConfig = _settings(
    "HostConfig",
    """The [host] section: how the unprivileged hooks get root work done, and who the host
    is to the agents.""",
    helper="/usr/libexec/vdsm-hook-quantum/qhook-privileged",
    # The host id the agents run as (their `host`, OVN's chassis hostname); by default
    # Open vSwitch's external_ids:hostname, else the host name.
    agent_host="",
    # Root's notes that outlive one hook run (which ports a migration moved here).
    state_dir="/run/vdsm-hook-quantum",
)


OnDemandConfig = _settings(
    "OnDemandConfig",
    """The [on_demand] section: ports made by the host for vNICs whose profile names only
    the Quantum network.""",
    # The [quantum] settings (URL, credentials): a file only root can read.
    settings="/etc/vdsm/quantum-api.conf",
    # Seconds one hook run may spend with Quantum, every call included.
    timeout=30.0,
    # Days the ports of a VM suspended here are kept by `qhook cleanup --quantum` (it
    # may come back; one the engine discarded never does).
    keep_suspended=30.0,
)


Config = _settings(
    "Config",
    "Everything the hooks read from the configuration file.",
    ovs=OvsConfig(),
    wiring=WiringConfig(),
    host=HostConfig(),
    on_demand=OnDemandConfig(),
    source="defaults",
)


def _connection(value: str) -> str:
    if not re.fullmatch(_CONNECTION, value):
        raise ValueError("expected unix:/PATH or tcp:HOST:PORT")
    return value


def _bridge(value: str) -> str:
    if not re.fullmatch(_BRIDGE_NAME, value):
        raise ValueError("expected 1 to 15 letters, digits, '_', '.' or '-'")
    return value


def _plug(value: str) -> PlugMode:
    try:
        return PlugMode(value)
    except ValueError:
        raise ValueError("expected hook or libvirt") from None


def _hybrid_plug(value: str) -> HybridPlug:
    try:
        return HybridPlug(value)
    except ValueError:
        raise ValueError("expected auto, yes or no") from None


def timeout_seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError("expected a number of seconds") from None
    if not (math.isfinite(seconds) and 0 < seconds <= MAX_TIMEOUT):
        raise ValueError(f"expected more than 0 and at most {MAX_TIMEOUT:g} seconds")
    return seconds


_OVS_KEYS: Dict[str, Callable[[str], object]] = {
    "connection": _connection,
    "integration_bridge": _bridge,
    "plug": _plug,
    "timeout": timeout_seconds,
    "hybrid_plug": _hybrid_plug,
}


def _absolute_path(value: str) -> str:
    if not re.fullmatch(r"/[A-Za-z0-9_./+-]*", value) or "/../" in value + "/":
        raise ValueError("expected an absolute path of letters, digits and _./+-")
    return value


def _yes_no(value: str) -> bool:
    if value.lower() in ("yes", "true", "on", "1"):
        return True
    if value.lower() in ("no", "false", "off", "0"):
        return False
    raise ValueError("expected yes or no")


def _on_timeout(value: str) -> OnTimeout:
    try:
        return OnTimeout(value)
    except ValueError:
        raise ValueError("expected start or fail") from None


def _host_name(value: str) -> str:
    if value == "":
        return value  # not set: Open vSwitch's hostname, else the host name
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,254}", value):
        raise ValueError("expected a host name (letters, digits, '_', '.' and '-')")
    return value


_HOST_KEYS: Dict[str, Callable[[str], object]] = {
    "helper": _absolute_path,
    "agent_host": _host_name,
    "state_dir": _absolute_path,
}


def _days(value: str) -> float:
    try:
        days = float(value)
    except ValueError:
        raise ValueError("expected a number of days") from None
    if not (math.isfinite(days) and 0 <= days <= 3650):
        raise ValueError("expected 0 to 3650 days")
    return days


_ON_DEMAND_KEYS: Dict[str, Callable[[str], object]] = {
    "settings": _absolute_path,
    "timeout": timeout_seconds,
    "keep_suspended": _days,
}
_WIRING_KEYS: Dict[str, Callable[[str], object]] = {
    "wait": _yes_no,
    "timeout": timeout_seconds,
    "on_timeout": _on_timeout,
}
# Read by the engine-side commands (qhook.quantum.settings), not by the hooks.
ENGINE_SECTIONS = ("quantum",)
_SECTIONS: Dict[str, Dict[str, Callable[[str], object]]] = {
    "ovs": _OVS_KEYS,
    "wiring": _WIRING_KEYS,
    "host": _HOST_KEYS,
    "on_demand": _ON_DEMAND_KEYS,
}


def config_path(env: Mapping[str, str]) -> str:
    """The file to read: $QHOOK_CONFIG, else the default path."""
    return env.get(PATH_VARIABLE) or DEFAULT_PATH


def read_ini(path: str, data: Optional[bytes] = None) -> Tuple[configparser.ConfigParser, bool]:
    """The ini file at path (or its contents, already read); (parser, whether it exists)."""
    parser = configparser.ConfigParser(interpolation=None, empty_lines_in_values=False)
    try:
        if data is None:
            with open(path, encoding="utf-8") as stream:
                parser.read_file(stream, source=path)
        else:
            parser.read_string(data.decode("utf-8"), source=path)
    except FileNotFoundError:
        return parser, False
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read {path}: {one_line(str(error))}") from None
    except configparser.Error as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ConfigError(f"{path} is malformed: {one_line(first)}") from None
    return parser, True


def load_config(env: Mapping[str, str]) -> Tuple[Config, List[str]]:
    """Read the configuration; return it with warnings about ignored sections and keys.

    A missing default file means the defaults; a file named by $QHOOK_CONFIG must exist.
    Bad syntax or a bad value raise ConfigError.
    """
    path = config_path(env)
    parser, found = read_ini(path)
    if not found:
        if env.get(PATH_VARIABLE):
            raise ConfigError(missing_named_file(path))
        return Config(), []
    return config_from(parser, path)


def missing_named_file(path: str) -> str:
    return f"{path} does not exist (only the default {DEFAULT_PATH} may be absent)"


def described(config: Config) -> str:
    """Where the configuration came from, for an error line."""
    if config.source == "defaults":
        return f"the defaults: {DEFAULT_PATH} is absent"
    return config.source


def config_from(parser: configparser.ConfigParser, path: str) -> Tuple[Config, List[str]]:
    """The configuration an ini file read from path holds; warnings for what is ignored."""
    warnings: List[str] = []
    values: Dict[str, Dict[str, object]] = {name: {} for name in _SECTIONS}
    for section in parser.sections():
        if section in ENGINE_SECTIONS:
            continue
        known = _SECTIONS.get(section)
        if known is None:
            warnings.append(f"{path}: unknown section [{section}] ignored")
            continue
        for key, raw in parser.items(section):
            convert = known.get(key)
            if convert is None:
                warnings.append(f"{path}: unknown key {key} in [{section}] ignored")
                continue
            try:
                values[section][key] = convert(raw.strip())
            except ValueError as error:
                raise ConfigError(
                    f"{path}: [{section}] {key} = {shown(raw)} is invalid: {error}"
                ) from None
    config = Config(
        ovs=OvsConfig(**values["ovs"]),  # type: ignore[arg-type]
        wiring=WiringConfig(**values["wiring"]),  # type: ignore[arg-type]
        host=HostConfig(**values["host"]),  # type: ignore[arg-type]
        on_demand=OnDemandConfig(**values["on_demand"]),  # type: ignore[arg-type]
        source=path,
    )
    return config, warnings
