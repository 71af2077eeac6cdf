"""Result conversion between spec versions: what a runtime of each version reads."""

import json

import pytest

from cni import spec

RESULT = {
    "interfaces": [{"name": "cni0", "mac": "0a:58:0a:16:00:01"},
                   {"name": "veth1234abcd", "mac": "aa:bb:cc:dd:ee:ff"},
                   {"name": "eth0", "mac": "0a:58:0a:16:00:02", "sandbox": "/run/netns/pod"}],
    "ips": [{"interface": 2, "address": "10.22.0.2/24", "gateway": "10.22.0.1"}],
    "routes": [{"dst": "10.99.0.0/16"}, {"dst": "0.0.0.0/0", "gw": "10.22.0.1"}],
    "dns": {"nameservers": ["10.96.0.10"]},
}


def test_1_0_0_keeps_the_shape_and_key_order_of_the_reference():
    out = spec.convert_result(RESULT, "1.0.0")
    assert list(out) == ["cniVersion", "interfaces", "ips", "routes", "dns"]
    assert list(out["ips"][0]) == ["interface", "address", "gateway"]
    assert out["interfaces"][2]["sandbox"] == "/run/netns/pod"


@pytest.mark.parametrize("version", ["0.3.0", "0.3.1", "0.4.0"])
def test_0_3_and_0_4_add_the_ip_version_first(version):
    out = spec.convert_result(RESULT, version)
    assert out["cniVersion"] == version
    assert out["ips"] == [{"version": "4", "interface": 2, "address": "10.22.0.2/24", "gateway": "10.22.0.1"}]
    assert list(out["ips"][0])[0] == "version"


@pytest.mark.parametrize("version", ["0.1.0", "0.2.0"])
def test_0_1_and_0_2_have_ip4_with_the_routes_and_no_interfaces(version):
    out = spec.convert_result(RESULT, version)
    assert out == {"cniVersion": version,
                   "ip4": {"ip": "10.22.0.2/24", "gateway": "10.22.0.1",
                           "routes": [{"dst": "10.99.0.0/16"}, {"dst": "0.0.0.0/0", "gw": "10.22.0.1"}]},
                   "dns": {"nameservers": ["10.96.0.10"]}}


def test_0_2_0_keeps_only_the_first_address_of_each_family_and_routes_by_family():
    result = {"ips": [{"address": "10.0.0.2/24"}, {"address": "10.0.1.2/24"}, {"address": "fd00::2/64"}],
              "routes": [{"dst": "::/0", "gw": "fd00::1"}, {"dst": "0.0.0.0/0"}]}
    out = spec.convert_result(result, "0.2.0")
    assert out["ip4"] == {"ip": "10.0.0.2/24", "routes": [{"dst": "0.0.0.0/0"}]}
    assert out["ip6"] == {"ip": "fd00::2/64", "routes": [{"dst": "::/0", "gw": "fd00::1"}]}


def test_1_1_0_only_fields_are_dropped_for_1_0_0():
    result = {"interfaces": [{"name": "eth0", "mtu": 1400}], "routes": [{"dst": "0.0.0.0/0", "mtu": 1400}]}
    assert spec.convert_result(result, "1.1.0")["interfaces"][0]["mtu"] == 1400
    assert "mtu" not in spec.convert_result(result, "1.0.0")["interfaces"][0]
    assert "mtu" not in spec.convert_result(result, "1.0.0")["routes"][0]


def test_empty_dns_is_printed_as_the_reference_does():
    assert spec.convert_result({"ips": []}, "1.0.0")["dns"] == {}


@pytest.mark.parametrize("version", ["0.1.0", "0.2.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
def test_a_printed_result_parses_back_to_the_same_addresses_and_routes(version):
    back = spec.parse_result(json.loads(spec.dumps_result(RESULT, version)))
    assert [ip["address"] for ip in back["ips"]] == ["10.22.0.2/24"]
    assert back["ips"][0]["gateway"] == "10.22.0.1"
    assert back["routes"] == RESULT["routes"]


def test_printed_results_are_indented_like_libcni():
    assert spec.dumps_result(RESULT, "1.0.0").startswith('{\n    "cniVersion": "1.0.0"')


def test_a_bad_version_names_the_value():
    with pytest.raises(spec.CNIError) as e:
        spec.version_tuple("one")
    assert e.value.code == spec.ERR_DECODE and "'one'" in e.value.msg
