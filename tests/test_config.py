# SPDX-License-Identifier: GPL-2.0-or-later
"""The configuration file: defaults, values, warnings for what a later version may add."""

import pytest

from qhook.errors import ConfigError
from qhook.vocabulary.config import (
    Config,
    OnTimeout,
    OvsConfig,
    PlugMode,
    WiringConfig,
    load_config,
)


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
