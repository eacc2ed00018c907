# SPDX-License-Identifier: GPL-2.0-or-later
"""The configuration file: defaults, values, warnings for what a later version may add."""

import os
import subprocess
import sys

import pytest

from qhook.errors import ConfigError
from qhook.vocabulary.config import (
    Config,
    OnTimeout,
    OvsConfig,
    PlugMode,
    WiringConfig,
    config_from,
    load_config,
    read_ini,
)
from tools import REPO

PACKAGED = REPO / "packaging" / "quantum.conf"


def _load(tmp_path, text):
    path = tmp_path / "quantum.conf"
    path.write_text(text)
    return load_config({"QHOOK_CONFIG": str(path)})


def test_the_default_file_absent_means_defaults(tmp_path, monkeypatch):
    monkeypatch.setattr("qhook.vocabulary.config.DEFAULT_PATH", str(tmp_path / "absent.conf"))
    config, warnings = load_config({})
    assert config == Config() and warnings == []
    assert config.ovs == OvsConfig(
        connection="unix:/var/run/openvswitch/db.sock",
        integration_bridge="br-int",
        plug=PlugMode.HOOK,
        timeout=10.0,
    )


def test_a_named_file_that_is_missing_is_an_error(tmp_path):
    with pytest.raises(ConfigError) as missing:
        load_config({"QHOOK_CONFIG": str(tmp_path / "absent.conf")})
    assert str(missing.value) == (
        f"{tmp_path}/absent.conf does not exist (only the default /etc/vdsm/quantum.conf "
        "may be absent)"
    )


def test_values_are_read(tmp_path):
    config, warnings = _load(
        tmp_path,
        "# comment\n[ovs]\nconnection = tcp:[::1]:6640\nintegration_bridge = br-q\n"
        "plug = libvirt\ntimeout = 2.5\n",
    )
    assert warnings == []
    assert config.ovs == OvsConfig("tcp:[::1]:6640", "br-q", PlugMode.LIBVIRT, 2.5)
    assert config.source == str(tmp_path / "quantum.conf")


def test_unknown_sections_and_keys_are_warnings(tmp_path):
    config, warnings = _load(
        tmp_path,
        "[ovs]\nplug = hook\nretries = 3\n[wiring]\ntimeout = 5\n[neutron]\nurl = x\n"
        "[quantum]\nurl = the engine side's, not ours\n",
    )
    assert config.ovs.plug is PlugMode.HOOK and config.wiring.timeout == 5
    assert [w.split(": ", 1)[1] for w in warnings] == [
        "unknown key retries in [ovs] ignored",
        "unknown section [neutron] ignored",
    ]


def test_wiring_settings(tmp_path):
    config, _ = _load(tmp_path, "[wiring]\nwait = no\ntimeout = 2.5\non_timeout = fail\n")
    assert config.wiring == WiringConfig(wait=False, timeout=2.5, on_timeout=OnTimeout.FAIL)
    assert Config().wiring == WiringConfig(wait=True, timeout=30.0, on_timeout=OnTimeout.START)


@pytest.mark.parametrize(
    "text",
    [
        "[ovs]\ntimeout = 0\n",
        "[ovs]\ntimeout = 3601\n",
        "[ovs]\ntimeout = inf\n",
        "[ovs]\nintegration_bridge = a-very-long-bridge\n",
        "[ovs]\nintegration_bridge =\n",
        "[ovs]\nconnection = tcp:host\n",
        "[ovs]\nconnection = ssl:host:6640\n",
        "[ovs]\nplug = HOOK\n",
        "[wiring]\nwait = maybe\n",
        "[wiring]\non_timeout = retry\n",
        "[ovs\n",
        "[ovs]\n[ovs]\n",
    ],
)
def test_bad_values_are_errors(tmp_path, text):
    with pytest.raises(ConfigError) as raised:
        _load(tmp_path, text)
    assert "\n" not in str(raised.value)


def test_unreadable_path_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config({"QHOOK_CONFIG": str(tmp_path)})


def _configparsers_reading(path):
    """What configparser makes of the file (read_ini never takes load_config's shortcut),
    or the error's text."""
    try:
        parser, found = read_ini(str(path))
        assert found
        return config_from(parser, str(path))
    except ConfigError as error:
        return str(error)


@pytest.mark.parametrize(
    "data",
    [
        PACKAGED.read_bytes(),
        PACKAGED.read_bytes().replace(b"#plug = hook", b"plug = libvirt"),
        b"",
        b"\n \t\n\x0c\n",
        b"# only comments\n  ; and these\n#[neutron]\n",
        b"[ovs]\n[wiring]\n[host]\n[on_demand]\n[quantum]\n",
        b"  [ovs]\r\n\t# indented\r\n[wiring]\r[host]\n",
        b"[ovs]\n[ovs]\n",
        b"[ovs]\n#\n[wiring]\n\n[ovs]\n",
        b"[DEFAULT]\n[ovs]\n",
        b"[neutron]\n",
        b"[OVS]\n",
        b"[ovs] # a comment after the header\n",
        b"[ovs]]\n",
        b"\xef\xbb\xbf[ovs]\n",
        b"# no section\nplug = hook\n",
        b"[ovs]\n# fine so far\n\xff\n",
        b"[ovs]\n[wiring\n",
    ],
)
def test_a_file_that_sets_nothing_is_read_as_configparser_reads_it(tmp_path, data):
    """load_config does not need configparser for a file of comments and empty known
    sections (the packaged one); what it returns is what configparser's reading gives."""
    path = tmp_path / "quantum.conf"
    path.write_bytes(data)
    try:
        ours = load_config({"QHOOK_CONFIG": str(path)})
    except ConfigError as error:
        ours = str(error)
    assert ours == _configparsers_reading(path)


def test_the_packaged_file_is_read_without_configparser(tmp_path):
    code = (
        "import sys; from qhook.vocabulary.config import load_config; "
        f"config, warnings = load_config({{'QHOOK_CONFIG': {str(PACKAGED)!r}}}); "
        "print(config.source, warnings, 'configparser' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )
    assert done.stdout == f"{PACKAGED} [] False\n"
