"""Probe results as a matrix or a CLI prints them, and argument errors a user can make."""

import json

import pytest

from netsim.probe import ProbeResult, probe, probe_many


def test_result_json_shape():
    r = ProbeResult(src="/run/netns/a", dst="10.244.1.5", port=80, proto="tcp", reachable=True,
                    rtt_ms=0.123456, detail="connected")
    assert r.to_json() == {"src": "/run/netns/a", "dst": "10.244.1.5", "port": 80, "proto": "tcp",
                           "reachable": True, "rtt_ms": 0.123, "detail": "connected", "reply": None}
    json.dumps(r.to_json())


def test_unreachable_result_json_has_no_rtt():
    r = ProbeResult(src="a", dst="10.244.1.5", port=None, proto="icmp", reachable=False,
                    rtt_ms=None, detail="timed out")
    assert r.to_json()["rtt_ms"] is None and r.to_json()["port"] is None


@pytest.mark.parametrize("kwargs, field", [
    ({"dst": "10.0.0.1", "port": 80, "proto": "sctp"}, "proto"),
    ({"dst": "web.default", "port": 80}, "dst"),
    ({"dst": "10.0.0.1", "port": 0}, "port"),
    ({"dst": "10.0.0.1", "port": 70000, "proto": "udp"}, "port"),
    ({"dst": "10.0.0.1", "port": None}, "port"),
    ({"dst": "fd00::1", "proto": "icmp"}, "dst"),
    ({"dst": "10.0.0.1", "port": 80, "timeout": 0}, "timeout"),
])
def test_bad_arguments_name_the_field(kwargs, field):
    with pytest.raises(ValueError) as e:
        probe("some-ns", **kwargs)
    assert str(e.value).startswith(f"probe {field}: ") and "expected" in str(e.value)


def test_probe_many_of_nothing():
    assert probe_many([]) == []
