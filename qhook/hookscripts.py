# SPDX-License-Identifier: GPL-2.0-or-later
"""The executable VDSM runs at each hook point: a few lines that call into qhook."""

import os
from pathlib import Path
from typing import Iterable

SCRIPT_NAME = "50_quantum"
SOURCE_INTERPRETER = "/usr/bin/env python3"

_TEMPLATE = '''\
#!{interpreter}
# SPDX-License-Identifier: GPL-2.0-or-later
"""VDSM hook {point}: Quantum vNICs (vdsm-hook-quantum; the logic is in qhook)."""
import sys

from qhook.hooking import main

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
