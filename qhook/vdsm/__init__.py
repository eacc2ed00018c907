# SPDX-License-Identifier: GPL-2.0-or-later
"""What runs as `vdsm`, inside VDSM's hook call: the hook contract (contract), the hook
points by family (points), the domain XML (domxml), which vNICs are Quantum's (vnic,
vnics), and the root work they ask for (plugging, through helper_client). It reaches
root code only through the privileged helper's entry point (qhook.host.helper)."""
