# SPDX-License-Identifier: GPL-2.0-or-later
"""The engine side: Quantum networks for oVirt's `Q_` logical networks and ports for
VMs' vNICs (provisioning), and the `qhook network` and `qhook port` commands (commands).
It runs on the engine machine, with the Quantum client; never on a host's hook path."""
