# SPDX-License-Identifier: GPL-2.0-or-later
"""Where the engine-side commands find Quantum and how they authenticate.

The [quantum] section of the configuration file ($QHOOK_CONFIG, else the engine
package's /etc/vdsm-hook-quantum/engine.conf if there is one, else the host's
/etc/vdsm/quantum.conf), overridden key by key by the standard OS_* environment
variables an openrc file sets. A file holding a password or token must not be readable
by others. Secrets never appear in repr(), in an error or in --debug output.
"""

import enum
import os
import re
import stat
from dataclasses import dataclass, field, fields
from typing import Dict, List, Mapping, Optional, Tuple

from qhook.errors import ConfigError, shown
from qhook.vocabulary.config import (
    DEFAULT_PATH,
    PATH_VARIABLE,
    missing_named_file,
    read_ini,
    timeout_seconds,
)

SECTION = "quantum"
ENGINE_PATH = "/etc/vdsm-hook-quantum/engine.conf"
SECRET_KEYS = ("password", "token")


class AuthKind(enum.Enum):
    """How requests are authenticated."""

    NOAUTH = "noauth"  # Neutron with auth_strategy = noauth; creates carry project_id
    TOKEN = "token"  # a static token (X-Auth-Token)
    KEYSTONE = "keystone"  # Keystone password authentication, v3 (or v2.0: see below)


@dataclass(frozen=True)
class QuantumSettings:
    """The [quantum] settings, after the environment had its say."""

    url: Optional[str] = None
    auth: AuthKind = AuthKind.NOAUTH
    token: Optional[str] = field(default=None, repr=False)
    auth_url: Optional[str] = None
    username: Optional[str] = None
    password: Optional[str] = field(default=None, repr=False)
    project_name: Optional[str] = None
    project_id: Optional[str] = None
    user_domain_name: str = "Default"
    project_domain_name: str = "Default"
    region_name: Optional[str] = None
    interface: str = "public"
    ca_file: Optional[str] = None
    timeout: float = 30.0
    # "3" or "2.0"; by default 2.0 when auth_url ends in /v2.0, else 3.
    identity_api_version: Optional[str] = None
    origins: Dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def described(self) -> List[str]:
        """One line per setting that is set, secrets masked, with where it came from."""
        lines = []
        for item in fields(self):
            if item.name == "origins":
                continue
            value = getattr(self, item.name)
            if value is None:
                continue
            if item.name in SECRET_KEYS:
                value = "***"
            elif isinstance(value, enum.Enum):
                value = value.value
            lines.append(f"{item.name} = {value}  ({self.origins.get(item.name, 'default')})")
        return lines


# The openrc variables and the setting each one sets.
ENVIRONMENT = {
    "OS_NETWORK_URL": "url",
    "OS_AUTH_TYPE": "auth",
    "OS_TOKEN": "token",
    "OS_AUTH_URL": "auth_url",
    "OS_USERNAME": "username",
    "OS_PASSWORD": "password",
    "OS_PROJECT_NAME": "project_name",
    "OS_PROJECT_ID": "project_id",
    "OS_USER_DOMAIN_NAME": "user_domain_name",
    "OS_PROJECT_DOMAIN_NAME": "project_domain_name",
    "OS_REGION_NAME": "region_name",
    "OS_INTERFACE": "interface",
    "OS_CACERT": "ca_file",
    "OS_IDENTITY_API_VERSION": "identity_api_version",
}
# OS_AUTH_TYPE speaks openstackclient's words.
_AUTH_WORDS = {
    "noauth": AuthKind.NOAUTH,
    "none": AuthKind.NOAUTH,
    "token": AuthKind.TOKEN,
    "admin_token": AuthKind.TOKEN,
    "keystone": AuthKind.KEYSTONE,
    "password": AuthKind.KEYSTONE,
    "v3password": AuthKind.KEYSTONE,
}
_URL = re.compile(r"https?://[^\s/?#@]+(?:/[^\s?#]*)?")
_NAME = re.compile(r"[^\x00-\x1f\x7f]{1,255}")
_PROJECT_ID = re.compile(r"[0-9a-fA-F-]{32,36}")


def _url(value: str) -> str:
    if not _URL.fullmatch(value):
        raise ValueError("expected http://HOST[:PORT][/PATH] or https://...")
    return value.rstrip("/")


def _auth(value: str) -> AuthKind:
    try:
        return _AUTH_WORDS[value.lower()]
    except KeyError:
        raise ValueError("expected noauth, token or keystone") from None


def _name(value: str) -> str:
    if not _NAME.fullmatch(value):
        raise ValueError("expected 1 to 255 printable characters")
    return value


def secret_value(value: str) -> str:
    """A password or token: anything but empty or control characters."""
    if not value or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise ValueError("expected a non-empty value without control characters")
    return value


def _project_id(value: str) -> str:
    if not _PROJECT_ID.fullmatch(value):
        raise ValueError("expected a project UUID (32 hex digits, dashes allowed)")
    return value.replace("-", "").lower()


def _interface(value: str) -> str:
    if value not in ("public", "internal", "admin"):
        raise ValueError("expected public, internal or admin")
    return value


def _identity_version(value: str) -> str:
    versions = {"3": "3", "3.0": "3", "v3": "3", "2": "2.0", "2.0": "2.0", "v2.0": "2.0"}
    if value.lower() not in versions:
        raise ValueError("expected 3 or 2.0")
    return versions[value.lower()]


def absolute_path(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError("expected an absolute path")
    return value


_KEYS = {
    "url": _url,
    "auth": _auth,
    "token": secret_value,
    "auth_url": _url,
    "username": _name,
    "password": secret_value,
    "project_name": _name,
    "project_id": _project_id,
    "user_domain_name": _name,
    "project_domain_name": _name,
    "region_name": _name,
    "interface": _interface,
    "ca_file": absolute_path,
    "timeout": timeout_seconds,
    "identity_api_version": _identity_version,
}


def check_secret_file(path: str, section: str, keys: List[str]) -> None:
    """Refuse a file that holds a secret and that others (not owner or group) can read."""
    mode = os.stat(path).st_mode
    if mode & stat.S_IROTH:
        raise ConfigError(
            f"{path} holds [{section}] {' and '.join(keys)} but anyone can read it: "
            f"chmod o-rwx {path}"
        )


def settings_path(env: Mapping[str, str]) -> str:
    """$QHOOK_CONFIG, else the engine package's file, else the host's; with neither, the
    engine's (the one to write)."""
    if env.get(PATH_VARIABLE):
        return env[PATH_VARIABLE]
    return (
        DEFAULT_PATH
        if os.path.exists(DEFAULT_PATH) and not os.path.exists(ENGINE_PATH)
        else ENGINE_PATH
    )


def load_quantum_settings(
    env: Mapping[str, str], data: Optional[bytes] = None, **given: Optional[str]
) -> Tuple[QuantumSettings, List[str]]:
    """The settings from the file's [quantum] section, the OS_* variables and the command
    line (`given`, None: not given), each over the one before; warnings.

    data: the file's contents, already read (and checked) by the caller."""
    path = settings_path(env)
    parser, found = read_ini(path, data)
    if not found and env.get(PATH_VARIABLE):
        raise ConfigError(missing_named_file(path))
    values: Dict[str, object] = {}
    origins: Dict[str, str] = {}
    warnings: List[str] = []
    if found and parser.has_section(SECTION):
        secrets_here = [k for k in SECRET_KEYS if parser.has_option(SECTION, k)]
        if secrets_here and data is None:
            check_secret_file(path, SECTION, secrets_here)
        for key, raw in parser.items(SECTION):
            convert = _KEYS.get(key)
            if convert is None:
                warnings.append(f"{path}: unknown key {key} in [{SECTION}] ignored")
                continue
            values[key] = _converted(convert, raw.strip(), f"{path}: [{SECTION}] {key}", key)
            origins[key] = path
    for variable, key in ENVIRONMENT.items():
        raw = env.get(variable)
        if raw:
            values[key] = _converted(_KEYS[key], raw.strip(), variable, key)
            origins[key] = variable
    for key, raw in given.items():
        if raw is not None:
            values[key] = _converted(_KEYS[key], raw.strip(), f"--{key}", key)
            origins[key] = "command line"
    if "auth" not in values:
        values["auth"] = (
            AuthKind.KEYSTONE
            if "auth_url" in values
            else AuthKind.TOKEN
            if "token" in values
            else AuthKind.NOAUTH
        )
        origins["auth"] = "implied"
    settings = QuantumSettings(**values, origins=origins)  # type: ignore[arg-type]
    _check_complete(settings, path)
    return settings, warnings


def _converted(convert, raw: str, where: str, key: str) -> object:
    try:
        return convert(raw)
    except ValueError as error:
        value = "***" if key in SECRET_KEYS else shown(raw)
        raise ConfigError(f"{where} = {value} is invalid: {error}") from None


def identity_version(settings: QuantumSettings) -> str:
    """The Keystone API the settings speak: as set, else as auth_url says (…/v2.0)."""
    if settings.identity_api_version:
        return settings.identity_api_version
    return "2.0" if (settings.auth_url or "").rstrip("/").endswith("/v2.0") else "3"


def _check_complete(settings: QuantumSettings, path: str) -> None:
    """Each kind of authentication has what it needs, or one line says what is missing."""
    needed = {
        AuthKind.NOAUTH: ("url",),
        AuthKind.TOKEN: ("url", "token"),
        AuthKind.KEYSTONE: ("auth_url", "username", "password", "project_name"),
    }[settings.auth]
    missing = [key for key in needed if getattr(settings, key) is None]
    if not missing:
        return
    where = f"[{SECTION}] of {path} or in the environment"
    if settings.origins.get("auth") == "implied" and set(settings.origins) == {"auth"}:
        raise ConfigError(
            f"Quantum is not configured: set url (OS_NETWORK_URL), or auth = keystone with "
            f"auth_url, username, password and project_name (an openrc's OS_* variables), "
            f"in {where}"
        )
    variables = {key: name for name, key in ENVIRONMENT.items()}
    wanted = ", ".join(f"{key} ({variables[key]})" for key in missing)
    chosen = "" if settings.origins.get("auth") != "implied" else " (implied by what is set)"
    them = "it" if len(missing) == 1 else "them"
    raise ConfigError(
        f"Quantum with auth {settings.auth.value}{chosen} needs {wanted}: set {them} in {where}"
    )
