# SPDX-License-Identifier: GPL-2.0-or-later
"""The soak test with faults (bench/soak.py) in its short form: a few hundred VM
lifecycles (start, hotplug, suspend and resume or a snapshot's restore, migration both
ways, stop) through the real hooks on two "hosts" while faults are injected; nothing of
ours may be left, nothing foreign touched, no hook may hang or fail unclearly."""

import re
import subprocess
import sys

from tools import REPO, require_tool


def test_a_short_soak_with_faults_leaves_nothing_behind():
    for tool in ("ovsdb-server", "ovs-vswitchd", "mount"):
        require_tool(tool)
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "soak.py"), "--lifecycles", "200", "--workers", "8"],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    print(done.stdout)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    counts = dict(re.findall(r"^(\S.*?)\s{2,}(\d+)$", done.stdout, re.M))
    assert counts["lifecycles"] == "200"
    assert counts["leaks"] == "0" and counts["foreign objects touched"] == "0"
    assert int(counts.get("restores", 0)) > 0  # suspended or snapshot VMs came back
    assert sum(int(v) for k, v in counts.items() if k.startswith("fault: ")) > 0
