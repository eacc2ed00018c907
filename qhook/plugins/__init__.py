# SPDX-License-Identifier: GPL-2.0-or-later
"""The plugins: how a Quantum vNIC reaches its network on the host.

Each plugin is one module of this package that holds all of it: what its <interface>
becomes in each plug mode, whether the host puts the vNIC on the integration bridge and
who makes its tap, what "wired" means and what the wait for the agent watches, what it
cannot do (port mirroring, moving a running vNIC), and when after_get_caps reports it
usable. Both sides ask it: the hooks (running as vdsm) and the privileged helper (root).
It imports neither side.

Adding a plugin is a module here whose PLUGIN is a VnicPlugin, and one member of Plugin
below that names it (the module's name, then its openstacknet plugin_type values).
"""

from __future__ import annotations

import enum
import sys

from qhook.vocabulary.value import Frozen

TYPE_CHECKING = False  # typing.TYPE_CHECKING: a device hook does not import typing
if TYPE_CHECKING:
    from typing import Any, Dict, Optional, Protocol, Tuple

    from qhook.vocabulary.config import OvsConfig, PlugMode


class Plugin(enum.Enum):
    """The plugins: each member's value is the name of its module in qhook.plugins and,
    for those a vNIC names (`seed`), the seed's `plugin` property; `openstacknet` are
    oVirt's plugin_type values for it. Quantum's port binding may say to plug a vNIC by
    another (qhook.plugins.binding): an Open vSwitch vNIC bound with ovs_hybrid_plug is
    plugged by openvswitch_hybrid."""

    OPENVSWITCH = ("openvswitch", ("OPEN_VSWITCH",))
    LINUXBRIDGE = ("linuxbridge", ("LINUX_BRIDGE",))
    OVN = ("ovn", ("OPENSTACK_OVN", "OVIRT_PROVIDER_OVN"))
    OVS_HYBRID = ("openvswitch_hybrid", (), False)

    def __new__(cls, name: str, openstacknet: Tuple[str, ...], seed: bool = True) -> Plugin:
        member = object.__new__(cls)
        member._value_ = name
        member.openstacknet = openstacknet
        member.seed = seed
        return member

    openstacknet: Tuple[str, ...]
    seed: bool


SEED_PLUGINS = tuple(plugin for plugin in Plugin if plugin.seed)  # what a vNIC may name


class Watch(enum.Enum):
    """What the wait for the agent listens to: OVSDB updates of the vNIC's rows, or the
    kernel's link events (a tap given a master)."""

    OVSDB = "ovsdb"
    LINK = "link"


class InterfaceSpec(Frozen):
    """The host side of a rewritten <interface>; everything else in it stays."""

    FIELDS = ("type", "target_dev", "target_managed", "source_bridge", "ovs_interface_id")
    type: str
    target_dev: str
    target_managed: Optional[str]
    source_bridge: Optional[str]
    ovs_interface_id: Optional[str]

    def __init__(
        self,
        type: str,
        target_dev: str,
        target_managed: Optional[str] = None,
        source_bridge: Optional[str] = None,
        ovs_interface_id: Optional[str] = None,
    ) -> None:
        self._init(type, target_dev, target_managed, source_bridge, ovs_interface_id)


class HostFacts:
    """What after_get_caps learnt of the host, for each plugin to say if it is usable (a
    plain class: the hooks' hot path loads this module)."""

    __slots__ = ("bridge_present", "ovn_chassis", "tun")

    def __init__(self, tun: bool, bridge_present: bool, ovn_chassis: Optional[str]) -> None:
        self.tun = tun  # taps can be made
        self.bridge_present = bridge_present  # Open vSwitch has the integration bridge
        self.ovn_chassis = ovn_chassis  # OVN's chassis name, when ovn-controller runs


if TYPE_CHECKING:

    class PortView(Protocol):
        """What the wait reads of a vNIC's Open vSwitch rows (qhook.host.ovsports)."""

        external_ids: Dict[str, str]
        tag: Optional[int]
        port_other_config: Dict[str, str]


class VnicPlugin:
    """What a plugin is; each module's PLUGIN is one."""

    plugin: Plugin
    label: str  # as people name it: "Open vSwitch"
    on_integration_bridge: bool  # the vNIC is a port of the integration bridge
    watch: Watch
    cannot_mirror: Optional[str] = None  # why port mirroring is refused; None: it works
    cannot_move: Optional[str] = None  # why a running vNIC cannot move; None: it can
    # The agent finds the tap by its name (made from the port's id), not by OVS ids: a
    # tap of another name (a VM saved on an older port) is not the vNIC's to it.
    finds_the_tap_by_name: bool = False
    # The hooks put the tap in a Linux bridge of its own, joined to the integration
    # bridge by a veth pair (qhook.host.hybrid): hybrid plugging.
    hybrid: bool = False

    def bridge_port(self, tap_name: str) -> str:
        """The name of the vNIC's port on the integration bridge."""
        return tap_name

    def hook_adds_port(self, plug: PlugMode) -> bool:
        """Whether the hook adds the vNIC's integration-bridge port (else libvirt does, or
        there is none)."""
        return self.on_integration_bridge and self.hook_makes_tap(plug)

    def interface(self, tap_name: str, host_id: str, ovs: OvsConfig) -> InterfaceSpec:
        """What the vNIC's <interface> says of the host side."""
        raise NotImplementedError

    def hook_makes_tap(self, plug: PlugMode) -> bool:
        """Whether the hook makes the tap (else libvirt makes and plugs it)."""
        raise NotImplementedError

    def wired(self, port: Optional[PortView], linked: bool, network: Optional[str]) -> bool:
        """Whether the agent has wired the vNIC: its rows (watch OVSDB), or whether its tap
        has a master (watch LINK); network, the Quantum network it must be wired for."""
        raise NotImplementedError

    def usable(self, facts: HostFacts) -> bool:
        """Whether this host can carry the plugin's vNICs (after_get_caps)."""
        raise NotImplementedError


def of(plugin: Plugin) -> VnicPlugin:
    """The plugin behind a name (its module is loaded on first use)."""
    return loaded(f"{__name__}.{plugin.value}").PLUGIN


def loaded(module: str) -> Any:
    """A module by name, imported as an import statement would (so `python -X importtime`
    counts it, which it does not for importlib.import_module)."""
    __import__(module)
    return sys.modules[module]


def named(value: str) -> Optional[Plugin]:
    """The plugin of a seed `plugin` property value, or None."""
    try:
        plugin = Plugin(value)
    except ValueError:
        return None
    return plugin if plugin.seed else None


def hybrid_plugin() -> VnicPlugin:
    """The plugin that plugs hybrid (for the host, which finds such vNICs by their devices)."""
    return of(Plugin.OVS_HYBRID)


def wired_on_the_bridge(port: PortView) -> bool:
    """Whether any plugin of the integration bridge would call this port wired (for a
    listing, where the vNIC's plugin is not known)."""
    bridged = (of(p) for p in Plugin)
    return any(p.on_integration_bridge and p.wired(port, False, None) for p in bridged)
