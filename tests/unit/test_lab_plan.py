"""Lab files in, plans out: golden plans for reference labs, exact messages for bad labs."""

import json
import os

import pytest

from netsim import lab, plan

HERE = os.path.dirname(__file__)
GOLDEN = os.path.join(HERE, "golden")
STATE_ROOT = "/var/lib/netsim/CLUSTER"
LABS = {
    "default": lab.DEFAULT_LAB,
    "three-nodes": os.path.join(GOLDEN, "labs", "three-nodes.yaml"),
}


def _plan_of(path):
    lb = lab.load(path)
    doc = plan.plan(lb, STATE_ROOT.replace("CLUSTER", lb.name))
    return json.loads(json.dumps(doc))


@pytest.mark.parametrize("name", sorted(LABS))
def test_plan_matches_golden(name):
    """Regenerate with NETSIM_REGEN_GOLDEN=1 after an intended change, and review the diff."""
    got = _plan_of(LABS[name])
    path = os.path.join(GOLDEN, f"{name}.plan.json")
    if os.environ.get("NETSIM_REGEN_GOLDEN"):
        with open(path, "w") as f:
            json.dump(got, f, indent=1, sort_keys=True)
            f.write("\n")
    with open(path) as f:
        assert got == json.load(f)


def test_default_lab_routes_host_gw_and_leaves_placement_to_the_scheduler():
    p = _plan_of(LABS["default"])
    assert [n["podCIDR"] for n in p["nodes"]] == ["10.244.0.0/24", "10.244.1.0/24"]
    n1, n2 = p["nodes"]
    default = {"dst": "0.0.0.0/0", "via": p["fabric"]["ip"]}
    assert n1["routes"] == [{"dst": n2["podCIDR"], "via": n2["ip"]}, default]
    assert n2["routes"] == [{"dst": n1["podCIDR"], "via": n1["ip"]}, default]
    assert "pods" not in p


def test_namespaces_are_applied_first_then_the_rest_in_lab_order():
    lb = lab.from_dict({"manifests": [
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "shop"}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "shop"}},
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}},
    ]}, source="lab.yaml")
    order = plan.plan(lb, "/s")["manifests"]
    assert [(m["kind"], m["index"]) for m in order] == [("Namespace", 2), ("Deployment", 0), ("Service", 1)]


def test_control_plane_options_come_from_the_lab():
    lb = lab.from_dict({"name": "cp", "serviceCIDR": "10.100.0.0/16", "loadBalancerPool": "172.18.200.0/24",
                        "maxPods": 250})
    cp = plan.plan(lb, "/s/cp")["controlPlane"]
    assert cp["maxPods"] == 250  # every kubelet's --max-pods
    assert cp["serviceCIDR"] == "10.100.0.0/16"
    assert cp["loadBalancerPool"] == ["172.18.200.0/24"]
    assert cp["store"] == "sqlite:///s/cp/state.db"
    assert cp["podNetnsPrefix"] == "cp"


def test_link_names_fit_the_kernel_limit_and_stay_unique():
    p = _plan_of(LABS["three-nodes"])
    names = [n["fabricLink"] for n in p["nodes"]] + [p["fabric"]["bridge"]]
    assert all(len(n) <= 15 for n in names)
    assert len(set(names)) == len(names)


def test_external_client_routes_the_pool_to_every_node():
    p = _plan_of(LABS["three-nodes"])
    ext = p["external"]
    assert ext["ip"] == "192.168.50.254"
    node_ips = [n["ip"] for n in p["nodes"]]
    assert ext["routes"] == [{"dst": "192.168.60.0/28", "via": node_ips}, {"dst": "10.250.0.0/24", "via": node_ips}]
    assert ext["ip"] not in node_ips + [p["fabric"]["ip"]]


def test_node_sockets_move_to_a_short_directory_when_the_state_dir_is_deep():
    short = plan.plan(lab.from_dict({"name": "s"}), "/var/lib/netsim/s")["nodes"][0]
    assert short["kubeletSocket"] == "/var/lib/netsim/s/nodes/node-1/kubelet.sock"
    deep_root = "/tmp/" + "d" * 90 + "/s"
    deep = plan.plan(lab.from_dict({"name": "s"}), deep_root)["nodes"][0]
    assert deep["kubeletSocket"].startswith("/run/netsim/") and len(deep["kubeletSocket"]) <= 107
    assert deep["cniAgentSocket"].endswith("/node-1/cni.sock")


def test_two_clusters_share_no_namespace_name():
    a = plan.plan(lab.from_dict({"name": "a", "nodes": ["b-c"]}), "/s/a")
    b = plan.plan(lab.from_dict({"name": "a-b", "nodes": ["c"]}), "/s/a-b")
    names_a = {a["fabric"]["netns"], a["external"]["netns"]} | {n["netns"] for n in a["nodes"]}
    names_b = {b["fabric"]["netns"], b["external"]["netns"]} | {n["netns"] for n in b["nodes"]}
    assert not names_a & names_b


BAD = [
    ({"nodes": 0}, "nodes: expected a node count from 1 to 250, got 0"),
    ({"nodes": "three"}, "nodes: expected a count (1-250) or a list of node names, got 'three'"),
    ({"nodes": ["a", "a"]}, "nodes[1]: node 'a' is listed twice"),
    ({"nodes": ["Upper"]}, "nodes[0]: expected a node name (lowercase DNS name, at most 63 characters), got 'Upper'"),
    ({"name": "Has_Underscore"}, "name: expected 1-12 lowercase letters"),
    ({"name": "much-too-long-name"}, "name: expected 1-12 lowercase letters"),
    ({"clusterCIDR": "10.244.0.0/33"}, "clusterCIDR: expected an IPv4 CIDR such as 10.244.0.0/16, got '10.244.0.0/33'"),
    ({"clusterCIDR": "10.244.0.1/16"}, "clusterCIDR: expected an IPv4 CIDR"),
    ({"clusterCIDR": "10.244.0.0/24"}, "clusterCIDR: 10.244.0.0/24 is too small: use a prefix of /23 or shorter"),
    ({"serviceCIDR": "10.244.0.0/20"}, "serviceCIDR: 10.244.0.0/20 overlaps clusterCIDR 10.244.0.0/16"),
    ({"nodes": 3, "clusterCIDR": "10.0.0.0/23"}, "clusterCIDR: 10.0.0.0/23 holds 2 node /24s but the lab has 3 nodes"),
    ({"cni": "flannel"}, "cni: expected one of netsim, reference, got 'flannel'"),
    ({"workers": 2}, "workers: unknown field; expected one of"),
    ({"manifests": [{"kind": "Service", "metadata": {"name": "s"}}]},
     "manifests[0].apiVersion: required: the API version of Service (e.g. v1, apps/v1), got None"),
    ({"manifests": [{"kind": "Deployment", "apiVersion": "apps/v1", "metadata": {}}]},
     "manifests[0].metadata.name: required: the object's name"),
    ({"manifests": [{"kind": "Pod", "apiVersion": "apps/v1", "metadata": {"name": "p"}}]},
     "manifests[0].apiVersion: expected v1 for Pod, got 'apps/v1'"),
    ({"manifests": [{"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "p"}, "spec": {"containers": []}}]},
     "manifests[0].spec.containers: required: at least one container"),
    ({"manifests": [{"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "p"},
                     "spec": {"containers": [{"name": "c", "image": "x", "ports": [{"containerPort": 70000}]}]}}]},
     "manifests[0].spec.containers[0].ports[0].containerPort: expected a port from 1 to 65535, got 70000"),
    ({"manifests": [{"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "p"},
                     "spec": {"containers": [{"name": "c"}]}}]},
     "manifests[0].spec.containers[0].image: required: the container image"),
    ({"manifests": [{"path": "nowhere.yaml"}]}, "manifests[0].path: file"),
    ({"loadBalancerPool": "10.96.0.0/24"},
     "loadBalancerPool: 10.96.0.0/24 overlaps 10.96.0.0/12; LoadBalancer IPs must be outside"),
    ({"loadBalancerPool": ["172.18.200.0/24", "nope"]}, "loadBalancerPool[1]: expected an IPv4 CIDR"),
    ({"nodes": ["a", "external"]}, "nodes[1]: 'external' names the external client namespace"),
    ({"maxPods": 254}, "maxPods: expected a pod count per node from 1 to 253 (a node's pod CIDR is a /24), got 254"),
    ({"maxPods": "many"}, "maxPods: expected a pod count per node from 1 to 253"),
    ({"nodes": 5, "nodeNetwork": "172.18.0.0/29"}, "nodeNetwork: 172.18.0.0/29 has room for 4 nodes but the lab has 5"),
]


@pytest.mark.parametrize("doc,message", BAD, ids=[m.split(":")[0] for _, m in BAD])
def test_invalid_lab_names_field_and_expectation(doc, message):
    with pytest.raises(lab.LabError) as e:
        lab.from_dict(doc, source="lab.yaml")
    assert str(e.value).startswith("lab.yaml: ")
    assert message in str(e.value)


PLAN_ERRORS = [
    ({"manifests": [{"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "p", "namespace": "nope"},
                     "spec": {"containers": [{"name": "c", "image": "x"}]}}]},
     "manifests[0].metadata.namespace: namespace 'nope' does not exist; add a Namespace manifest named 'nope'"),
    ({"manifests": [{"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "p"},
                     "spec": {"nodeName": "node-9", "containers": [{"name": "c", "image": "x"}]}}]},
     "manifests[0].spec.nodeName: node 'node-9' is not in the lab; expected one of node-1, node-2"),
    ({"manifests": [{"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "p"},
                     "spec": {"containers": [{"name": "c", "image": "x"}]}}] * 2},
     "manifests[1].metadata.name: pod default/p is defined twice"),
    ({"manifests": [{"kind": "Service", "apiVersion": "v1", "metadata": {"name": "s", "namespace": "shop"}}]},
     "manifests[0].metadata.namespace: namespace 'shop' does not exist; add a Namespace manifest named 'shop'"),
]


@pytest.mark.parametrize("doc,message", PLAN_ERRORS, ids=["namespace", "nodeName", "duplicate", "service-namespace"])
def test_plan_errors_name_the_manifest_field(doc, message):
    with pytest.raises(lab.LabError) as e:
        plan.plan(lab.from_dict(doc, source="lab.yaml"), "/s")
    assert message in str(e.value)
