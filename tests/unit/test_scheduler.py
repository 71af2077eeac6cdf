"""The scheduler's choices and its explanations, as `kubectl describe pod` shows them."""
import random
from datetime import datetime, timezone

from cluster.scheduler import framework, resources
from cluster.scheduler.framework import schedule
from cluster.scheduler.scores import default_spread_selector

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=timezone.utc)


def node(name, cpu="2", memory="4Gi", pods="110", labels=None, taints=None, **spec):
    return {"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
            "spec": {"taints": taints or [], **spec},
            "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": pods}}}


def pod(name="web", cpu=None, memory=None, labels=None, **spec):
    requests = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v}
    return {"metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}",
                         "labels": labels or {"app": "web"}},
            "spec": {"containers": [{"name": "c", "resources": {"requests": requests}}], **spec},
            "status": {"phase": "Pending"}}


CONTROL_PLANE_TAINT = {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}


def test_the_fit_error_counts_reasons_over_nodes():
    nodes = [node("cp", taints=[CONTROL_PLANE_TAINT]), node("n1", cpu="1"), node("n2", cpu="1")]
    result = schedule(pod(cpu="1500m"), nodes, {})
    assert result.node is None
    assert result.message == ("0/3 nodes are available: 1 node(s) had untolerated taint"
                              " {node-role.kubernetes.io/control-plane: }, 2 Insufficient cpu.")
    conditions = framework.with_unschedulable(pod(), result.message, NOW)
    assert conditions == [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                           "message": result.message, "lastProbeTime": None,
                           "lastTransitionTime": "2024-06-01T12:00:00Z"}]
    again = pod()
    again["status"]["conditions"] = conditions
    assert framework.with_unschedulable(again, result.message, NOW) is None
    assert schedule(pod(), [], {}).message == "no nodes available to schedule pods"


def test_requests_count_what_is_already_on_the_node():
    n1 = node("n1", cpu="1", memory="1Gi", pods="2")
    busy = [pod("a", cpu="600m", memory="512Mi")]
    result = schedule(pod(cpu="500m", memory="600Mi"), [n1], {"n1": busy})
    assert result.reasons == {"n1": ["Insufficient cpu", "Insufficient memory"]}
    full = schedule(pod(), [n1], {"n1": [pod("a"), pod("b")]})
    assert full.message == "0/1 nodes are available: 1 Too many pods."
    done = pod("done", cpu="1")
    done["status"]["phase"] = "Succeeded"
    assert schedule(pod(cpu="1"), [n1], {"n1": [done]}).node == "n1"


def test_init_containers_and_sidecars_in_requests():
    p = pod(cpu="100m")
    p["spec"]["initContainers"] = [
        {"name": "setup", "resources": {"requests": {"cpu": "1"}}},
        {"name": "proxy", "restartPolicy": "Always", "resources": {"requests": {"cpu": "200m"}}}]
    assert resources.pod_requests(p)["cpu"] == 1000   # the init container's peak
    p["spec"]["initContainers"][0]["resources"]["requests"]["cpu"] = "50m"
    assert resources.pod_requests(p)["cpu"] == 300    # main + sidecar


def test_node_selector_affinity_name_and_unschedulable():
    nodes = [node("n1", labels={"disk": "ssd"}), node("n2"), node("n3", unschedulable=True)]
    assert schedule(pod(nodeSelector={"disk": "ssd"}), nodes, {}).node == "n1"
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [
            {"key": "disk", "operator": "NotIn", "values": ["ssd"]}]}]}}}
    result = schedule(pod(affinity=affinity), nodes, {})
    assert result.node == "n2"
    assert result.reasons == {"n1": ["node(s) didn't match Pod's node affinity/selector"],
                              "n3": ["node(s) were unschedulable"]}
    tolerant = pod(tolerations=[{"key": "node.kubernetes.io/unschedulable", "operator": "Exists"}],
                   nodeSelector={"kubernetes.io/hostname": "n3"})
    assert schedule(tolerant, nodes, {}).node == "n3"


def test_tolerations_and_prefer_no_schedule():
    tainted = node("gpu", taints=[{"key": "gpu", "value": "yes", "effect": "NoSchedule"}])
    p = pod(tolerations=[{"key": "gpu", "operator": "Equal", "value": "yes", "effect": "NoSchedule"}],
            nodeSelector={"kubernetes.io/hostname": "gpu"})
    assert schedule(p, [tainted], {}).node == "gpu"
    assert schedule(pod(), [tainted], {}).message == (
        "0/1 nodes are available: 1 node(s) had untolerated taint {gpu: yes}.")
    soft = node("soft", taints=[{"key": "meh", "effect": "PreferNoSchedule"}])
    assert schedule(pod(), [soft, node("clean")], {}).node == "clean"


def test_host_ports_conflict():
    def with_port(name, port):
        p = pod(name)
        p["spec"]["containers"][0]["ports"] = [{"containerPort": 80, "hostPort": port}]
        return p
    result = schedule(with_port("b", 8080), [node("n1")], {"n1": [with_port("a", 8080)]})
    assert result.reasons == {"n1": ["node(s) didn't have free ports for the requested pod ports"]}


def test_pods_spread_over_nodes():
    nodes = [node(f"n{i}") for i in range(3)]
    rs = {"metadata": {"uid": "rs"}, "spec": {"selector": {"matchLabels": {"app": "web"}}}}
    placed: dict[str, list] = {}
    rng = random.Random(1)
    for i in range(9):
        p = pod(f"web-{i}")
        p["metadata"]["ownerReferences"] = [{"uid": "rs", "controller": True}]
        selector = default_spread_selector(p, [], [rs])
        chosen = schedule(p, nodes, placed, selector, rng).node
        placed.setdefault(chosen, []).append(p)
    assert sorted(len(v) for v in placed.values()) == [3, 3, 3]


def test_least_allocated_prefers_the_emptier_node():
    nodes = [node("busy"), node("idle")]
    placed = {"busy": [pod("a", cpu="1500m", memory="3Gi")]}
    assert schedule(pod(cpu="100m"), nodes, placed).node == "idle"


def test_do_not_schedule_spread_constraint():
    nodes = [node("n1", labels={"zone": "a"}), node("n2", labels={"zone": "b"})]
    constraint = {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule",
                  "labelSelector": {"matchLabels": {"app": "web"}}}
    placed = {"n1": [pod("a"), pod("b")], "n2": [pod("c")]}
    result = schedule(pod(topologySpreadConstraints=[constraint]), nodes, placed)
    assert result.node == "n2"
    assert result.reasons == {"n1": ["node(s) didn't match pod topology spread constraints"]}


def test_binding_event_and_responsibility():
    p = pod()
    assert framework.binding(p, "n1") == {
        "apiVersion": "v1", "kind": "Binding",
        "metadata": {"name": "web", "namespace": "default", "uid": "uid-web"},
        "target": {"apiVersion": "v1", "kind": "Node", "name": "n1"}}
    ev = framework.event(p, "n1", "", NOW)
    assert (ev["type"], ev["reason"], ev["message"]) == (
        "Normal", "Scheduled", "Successfully assigned default/web to n1")
    assert framework.event(p, None, "0/1 nodes are available", NOW)["reason"] == "FailedScheduling"
    assert framework.responsible_for(p)
    assert not framework.responsible_for(pod(nodeName="n1"))
    assert not framework.responsible_for(pod(schedulerName="other"))
