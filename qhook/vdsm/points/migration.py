# SPDX-License-Identifier: GPL-2.0-or-later
"""A VM arrives by migration: before_vm_migrate_destination before the incoming QEMU,
after_vm_migrate_destination once it runs here."""

from qhook.errors import QhookError
from qhook.vdsm import domxml, helper_client
from qhook.vdsm.contract import HookContext
from qhook.vdsm.plugging import attachment, plug_and_write, ports_on_demand, resolve
from qhook.vdsm.vnics import check_tap_names, domain_vnics, note_for_ports_on_demand, vm_id_of
from qhook.vocabulary import schema


def before_vm_migrate_destination(context: HookContext) -> None:
    """Bind the ports on demand here, then plug before the incoming QEMU needs the taps.

    VDSM ignores this hook's output: the XML is the source's, already rewritten.
    """
    document = domxml.parse(context.read_data(), "domain XML")
    vnics = domain_vnics(document.root, context)
    if vnics:
        vm_id = vm_id_of(context, document.root)
        with ports_on_demand(vnics, vm_id, context, schema.MIGRATE) as resolved:
            check_tap_names(document.root, resolved)
            plug_and_write(document, resolved, vm_id, context, changed=False, final=True)


def after_vm_migrate_destination(context: HookContext) -> None:
    """Check the plugging after an incoming migration; repair missing ports."""
    check_plugging(context, "the migration")


def check_plugging(context: HookContext, after: str) -> None:
    """The VM runs here (after a migration, or a restore): check its vNICs are plugged,
    put back a missing port, and say what cannot be repaired (a tap gone under a running
    QEMU). Its ports on demand are only found (and a migration's note goes)."""
    data = context.read_data()
    if not data.strip():
        return
    domain = domxml.parse(data, "domain XML").root
    vm_id = vm_id_of(context, domain)
    vnics = domain_vnics(domain, context, tolerant=True)
    try:
        vnics, _ = resolve(vnics, vm_id, context, schema.ARRIVED)
    except QhookError as error:
        unchecked = [vnic.mac for _, vnic in vnics if vnic.unresolved]
        context.warn(f"vNIC {', '.join(unchecked)} not checked: {error}")
        vnics = [(interface, vnic) for interface, vnic in vnics if not vnic.unresolved]
    items = [attachment(interface, vnic, vm_id) for interface, vnic in vnics]
    repaired, unrepairable = helper_client.repair(items, context.config)
    for name in repaired:
        context.warn(f"{name} was not plugged after {after}; plugged it again")
    if unrepairable:
        raise QhookError("; ".join(unrepairable))


def before_vm_migrate_source(context: HookContext) -> None:
    """Nothing to do on the source yet: the destination plugs and binds before the VM
    moves, and everything here stays until libvirt says the domain left."""


def after_vm_migrate_source(context: HookContext) -> None:
    """The VM runs on another host now: its ports on demand are that host's, and the
    after_vm_destroy that follows here must leave them."""
    note_for_ports_on_demand(context, schema.LEFT)
