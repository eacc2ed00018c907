# SPDX-License-Identifier: GPL-2.0-or-later
"""VDSM collects the host's capabilities for the engine: after_get_caps."""

import json

from qhook.errors import QhookError
from qhook.vdsm import helper_client
from qhook.vdsm.contract import HookContext

CAPS_KEY = "vdsm_hook_quantum"


def after_get_caps(context: HookContext) -> None:
    """Add what this host can do for Quantum vNICs to VDSM's capabilities. Never fails
    getCaps: whatever goes wrong is reported inside the capabilities, and exit is 0."""
    try:
        caps = json.loads(context.read_data().decode("utf-8"))
    except (QhookError, ValueError) as error:
        context.warn(f"capabilities left as they are: {error}")
        return
    if not isinstance(caps, dict):
        context.warn("capabilities left as they are: not a JSON object")
        return
    try:
        caps[CAPS_KEY] = helper_client.capabilities(context.config)
    except QhookError as error:
        caps[CAPS_KEY] = {"error": str(error)}
    try:
        context.write_data(json.dumps(caps).encode())
    except QhookError as error:
        context.warn(str(error))
