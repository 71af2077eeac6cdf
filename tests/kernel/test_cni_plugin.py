"""The bridge plugin as a runtime sees it: the installed executable, called with the CNI
environment from inside a throwaway host namespace, through the agent and in-process."""

import concurrent.futures
import json
import os
import subprocess

import pytest

from cni.plugins.masquerade import masq_chain
from netsim import netns
from tests.kernel.cni_fixtures import cni_host, cni_node, tcp_connects  # noqa: F401 (fixtures)

pytestmark = pytest.mark.kernel


def add(node, cid, pod, **kw):
    code, out = node.call("ADD", cid, pod, **kw)
    assert code == 0, out
    return out


def test_add_gives_eth0_its_address_routes_and_pods_reach_each_other(cni_node):
    pod_a, pod_b = cni_node.pod(), cni_node.pod()
    a = add(cni_node, "ctr-a", pod_a)
    b = add(cni_node, "ctr-b", pod_b)
    assert [ip["address"] for ip in a["ips"] + b["ips"]] == ["10.77.0.2/24", "10.77.0.3/24"]
    addr = cni_node.run("ip", "-4", "-o", "addr", "show", "dev", "eth0", where=pod_a)
    assert "inet 10.77.0.2/24" in addr
    routes = cni_node.run("ip", "route", where=pod_a)
    assert "default via 10.77.0.1 dev eth0" in routes and "10.99.0.0/16 via 10.77.0.1 dev eth0" in routes
    link = cni_node.run("ip", "-o", "link", "show", "eth0", where=pod_a)
    assert "0a:58:0a:4d:00:02" in link  # the MAC derived from the address
    assert "10.77.0.1 dev eth0 lladdr 0a:58:0a:4d:00:01 PERMANENT" in cni_node.run("ip", "neigh", where=pod_a)
    assert tcp_connects(pod_b, pod_a, "10.77.0.3")
    assert cni_node.run("sysctl", "-n", "net.ipv4.ip_forward").strip() == "1"
    chain = masq_chain(cni_node.conf()["name"], "ctr-a")
    assert f'-A {chain} ! -d 224.0.0.0/4 -m comment --comment "name: \\"{cni_node.prefix}net\\" id: \\"ctr-a\\"" -j MASQUERADE' \
        in cni_node.nat_rules()


def test_result_has_the_reference_plugins_shape(cni_host):
    """Same config through /usr/lib/cni/bridge and ours: equal but for MACs and the veth name."""
    conf = cni_host.conf(ipMasq=False, dns={"nameservers": ["10.96.0.10"]})
    ours = add(cni_host, "ours", cni_host.pod(), conf=conf)
    ref_pod = cni_host.pod()
    ref_conf = dict(conf, bridge="cniref", ipam=dict(conf["ipam"], dataDir=cni_host.data_dir + "-ref"))
    with netns.enter(cni_host.path):
        proc = subprocess.run(["/usr/lib/cni/bridge"], input=json.dumps(ref_conf).encode(), capture_output=True,
                              env={"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "ref", "CNI_NETNS": ref_pod,
                                   "CNI_IFNAME": "eth0", "CNI_PATH": "/usr/lib/cni", "PATH": os.environ["PATH"]})
    ref = json.loads(proc.stdout)

    def normal(result, bridge, pod):
        for i in result["interfaces"]:
            i["mac"] = "MAC"
        result["interfaces"][0]["name"] = "BRIDGE" if result["interfaces"][0]["name"] == bridge else "?"
        result["interfaces"][1]["name"] = "veth" if len(result["interfaces"][1]["name"]) == 12 else "?"
        result["interfaces"][2]["sandbox"] = "POD" if result["interfaces"][2]["sandbox"] == pod else "?"
        return json.dumps(result)  # key order too

    assert normal(ours, "cni0", cni_host.path.replace(cni_host.name, cni_host.pods[0])) == \
        normal(ref, "cniref", ref_pod)


def test_check_passes_then_fails_after_tampering(cni_node):
    pod = cni_node.pod()
    result = add(cni_node, "ctr", pod)
    conf = cni_node.conf(prevResult=result)
    assert cni_node.call("CHECK", "ctr", pod, conf=conf) == (0, None)
    cni_node.run("ip", "addr", "del", "10.77.0.2/24", "dev", "eth0", where=pod)
    code, out = cni_node.call("CHECK", "ctr", pod, conf=conf)
    assert code == 1 and out["code"] == 999 and "10.77.0.2/24" in out["msg"]
    code, out = cni_node.call("CHECK", "ctr", pod)
    assert out["msg"] == "Required prevResult missing"


def test_del_is_idempotent_and_cleans_up_after_the_netns_is_gone(cni_node):
    pod_a, pod_b = cni_node.pod(), cni_node.pod()
    add(cni_node, "ctr-a", pod_a)
    b = add(cni_node, "ctr-b", pod_b)
    assert cni_node.call("DEL", "ctr-a", pod_a) == (0, None)
    assert cni_node.call("DEL", "ctr-a", pod_a) == (0, None)
    assert "eth0" not in cni_node.run("ip", "-o", "link", where=pod_a)
    b_host = next(i["name"] for i in b["interfaces"] if i["name"].startswith("veth"))
    netns.delete(os.path.basename(pod_b))  # the runtime lost the pod before DEL (plugins#810)
    conf = dict(cni_node.conf(), prevResult=b)
    assert cni_node.call("DEL", "ctr-b", pod_b, conf=conf) == (0, None)
    # Gone when DEL returns, not once the kernel gets round to destroying the dead namespace.
    assert b_host not in cni_node.run("ip", "-o", "link")
    assert cni_node.nat_rules() == []
    assert cni_node.ipam_files() == []
    assert "PERMANENT" not in cni_node.run("ip", "neigh", "show", "dev", "cni0")
    assert cni_node.call("DEL", "ctr-b", pod_b) == (0, None)


def test_del_repeated_after_an_interrupted_one_forgets_the_pod_on_the_bridge(cni_node):
    """A runtime killed mid-DEL, after the address was released and eth0 deleted, repeats DEL
    with the cached result: the node's permanent neighbour entry for the pod goes too, unless
    another pod holds the address by then."""
    pod_a, pod_b = cni_node.pod(), cni_node.pod()
    a = add(cni_node, "ctr-a", pod_a)
    b = add(cni_node, "ctr-b", pod_b)
    ip_a, ip_b = (r["ips"][0]["address"].split("/")[0] for r in (a, b))
    lease = os.path.join(cni_node.data_dir, f"{cni_node.prefix}net", ip_a)
    with open(lease, "w") as f:  # the interrupted DEL released it; another pod took it
        f.write("ctr-c\r\neth0")
    cni_node.run("ip", "link", "del", "eth0", where=pod_a)
    conf = dict(cni_node.conf(), prevResult=a)
    assert cni_node.call("DEL", "ctr-a", pod_a, conf=conf) == (0, None)
    assert f"{ip_a} lladdr" in cni_node.run("ip", "neigh", "show", "dev", "cni0")
    os.unlink(lease)  # nobody holds it
    assert cni_node.call("DEL", "ctr-a", pod_a, conf=conf) == (0, None)
    neighbours = cni_node.run("ip", "neigh", "show", "dev", "cni0")
    assert f"{ip_a} lladdr" not in neighbours and f"{ip_b} lladdr" in neighbours


@pytest.mark.parametrize("change,code", [
    ({"stdin": b"{bad"}, 6),
    ({"container_id": "-bad"}, 4),
    ({"ifname": "eth1234567890123"}, 4),
    ({"conf_version": "9.9.9"}, 1),
    ({"netns_path": "/run/netns/does-not-exist"}, 999),
])
def test_add_errors_have_the_spec_codes_and_leave_nothing(cni_node, change, code):
    pod = cni_node.pod()
    kw = {"container_id": "ctr", "netns_path": pod}
    kw.update({k: v for k, v in change.items() if k != "conf_version"})
    if "conf_version" in change:
        kw["conf"] = cni_node.conf(cniVersion=change["conf_version"])
    got, out = cni_node.call("ADD", kw.pop("container_id"), kw.pop("netns_path"), **kw)
    assert (got, out["code"]) == (1, code), out
    assert out["msg"]
    assert cni_node.ipam_files() == []


def test_parallel_adds_get_distinct_addresses(cni_node):
    pods = [cni_node.pod() for _ in range(10)]
    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        results = list(pool.map(lambda i: cni_node.call("ADD", f"ctr-{i}", pods[i]), range(10)))
    assert [code for code, _ in results] == [0] * 10, results
    addresses = {out["ips"][0]["address"] for _, out in results}
    assert len(addresses) == 10
    assert len(cni_node.ipam_files()) == 10


def test_gc_releases_every_attachment_but_the_valid_ones(cni_host):
    pods = [cni_host.pod() for _ in range(3)]
    for i, pod in enumerate(pods):
        add(cni_host, f"ctr-{i}", pod)
    conf = cni_host.conf(cniVersion="1.1.0", **{"cni.dev/valid-attachments": [{"containerID": "ctr-1", "ifname": "eth0"}]})
    assert cni_host.call("GC", conf=conf) == (0, None)
    assert cni_host.ipam_files() == ["10.77.0.3"]
    chains = {line.split()[0][1:] for line in cni_host.nat_rules() if line.startswith(":")}
    assert chains == {masq_chain(conf["name"], "ctr-1")}


def test_status_reports_50_when_no_address_is_free(cni_host):
    conf = cni_host.conf(cniVersion="1.1.0", ipam=dict(cni_host.conf()["ipam"], ranges=[[{"subnet": "10.77.0.0/30"}]]))
    assert cni_host.call("STATUS", conf=conf) == (0, None)
    add(cni_host, "only", cni_host.pod(), conf=conf)
    code, out = cni_host.call("STATUS", conf=conf)
    assert (code, out["code"]) == (1, 50)


def test_old_config_versions_get_old_results(cni_node):
    out = add(cni_node, "ctr", cni_node.pod(), conf=cni_node.conf(cniVersion="0.2.0"))
    assert out["ip4"]["ip"] == "10.77.0.2/24" and "interfaces" not in out


def test_other_ipam_types_are_executed_from_cni_path(cni_node):
    """ipam.type "static" is the reference's static IPAM executable, found through CNI_PATH."""
    conf = cni_node.conf(ipam={"type": "static", "addresses": [{"address": "10.77.0.50/24", "gateway": "10.77.0.1"}]})
    env = {"CNI_PATH": f"{cni_node.bin_dir}:/usr/lib/cni"}
    pod = cni_node.pod()
    code, out = cni_node.call("ADD", "ctr", pod, conf=conf, env=env)
    assert code == 0, out
    assert out["ips"] == [{"interface": 2, "address": "10.77.0.50/24", "gateway": "10.77.0.1"}]
    assert "inet 10.77.0.50/24" in cni_node.run("ip", "-4", "-o", "addr", "show", "dev", "eth0", where=pod)
    assert cni_node.call("DEL", "ctr", pod, conf=conf, env=env) == (0, None)
    assert cni_node.nat_rules() == []
    code, out = cni_node.call("ADD", "ctr2", cni_node.pod(), conf=dict(conf, ipam={"type": "nope"}), env=env)
    assert code == 1 and "nope" in out["msg"]


def test_a_bridge_deleted_or_changed_between_adds_is_made_as_configured_again(cni_node):
    """A resident runtime remembers the bridge it ensured; whatever happened to it meanwhile,
    the next ADD leaves it up, with its gateway address, or fails if the name is taken."""
    def bridge():
        return cni_node.run("ip", "-o", "addr", "show", "dev", "cni0")

    add(cni_node, "ctr-a", cni_node.pod())
    cni_node.run("ip", "link", "del", "cni0")
    b = add(cni_node, "ctr-b", cni_node.pod())
    assert "inet 10.77.0.1/24" in bridge()
    assert "master cni0" in cni_node.run("ip", "-o", "link", "show", b["interfaces"][1]["name"])
    cni_node.run("ip", "addr", "flush", "dev", "cni0")
    cni_node.run("ip", "link", "set", "cni0", "down")
    pod_c = cni_node.pod()
    add(cni_node, "ctr-c", pod_c)
    assert "inet 10.77.0.1/24" in bridge()
    assert "state UP" in cni_node.run("ip", "-o", "link", "show", "cni0")
    assert tcp_connects(cni_node.path, pod_c, "10.77.0.1")
    cni_node.run("ip", "link", "del", "cni0")
    cni_node.run("ip", "link", "add", "cni0", "type", "veth", "peer", "name", "cni0p")
    code, out = cni_node.call("ADD", "ctr-d", cni_node.pod())
    assert code == 1 and "already exists but is not a bridge" in out["msg"]
