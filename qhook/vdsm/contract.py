# SPDX-License-Identifier: GPL-2.0-or-later
"""VDSM's hook contract, implemented here so any VDSM version works.

VDSM runs each hook as a process with the data file named by ``_hook_domxml``
(``_hook_json`` for JSON hooks) and the custom properties in the environment.
Exit 0 is success; exit 2 is an error that stops the remaining hooks, and what the
hook wrote to stderr ends up in vdsm.log and in the error the user sees.
"""

from __future__ import annotations

import os
import stat
import sys

from qhook import PROGRAM
from qhook.errors import QhookError, one_line

TYPE_CHECKING = False  # typing.TYPE_CHECKING: a device hook does not import typing
if TYPE_CHECKING:
    from typing import Callable, List, Mapping, Optional, TextIO, Tuple

    from qhook.vocabulary.config import Config

DOMXML_VARIABLE = "_hook_domxml"
JSON_VARIABLE = "_hook_json"
VM_ID_VARIABLE = "vmId"

EXIT_OK = 0
EXIT_FAILED = 2


class HookContext:
    """What one hook run knows: its point, the environment VDSM gave, the configuration.
    (A plain class: dataclasses is no import for a device hook to pay.)"""

    def __init__(
        self,
        point: str,
        env: Mapping[str, str],
        warnings: Optional[List[str]] = None,
        _config: Optional[Config] = None,
    ) -> None:
        self.point = point
        self.env = env
        self.warnings: List[str] = [] if warnings is None else warnings
        self._config = _config

    def __repr__(self) -> str:
        return f"HookContext(point={self.point!r}, env={self.env!r}, warnings={self.warnings!r})"

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    @property
    def config(self) -> Config:
        """The configuration, read on first use: a VM without Quantum vNICs never needs it,
        nor loads its module (and configparser)."""
        if self._config is None:
            from qhook.vocabulary.config import load_config

            self._config, warnings = load_config(self.env)
            self.warnings.extend(warnings)
        return self._config

    @property
    def data_path(self) -> str:
        path = self.env.get(DOMXML_VARIABLE) or self.env.get(JSON_VARIABLE)
        if not path:
            raise QhookError(f"{DOMXML_VARIABLE} is not set: this hook is meant to be run by VDSM")
        return path

    @property
    def vm_id(self) -> Optional[str]:
        return self.env.get(VM_ID_VARIABLE) or None

    def read_data(self) -> bytes:
        path = self.data_path
        try:
            with open(path, "rb") as stream:
                return stream.read()
        except OSError as error:
            raise QhookError(f"cannot read {path}: {error.strerror or error}") from None

    def write_data(self, data: bytes) -> None:
        """Replace the data file atomically: VDSM reads either the old or the new text."""
        path = self.data_path
        try:
            _replace_file(path, data)
        except OSError as error:
            raise QhookError(f"cannot write {path}: {error.strerror or error}") from None


# tempfile.mkstemp's flags: a new file, never through a symbolic link.
_CREATE_FLAGS = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
_CREATE_TRIES = 100


def _create_temporary(directory: str) -> Tuple[int, str]:
    """A new file of a random name in directory, readable by its owner only (mode 0600),
    made as tempfile.mkstemp makes one: tempfile itself (shutil, random and what they
    import) would cost every device hook more than the rest of its imports."""
    for _ in range(_CREATE_TRIES):
        name = os.path.join(directory, ".qhook-" + os.urandom(6).hex())
        try:
            return os.open(name, _CREATE_FLAGS, 0o600), name
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name in {directory}")


def _replace_file(path: str, data: bytes) -> None:
    mode = stat.S_IMODE(os.stat(path).st_mode)
    try:
        fd, temporary = _create_temporary(os.path.dirname(path) or ".")
    except OSError:
        with open(path, "r+b") as stream:  # directory not writable: rewrite in place
            stream.write(data)
            stream.truncate()
        return
    try:
        with os.fdopen(fd, "wb") as stream:
            stream.write(data)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def _say(stream: TextIO, text: str) -> None:
    line = f"{PROGRAM}: {one_line(text)}\n"
    stream.write(line.encode("ascii", "backslashreplace").decode("ascii"))
    stream.flush()


def run(
    point: str,
    action: Callable[[HookContext], None],
    env: Optional[Mapping[str, str]] = None,
    stderr: Optional[TextIO] = None,
) -> int:
    """Run one hook action under VDSM's contract; return the exit code. Never raises."""
    err = sys.stderr if stderr is None else stderr
    context: Optional[HookContext] = None
    failure = ""
    try:
        context = HookContext(point=point, env=os.environ if env is None else env)
        action(context)
        code = EXIT_OK
    except QhookError as error:
        failure = str(error)
        code = EXIT_FAILED
    except Exception as error:  # a bug must still end in one line, not a traceback
        failure = f"internal error: {type(error).__name__}: {error}"
        code = EXIT_FAILED
    if context is not None:
        for warning in context.warnings:
            _say(err, f"warning: {point}: {warning}")
    if code != EXIT_OK:
        _say(err, f"{point}: {failure}")
    return code


def main(point: str) -> int:
    """Entry point of the hook scripts: run the action VDSM calls at this point."""
    from qhook.vdsm.points import action_of

    action = action_of(point)
    if action is None:
        _say(sys.stderr, f"{point}: not a hook point of this package")
        return EXIT_FAILED
    return run(point, action)
