# SPDX-License-Identifier: GPL-2.0-or-later
"""What a host without the RPM installs: the executable VDSM runs at each hook point (a
few lines that call into qhook), the privileged helper, and the sudoers rule for it."""

import os
from pathlib import Path
from typing import Iterable

SCRIPT_NAME = "50_quantum"
SOURCE_INTERPRETER = "/usr/bin/env python3"
HELPER_PATH = "/usr/libexec/vdsm-hook-quantum/qhook-privileged"
HELPER_MARK = "from qhook.host.helper import main"
# What says a script is this package's, older versions' included (they may be replaced).
SCRIPT_MARKS = ("qhook.vdsm.contract", "qhook.hooking")
HELPER_MARKS = (HELPER_MARK, "from qhook.privileged import main")


def ours(text: str, marks) -> bool:
    """Whether a script's text is one this package wrote (any version)."""
    return any(mark in text for mark in marks)


_TEMPLATE = '''\
#!{interpreter}
# SPDX-License-Identifier: GPL-2.0-or-later
"""VDSM hook {point}: Quantum vNICs (vdsm-hook-quantum; the logic is in qhook)."""
import sys

from qhook.vdsm.contract import main

sys.exit(main("{point}"))
'''


def render(point: str, interpreter: str = SOURCE_INTERPRETER) -> str:
    """The hook script for one hook point."""
    return _TEMPLATE.format(interpreter=interpreter, point=point)


def write_tree(directory: Path, points: Iterable[str], interpreter: str) -> None:
    """Write DIRECTORY/<point>/50_quantum for each point, executable, as VDSM lays them out."""
    for point in points:
        script = directory / point / SCRIPT_NAME
        script.parent.mkdir(parents=True, exist_ok=True)
        script.write_text(render(point, interpreter))
        os.chmod(script, 0o755)


# -I: no PYTHON* variable, no user site, no script directory on the path. The
# configuration is fixed here, by root, and never by the helper's caller.
_HELPER_TEMPLATE = """\
#!{interpreter} -I
# SPDX-License-Identifier: GPL-2.0-or-later
\"\"\"vdsm-hook-quantum's privileged helper, run by the hooks through sudo -n with no
arguments; its configuration is {config}.\"\"\"
import sys

{mark}

sys.exit(main(config_path={config!r}))
"""


def render_helper(interpreter: str, config: str) -> str:
    """The privileged helper's script, reading root's configuration at `config`."""
    return _HELPER_TEMPLATE.format(interpreter=interpreter, config=config, mark=HELPER_MARK)


def sudoers_rule(helper: str = HELPER_PATH) -> str:
    """The sudoers lines that let vdsm run the helper as root, with no arguments (the
    empty string after the command allows none), no password and no terminal."""
    return f'Defaults:vdsm !requiretty\nvdsm ALL=(root) NOPASSWD: {helper} ""\n'
