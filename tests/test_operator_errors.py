# SPDX-License-Identifier: GPL-2.0-or-later
"""Every operator command's error, as a user meets it: one line that says what is wrong
(never "internal error", which is kept for bugs of ours), exit 2, and with --json a JSON
body {"error": {"message", "kind", "status"}}."""

import json
import os
import re
import subprocess
import sys

import pytest

from qhook.quantum.settings import ENGINE_PATH
from qhook.vocabulary.config import DEFAULT_PATH
from tools import DEFAULTS_CONF, hook_env, without_openrc


def _qhook(*args, env=None, timeout=60):
    return subprocess.run(
        [sys.executable, "-m", "qhook.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=hook_env() if env is None else env,
    )


def _one_line(done, pattern: str) -> str:
    """The command failed with exit 2 and one line on stderr that matches pattern."""
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert "internal error" not in lines[0] and "Traceback" not in done.stderr
    assert re.fullmatch(pattern, lines[0]), lines[0]
    return lines[0]


def _json_error(done, kind, status=None) -> dict:
    body = json.loads(done.stdout)
    assert set(body) == {"error"} and set(body["error"]) == {"message", "kind", "status"}
    assert (body["error"]["kind"], body["error"]["status"]) == (kind, status)
    assert body["error"]["message"] == done.stderr.strip()[len("qhook: ") :]
    return body["error"]


def test_the_demo_on_a_file_that_is_not_domain_xml():
    done = _qhook("demo", "--no-vm", "/etc/passwd")
    _one_line(done, r"qhook: demo: domain XML is malformed: .+")


def test_the_demo_on_a_directory():
    done = _qhook("demo", "--no-vm", "/tmp")
    _one_line(
        done,
        r"qhook: demo: cannot read /tmp: Is a directory: name a domain XML with oVirt metadata",
    )


@pytest.mark.parametrize("command", [["status"], ["status", "--json"], ["cleanup"]])
def test_a_bad_value_in_the_configuration(tmp_path, command):
    bad = tmp_path / "bad.conf"
    bad.write_text("[ovs]\ntimeout = banana\n")
    done = _qhook(*command, env=hook_env({"QHOOK_CONFIG": str(bad)}))
    line = _one_line(
        done,
        re.escape(
            f"qhook: {bad}: [ovs] timeout = 'banana' is invalid: expected a number of seconds"
        ),
    )
    if "--json" in command:
        assert _json_error(done, "Configuration")["message"] == line[len("qhook: ") :]


@pytest.mark.parametrize("command", [["status"], ["cleanup", "--dry-run"], ["network", "list"]])
def test_a_named_configuration_that_does_not_exist(tmp_path, command):
    missing = tmp_path / "absent.conf"
    done = _qhook(*command, env=without_openrc(**hook_env({"QHOOK_CONFIG": str(missing)})))
    _one_line(
        done,
        re.escape(
            f"qhook: {missing} does not exist (only the default {DEFAULT_PATH} may be absent)"
        ),
    )


def test_open_vswitch_out_of_reach_names_the_configuration_used(tmp_path):
    config = tmp_path / "quantum.conf"
    config.write_text(f"[ovs]\nconnection = unix:{tmp_path}/none.sock\ntimeout = 1\n")
    done = _qhook("cleanup", env=hook_env({"QHOOK_CONFIG": str(config)}))
    _one_line(
        done,
        re.escape(
            f"qhook: cannot reach Open vSwitch at unix:{tmp_path}/none.sock: No such file or "
            f"directory (configuration: {config}); nothing removed"
        ),
    )


# qhook as on a host where `pip install .` ran without [engine]: requests cannot be
# imported (None in sys.modules makes the import fail as a missing module does).
WITHOUT_REQUESTS = (
    "import sys; sys.modules['requests'] = None; from qhook.cli import main; sys.exit(main())"
)


@pytest.mark.parametrize("json_output", [False, True])
def test_the_engine_commands_without_requests(json_output):
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_REQUESTS, "network", "list"]
        + (["--json"] if json_output else []),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=without_openrc(**hook_env()),
    )
    _one_line(
        done,
        re.escape(
            "qhook: qhook network and qhook port need the Python library requests: install "
            "vdsm-hook-quantum-engine (EL) or pip install 'vdsm-hook-quantum[engine]'"
        ),
    )
    if json_output:
        _json_error(done, "MissingDependency")


def test_hooks_print_without_a_hook_point():
    done = _qhook("hooks", "print")
    _one_line(done, r"qhook: hooks print needs a hook point: one of after_get_caps, .+")


@pytest.mark.parametrize("json_output", [False, True])
def test_the_engine_commands_with_nothing_configured(json_output):
    env = without_openrc(**hook_env({"QHOOK_CONFIG": str(DEFAULTS_CONF)}))
    done = _qhook("network", "list", *(["--json"] if json_output else []), env=env)
    _one_line(
        done,
        re.escape(
            "qhook: Quantum is not configured: set url (OS_NETWORK_URL), or auth = keystone "
            "with auth_url, username, password and project_name (an openrc's OS_* variables), "
            f"in [quantum] of {DEFAULTS_CONF} or in the environment"
        ),
    )
    if json_output:
        _json_error(done, "Configuration")


@pytest.mark.skipif(
    os.path.exists(DEFAULT_PATH) or os.path.exists(ENGINE_PATH),
    reason=f"this machine has {DEFAULT_PATH} or {ENGINE_PATH}",
)
def test_the_engine_commands_name_the_engines_file_to_write():
    env = {k: v for k, v in without_openrc().items() if k != "QHOOK_CONFIG"}
    done = _qhook("network", "list", env=env)
    _one_line(done, rf"qhook: Quantum is not configured: .+ in \[quantum\] of {ENGINE_PATH} .+")


def test_one_missing_setting_is_named_as_one():
    env = without_openrc(**hook_env({"QHOOK_CONFIG": str(DEFAULTS_CONF), "OS_AUTH_TYPE": "token"}))
    env["OS_NETWORK_URL"] = "http://127.0.0.1:1"
    done = _qhook("network", "list", env=env)
    _one_line(
        done,
        re.escape(
            "qhook: Quantum with auth token needs token (OS_TOKEN): set it in [quantum] of "
            f"{DEFAULTS_CONF} or in the environment"
        ),
    )


@pytest.mark.parametrize("grace", ["-5", "banana", "inf"])
def test_a_grace_that_is_not_seconds(grace):
    done = _qhook("cleanup", "--dry-run", "--grace", grace)
    _one_line(done, r"qhook: cleanup: argument --grace: .+")


def test_a_usage_error_is_one_line():
    done = _qhook("network", "frobnicate")
    _one_line(done, r"qhook: network: argument ACTION: invalid choice: 'frobnicate' .+")


def test_engine_config_defines_mtu_exactly_as_the_hooks_take_it():
    from qhook.cli import MTU_PATTERN

    helped = _qhook("engine-config", "--help")
    assert helped.returncode == 0 and "mtu" in helped.stdout
    printed = _qhook("engine-config").stdout
    assert f"mtu=^{MTU_PATTERN}$" in printed
    pattern = re.compile(MTU_PATTERN)
    accepted = [n for n in range(0, 70_000) if pattern.fullmatch(str(n))]
    assert accepted == list(range(68, 65_536))
    for text in ("068", "0", "", "65536", "1e3", "+100", " 100"):
        assert not pattern.fullmatch(text), text


def test_cleanup_with_nothing_to_remove_says_so(tmp_path):
    from qhook.lab.sandbox import OvsSandbox

    sandbox = OvsSandbox(tmp_path / "ovs", f"qhook-empty-{os.getpid()}").start()
    try:
        config = tmp_path / "quantum.conf"
        config.write_text(f"[ovs]\nconnection = {sandbox.connection}\nhybrid_plug = no\n")
        for dry in ([], ["--dry-run"]):
            done = subprocess.run(
                [*sandbox.netns_exec, sys.executable, "-m", "qhook.cli", "cleanup", *dry],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
                env=hook_env({"QHOOK_CONFIG": str(config)}),
            )
            assert (done.returncode, done.stderr) == (0, ""), done.stderr
            assert done.stdout == (
                "nothing to remove: no stale tap or port of this package on this host\n"
            )
    finally:
        sandbox.stop()
