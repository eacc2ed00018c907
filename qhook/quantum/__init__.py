# SPDX-License-Identifier: GPL-2.0-or-later
"""The Quantum/Neutron API client (client), its authentication (keystone), its
[quantum] settings and the OS_* variables (settings), and a client made from them
(connect). It knows nothing of the host; the engine side and the host's ports on demand
use it. Imported only where it is used: the hooks' hot path never loads it."""
