# SPDX-License-Identifier: GPL-2.0-or-later
"""A vNIC is plugged into a running VM, or taken out: before_nic_hotplug, then
after_nic_hotunplug, or after_nic_hotplug_fail when libvirt refused the device."""

from qhook.errors import QhookError
from qhook.vdsm import domxml
from qhook.vdsm.contract import HookContext
from qhook.vdsm.plugging import plug_and_write, ports_on_demand, unplug
from qhook.vdsm.vnics import classify, rewrite, vm_id_of
from qhook.vocabulary import schema


def before_nic_hotplug(context: HookContext) -> None:
    """Rewrite and plug the one vNIC being hot-plugged."""
    document = domxml.parse(context.read_data(), "device XML")
    if document.root.tag != "interface":
        return
    vnic = classify(document.root, context.env, context)
    if vnic is None:
        return
    vm_id = vm_id_of(context)
    with ports_on_demand([(document.root, vnic)], vm_id, context, schema.START) as vnics:
        changed = rewrite(vnics, context)
        plug_and_write(document, vnics, vm_id, context, changed)


def _unplug_device(context: HookContext) -> None:
    """Unplug the one vNIC of a device hook (hot-unplugged, or a failed hotplug)."""
    data = context.read_data()
    if not data.strip():
        return
    document = domxml.parse(data, "device XML")
    if document.root.tag != "interface":
        return
    try:
        vnic = classify(document.root, context.env, context)
    except QhookError as error:
        context.warn(str(error))
        vnic = None
    vnics = [] if vnic is None else [(document.root, vnic)]
    unplug([document.root], vnics, vm_id_of(context), context)


def after_nic_hotunplug(context: HookContext) -> None:
    """The vNIC is out of the VM: unplug it."""
    _unplug_device(context)


def after_nic_hotplug_fail(context: HookContext) -> None:
    """libvirt did not take the vNIC: unplug what before_nic_hotplug plugged."""
    _unplug_device(context)
