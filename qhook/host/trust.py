# SPDX-License-Identifier: GPL-2.0-or-later
"""Files and directories root may trust, opened without a window for anyone else.

Root reads its configuration, the Quantum credentials and its notes only from what no
one but root could have written. Every path is walked from `/` one component at a
time, relative to the directory already checked (`dir_fd`), never by name again: each
directory must be root's and writable by no one else (a sticky directory such as /tmp
is fine on the way: what lies below it is checked itself), a symbolic link is followed
only if root owns it, and the file is opened without following a link, without
blocking (a FIFO cannot hang the open) and checked on the open descriptor. So nothing
can be swapped between the check and the use.
"""

import contextlib
import errno
import os
import stat
from typing import Iterator, List, Tuple

from qhook.errors import ConfigError
from qhook.vocabulary.config import Config, config_from, read_ini

MAX_FILE_BYTES = 1024 * 1024
MAX_LINKS = 40
_DIRECTORY = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class MissingFile(ConfigError):
    """A file that should be there is not."""


def _writable_by_others(info: os.stat_result) -> bool:
    return bool(info.st_mode & (stat.S_IWGRP | stat.S_IWOTH))


def _check_directory(info: os.stat_result, shown: str, what: str) -> None:
    sticky = bool(info.st_mode & stat.S_ISVTX)
    if info.st_uid != 0 or (_writable_by_others(info) and not sticky):
        raise ConfigError(
            f"{what}: {shown} is not trusted: it must be root's and writable only by root"
        )


def _components(path: str, what: str) -> List[str]:
    if not path.startswith("/"):
        raise ConfigError(f"{what}: {path!a} is not an absolute path")
    return [part for part in path.split("/") if part not in ("", ".")]


@contextlib.contextmanager
def _parent(path: str, what: str) -> Iterator[Tuple[int, str, str]]:
    """(descriptor of the checked directory holding the last component, that component,
    the path so far): every directory on the way is root's, every link on it root's."""
    pending = _components(path, what)
    if not pending:
        raise ConfigError(f"{what}: {path!a} names no file")
    opened: List[int] = [os.open("/", _DIRECTORY)]
    names: List[str] = []
    links = 0
    try:
        _check_directory(os.fstat(opened[0]), "/", what)
        while len(pending) > 1:
            part = pending.pop(0)
            if part == "..":
                if len(opened) > 1:
                    os.close(opened.pop())
                    names.pop()
                continue
            shown = "/" + "/".join([*names, part])
            try:
                fd = os.open(part, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=opened[-1])
            except FileNotFoundError:
                raise MissingFile(f"{what}: {shown} does not exist") from None
            except OSError as error:
                raise ConfigError(f"{what}: cannot open {shown}: {error.strerror}") from None
            info = os.fstat(fd)
            if stat.S_ISLNK(info.st_mode):
                os.close(fd)
                links += 1
                pending[:0] = _link_target(info, part, opened[-1], shown, links, what)
                if pending and pending[0] == "/":
                    pending.pop(0)
                    while len(opened) > 1:
                        os.close(opened.pop())
                        names.pop()
                continue
            opened.append(fd)
            names.append(part)
            if not stat.S_ISDIR(info.st_mode):
                raise ConfigError(f"{what}: {shown} is not a directory")
            _check_directory(info, shown, what)
        yield opened[-1], pending[0], "/" + "/".join([*names, pending[0]])
    finally:
        for fd in opened:
            os.close(fd)


def _link_target(
    info: os.stat_result, name: str, parent: int, shown: str, links: int, what: str
) -> List[str]:
    """The components a root-owned symbolic link points to ('/' first if absolute)."""
    if info.st_uid != 0:
        raise ConfigError(f"{what}: {shown} is not trusted: a symbolic link that is not root's")
    if links > MAX_LINKS:
        raise ConfigError(f"{what}: {shown}: too many symbolic links")
    target = os.readlink(name, dir_fd=parent)
    parts = [part for part in target.split("/") if part not in ("", ".")]
    return ["/", *parts] if target.startswith("/") else parts


def _resolve_last(path: str, parent: int, name: str, what: str) -> Tuple[str, bool]:
    """If the last component is a root-owned link, the path it stands for, else path."""
    try:
        info = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return path, False
    if not stat.S_ISLNK(info.st_mode):
        return path, False
    parts = _link_target(info, name, parent, path, 1, what)
    if parts and parts[0] == "/":
        return "/" + "/".join(parts[1:]), True
    return os.path.join(os.path.dirname(path), *parts), True


def read_file(path: str, what: str, secret: bool = False) -> bytes:
    """The contents of a file root may trust; MissingFile if there is none.

    secret: it holds credentials, so no one but root (or group root) may read it."""
    for _ in range(MAX_LINKS):
        with _parent(path, what) as (parent, name, shown):
            resolved, is_link = _resolve_last(shown, parent, name, what)
            if not is_link:
                return _read_checked(parent, name, shown, what, secret)
        path = resolved
    raise ConfigError(f"{what}: {path}: too many symbolic links")


def _read_checked(parent: int, name: str, shown: str, what: str, secret: bool) -> bytes:
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    try:
        fd = os.open(name, flags, dir_fd=parent)
    except FileNotFoundError:
        raise MissingFile(f"{what}: {shown} does not exist") from None
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise ConfigError(f"{what}: {shown} is a symbolic link") from None
        raise ConfigError(f"{what}: cannot read {shown}: {error.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"{what}: {shown} is not a regular file")
        if info.st_uid != 0 or _writable_by_others(info):
            raise ConfigError(
                f"{what}: {shown} is not trusted: it must be root's and writable only by "
                f"root: chown root:root {shown} && chmod go-w {shown}"
            )
        if secret and (
            info.st_mode & stat.S_IROTH or (info.st_mode & stat.S_IRGRP and info.st_gid != 0)
        ):
            raise ConfigError(
                f"{what}: {shown} holds credentials but others can read it: "
                f"chown root:root {shown} && chmod 0600 {shown}"
            )
        if info.st_size > MAX_FILE_BYTES:
            raise ConfigError(f"{what}: {shown} is larger than {MAX_FILE_BYTES} bytes")
        chunks = []
        size = 0
        while size <= MAX_FILE_BYTES:
            chunk = os.read(fd, 65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            size += len(chunk)
        raise ConfigError(f"{what}: {shown} is larger than {MAX_FILE_BYTES} bytes")
    except OSError as error:
        raise ConfigError(f"{what}: cannot read {shown}: {error.strerror}") from None
    finally:
        os.close(fd)


def private_directory(path: str, what: str) -> int:
    """A descriptor of a directory only root can use (root's, mode 0700), made if missing;
    the caller closes it. Anything else there is refused, with the fix."""
    for _ in range(MAX_LINKS):
        with _parent(path, what) as (parent, name, shown):
            resolved, is_link = _resolve_last(shown, parent, name, what)
            if not is_link:
                return _open_private(parent, name, shown, what)
        path = resolved
    raise ConfigError(f"{what}: {path}: too many symbolic links")


def _open_private(parent: int, name: str, shown: str, what: str) -> int:
    try:
        os.mkdir(name, 0o700, dir_fd=parent)
    except OSError as error:
        if error.errno != errno.EEXIST:
            raise ConfigError(f"{what}: cannot make {shown}: {error.strerror}") from None
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(name, flags, dir_fd=parent)
    except OSError as error:
        raise ConfigError(f"{what}: {shown} is not a directory ({error.strerror})") from None
    info = os.fstat(fd)
    if info.st_uid != 0 or stat.S_IMODE(info.st_mode) & 0o077:
        os.close(fd)
        raise ConfigError(
            f"{what}: {shown} must be root's and mode 0700: chown root:root {shown} && "
            f"chmod 0700 {shown}"
        )
    return fd


def load_trusted_config(path: str) -> Tuple[Config, List[str]]:
    """Root's configuration: read only from a file that root alone could have written,
    which must exist; warnings for what it ignores."""
    parser, _ = read_ini(path, read_file(path, "the configuration"))
    return config_from(parser, path)
