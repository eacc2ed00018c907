# SPDX-License-Identifier: GPL-2.0-or-later
"""Where `qhook engine sync` finds the oVirt engine, and what it makes there.

The [ovirt] section of the engine side's configuration file (the one [quantum] is in),
overridden by the variables oVirt's Ansible modules use (OVIRT_URL, OVIRT_USERNAME,
OVIRT_PASSWORD, OVIRT_CAFILE). A file holding the password must not be readable by
others. The password never appears in repr(), in an error or in --debug output.
"""

import re
from dataclasses import dataclass, field, fields
from typing import Dict, List, Mapping, Optional, Tuple

from qhook.errors import ConfigError, shown
from qhook.quantum.settings import (
    absolute_path,
    check_secret_file,
    secret_value,
    settings_path,
)
from qhook.vocabulary.config import PATH_VARIABLE, missing_named_file, read_ini, timeout_seconds

SECTION = "ovirt"
STATE_FILE = "/var/lib/vdsm-hook-quantum/engine-sync.json"
ENVIRONMENT = {
    "OVIRT_URL": "url",
    "OVIRT_USERNAME": "username",
    "OVIRT_PASSWORD": "password",
    "OVIRT_CAFILE": "ca_file",
}
_URL = re.compile(r"https://[^\s/?#@]+/[^\s?#]*")
_USER = re.compile(r"[^\s\x00-\x1f\x7f]{1,255}")
_DATA_CENTER = re.compile(r"[A-Za-z0-9_.-]{1,40}")


@dataclass(frozen=True)
class OvirtSettings:
    """The [ovirt] settings, after the environment had its say."""

    url: Optional[str] = None
    username: Optional[str] = None
    password: Optional[str] = field(default=None, repr=False)
    ca_file: Optional[str] = None
    insecure: bool = False
    # The data centers whose Q_ networks are synced; empty: all of them.
    data_centers: Tuple[str, ...] = ()
    # The value of the profiles' `plugin` property (how hosts plug their vNICs).
    plugin: str = "ovn"
    resync: float = 300.0
    timeout: float = 30.0
    state_file: str = STATE_FILE
    origins: Dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def described(self) -> List[str]:
        """One line per setting, the password masked, with where it came from."""
        lines = []
        for item in fields(self):
            value = getattr(self, item.name)
            if item.name == "origins" or value is None:
                continue
            shown_value = "***" if item.name == "password" else value
            where = self.origins.get(item.name, "default")
            lines.append(f"ovirt {item.name} = {shown_value}  ({where})")
        return lines


def _url(value: str) -> str:
    if value.startswith("http://"):
        raise ValueError("the engine's API is served over https (it carries the password)")
    if not _URL.fullmatch(value):
        raise ValueError("expected https://ENGINE/ovirt-engine/api")
    return value.rstrip("/")


def _user(value: str) -> str:
    if not _USER.fullmatch(value):
        raise ValueError("expected a user name such as admin@internal")
    return value


def _yes_no(value: str) -> bool:
    words = {"yes": True, "true": True, "on": True, "no": False, "false": False, "off": False}
    if value.lower() not in words:
        raise ValueError("expected yes or no")
    return words[value.lower()]


def _data_centers(value: str) -> Tuple[str, ...]:
    names = tuple(name.strip() for name in value.split(",") if name.strip())
    for name in names:
        if not _DATA_CENTER.fullmatch(name):
            raise ValueError(f"{shown(name)} is not a data center name")
    return names


def _plugin(value: str) -> str:
    from qhook import plugins

    plugin = plugins.named(value)
    if plugin is None or plugin not in plugins.SEED_PLUGINS:
        names = ", ".join(sorted(p.value for p in plugins.SEED_PLUGINS))
        raise ValueError(f"expected one of {names}")
    return plugin.value


def _resync(value: str) -> float:
    seconds = timeout_seconds(value)
    if seconds < 10:
        raise ValueError("expected at least 10 seconds")
    return seconds


_KEYS = {
    "url": _url,
    "username": _user,
    "password": secret_value,
    "ca_file": absolute_path,
    "insecure": _yes_no,
    "data_centers": _data_centers,
    "plugin": _plugin,
    "resync": _resync,
    "timeout": timeout_seconds,
    "state_file": absolute_path,
}


def load_ovirt_settings(env: Mapping[str, str]) -> Tuple[OvirtSettings, List[str]]:
    """The [ovirt] settings of the engine side's file, then the OVIRT_* variables;
    warnings for what is ignored. One line if the engine cannot be reached with them."""
    path = settings_path(env)
    parser, found = read_ini(path)
    if not found and env.get(PATH_VARIABLE):
        raise ConfigError(missing_named_file(path))
    values: Dict[str, object] = {}
    origins: Dict[str, str] = {}
    warnings: List[str] = []
    if found and parser.has_section(SECTION):
        if parser.has_option(SECTION, "password"):
            check_secret_file(path, SECTION, ["password"])
        for key, raw in parser.items(SECTION):
            if key not in _KEYS:
                warnings.append(f"{path}: unknown key {key} in [{SECTION}] ignored")
                continue
            values[key] = _converted(key, raw.strip(), f"{path}: [{SECTION}] {key}")
            origins[key] = path
    for variable, key in ENVIRONMENT.items():
        if env.get(variable):
            values[key] = _converted(key, env[variable].strip(), variable)
            origins[key] = variable
    settings = OvirtSettings(**values, origins=origins)  # type: ignore[arg-type]
    if settings.insecure:
        warnings.append(
            "[ovirt] insecure = yes: the engine's certificate is not verified (set ca_file)"
        )
    missing = [
        f"{key} ({variable})"
        for variable, key in ENVIRONMENT.items()
        if key != "ca_file" and getattr(settings, key) is None
    ]
    if missing:
        raise ConfigError(
            f"the oVirt engine is not configured: set {', '.join(missing)} in [{SECTION}] of "
            f"{path} or in the environment"
        )
    return settings, warnings


def _converted(key: str, raw: str, where: str) -> object:
    try:
        return _KEYS[key](raw)
    except ValueError as error:
        value = "***" if key == "password" else shown(raw)
        raise ConfigError(f"{where} = {value} is invalid: {error}") from None
