"""The runtime driving the reference plugins (Debian containernetworking-plugins, /usr/lib/cni):
bridge + host-local give a pod eth0 with an address; CHECK, DEL and a failed ADD leave the
kernel and the disk as a user would expect.

Plugins run inside a throwaway "node" namespace (the runtime execs in the calling thread's
namespace), so cni0 is never created in the host's root namespace.
"""

import json
import os
import secrets

import pytest

from cni.runtime import CNIConfig, RuntimeConf, conflist_from_bytes
from cni.spec import CNIError
from netsim import netns

pytestmark = pytest.mark.kernel

REFERENCE_PLUGINS = "/usr/lib/cni"
SUBNET = "10.99.0.0/24"


def _links(ns):
    from pyroute2 import IPRoute
    with netns.enter(ns), IPRoute() as ipr:
        return {link.get_attr("IFLA_IFNAME"): link for link in ipr.get_links()}


def _addresses(ns, ifname):
    from pyroute2 import IPRoute
    with netns.enter(ns), IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=ifname)
        return [f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}" for a in ipr.get_addr(index=idx[0], family=2)]


@pytest.fixture
def lab(tmp_path):
    if not os.path.exists(os.path.join(REFERENCE_PLUGINS, "bridge")):
        pytest.skip("reference CNI plugins not installed")
    tag = "t" + secrets.token_hex(3)
    made = []
    try:
        for role in ("node", "pod"):
            netns.create(f"{tag}{role}")
            made.append(f"{tag}{role}")
        yield {"node": netns.netns_path(f"{tag}node"), "pod": netns.netns_path(f"{tag}pod"),
               "data": tmp_path / "ipam", "cache": tmp_path / "cache", "tag": tag}
    finally:
        for name in reversed(made):
            netns.delete(name)


def _conflist(lab, *extra):
    doc = {"cniVersion": "1.0.0", "name": f"{lab['tag']}net", "plugins": [
        {"type": "bridge", "bridge": "cni0", "isGateway": True, "ipMasq": False,
         "ipam": {"type": "host-local", "dataDir": str(lab["data"]),
                  "ranges": [[{"subnet": SUBNET}]], "routes": [{"dst": "0.0.0.0/0"}]}},
        *extra]}
    return conflist_from_bytes(json.dumps(doc).encode(), "test.conflist")


def test_add_check_del_with_reference_bridge_and_host_local(lab):
    cfg = CNIConfig([REFERENCE_PLUGINS], cache_dir=str(lab["cache"]))
    net = _conflist(lab, {"type": "portmap", "capabilities": {"portMappings": True}, "snat": False})
    rt = RuntimeConf(container_id="pod1", netns=lab["pod"], ifname="eth0",
                     args=[("IgnoreUnknown", "1"), ("K8S_POD_NAME", "web")], capability_args={"portMappings": []})
    with netns.enter(lab["node"]):
        result = cfg.add_network_list(net, rt)
    assert result["cniVersion"] == "1.0.0"
    (ip,) = result["ips"]
    assert _addresses(lab["pod"], "eth0") == [ip["address"]]
    assert ip["address"].startswith("10.99.0.") and ip["gateway"] == "10.99.0.1"
    assert "cni0" in _links(lab["node"])
    lease = lab["data"] / net.name / ip["address"].split("/")[0]
    assert lease.read_text().split() == ["pod1", "eth0"]
    cache = lab["cache"] / "results" / f"{net.name}-pod1-eth0"
    assert json.loads(cache.read_text())["result"] == result

    with netns.enter(lab["node"]):
        cfg.check_network_list(net, rt)
        cfg.del_network_list(net, rt)
    assert not cache.exists()
    assert not lease.exists()
    assert "eth0" not in _links(lab["pod"])
    with netns.enter(lab["node"]):
        cfg.del_network_list(net, rt)  # DEL again: nothing left, still fine


def test_check_reports_a_missing_address(lab):
    cfg = CNIConfig([REFERENCE_PLUGINS], cache_dir=str(lab["cache"]))
    net = _conflist(lab)
    rt = RuntimeConf(container_id="pod1", netns=lab["pod"], ifname="eth0")
    with netns.enter(lab["node"]):
        cfg.add_network_list(net, rt)
    from pyroute2 import IPRoute
    with netns.enter(lab["pod"]), IPRoute() as ipr:
        ipr.flush_addr(index=ipr.link_lookup(ifname="eth0")[0])
    with netns.enter(lab["node"]):
        with pytest.raises(CNIError, match="bridge"):
            cfg.check_network_list(net, rt)
        cfg.del_network_list(net, rt)


def test_failed_second_plugin_leaves_nothing_behind(lab):
    cfg = CNIConfig([REFERENCE_PLUGINS], cache_dir=str(lab["cache"]))
    net = _conflist(lab, {"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.no_such_knob": "1"}})
    rt = RuntimeConf(container_id="pod1", netns=lab["pod"], ifname="eth0")
    with netns.enter(lab["node"]):
        with pytest.raises(CNIError) as e:
            cfg.add_network_list(net, rt)
    assert "tuning" in e.value.msg and "no_such_knob" in e.value.msg
    assert "eth0" not in _links(lab["pod"])
    bridged = [name for name, link in _links(lab["node"]).items() if name.startswith("veth")]
    assert bridged == []
    assert [f for f in os.listdir(lab["data"] / net.name) if f[0].isdigit()] == []
    assert cfg.cached_attachments() == []


def test_version_of_reference_plugin(lab):
    info = CNIConfig([REFERENCE_PLUGINS], cache_dir=str(lab["cache"])).get_version_info("bridge")
    assert "1.0.0" in info["supportedVersions"]


def _netsim_conflist(lab, version, *extra):
    doc = {"cniVersion": version, "name": f"{lab['tag']}net", "plugins": [
        {"type": "bridge", "bridge": "cni0", "isGateway": True, "ipMasq": False,
         "ipam": {"type": "host-local", "dataDir": str(lab["data"]), "ranges": [[{"subnet": SUBNET}]]}},
        *extra]}
    return conflist_from_bytes(json.dumps(doc).encode(), "netsim.conflist")


def test_netsim_bridge_chained_with_reference_portmap(lab, tmp_path):
    from cni.install import install_plugin
    bin_dir = tmp_path / "bin"
    install_plugin(str(bin_dir), "bridge")
    # netsim's bridge first in the path shadows the reference one; portmap comes from the reference.
    cfg = CNIConfig([str(bin_dir), REFERENCE_PLUGINS], cache_dir=str(lab["cache"]))
    net = _netsim_conflist(lab, "1.0.0", {"type": "portmap", "capabilities": {"portMappings": True}, "snat": False})
    rt = RuntimeConf(container_id="pod1", netns=lab["pod"], ifname="eth0", capability_args={"portMappings": []})
    with netns.enter(lab["node"]):
        result = cfg.add_network_list(net, rt)
        cfg.check_network_list(net, rt)
    assert _addresses(lab["pod"], "eth0") == [result["ips"][0]["address"]]
    with netns.enter(lab["node"]):
        cfg.del_network_list(net, rt)
    assert "eth0" not in _links(lab["pod"]) and cfg.cached_attachments() == []


def test_gc_and_status_with_netsim_bridge(lab, tmp_path):
    from cni.install import install_plugin
    bin_dir = tmp_path / "bin"
    install_plugin(str(bin_dir), "bridge")
    cfg = CNIConfig([str(bin_dir)], cache_dir=str(lab["cache"]))
    net = _netsim_conflist(lab, "1.1.0")
    second = netns.create(f"{lab['tag']}pod2")
    try:
        keep = RuntimeConf(container_id="keep", netns=lab["pod"], ifname="eth0")
        stale = RuntimeConf(container_id="stale", netns=second, ifname="eth0")
        with netns.enter(lab["node"]):
            cfg.get_status_network_list(net)
            kept = cfg.add_network_list(net, keep)["ips"][0]["address"].split("/")[0]
            cfg.add_network_list(net, stale)
            cfg.gc_network_list(net, valid_attachments=[("keep", "eth0")])
        assert [e["containerId"] for e in cfg.cached_attachments()] == ["keep"]
        assert "eth0" not in _links(second)
        assert [f for f in os.listdir(lab["data"] / net.name) if f[0].isdigit()] == [kept]
        with netns.enter(lab["node"]):
            cfg.del_network_list(net, keep)
    finally:
        netns.delete(f"{lab['tag']}pod2")
