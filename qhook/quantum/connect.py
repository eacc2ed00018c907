# SPDX-License-Identifier: GPL-2.0-or-later
"""A Quantum client made from [quantum] settings: the engine's commands and the host's
ports on demand connect the same way."""

import os
from typing import Any, Callable, Optional

from qhook.errors import ConfigError
from qhook.quantum.client import QuantumClient, StaticToken
from qhook.quantum.keystone import KeystonePassword, KeystonePasswordV2
from qhook.quantum.settings import AuthKind, QuantumSettings, identity_version


def connect(
    settings: QuantumSettings,
    trace: Optional[Callable[[str], None]] = None,
    budget: Optional[float] = None,
    retries: int = 3,
) -> QuantumClient:
    """A client with the settings' endpoint, authentication, CA and timeouts; `budget`
    bounds all its calls together, in seconds."""
    auth: Any
    if settings.auth is AuthKind.KEYSTONE and identity_version(settings) == "2.0":
        auth = KeystonePasswordV2(
            settings.auth_url,  # type: ignore[arg-type]
            settings.username,  # type: ignore[arg-type]
            settings.password,  # type: ignore[arg-type]
            settings.project_name,  # type: ignore[arg-type]
            region_name=settings.region_name,
            interface=settings.interface,
        )
    elif settings.auth is AuthKind.KEYSTONE:
        auth = KeystonePassword(
            settings.auth_url,  # type: ignore[arg-type]
            settings.username,  # type: ignore[arg-type]
            settings.password,  # type: ignore[arg-type]
            settings.project_name,  # type: ignore[arg-type]
            user_domain_name=settings.user_domain_name,
            project_domain_name=settings.project_domain_name,
            region_name=settings.region_name,
            interface=settings.interface,
        )
    else:
        auth = StaticToken(settings.token if settings.auth is AuthKind.TOKEN else None)
    if settings.ca_file and not os.access(settings.ca_file, os.R_OK):
        raise ConfigError(f"CA file {settings.ca_file} cannot be read")
    return QuantumClient(
        settings.url,
        auth=auth,
        verify=settings.ca_file or True,
        timeout=(min(10.0, settings.timeout), settings.timeout),
        retries=retries,
        trace=trace,
        budget=budget,
    )


def creates_need_project(settings: QuantumSettings) -> Optional[str]:
    """The project of creates: implied by a Keystone token, else [quantum] project_id."""
    return None if settings.auth is AuthKind.KEYSTONE else settings.project_id
