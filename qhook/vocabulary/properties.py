# SPDX-License-Identifier: GPL-2.0-or-later
"""The names of the custom properties that make a vNIC Quantum's, in both forms: the
seed's (`plugin`, `q_network_id`, `q_port_id`, `q_attachment_id`) and oVirt's
openstacknet (`provider_type`, `plugin_type`, `vnic_id`); `mtu` in either. The hooks
parse them (qhook.vdsm.vnic); the engine side writes them."""

SEED_PLUGIN = "plugin"
SEED_IDS = ("q_network_id", "q_port_id", "q_attachment_id")

PROVIDER_TYPE = "provider_type"
PLUGIN_TYPE = "plugin_type"
VNIC_ID = "vnic_id"
OPENSTACKNET_PROVIDERS = ("OPENSTACK_NETWORK", "EXTERNAL_NETWORK")

MTU = "mtu"  # optional in both forms: the Quantum network's MTU
