# SPDX-License-Identifier: GPL-2.0-or-later
"""The `qhook run` demo command, as a user runs it."""

import subprocess
import sys

from domains import EXAMPLE
from lxml import etree

from tools import hook_env, libvirt_defines, require_tool, schema_valid


def _qhook(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "qhook.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env or hook_env(),
    )


def test_run_prints_the_domain_libvirt_would_get(ovs, configure, config_path, tmp_path):
    result = _qhook("run", "--netns", ovs.name, "--config", str(config_path), str(EXAMPLE))
    assert result.returncode == 0, result.stderr
    domain = etree.fromstring(result.stdout.encode())
    nics = {i.find("mac").get("address"): i for i in domain.find("devices").findall("interface")}
    assert nics["00:1a:4a:16:01:51"].find("target").get("dev") == "tap8e5f2a1c-4b"
    assert nics["00:1a:4a:16:01:53"].find("target").get("dev") == "tapf1e2d3c4-b5"
    assert nics["00:1a:4a:16:01:54"].get("type") == "bridge"
    assert schema_valid(result.stdout.encode(), tmp_path).returncode == 0
    assert libvirt_defines(result.stdout.encode(), tmp_path).returncode == 0


def test_run_with_config_and_installed_tree(ovs, configure, config_path):
    ovs.add_bridge("br-q")
    configure(plug="libvirt", integration_bridge="br-q")
    from tools import HOOKS_DIR

    result = _qhook(
        "run",
        "--netns",
        ovs.name,
        "--config",
        str(config_path),
        "--hooks-dir",
        str(HOOKS_DIR),
        "--interfaces",
        str(EXAMPLE),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count('<source bridge="br-q"/>') == 2  # OVS and OVN; not Linux bridge
    assert result.stdout.count("--- rewritten by the hooks to:") == 3
    assert "=== vNIC 00:1a:4a:16:01:54: no custom properties" in result.stdout


def test_run_reports_a_failing_hook_in_one_line(ovs, tmp_path):
    bad = tmp_path / "bad.xml"
    bad.write_bytes(
        EXAMPLE.read_bytes().replace(b"<ovirt-vm:plugin>linuxbridge", b"<ovirt-vm:plugin>lb")
    )
    result = _qhook("run", "--netns", ovs.name, str(bad))
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("qhook: before_device_create failed (50_quantum exit 2): ")
    assert "vNIC 00:1a:4a:16:01:52: property plugin: unknown value 'lb'" in result.stderr


def test_run_on_a_missing_file():
    result = _qhook("run", "/nonexistent/vm.xml")
    assert (result.returncode, result.stderr) == (
        2,
        "qhook: cannot read /nonexistent/vm.xml: No such file or directory\n",
    )


def test_version():
    from qhook import __version__

    assert _qhook("--version").stdout.strip() == f"qhook {__version__}"


def test_demo_runs_a_real_vm_start_to_finish_and_leaves_nothing(ovs):
    """`qhook demo` (the README's first command): OVS, OVN and libvirt of its own."""
    for tool in ("ovn-controller", "libvirtd", "tcpdump"):
        require_tool(tool)
    before = _demo_namespaces()
    result = _qhook("demo")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert '<target dev="tap8e5f2a1c-4b" managed="no"/>' in out and "filterref" in out
    # OVN, the agent, wired both vNICs before the hook returned.
    assert "8e5f2a1c-4b3d-4e6f-9a7b-1c2d3e4f5a6b: up=true" in out
    assert "f1e2d3c4-b5a6-4978-8695-a4b3c2d1e0f9: up=true" in out
    assert 'ovn-installed="true"' in out
    # The guest's firmware sent its DHCP request through the vNIC's tap.
    assert "BOOTP/DHCP, Request from 00:1a:4a:16:01:00" in out
    assert "nothing of ours is left" in out and "tap" not in out.rsplit("STALE", 1)[1]
    # Its namespace is gone (another run's demo may be going on: only new names count).
    assert _demo_namespaces() <= before
    left = subprocess.run(["pgrep", "-f", "qhook-demo-"], capture_output=True, text=True)
    assert left.stdout == "", left.stdout


def _demo_namespaces() -> set:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in listed.splitlines() if line.startswith("qhook-demo-")}


def test_a_kept_demo_is_explored_simply_and_stopped_with_one_command():
    """--keep leaves the VM running; the qhook it prints works on the demo's host; --stop
    ends every process (QEMU too), the namespace and the directory."""
    import re

    for tool in ("ovn-controller", "libvirtd", "tcpdump"):
        require_tool(tool)
    kept = _qhook("demo", "--keep")
    assert kept.returncode == 0, kept.stdout + kept.stderr
    work = re.search(r"^  \./demo --stop (/\S+)$", kept.stdout, re.M).group(1)
    netns = re.search(r"network namespace (qhook-demo-\d+)", kept.stdout).group(1)
    try:
        status = subprocess.run(
            [f"{work}/qhook", "status"], capture_output=True, text=True, timeout=60
        )
        assert status.returncode == 0, status.stderr
        assert "tap8e5f2a1c-4b" in status.stdout  # the running VM's vNIC, seen from its host
        running = subprocess.run(["pgrep", "-f", "qemu-system"], capture_output=True, text=True)
        assert running.stdout.strip(), "the kept demo's VM is not running"
    finally:
        stopped = _qhook("demo", "--stop", work)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    from qhook.lab.sandbox import processes_of

    assert processes_of(netns, work) == []
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert netns not in listed
    import os

    assert not os.path.exists(work)
    again = _qhook("demo", "--stop", work)
    assert again.returncode == 2 and "is not the directory of a kept demo" in again.stderr


def test_demo_without_a_vm_on_another_domain():
    require_tool("ovn-controller")
    from domains import EXAMPLE as OTHER

    result = _qhook("demo", "--no-vm", str(OTHER))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "(no VM will boot: --no-vm)" in result.stdout
    assert "virsh destroy" not in result.stdout and "no VM was booted" in result.stdout
    assert "the agent has not wired tapc4d5e6f7-a8 within 3 s; starting anyway" in result.stdout


def test_hooks_print_and_install_for_a_host_without_the_rpm(tmp_path):
    from qhook.install import render
    from qhook.vdsm.points import HOOK_POINTS

    printed = _qhook("hooks", "print", "before_vm_start", "--interpreter", "/usr/bin/python3")
    assert printed.stdout == render("before_vm_start", "/usr/bin/python3")
    assert _qhook("hooks", "print", "before_everything").returncode == 2
    installed = _qhook("hooks", "install", "--dir", str(tmp_path))
    assert installed.returncode == 0, installed.stderr
    for point in HOOK_POINTS:
        script = tmp_path / point / "50_quantum"
        assert script.read_text() == render(point, sys.executable)
        assert script.stat().st_mode & 0o777 == 0o755
    foreign = tmp_path / "before_vm_start" / "50_quantum"
    foreign.write_text("#!/bin/sh\\necho someone else's\\n")
    refused = _qhook("hooks", "install", "--dir", str(tmp_path))
    assert refused.returncode == 2 and "is not this package's; nothing installed" in refused.stderr
    assert "someone else's" in foreign.read_text()


def test_pip_installs_the_package_and_its_commands(tmp_path):
    from tools import REPO

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(tmp_path / "target"),
            str(REPO),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    target = tmp_path / "target"
    shipped = {str(p.relative_to(REPO)) for p in (REPO / "qhook").rglob("*.py")}
    installed = {str(p.relative_to(target)) for p in (target / "qhook").rglob("*.py")}
    assert installed == shipped  # every package of the tree, none left behind
    assert (target / "bin" / "qhook").exists()
    # The privileged helper is no console script (those lack -I): `qhook hooks helper`
    # writes it, as the RPM does.
    assert not (target / "bin" / "qhook-privileged").exists()


def test_hooks_helper_writes_the_helper_with_its_configuration_fixed(tmp_path):
    from qhook.install import render_helper, sudoers_rule

    helper = tmp_path / "libexec" / "qhook-privileged"
    config = "/etc/vdsm/quantum.conf"
    done = _qhook("hooks", "helper", "--path", str(helper), "--interpreter", "/usr/bin/python3")
    assert done.returncode == 0, done.stderr
    assert helper.read_text() == render_helper("/usr/bin/python3", config)
    assert helper.stat().st_mode & 0o777 == 0o755
    assert done.stdout.endswith(sudoers_rule(str(helper)))
    rule = tmp_path / "rule"
    rule.write_text(sudoers_rule(str(helper)))
    visudo = subprocess.run(["visudo", "-cf", str(rule)], capture_output=True, text=True)
    assert visudo.returncode == 0, visudo.stdout + visudo.stderr
    # Not over somebody else's file; not with a path that is not plainly one.
    other = tmp_path / "other"
    other.write_text("#!/bin/sh\n")
    refused = _qhook("hooks", "helper", "--path", str(other))
    assert refused.returncode == 2 and "is not this package's helper" in refused.stderr
    assert other.read_text() == "#!/bin/sh\n"
    bad = _qhook("hooks", "helper", "--path", str(helper), "--config", 'x"""; import os')
    assert bad.returncode == 2 and "is not an absolute path" in bad.stderr
    assert helper.read_text() == render_helper("/usr/bin/python3", config)


def test_engine_config_defines_strict_properties_the_hooks_accept():
    import re

    from qhook.vdsm.vnic import parse_vnic

    result = _qhook("engine-config", "--cver", "4.6")
    assert result.returncode == 0
    command = result.stdout.splitlines()[-1]
    assert command.startswith("engine-config -s CustomDeviceProperties='{type=interface;prop={")
    assert command.endswith("}}' --cver=4.6")
    body = command.split("prop={", 1)[1].rsplit("}}'", 1)[0]
    patterns = dict(item.split("=", 1) for item in body.split(";"))
    assert sorted(patterns) == ["mtu", "plugin", "q_attachment_id", "q_network_id", "q_port_id"]
    good = {
        "plugin": "ovn",
        "q_network_id": "3b0c4e7a-9d2f-4c61-8a5e-0f1d2c3b4a59",
        "q_port_id": "8E5F2A1C-4B3D-4E6F-9A7B-1C2D3E4F5A6B",
        "q_attachment_id": "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
        "mtu": "1450",
    }
    for name, value in good.items():  # what the engine lets through, the hooks accept
        assert re.fullmatch(patterns[name], value)
    assert parse_vnic(good, "02:00:00:00:00:01") is not None
    for name, bad in (
        ("plugin", "vmware"),
        ("q_port_id", "x; reboot"),
        ("q_network_id", good["q_network_id"] + "\\n"),
        ("mtu", "1500; reboot"),
    ):
        assert not re.fullmatch(patterns[name], bad), (name, bad)
    assert _qhook("engine-config", "--cver", "4.7'; rm -rf /").returncode == 2
