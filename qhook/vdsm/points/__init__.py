# SPDX-License-Identifier: GPL-2.0-or-later
"""The hook points of this package, by family: each point is the function of its name in
the module named here (qhook.vdsm.points.<module>). A hook run imports only its own
family; no family imports another, and this registry imports none of them."""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING: a device hook does not import typing
if TYPE_CHECKING:
    from typing import Callable, Dict, Optional

HOOK_POINTS: Dict[str, str] = {
    "before_device_create": "start",
    "before_vm_start": "start",
    "after_vm_start": "start",
    "after_vm_destroy": "stop",
    "before_vm_migrate_destination": "migration",
    "after_vm_migrate_destination": "migration",
    "before_vm_migrate_source": "migration",
    "after_vm_migrate_source": "migration",
    "before_vm_hibernate": "suspend",
    "after_vm_hibernate": "suspend",
    "before_vm_dehibernate": "suspend",
    "after_vm_dehibernate": "suspend",
    "before_nic_hotplug": "hotplug",
    "after_nic_hotunplug": "hotplug",
    "after_nic_hotplug_fail": "hotplug",
    "before_update_device": "update",
    "after_update_device": "update",
    "after_update_device_fail": "update",
    "after_get_caps": "caps",
}


def action_of(point: str) -> Optional[Callable]:
    """The function VDSM's call at this hook point runs, or None for a point not ours."""
    family = HOOK_POINTS.get(point)
    if family is None:
        return None
    module = f"{__name__}.{family}"
    __import__(module)  # as an import statement: `python -X importtime` counts it
    return getattr(sys.modules[module], point)
