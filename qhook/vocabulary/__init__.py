# SPDX-License-Identifier: GPL-2.0-or-later
"""The words both sides speak: the ids and names of a vNIC's host objects, the property
names, the configuration file, what crosses from the hooks to root for each vNIC, and the
privileged helper's request schema built on them. It imports neither side (qhook.vdsm,
qhook.host), only qhook.errors and the plugins' names (qhook.plugins)."""
