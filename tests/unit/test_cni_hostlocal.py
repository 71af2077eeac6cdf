"""host-local compatible IPAM on a temporary dataDir: order, bounds, exhaustion, release, bytes."""

import os

import pytest

from cni.ipam import hostlocal
from cni.spec import CNIError


def config(tmp_path, **ipam):
    ipam.setdefault("ranges", [[{"subnet": "10.22.0.0/29"}]])
    return hostlocal.HostLocalConfig(dict(type="host-local", dataDir=str(tmp_path), **ipam), "mynet")


def addresses(result):
    return [ip["address"] for ip in result["ips"]]


def test_first_address_skips_the_network_and_the_default_gateway(tmp_path):
    result = hostlocal.allocate(config(tmp_path), "c1", "eth0")
    assert result["ips"] == [{"address": "10.22.0.2/29", "gateway": "10.22.0.1"}]


def test_on_disk_layout_is_the_references(tmp_path):
    hostlocal.allocate(config(tmp_path), "c1", "eth0")
    net = tmp_path / "mynet"
    assert sorted(os.listdir(net)) == ["10.22.0.2", "last_reserved_ip.0", "lock"]
    assert (net / "10.22.0.2").read_bytes() == b"c1\r\neth0"
    assert (net / "last_reserved_ip.0").read_bytes() == b"10.22.0.2"


def test_allocation_is_round_robin_after_the_last_reserved(tmp_path):
    conf = config(tmp_path)
    got = [addresses(hostlocal.allocate(conf, f"c{i}", "eth0"))[0] for i in range(3)]
    assert got == ["10.22.0.2/29", "10.22.0.3/29", "10.22.0.4/29"]
    hostlocal.release(conf, "c0", "eth0")
    # The freed .2 is not reused until the range wraps around.
    assert addresses(hostlocal.allocate(conf, "c3", "eth0")) == ["10.22.0.5/29"]


def test_exhaustion_wraps_then_fails_naming_the_range(tmp_path):
    conf = config(tmp_path)  # /29: .2-.6 usable, .1 gateway, .7 broadcast
    got = [addresses(hostlocal.allocate(conf, f"c{i}", "eth0"))[0] for i in range(5)]
    assert got[-1] == "10.22.0.6/29"
    with pytest.raises(CNIError) as e:
        hostlocal.allocate(conf, "c9", "eth0")
    assert "no IP addresses available in range set: 10.22.0.1-10.22.0.6" in e.value.msg
    hostlocal.release(conf, "c1", "eth0")
    assert addresses(hostlocal.allocate(conf, "c9", "eth0")) == ["10.22.0.3/29"]


def test_range_start_end_and_gateway_are_honoured(tmp_path):
    conf = config(tmp_path, ranges=[[{"subnet": "10.22.0.0/24", "rangeStart": "10.22.0.10",
                                      "rangeEnd": "10.22.0.12", "gateway": "10.22.0.11"}]])
    got = [addresses(hostlocal.allocate(conf, f"c{i}", "eth0"))[0] for i in range(2)]
    assert got == ["10.22.0.10/24", "10.22.0.12/24"]
    with pytest.raises(CNIError):
        hostlocal.allocate(conf, "c3", "eth0")


def test_legacy_subnet_form(tmp_path):
    conf = hostlocal.HostLocalConfig({"type": "host-local", "dataDir": str(tmp_path), "subnet": "10.5.0.0/24",
                                      "gateway": "10.5.0.254"}, "old")
    assert hostlocal.allocate(conf, "c1", "eth0")["ips"] == [{"address": "10.5.0.1/24", "gateway": "10.5.0.254"}]


def test_one_address_per_range_set_and_routes(tmp_path):
    conf = config(tmp_path, ranges=[[{"subnet": "10.22.0.0/29"}], [{"subnet": "fd00::/120"}]],
                  routes=[{"dst": "0.0.0.0/0"}])
    result = hostlocal.allocate(conf, "c1", "eth0")
    assert addresses(result) == ["10.22.0.2/29", "fd00::2/120"]
    assert result["routes"] == [{"dst": "0.0.0.0/0"}]
    assert (tmp_path / "mynet" / "last_reserved_ip.1").read_text() == "fd00::2"


def test_a_range_set_spans_its_ranges(tmp_path):
    conf = config(tmp_path, ranges=[[{"subnet": "10.22.0.0/30"}, {"subnet": "10.23.0.0/30"}]])
    got = [addresses(hostlocal.allocate(conf, f"c{i}", "eth0"))[0] for i in range(2)]
    assert got == ["10.22.0.2/30", "10.23.0.2/30"]


def test_duplicate_allocation_for_the_same_attachment_is_refused(tmp_path):
    conf = config(tmp_path)
    hostlocal.allocate(conf, "c1", "eth0")
    with pytest.raises(CNIError) as e:
        hostlocal.allocate(conf, "c1", "eth0")
    assert "duplicate allocation is not allowed" in e.value.msg
    assert addresses(hostlocal.allocate(conf, "c1", "net1")) == ["10.22.0.3/29"]


def test_release_is_by_container_and_ifname_and_idempotent(tmp_path):
    conf = config(tmp_path)
    hostlocal.allocate(conf, "c1", "eth0")
    hostlocal.allocate(conf, "c1", "net1")
    assert hostlocal.release(conf, "c1", "net1") == ["10.22.0.3"]
    assert hostlocal.release(conf, "c1", "net1") == []
    assert os.path.exists(tmp_path / "mynet" / "10.22.0.2")


def test_release_understands_files_holding_only_the_container_id(tmp_path):
    conf = config(tmp_path)
    (tmp_path / "mynet").mkdir()
    (tmp_path / "mynet" / "10.22.0.5").write_bytes(b"old\n")
    assert hostlocal.release(conf, "old", "eth0") == ["10.22.0.5"]


def test_release_of_an_unknown_network_is_fine(tmp_path):
    assert hostlocal.release(config(tmp_path), "c1", "eth0") == []


def test_gc_keeps_exactly_the_valid_attachments(tmp_path):
    conf = config(tmp_path)
    for cid in ("a", "b", "c"):
        hostlocal.allocate(conf, cid, "eth0")
    freed = hostlocal.gc(conf, {("b", "eth0")})
    assert sorted(freed) == [("a", "eth0", "10.22.0.2"), ("c", "eth0", "10.22.0.4")]
    assert sorted(os.listdir(tmp_path / "mynet")) == ["10.22.0.3", "last_reserved_ip.0", "lock"]


def test_has_free_address_until_the_range_is_full(tmp_path):
    conf = config(tmp_path)
    for i in range(5):
        assert hostlocal.has_free_address(conf)
        hostlocal.allocate(conf, f"c{i}", "eth0")
    assert not hostlocal.has_free_address(conf)


def test_check_finds_the_attachment(tmp_path):
    conf = config(tmp_path)
    hostlocal.allocate(conf, "c1", "eth0")
    hostlocal.check(conf, "c1", "eth0")
    with pytest.raises(CNIError, match="Failed to find address added by container c2"):
        hostlocal.check(conf, "c2", "eth0")


@pytest.mark.parametrize("ipam,msg", [
    ({"ranges": []}, "no IP ranges specified"),
    ({"ranges": [[{"subnet": "10.22.0.1/24"}]]}, "invalid subnet '10.22.0.1/24'"),
    ({"ranges": [[{"subnet": "10.22.0.0/31"}]]}, "too small to allocate from"),
    ({"ranges": [[{"subnet": "10.22.0.0/24", "rangeStart": "10.23.0.5"}]]}, "rangeStart 10.23.0.5 not in network"),
    ({"ranges": [[{"subnet": "10.22.0.0/24", "rangeEnd": "10.22.0.255"}]]}, "network or broadcast"),
    ({"ranges": [[{"subnet": "10.22.0.0/24"}], [{"subnet": "10.22.0.0/25"}]]}, "range set 1 overlaps with 0"),
])
def test_config_errors_name_the_field(tmp_path, ipam, msg):
    with pytest.raises(CNIError) as e:
        hostlocal.HostLocalConfig(dict(type="host-local", dataDir=str(tmp_path), **ipam), "mynet")
    assert e.value.code == 7 and msg in e.value.msg


def test_a_reservation_interrupted_before_its_owner_is_written_leaves_no_file(tmp_path, monkeypatch):
    """A plugin killed mid-ADD must not leave an empty lease: no DEL could ever free it."""
    conf = config(tmp_path)

    def killed(fd, data):
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(hostlocal.os, "write", killed)
    with pytest.raises(KeyboardInterrupt):
        hostlocal.allocate(conf, "c1", "eth0")
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path / "mynet")) == ["lock"]
    assert addresses(hostlocal.allocate(conf, "c2", "eth0")) == ["10.22.0.2/29"]
