# SPDX-License-Identifier: GPL-2.0-or-later
"""Which vNICs are Quantum's: custom properties parsed into one validated value per vNIC.

Two property forms are understood:

* the seed's: ``plugin`` (openvswitch, linuxbridge, ovn), ``q_network_id``,
  ``q_port_id`` and optionally ``q_attachment_id`` (the id used on the host,
  defaulting to ``q_port_id``); without ``q_port_id`` (a vNIC profile names only
  the network) the host finds or makes the vNIC's port itself: a port on demand;
* oVirt's openstacknet form: ``provider_type`` (OPENSTACK_NETWORK or
  EXTERNAL_NETWORK), ``plugin_type`` and ``vnic_id`` (the id used on the host).
"""

from __future__ import annotations

import enum

from qhook import plugins
from qhook.errors import PropertyError, shown
from qhook.plugins import Plugin
from qhook.vocabulary.ids import normalise_mac, normalise_uuid, parse_mtu, tap_name_of
from qhook.vocabulary.properties import (
    MTU,
    OPENSTACKNET_PROVIDERS,
    PLUGIN_TYPE,
    PROVIDER_TYPE,
    SEED_IDS,
    SEED_PLUGIN,
    VNIC_ID,
)
from qhook.vocabulary.value import Frozen

TYPE_CHECKING = False  # typing.TYPE_CHECKING: a device hook does not import typing
if TYPE_CHECKING:
    from typing import Mapping, Optional

SEED_PLUGINS = {plugin.value: plugin for plugin in plugins.SEED_PLUGINS}
OPENSTACKNET_PLUGINS = {name: plugin for plugin in Plugin for name in plugin.openstacknet}


class PropertyForm(enum.Enum):
    """Which contract the properties followed."""

    SEED = "seed"
    OPENSTACKNET = "openstacknet"


class QuantumVnic(Frozen):
    """One Quantum vNIC: validated, normalised identifiers and how it is plugged."""

    FIELDS = (
        "mac",
        "plugin",
        "host_id",
        "port_id",
        "network_id",
        "form",
        "mtu",
        "on_demand",
        "plugin_decided",
    )
    mac: str
    plugin: Plugin
    host_id: str
    port_id: Optional[str]
    network_id: Optional[str]
    form: PropertyForm
    mtu: Optional[int]
    on_demand: bool  # the host finds or makes the port; host_id is "" until then
    # The plugin is what the port's binding says (the host read it), not the property's.
    plugin_decided: bool

    def __init__(
        self,
        mac: str,
        plugin: Plugin,
        host_id: str,
        port_id: Optional[str],
        network_id: Optional[str],
        form: PropertyForm,
        mtu: Optional[int] = None,
        on_demand: bool = False,
        plugin_decided: bool = False,
    ) -> None:
        self._init(mac, plugin, host_id, port_id, network_id, form, mtu, on_demand, plugin_decided)

    @property
    def tap_name(self) -> str:
        """The host device name: 'tap' + the first 11 characters of the host id."""
        if not self.host_id:
            raise PropertyError(f"vNIC {self.mac}: its port on demand is not known yet")
        return tap_name_of(self.host_id)

    @property
    def unresolved(self) -> bool:
        """A port on demand whose port is not known yet."""
        return self.on_demand and not self.host_id

    def with_port(self, port_id: str, plugin: Optional[Plugin] = None) -> QuantumVnic:
        """This vNIC on the port found or made for it (plugged by `plugin`, if its
        binding says)."""
        port_id = normalise_uuid(port_id, "port id")
        vnic = self.replace(host_id=port_id, port_id=port_id)
        return vnic if plugin is None else vnic.plugged_by(plugin)

    def plugged_by(self, plugin: Plugin) -> QuantumVnic:
        """This vNIC as the host decided to plug it."""
        return self.replace(plugin=plugin, plugin_decided=True)


def _given(props: Mapping[str, str], name: str) -> Optional[str]:
    value = props.get(name)
    return value if value else None


def _uuid(props: Mapping[str, str], name: str, required: bool = True) -> Optional[str]:
    value = _given(props, name)
    if value is None:
        if required:
            raise PropertyError(f"property {name} is missing")
        return None
    return normalise_uuid(value, f"property {name}")


def _choice(props: Mapping[str, str], name: str, choices: Mapping[str, Plugin]) -> Plugin:
    value = _given(props, name)
    if value is None:
        raise PropertyError(f"property {name} is missing")
    try:
        return choices[value]
    except KeyError:
        expected = ", ".join(sorted(choices))
        raise PropertyError(
            f"property {name}: unknown value {shown(value)} (expected one of {expected})"
        ) from None


def _seed(props: Mapping[str, str], mac: str) -> QuantumVnic:
    plugin = _choice(props, SEED_PLUGIN, SEED_PLUGINS)
    network_id = _uuid(props, "q_network_id")
    attachment_id = _uuid(props, "q_attachment_id", required=False)
    port_id = _uuid(props, "q_port_id", required=attachment_id is not None)
    if port_id is None:  # a profile that names only the network: a port on demand
        return QuantumVnic(
            mac=mac,
            plugin=plugin,
            host_id="",
            port_id=None,
            network_id=network_id,
            form=PropertyForm.SEED,
            on_demand=True,
        )
    return QuantumVnic(
        mac=mac,
        plugin=plugin,
        host_id=attachment_id or port_id,
        port_id=port_id,
        network_id=network_id,
        form=PropertyForm.SEED,
    )


def _openstacknet(props: Mapping[str, str], mac: str) -> QuantumVnic:
    plugin = _choice(props, PLUGIN_TYPE, OPENSTACKNET_PLUGINS)
    vnic_id = _uuid(props, VNIC_ID)
    assert vnic_id is not None
    return QuantumVnic(
        mac=mac,
        plugin=plugin,
        host_id=vnic_id,
        port_id=vnic_id,
        network_id=None,
        form=PropertyForm.OPENSTACKNET,
    )


def claims(props: Mapping[str, str]) -> bool:
    """Whether the properties say the vNIC is Quantum's (valid or not)."""
    return bool(
        _given(props, SEED_PLUGIN)
        or any(_given(props, name) for name in SEED_IDS)
        or props.get(PROVIDER_TYPE) in OPENSTACKNET_PROVIDERS
    )


def parse_vnic(props: Mapping[str, str], mac: Optional[str]) -> Optional[QuantumVnic]:
    """The Quantum vNIC these custom properties describe, or None if it is not ours.

    Raises PropertyError naming the property when the vNIC claims to be Quantum's
    but a property is missing, malformed or contradicts another.
    """
    if not claims(props):
        return None
    seed = bool(_given(props, SEED_PLUGIN) or any(_given(props, n) for n in SEED_IDS))
    openstacknet = props.get(PROVIDER_TYPE) in OPENSTACKNET_PROVIDERS
    if seed and openstacknet:
        raise PropertyError(
            f"both the seed's properties ({SEED_PLUGIN}, q_*) and "
            f"{PROVIDER_TYPE}={props[PROVIDER_TYPE]} are set; use one form"
        )
    address = normalise_mac(mac, "interface MAC address")
    vnic = _seed(props, address) if seed else _openstacknet(props, address)
    mtu = parse_mtu(_given(props, MTU), f"property {MTU}")
    return vnic if mtu is None else vnic.replace(mtu=mtu)
