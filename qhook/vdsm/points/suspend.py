# SPDX-License-Identifier: GPL-2.0-or-later
"""A VM is suspended to a file and comes back (vm.py: hibernate, then a restore from the
file; a memory snapshot's restore is the same restore). Suspending: before_vm_hibernate,
libvirt saves the domain, after_vm_hibernate, and the VM is released (after_vm_destroy
unplugs as for any stop). Coming back: the device hooks and before_vm_start run on the
engine's XML, their output ignored; then before_vm_dehibernate on the saved XML (output
ignored too), libvirt restores that XML, after_vm_dehibernate."""

from qhook import plugins
from qhook.errors import QhookError
from qhook.vdsm import domxml, helper_client
from qhook.vdsm.contract import HookContext
from qhook.vdsm.vnics import check_tap_names, domain_vnics, note_for_ports_on_demand, vm_id_of
from qhook.vocabulary import schema
from qhook.vocabulary.ids import tap_name_of


def before_vm_hibernate(context: HookContext) -> None:
    """Nothing to do yet: everything stays plugged until libvirt says the domain is saved
    (a failed save leaves the VM running as it was)."""


def after_vm_hibernate(context: HookContext) -> None:
    """Saved: the VM may come back, here or elsewhere, so its ports on demand stay when it
    is released."""
    note_for_ports_on_demand(context, schema.SUSPENDED)


def before_vm_dehibernate(context: HookContext) -> None:
    """Plug what the saved XML names, before libvirt restores it: each vNIC's tap by the
    name the XML gives it (the hooks' name at the first start, or a moved vNIC's), on the
    vNIC's port now (a port on demand found, or made anew after a stop). The taps that
    before_vm_start made under other names on this path go first. VDSM ignores the output.
    """
    from qhook.vdsm.plugging import attachment, plug_and_write, ports_on_demand

    document = domxml.parse(context.read_data(), "saved domain XML")
    vnics = domain_vnics(document.root, context)
    if not vnics:
        return
    vm_id = vm_id_of(context, document.root)
    with ports_on_demand(vnics, vm_id, context, schema.START) as resolved:
        check_tap_names(document.root, resolved)
        stale, refusal = [], None
        for interface, vnic in resolved:
            saved = attachment(interface, vnic, vm_id).tap
            if saved is None:
                continue  # the saved name is the one of its port: nothing else to do
            stale.append(tap_name_of(vnic.host_id))
            plugin = plugins.of(vnic.plugin)
            if plugin.finds_the_tap_by_name and refusal is None:
                refusal = (
                    f"vNIC {vnic.mac}: cannot restore: the saved VM names tap {saved}, but "
                    f"the vNIC's port is now {vnic.host_id}, and the {plugin.label} agent "
                    f"finds a tap by its port's id (tap {tap_name_of(vnic.host_id)}); a port "
                    "on demand deleted at a stop cannot come back: start the VM afresh"
                )
        if stale:
            # before_vm_start's taps on this path (ours, this VM's): the saved names win,
            # and a restore that cannot be leaves none of them behind.
            problems, _ = helper_client.unplug(stale, vm_id, context.config)
            if problems:
                raise QhookError("; ".join(problems))
        if refusal:
            raise QhookError(refusal)
        plug_and_write(document, resolved, vm_id, context, changed=False, final=True)


def after_vm_dehibernate(context: HookContext) -> None:
    """The VM runs again: check the plugging (a missing port is put back), and it is no
    longer suspended."""
    from qhook.vdsm.points.migration import check_plugging

    note_for_ports_on_demand(context, schema.BACK)
    check_plugging(context, "the restore")
