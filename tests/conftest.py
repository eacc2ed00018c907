# SPDX-License-Identifier: GPL-2.0-or-later
"""Shared fixtures: a VDSM-like runner over the checkout's hook scripts."""

import pytest

from qhook.vdsm_emulator import VdsmEmulator
from tools import HOOKS_DIR, hook_env


@pytest.fixture
def config_path(tmp_path):
    """Where a test may write the configuration the hooks read (absent by default)."""
    return tmp_path / "quantum.conf"


@pytest.fixture
def env(config_path):
    return hook_env({"QHOOK_CONFIG": str(config_path)})


@pytest.fixture
def vdsm(env):
    """VDSM's hook runner, emulated, over the hooks/ tree of this checkout."""
    return VdsmEmulator(HOOKS_DIR, env)
