# SPDX-License-Identifier: GPL-2.0-or-later
"""The [quantum] settings: file, OS_* variables, secrets kept secret; and TLS to the API."""

import ssl
import subprocess
import uuid

import pytest
from relay import Relay

from qhook.errors import ConfigError
from qhook.quantum.settings import AuthKind, load_quantum_settings
from qhook.vocabulary.config import load_config
from tools import DEFAULTS_CONF, qhook_command, require_tool, without_openrc

SECRET = "pw-" + uuid.uuid4().hex


def _settings(tmp_path, text, mode=0o600, **env):
    conf = tmp_path / "quantum.conf"
    conf.write_text(text)
    conf.chmod(mode)
    return load_quantum_settings({"QHOOK_CONFIG": str(conf), **env})


def test_the_environment_overrides_the_file_key_by_key(tmp_path):
    settings, warnings = _settings(
        tmp_path,
        "[quantum]\nurl = http://controller:9696/\nproject_id = "
        f"{uuid.uuid4()}\ntimeout = 7\ncolour = blue\n",
        OS_NETWORK_URL="https://neutron.example:9696",
        OS_CACERT="/etc/pki/ca.pem",
    )
    assert settings.url == "https://neutron.example:9696" and settings.timeout == 7
    assert settings.ca_file == "/etc/pki/ca.pem" and settings.auth is AuthKind.NOAUTH
    assert warnings == [f"{tmp_path}/quantum.conf: unknown key colour in [quantum] ignored"]
    described = "\n".join(settings.described())
    assert "url = https://neutron.example:9696  (OS_NETWORK_URL)" in described
    assert f"timeout = 7.0  ({tmp_path}/quantum.conf)" in described
    assert "auth = noauth  (implied)" in described


def test_keystone_is_implied_by_auth_url_and_secrets_stay_hidden(tmp_path):
    settings, _ = _settings(
        tmp_path,
        "[quantum]\nauth_url = http://keystone:5000/v3\nusername = ovirt\n"
        f"password = {SECRET}\nproject_name = service\n",
        mode=0o640,
    )
    assert settings.auth is AuthKind.KEYSTONE and settings.password == SECRET
    assert SECRET not in repr(settings) and SECRET not in "\n".join(settings.described())
    assert f"password = ***  ({tmp_path}/quantum.conf)" in settings.described()


def test_a_world_readable_file_with_a_secret_is_refused(tmp_path):
    with pytest.raises(ConfigError) as refused:
        _settings(tmp_path, f"[quantum]\nurl = http://c:9696\ntoken = {SECRET}\n", mode=0o644)
    assert str(refused.value) == (
        f"{tmp_path}/quantum.conf holds [quantum] token but anyone can read it: "
        f"chmod o-rwx {tmp_path}/quantum.conf"
    )
    settings, _ = _settings(tmp_path, "[quantum]\nurl = http://c:9696\n", mode=0o644)
    assert settings.url == "http://c:9696"  # nothing secret in it: fine


@pytest.mark.parametrize(
    ("text", "env", "says"),
    [
        (
            "[quantum]\nauth = keystone\nauth_url = http://k:5000\n",
            {},
            "needs username (OS_USERNAME), password (OS_PASSWORD), project_name (OS_PROJECT_NAME)",
        ),
        ("[quantum]\nauth = token\nurl = http://c:9696\n", {}, "needs token (OS_TOKEN)"),
        ("", {}, "Quantum is not configured: set url (OS_NETWORK_URL), or auth = keystone"),
        ("[quantum]\ntimeout = 5\n", {}, "auth noauth (implied by what is set) needs url"),
        ("[quantum]\nurl = ftp://c\n", {}, "url = 'ftp://c' is invalid"),
        ("[quantum]\nurl = http://c:9696\ntimeout = 0\n", {}, "timeout = '0' is invalid"),
        (
            "[quantum]\nurl = http://c:9696\n",
            {"OS_AUTH_TYPE": "kerberos"},
            "OS_AUTH_TYPE = 'kerberos' is invalid: expected noauth, token or keystone",
        ),
        ("[quantum]\nurl = http://c:9696\n", {"OS_TOKEN": "a\x01b"}, "OS_TOKEN = *** is invalid"),
    ],
)
def test_incomplete_or_bad_settings_say_what_to_fix(tmp_path, text, env, says):
    with pytest.raises(ConfigError) as bad:
        _settings(tmp_path, text, **env)
    assert says in str(bad.value) and "\n" not in str(bad.value)


def test_the_hooks_do_not_warn_about_the_engine_section(tmp_path):
    conf = tmp_path / "quantum.conf"
    conf.write_text("[quantum]\nurl = http://c:9696\n[ovs]\ntimeout = 3\n")
    config, warnings = load_config({"QHOOK_CONFIG": str(conf)})
    assert warnings == [] and config.ovs.timeout == 3


def _clean_env(conf):
    return without_openrc(QHOOK_CONFIG=str(conf))


def test_debug_shows_settings_and_requests_but_never_the_token(tmp_path, api):
    conf = tmp_path / "quantum.conf"
    conf.write_text(f"[quantum]\nurl = {api}\nauth = token\ntoken = {SECRET}\n")
    conf.chmod(0o600)
    done = qhook_command(_clean_env(conf), "network", "list", "--debug", "--json")
    assert done.returncode == 0, done.stderr
    assert "qhook: debug: token = ***" in done.stderr
    assert f"GET {api}/v2.0/networks?limit=500 -> 200" in done.stderr
    assert SECRET not in done.stderr + done.stdout


# -- TLS -------------------------------------------------------------------------------
def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    """A CA made here, and a certificate it signed for 127.0.0.1."""
    require_tool("openssl")
    where = tmp_path_factory.mktemp("tls")
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=qhook test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        cwd=where,
    )
    _openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        cwd=where,
    )
    (where / "san.ext").write_text("subjectAltName = IP:127.0.0.1\n")
    _openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "server.pem",
        cwd=where,
    )
    return where


@pytest.fixture(scope="module")
def tls_api(neutron, certificates):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificates / "server.pem", certificates / "server.key")
    relay = Relay(str(neutron.dir / "api.sock"), tls=context)
    yield relay.url
    relay.stop()


def test_tls_refuses_an_unknown_ca_and_trusts_the_configured_one(tmp_path, tls_api, certificates):
    conf = tmp_path / "quantum.conf"
    conf.write_text(f"[quantum]\nurl = {tls_api}\n")
    unknown = qhook_command(_clean_env(conf), "network", "list")
    assert unknown.returncode == 1 and unknown.stderr.count("\n") == 1
    assert unknown.stderr.startswith(f"qhook: TLS with Quantum at {tls_api} failed: ")
    assert unknown.stderr.endswith("failed: unable to get local issuer certificate\n")
    conf.write_text(f"[quantum]\nurl = {tls_api}\nca_file = {certificates}/ca.pem\n")
    env = _clean_env(conf)
    # requests lets this variable beat a session's CA; the client must not.
    env["REQUESTS_CA_BUNDLE"] = str(certificates / "server.pem")
    trusted = qhook_command(env, "network", "list", "--json")
    assert trusted.returncode == 0, trusted.stderr
    assert "networks" in trusted.stdout
    env = _clean_env(DEFAULTS_CONF)
    env.update(OS_NETWORK_URL=tls_api, OS_CACERT=str(certificates / "ca.pem"))
    assert qhook_command(env, "network", "list").returncode == 0
    env["OS_CACERT"] = str(tmp_path / "missing.pem")
    missing = qhook_command(env, "network", "list")
    assert missing.returncode == 2 and "cannot be read" in missing.stderr
