# SPDX-License-Identifier: GPL-2.0-or-later
"""What the hooks do on the host, done as root: directly when the hook already is root,
else through the privileged helper with `sudo -n` (VDSM runs hooks as `vdsm`)."""

import contextlib
import json
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

from qhook.errors import QhookError, one_line
from qhook.plugins import Plugin
from qhook.vocabulary import schema
from qhook.vocabulary.attachment import Attachment, Plugged
from qhook.vocabulary.config import Config

SUDOERS_FILE = "/etc/sudoers.d/50_vdsm_hook_quantum"
PLUGIN_NAMES = {plugin.value for plugin in Plugin}


def _call(request: schema.Request, config: Config) -> Dict[str, Any]:
    if os.geteuid() == 0:
        from qhook.host.helper import execute

        # The same checks as through sudo: the request makes the same round trip.
        return execute(schema.decode(schema.encode(request)), config)
    return _through_sudo(request, config)


def _through_sudo(request: schema.Request, config: Config) -> Dict[str, Any]:
    import subprocess  # only hooks running as vdsm need it

    helper = config.host.helper
    # No arguments: the helper's configuration is root's, fixed where it was installed.
    command = ["sudo", "-n", "--", helper]
    budget = schema.work_budget(request, config) + schema.STARTUP_ALLOWANCE
    try:
        done = subprocess.run(
            command,
            input=schema.encode(request),
            capture_output=True,
            timeout=budget,
            check=False,
        )
    except FileNotFoundError:
        raise QhookError(
            "sudo is not installed: the hooks need it to run their helper as root"
        ) from None
    except subprocess.TimeoutExpired:
        raise QhookError(f"the privileged helper gave no answer within {budget:g} s") from None
    try:
        answer = json.loads(done.stdout.decode("utf-8"))
    except ValueError:
        answer = None
    if isinstance(answer, dict) and answer.get("ok") is True:
        return answer
    if isinstance(answer, dict) and isinstance(answer.get("error"), str):
        raise QhookError(answer["error"])
    said = one_line(done.stderr.decode("utf-8", "replace")) or f"exit {done.returncode}"
    raise QhookError(
        f"sudo -n did not run {helper} as root ({said}); the package's sudoers rule "
        f"{SUDOERS_FILE} must allow vdsm to run it without a password or a terminal"
    )


def _names(answer: Dict[str, Any], key: str) -> List[str]:
    value = answer.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise QhookError(f"the privileged helper answered a malformed {key}")
    return value


def plug(items: Sequence[Attachment], config: Config) -> Plugged:
    answer = _call(schema.Request(schema.PLUG, items[0].vm_id, attachments=list(items)), config)
    plugged_as = answer.get("plugged_as", {})
    if not isinstance(plugged_as, dict) or not all(
        isinstance(value, str) and value in PLUGIN_NAMES for value in plugged_as.values()
    ):
        raise QhookError("the privileged helper answered a malformed plugged_as")
    return Plugged(
        items[0].vm_id,
        _names(answer, "created_taps"),
        _names(answer, "added_ports"),
        _names(answer, "unwired"),
        created_devices=_names(answer, "created_devices"),
        plugged_as=plugged_as,
        notes=_names(answer, "notes"),
    )


def undo(plugged: Plugged, config: Config) -> None:
    """Remove what a plug made; best effort, for a failure after it."""
    request = schema.Request(
        schema.REMOVE,
        plugged.vm_id,
        ports=plugged.added_ports,
        taps=plugged.created_taps,
        devices=plugged.created_devices,
    )
    with contextlib.suppress(QhookError):
        _call(request, config)


def unplug(
    tap_names: Sequence[str], vm_id: str, config: Config, on_demand: Sequence[str] = ()
) -> Tuple[List[str], List[str]]:
    """Remove our ports and taps of these names that belong to this VM, then the Quantum
    ports on demand of these MACs: (problems, notes)."""
    names = sorted(set(tap_names))
    macs = sorted(set(on_demand))
    if not names and not macs:
        return [], []
    request = schema.Request(schema.REMOVE, vm_id, ports=names, taps=names, on_demand=macs)
    answer = _call(request, config)
    return _names(answer, "problems"), _names(answer, "notes")


def ports_on_demand(
    vm_id: str, vnics: Sequence[schema.PortWanted], mode: str, config: Config
) -> Tuple[Dict[str, Tuple[str, Optional[Plugin]]], List[str], List[str]]:
    """The Quantum ports of vNICs whose profile names only the network, found or made by
    the helper: ({MAC: (port id, the plugin its binding says, if it says)}, the MACs
    whose port it made now, notes)."""
    answer = _call(schema.Request(schema.PORTS, vm_id, vnics=list(vnics), mode=mode), config)
    ports = answer.get("ports")
    if not isinstance(ports, list) or not all(
        isinstance(p, dict)
        and isinstance(p.get("mac"), str)
        and isinstance(p.get("port_id"), str)
        and isinstance(p.get("created"), bool)
        and (p.get("plugin") is None or p.get("plugin") in PLUGIN_NAMES)
        for p in ports
    ):
        raise QhookError("the privileged helper answered malformed ports")
    made = [p["mac"] for p in ports if p["created"]]
    found = {
        p["mac"]: (p["port_id"], None if p.get("plugin") is None else Plugin(p["plugin"]))
        for p in ports
    }
    return found, made, _names(answer, "notes")


def release(vm_id: str, macs: Sequence[str], config: Config) -> None:
    """Give up the ports on demand of vNICs a failed run resolved; best effort."""
    with contextlib.suppress(QhookError):
        unplug([], vm_id, config, macs)


def repair(items: Sequence[Attachment], config: Config) -> Tuple[List[str], List[str]]:
    if not items:
        return [], []
    answer = _call(schema.Request(schema.REPAIR, items[0].vm_id, attachments=list(items)), config)
    return _names(answer, "repaired"), _names(answer, "problems")


def move(item: Attachment, config: Config) -> Tuple[str, List[str]]:
    """Re-key the running vNIC's port to the attachment's ids: (its tap, still unwired)."""
    answer = _call(schema.Request(schema.MOVE, item.vm_id, attachments=[item]), config)
    tap_name = answer.get("tap")
    if not isinstance(tap_name, str):
        raise QhookError("the privileged helper answered a move without a tap")
    return tap_name, _names(answer, "unwired")


def end_move(vm_id: str, macs: Sequence[str], undo: bool, config: Config) -> List[str]:
    """Forget the ids a move replaced, or (undo) put them back; the vNICs done."""
    answer = _call(schema.Request(schema.END_MOVE, vm_id, macs=list(macs), undo=undo), config)
    return _names(answer, "done")


def capabilities(config: Config) -> Dict[str, Any]:
    """What the host can do (see qhook.host.capabilities); read as root, where the OVS socket is."""
    caps = _call(schema.Request(schema.CAPS, ""), config).get("caps")
    if not isinstance(caps, dict):
        raise QhookError("the privileged helper answered malformed capabilities")
    return caps


def note(vm_id: str, event: str, config: Config) -> None:
    """Tell root what VDSM said happened to the VM (schema.EVENTS), for its ports on demand."""
    _call(schema.Request(schema.NOTE, vm_id, event=event), config)
