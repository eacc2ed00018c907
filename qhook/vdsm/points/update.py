# SPDX-License-Identifier: GPL-2.0-or-later
"""A running vNIC moves to another vNIC profile: before_update_device, then
after_update_device, or after_update_device_fail when libvirt refused the change."""

from qhook import plugins
from qhook.errors import QhookError
from qhook.vdsm import domxml, helper_client
from qhook.vdsm.contract import HookContext
from qhook.vdsm.plugging import attachment
from qhook.vdsm.vnics import classify, device_vnic, rewrite, vm_id_of
from qhook.vocabulary.config import PlugMode


def before_update_device(context: HookContext) -> None:
    """The engine moves a running vNIC to another profile: re-key its port to the new
    Quantum port, keeping the tap the running QEMU holds, and wait for the agent."""
    document = domxml.parse(context.read_data(), "device XML")
    if document.root.tag != "interface":
        return
    interface = document.root
    vnic = classify(interface, context.env, context)
    if vnic is None:
        return
    if vnic.on_demand:
        raise QhookError(
            f"vNIC {vnic.mac}: a running vNIC cannot move to a profile without q_port_id "
            "(a port on demand); unplug the vNIC, change its profile and plug it again"
        )
    why = plugins.of(vnic.plugin).cannot_move
    if why:
        raise QhookError(f"vNIC {vnic.mac}: {why}")
    if context.config.ovs.plug is PlugMode.LIBVIRT:
        raise QhookError(
            f"vNIC {vnic.mac}: moving a running vNIC needs the hook to plug it ([ovs] plug = hook)"
        )
    item = attachment(interface, vnic, vm_id_of(context))
    tap_name, unwired = helper_client.move(item, context.config)
    if unwired:
        context.warn(
            f"the agent has not wired {tap_name} for port {vnic.host_id} within "
            f"{context.config.wiring.timeout:g} s; moving anyway ([wiring] on_timeout = start)"
        )
    try:
        rewrite([(interface, vnic)], context, tap_names={vnic.mac: tap_name})
        context.write_data(domxml.serialize(document))
    except BaseException:
        helper_client.end_move(item.vm_id, [vnic.mac], True, context.config)
        raise


def _end_move(context: HookContext, undo: bool) -> None:
    found = device_vnic(context)
    if found is not None and plugins.of(found[1].plugin).cannot_move is None:
        helper_client.end_move(vm_id_of(context), [found[1].mac], undo, context.config)


def after_update_device(context: HookContext) -> None:
    """The move went through: forget the ids it replaced."""
    _end_move(context, undo=False)


def after_update_device_fail(context: HookContext) -> None:
    """libvirt did not take the new device: put the old ids back."""
    _end_move(context, undo=True)
