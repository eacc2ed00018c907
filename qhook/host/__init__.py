# SPDX-License-Identifier: GPL-2.0-or-later
"""What runs as root, behind sudo: the privileged helper's entry point (helper) and the
work it does: plugging and unplugging (plumbing) with taps (tap) and the integration
bridge's ports (ovsports, over the OVSDB client ovsdb), port mirroring (mirrors), the
wait for the agent (wiring), status and cleanup (inventory), root's notes (state), the
files root may trust (trust), what the host can do (capabilities), and the ports on
demand it makes with the Quantum client (ondemand). It never imports the hook side
(qhook.vdsm) and trusts nothing it is told: qhook.vocabulary checks it all again."""
