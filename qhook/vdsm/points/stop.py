# SPDX-License-Identifier: GPL-2.0-or-later
"""A VM is gone from this host: after_vm_destroy, after a stop, a crash, or a migration
away."""

from qhook.vdsm import domxml
from qhook.vdsm.contract import HookContext
from qhook.vdsm.plugging import unplug
from qhook.vdsm.vnics import domain_vnics, vm_id_of


def after_vm_destroy(context: HookContext) -> None:
    """Unplug every Quantum vNIC of the VM: our OVS ports and taps of this VM, nothing else."""
    data = context.read_data()
    if not data.strip():
        return  # VDSM may hand an empty file to after_* hooks; nothing to act on
    domain = domxml.parse(data, "domain XML").root
    unplug(
        domxml.interfaces(domain),
        domain_vnics(domain, context, tolerant=True),
        vm_id_of(context, domain),
        context,
    )
