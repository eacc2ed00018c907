# SPDX-License-Identifier: GPL-2.0-or-later
"""Test helpers: external tools (libvirt's validators) and running hook scripts."""

import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterator, List, Mapping, Optional, Sequence

import pytest

REPO = Path(__file__).resolve().parents[1]
HOOKS_DIR = REPO / "hooks"
# Domain XML captured from oVirt hosts (VDSM's test data; see its README).
FIXTURES_DIR = Path(os.environ.get("QHOOK_FIXTURES", REPO / "tests" / "fixtures" / "domxml"))
ERROR_PREFIX = "vdsm-hook-quantum: "
# Every setting at its default: what the tests name instead of the host's configuration.
DEFAULTS_CONF = REPO / "tests" / "fixtures" / "defaults.conf"


def require_program(path: Path, what: str) -> None:
    """A program of a test virtualenv; missing, it skips the test on a laptop and fails
    it in CI (tools/bootstrap --test installs it)."""
    if not path.exists():
        message = f"no {what} in {path.parents[1]} (tools/bootstrap --test installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def require_tool(name: str) -> str:
    """The tool's path; a missing tool skips the test on a laptop and fails it in CI."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI must install it)")
        pytest.skip(message)
    return path


def hook_env(extra: Optional[Mapping[str, str]] = None) -> dict:
    """VDSM-like environment: this interpreter first on PATH, no host configuration."""
    env = {k: v for k, v in os.environ.items() if k not in ("QHOOK_CONFIG", "vmId")}
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env.setdefault("QHOOK_CONFIG", str(DEFAULTS_CONF))
    env.update(extra or {})
    return env


def bench_env(extra: Optional[Mapping[str, str]] = None) -> dict:
    """hook_env for benchmarks: modules byte-compiled once and then loaded from their
    .pyc, as an installed package's are (PYTHONDONTWRITEBYTECODE would compile them at
    every run)."""
    env = hook_env(extra)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def run_hook(
    point: str, data_file: Path, env: Mapping[str, str], prefix: Sequence[str]
) -> subprocess.CompletedProcess:
    """Run our hook script of one point on a data file, as VDSM would, after a prefix
    (`ip netns exec NS`: the tests never let a hook touch the real host)."""
    full = dict(env)
    full["_hook_domxml"] = str(data_file)
    return subprocess.run(
        [*prefix, str(HOOKS_DIR / point / "50_quantum")],
        env=full,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def without_openrc(**extra: str) -> dict:
    """This environment without any OS_* variable (an openrc would steer the engine
    commands), plus the given variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env.update(extra)
    return env


def qhook_command(
    env: Mapping[str, str], *args: str, wrapper: Sequence[str] = (), timeout: float = 120
) -> subprocess.CompletedProcess:
    """Run the `qhook` command of this checkout (inside a namespace wrapper if given)."""
    return subprocess.run(
        [*wrapper, sys.executable, "-m", "qhook.cli", *args],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def qhook_on_host(
    wrapper: Sequence[str], config: Path, *args: str, timeout: float = 300
) -> subprocess.CompletedProcess:
    """`qhook ARGS --config CONFIG` on a sandbox "host" (inside its namespace wrapper)."""
    return qhook_command(
        hook_env(), *args, "--config", str(config), wrapper=wrapper, timeout=timeout
    )


def error_lines(stderr: str) -> List[str]:
    return [line for line in stderr.splitlines() if not line.startswith(ERROR_PREFIX + "warning")]


def _check_file(
    command: List[str], xml: bytes, path: Path, *after: str
) -> subprocess.CompletedProcess:
    """Write the XML to path and run COMMAND PATH AFTER... on it."""
    path.write_bytes(xml)
    return subprocess.run(
        [*command, str(path), *after],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def schema_valid(
    xml: bytes, tmp_path: Path, name: str = "domain.xml"
) -> subprocess.CompletedProcess:
    """Check a domain against libvirt's RelaxNG schema with virt-xml-validate."""
    return _check_file([require_tool("virt-xml-validate")], xml, tmp_path / name, "domain")


def libvirt_defines(
    xml: bytes, tmp_path: Path, name: str = "define.xml"
) -> subprocess.CompletedProcess:
    """Have libvirt's own parser define the domain in the test driver, with validation."""
    virsh = [require_tool("virsh"), "-q", "-c", "test:///default", "define", "--validate"]
    return _check_file(virsh, xml, tmp_path / name)


_HOLD_TAP = """
import fcntl, os, struct, sys, time
fd = os.open("/dev/net/tun", os.O_RDWR)
fcntl.ioctl(fd, 0x400454CA, struct.pack("16sH", sys.argv[1].encode(), 0x1002).ljust(40, b"\\0"))
print("holding", flush=True)
time.sleep(300)
"""


@contextlib.contextmanager
def holding_tap(netns_exec: Sequence[str], name: str) -> Iterator[None]:
    """A process holds the tap open, as QEMU would: the tap has a carrier, in use."""
    holder = subprocess.Popen(
        [*netns_exec, sys.executable, "-c", _HOLD_TAP, name], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        yield
    finally:
        holder.kill()
        holder.wait()
