# SPDX-License-Identifier: GPL-2.0-or-later
"""The plugging of a plug request's vNICs, as their ports' bindings say
(qhook.plugins.binding). The ports verb has read the bindings of ports on demand (their
attachments come `decided`); for the others they are read here, in one request, when
root's Quantum settings ([on_demand] settings) exist. Where none can be read, or Quantum
does not answer, `[ovs] hybrid_plug` decides."""

from dataclasses import replace
from typing import Any, Dict, List, Sequence, Tuple

from qhook import plugins
from qhook.errors import QhookError
from qhook.host.trust import MissingFile, read_file
from qhook.plugins import binding
from qhook.vocabulary.attachment import Attachment
from qhook.vocabulary.config import Config


def decide(items: Sequence[Attachment], config: Config) -> Tuple[List[Attachment], List[str]]:
    """The attachments with the plugin their bindings (or the setting) say; the warnings."""
    unread = [item for item in items if not item.decided]
    if not unread:
        return _checked(list(items)), []
    ports, why = _read([item.host_id for item in unread], config)
    host = _host(config) if ports else ""
    hybrid_plug = config.ovs.hybrid_plug
    decided, warned, reasons = [], [], []
    for item in items:
        plugin = item.plugin
        if not item.decided:
            port = ports.get(item.host_id)
            said = None if port is None else binding.by_binding(item.plugin, port, host)
            if said is None:
                if binding.needs_warning(item.plugin, hybrid_plug):
                    warned.append(item.host_id)
                    reason = why if port is None else f"it is not bound to {host}"
                    reasons += [reason] if reason not in reasons else []
                plugin = binding.by_setting(item.plugin, hybrid_plug)
            else:
                plugin = said
        decided.append(replace(item, plugin=plugin, decided=True))
    notes = [binding.unread_warning(warned, "; ".join(reasons))] if warned else []
    return _checked(decided), notes


def _host(config: Config) -> str:
    from qhook.host.capabilities import agent_host_here

    return agent_host_here(config)


def _read(port_ids: List[str], config: Config) -> Tuple[Dict[str, Dict[str, Any]], str]:
    """The ports by id, as far as they can be read; and why not, where not."""
    try:
        # Without root's Quantum settings no Quantum client is even loaded.
        read_file(config.on_demand.settings, "Quantum settings", secret=True)
    except MissingFile:
        return {}, f"no Quantum settings for root at {config.on_demand.settings}"
    except QhookError as error:
        return {}, str(error)
    from qhook.host.ondemand import Quantum

    try:
        with Quantum(config) as quantum:
            found = quantum.client.list(
                "ports",
                id=port_ids,
                fields=[
                    "id",
                    "network_id",
                    "binding:host_id",
                    "binding:vif_type",
                    "binding:vif_details",
                ],
            )
            return {str(port.get("id")): port for port in found}, "Quantum has no such port"
    except QhookError as error:
        return {}, str(error)


def _checked(items: List[Attachment]) -> List[Attachment]:
    """Refuse what the plugin decided cannot do: mirror, or keep a tap of another name."""
    for item in items:
        plugin = plugins.of(item.plugin)
        if item.mirror and plugin.cannot_mirror:
            raise QhookError(f"vNIC {item.mac}: {plugin.cannot_mirror}")
        if item.tap is not None and plugin.finds_the_tap_by_name:
            raise QhookError(
                f"vNIC {item.mac} is plugged {plugin.label}, whose agent finds the tap by a "
                f"name made from the port id: it cannot keep tap {item.tap} for port "
                f"{item.host_id}"
            )
    return items
