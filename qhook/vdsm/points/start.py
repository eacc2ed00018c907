# SPDX-License-Identifier: GPL-2.0-or-later
"""A VM starts: VDSM runs before_device_create for each device with custom properties,
then before_vm_start on the whole domain; after_vm_start once it runs (a start afresh
only: a restore ends in after_vm_dehibernate, a migration in after_vm_migrate_destination)."""

from qhook.vdsm import domxml
from qhook.vdsm.contract import HookContext
from qhook.vdsm.vnics import (
    check_tap_names,
    classify,
    domain_vnics,
    note_for_ports_on_demand,
    rewrite,
    vm_id_of,
)


def before_device_create(context: HookContext) -> None:
    """Rewrite the one device if it is a Quantum vNIC; no side effects."""
    document = domxml.parse(context.read_data(), "device XML")
    if document.root.tag != "interface":
        return
    vnic = classify(document.root, context.env, context)
    # A port on demand is found or made in before_vm_start, with the VM's others at once.
    if vnic is not None and not vnic.on_demand and rewrite([(document.root, vnic)], context):
        context.write_data(domxml.serialize(document))


def before_vm_start(context: HookContext) -> None:
    """Rewrite every Quantum vNIC not rewritten yet, then plug them all."""
    document = domxml.parse(context.read_data(), "domain XML")
    vnics = domain_vnics(document.root, context)
    if not vnics:
        return
    # Only now the root work's modules (and the helper's request schema, with json): a
    # device hook, or a VM without Quantum vNICs, never loads them.
    from qhook.vdsm.plugging import plug_and_write, ports_on_demand
    from qhook.vocabulary import schema

    vm_id = vm_id_of(context, document.root)
    with ports_on_demand(vnics, vm_id, context, schema.START) as resolved:
        check_tap_names(document.root, resolved)
        changed = rewrite(resolved, context)
        plug_and_write(document, resolved, vm_id, context, changed)


def after_vm_start(context: HookContext) -> None:
    """Started afresh (a restore ends in after_vm_dehibernate instead): whatever an
    earlier suspension kept of its ports on demand is its own again."""
    from qhook.vocabulary import schema

    note_for_ports_on_demand(context, schema.BACK)
