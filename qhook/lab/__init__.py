# SPDX-License-Identifier: GPL-2.0-or-later
"""Scaffolding for the demo and the tests: a private Open vSwitch, OVN and libvirt in a
network namespace (sandbox), VDSM's hook runner emulated from VDSM's own source
(vdsm_emulator), and `qhook demo` (demo). No module of the product imports it; the
`qhook` command loads it only in the commands that use it (`run`, `demo`)."""
