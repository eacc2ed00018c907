# SPDX-License-Identifier: GPL-2.0-or-later
"""vdsm-hook-quantum: VDSM hooks that put oVirt vNICs on Quantum/Neutron networks."""

__version__ = "0.1.0"

PROGRAM = "vdsm-hook-quantum"
