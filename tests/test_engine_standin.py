# SPDX-License-Identifier: GPL-2.0-or-later
"""The engine stand-in, driven by the official oVirt Python SDK: every answer must parse."""

import time
from typing import Iterator

import pytest

sdk = pytest.importorskip("ovirtsdk4")
import ovirtsdk4.types as types  # noqa: E402
from engine_standin import EngineStandin  # noqa: E402
from ovirtsdk4 import http  # noqa: E402
from ovirtsdk4.reader import Reader  # noqa: E402

PASSWORD = "s3cret"


@pytest.fixture
def engine() -> Iterator[EngineStandin]:
    standin = EngineStandin(password=PASSWORD).start()
    yield standin
    standin.stop()


def connect(engine: EngineStandin, password: str = PASSWORD) -> "sdk.Connection":
    return sdk.Connection(
        url=engine.url, username="admin@internal", password=password, insecure=True, timeout=5
    )


def test_root_and_data_centers(engine: EngineStandin) -> None:
    dc_id = engine.add_data_center("Default")
    conn = connect(engine)
    try:
        assert conn.test(raise_exception=True)
        api = conn.system_service().get()
        assert api.product_info.version.major == 4 and api.product_info.version.minor == 5
        dcs = conn.system_service().data_centers_service().list()
        assert [(dc.id, dc.name) for dc in dcs] == [(dc_id, "Default")]
        dc = conn.system_service().data_centers_service().data_center_service(dc_id).get()
        assert dc.version.minor == 7 and dc.status == types.DataCenterStatus.UNINITIALIZED
    finally:
        conn.close()
    assert ("POST", "/ovirt-engine/sso/oauth/token") in engine.requests
    assert ("POST", "/ovirt-engine/services/sso-logout") in engine.requests


def test_add_network_makes_default_profile_and_events(engine: EngineStandin) -> None:
    dc_id = engine.add_data_center("Default")
    engine.add_network("ovirtmgmt", dc_id)
    conn = connect(engine)
    try:
        last = conn.system_service().events_service().list(max=1)[0].id
        networks = conn.system_service().networks_service()
        net = networks.add(
            types.Network(name="red", data_center=types.DataCenter(id=dc_id), mtu=1400)
        )
        assert net.name == "red" and net.mtu == 1400 and net.data_center.id == dc_id
        assert types.NetworkUsage.VM in net.usages
        assert {n["name"]: n["mtu"] for n in engine.networks()} == {"ovirtmgmt": 0, "red": 1400}
        profiles = networks.network_service(net.id).vnic_profiles_service().list()
        assert [(p.name, p.network.id, p.custom_properties) for p in profiles] == [
            ("red", net.id, None)
        ]
        assert [p["name"] for p in engine.profiles(net.id)] == ["red"]
        followed = conn.follow_link(networks.network_service(net.id).get().vnic_profiles)
        assert [p.id for p in followed] == [profiles[0].id]
        found = networks.list(search="datacenter=Default")
        assert sorted(n.name for n in found) == ["ovirtmgmt", "red"]
        events = conn.system_service().events_service().list(from_=int(last))
        assert [e.code for e in events] == [942, 9423, 1122]  # newest first
        assert events[0].description == "Finished adding Network red to Data Center: Default"
        assert events[0].data_center.id == dc_id
        assert events[2].description == (
            "VM network interface profile red was added to network red in Data Center: "
            "Default. (User: admin@internal-authz)"
        )
        assert int(events[0].id) > int(events[1].id) > int(last)
    finally:
        conn.close()


def test_name_clash_is_the_engines_conflict(engine: EngineStandin) -> None:
    dc_id = engine.add_data_center("Default")
    engine.add_network("red", dc_id)
    conn = connect(engine)
    try:
        with pytest.raises(sdk.Error) as failure:
            conn.system_service().networks_service().add(
                types.Network(name="red", data_center=types.DataCenter(name="Default"))
            )
        assert failure.value.code == 409
        assert failure.value.fault.reason == "Operation Failed"
        assert "The name of the logical network 'red' is already used" in failure.value.fault.detail
        assert len(engine.networks()) == 1
    finally:
        conn.close()


def test_custom_properties_refused_until_defined(engine: EngineStandin) -> None:
    dc_id = engine.add_data_center("Default")
    net_id = engine.add_network("red", dc_id)
    profile_id = engine.profiles(net_id)[0]["id"]
    conn = connect(engine)
    try:
        service = conn.system_service().vnic_profiles_service().profile_service(profile_id)
        update = types.VnicProfile(
            custom_properties=[types.CustomProperty(name="provider_type", value="quantum")]
        )
        with pytest.raises(sdk.Error) as failure:
            service.update(update)
        assert failure.value.code == 400
        assert failure.value.fault.detail == (
            "[Cannot edit VM network interface profile if some of the specified custom "
            "properties are not configured by the system. The keys are: provider_type]"
        )
        assert engine.profiles(net_id)[0]["custom_properties"] == {}

        engine.define_custom_properties(["provider_type", "vnic_id"])
        updated = service.update(update)
        assert [(p.name, p.value) for p in updated.custom_properties] == [
            ("provider_type", "quantum")
        ]
        assert engine.profiles(net_id)[0]["custom_properties"] == {"provider_type": "quantum"}
        latest = conn.system_service().events_service().list(max=1)[0]
        assert latest.code == 1124
        # Given as a whole, the list replaces what was there.
        service.update(types.VnicProfile(custom_properties=[]))
        assert engine.profiles(net_id)[0]["custom_properties"] == {}
    finally:
        conn.close()


def test_profile_name_clash_and_unknown_element(engine: EngineStandin) -> None:
    dc_id = engine.add_data_center("Default")
    net_id = engine.add_network("red", dc_id)
    conn = connect(engine)
    try:
        assigned = conn.system_service().networks_service().network_service(net_id)
        assigned = assigned.vnic_profiles_service()
        extra = assigned.add(types.VnicProfile(name="red-2"))
        assert extra.network.id == net_id
        with pytest.raises(sdk.Error) as failure:
            assigned.add(types.VnicProfile(name="red"))
        assert failure.value.code == 409
        assert "profile's name is already used" in failure.value.fault.detail
        assert sorted(p["name"] for p in engine.profiles(net_id)) == ["red", "red-2"]
        # The SDK never writes an unknown element, so send one through its own HTTP layer.
        body = "<vnic_profile><name>x</name><bogus/></vnic_profile>"
        request = http.Request(method="PUT", path=f"/vnicprofiles/{extra.id}", body=body)
        response = conn.wait(conn.send(request))
        fault = Reader.read(response.body)
        assert response.code == 400 and isinstance(fault, types.Fault)
        assert fault.reason == "Request syntactically incorrect."
        assert fault.detail.endswith("#services/vnic_profile/methods/update")
        assert sorted(p["name"] for p in engine.profiles(net_id)) == ["red", "red-2"]
    finally:
        conn.close()


def test_update_and_remove_network(engine: EngineStandin) -> None:
    dc_id = engine.add_data_center("Default")
    net_id = engine.add_network("red", dc_id)
    conn = connect(engine)
    try:
        events = conn.system_service().events_service()
        start = int(events.list(max=1)[0].id)
        service = conn.system_service().networks_service().network_service(net_id)
        assert service.update(types.Network(name="blue", mtu=9000)).name == "blue"
        assert engine.networks()[0]["mtu"] == 9000
        assert [p["name"] for p in engine.profiles(net_id)] == ["blue"]
        engine.update_network(net_id, mtu=1500)
        assert service.get().mtu == 1500
        service.remove()
        assert engine.networks() == [] and engine.profiles() == []
        codes = [e.code for e in events.list(from_=start)]
        assert codes == [944, 9444, 1114, 11143, 1114, 11143]
        assert [e.code for e in events.list(from_=start, search="type=944")] == [944]
        with pytest.raises(sdk.NotFoundError):
            service.get()
    finally:
        conn.close()


def test_bad_password_and_bad_token(engine: EngineStandin) -> None:
    conn = connect(engine, password="wrong")
    with pytest.raises(sdk.AuthError, match="access_denied") as failure:
        conn.test(raise_exception=True)
    assert "Cannot authenticate user 'admin@internal'" in str(failure.value)
    conn.close(logout=False)
    conn = sdk.Connection(url=engine.url, token="not-a-token", insecure=True, timeout=5)
    with pytest.raises(sdk.Error):
        conn.test(raise_exception=True)
    conn.close(logout=False)
    assert ("GET", "/ovirt-engine/api") in engine.requests


def test_expired_token_is_renewed(engine: EngineStandin) -> None:
    engine.token_lifetime = 0.2
    conn = connect(engine)
    try:
        assert conn.test(raise_exception=True)
        time.sleep(0.3)
        assert conn.test(raise_exception=True)
    finally:
        conn.close()
    logins = [r for r in engine.requests if r[1].endswith("/oauth/token")]
    assert len(logins) == 2


def test_engine_down_then_back(engine: EngineStandin) -> None:
    dc_id = engine.add_data_center("Default")
    conn = connect(engine)
    try:
        assert conn.test(raise_exception=True)
        port = engine.port
        engine.stop()
        with pytest.raises(sdk.Error):
            conn.system_service().data_centers_service().list()
        engine.start()
        assert engine.port == port
        dcs = conn.system_service().data_centers_service().list()
        assert [dc.id for dc in dcs] == [dc_id]
    finally:
        conn.close()
