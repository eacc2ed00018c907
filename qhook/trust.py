# SPDX-License-Identifier: GPL-2.0-or-later
"""Files root may trust: the helper reads its configuration, and the Quantum credentials,
only from files that no one but root could have written or can read."""

import os
import stat

from qhook.errors import ConfigError


def trusted_path(path: str) -> str:
    """The real path, if it and every directory above it are root's and writable by no one
    else (a sticky world-writable directory such as /tmp is fine for a root-owned child)."""
    real = os.path.realpath(path)
    current = real
    while True:
        try:
            info = os.stat(current)
        except OSError as error:
            if current == real and isinstance(error, FileNotFoundError):
                return real  # a missing file means the defaults
            raise ConfigError(f"cannot check {current}: {error.strerror}") from None
        sticky_directory = stat.S_ISDIR(info.st_mode) and info.st_mode & stat.S_ISVTX
        if info.st_uid != 0 or (
            info.st_mode & 0o022 and not (sticky_directory and current != real)
        ):
            raise ConfigError(
                f"{real} is not trusted: {current} must be root's and writable only by root"
            )
        if current == "/":
            return real
        current = os.path.dirname(current)


def root_only(path: str, what: str) -> str:
    """The real path of a file that root owns and only root (or group root) can read."""
    real = trusted_path(path)
    try:
        info = os.stat(real)
    except FileNotFoundError:
        raise ConfigError(f"{what}: {real} does not exist") from None
    except OSError as error:
        raise ConfigError(f"{what}: cannot read {real}: {error.strerror}") from None
    if info.st_mode & stat.S_IROTH or (info.st_mode & stat.S_IRGRP and info.st_gid != 0):
        raise ConfigError(
            f"{what}: {real} holds credentials but others can read it: "
            f"chown root:root {real} && chmod 0600 {real}"
        )
    return real
