"""Namespaces, default ServiceAccounts, node health and taints, and garbage collection."""
from datetime import datetime, timedelta, timezone

from cluster.controllers import garbagecollector as gc, namespace, nodelifecycle as nl
from cluster.controllers import serviceaccount

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=timezone.utc)


def ns(name="shop", deleting=False):
    n = {"metadata": {"name": name}, "spec": {"finalizers": ["kubernetes"]},
         "status": {"phase": "Terminating" if deleting else "Active"}}
    if deleting:
        n["metadata"]["deletionTimestamp"] = "2024-06-01T11:59:00Z"
    return n


def obj(name, finalizers=None, deleting=False):
    o = {"metadata": {"name": name, "namespace": "shop"}}
    if finalizers:
        o["metadata"]["finalizers"] = finalizers
    if deleting:
        o["metadata"]["deletionTimestamp"] = "2024-06-01T11:59:00Z"
    return o


# --- namespaces ------------------------------------------------------------------------------

def test_active_namespace_needs_nothing():
    assert namespace.step(ns(), {"pods": [obj("p")]}, NOW) == namespace.NamespaceStep()


def test_deleting_namespace_deletes_workloads_first_and_reports_what_remains():
    remaining = {"pods": [obj("p1"), obj("p2", deleting=True)], "services": [obj("s")],
                 "deployments": [obj("d")], "configmaps": [obj("c", finalizers=["x/y"])]}
    s = namespace.step(ns(deleting=True), remaining, NOW)
    assert [r.plural for r in s.delete][:3] == ["deployments", "pods", "services"]
    assert "configmaps" in [r.plural for r in s.delete]
    assert not s.finalize
    by_type = {c["type"]: c for c in s.conditions}
    assert by_type["NamespaceContentRemaining"]["message"] == (
        "Some resources are remaining: configmaps. has 1 resource instances,"
        " deployments.apps has 1 resource instances, pods. has 2 resource instances,"
        " services. has 1 resource instances")
    assert by_type["NamespaceFinalizersRemaining"]["message"] == (
        "Some content in the namespace has finalizers remaining: x/y in 1 resource instances")
    assert by_type["NamespaceDeletionContentFailure"]["reason"] == "ContentDeleted"


def test_only_terminating_pods_left_waits_without_deleting_again():
    s = namespace.step(ns(deleting=True), {"pods": [obj("p", deleting=True)]}, NOW)
    assert s.delete == [] and not s.finalize


def test_empty_namespace_is_finalized():
    s = namespace.step(ns(deleting=True), {}, NOW)
    assert s.finalize
    by_type = {c["type"]: c for c in s.conditions}
    assert by_type["NamespaceContentRemaining"]["reason"] == "ContentRemoved"
    assert namespace.finalized(ns(deleting=True))["spec"]["finalizers"] == []


def test_bindings_are_not_deleted_by_collection():
    assert "bindings" not in [r.plural for r in namespace.deletable_resources()]


# --- service accounts ------------------------------------------------------------------------

def test_default_service_account_created_only_in_active_namespaces():
    [sa] = serviceaccount.missing(ns(), [])
    assert sa["metadata"] == {"name": "default", "namespace": "shop"}
    assert serviceaccount.missing(ns(), [sa]) == []
    assert serviceaccount.missing(ns(deleting=True), []) == []


# --- node lifecycle --------------------------------------------------------------------------

def node(ready="True", taints=None, unschedulable=False, heartbeat="2024-06-01T11:00:00Z"):
    n = {"metadata": {"name": "n1", "uid": "u1", "creationTimestamp": "2024-06-01T10:00:00Z"},
         "spec": {"taints": taints or []},
         "status": {"conditions": [{"type": "Ready", "status": ready,
                                    "lastHeartbeatTime": heartbeat}]}}
    if unschedulable:
        n["spec"]["unschedulable"] = True
    return n


def test_heartbeats_are_timed_by_the_controllers_clock():
    tracker = nl.HeartbeatTracker()
    n = node()
    lease = nl.node_lease(n, NOW)
    assert lease["metadata"]["namespace"] == "kube-node-lease"
    assert lease["spec"]["holderIdentity"] == "n1"
    assert tracker.observe(n, lease, NOW) == NOW
    later = NOW + timedelta(seconds=30)
    assert tracker.observe(n, lease, later) == NOW      # nothing renewed
    renewed = nl.node_lease(n, later)
    assert tracker.observe(n, renewed, later) == later


def test_node_goes_unknown_after_the_grace_period():
    n = node()
    assert nl.stale_conditions(n, NOW, NOW + timedelta(seconds=40)) is None
    conditions = nl.stale_conditions(n, NOW, NOW + timedelta(seconds=41))
    by_type = {c["type"]: c for c in conditions}
    assert by_type["Ready"]["status"] == "Unknown"
    assert by_type["Ready"]["reason"] == "NodeStatusUnknown"
    assert by_type["Ready"]["message"] == "Kubelet stopped posting node status."
    assert by_type["MemoryPressure"]["reason"] == "NodeStatusNeverUpdated"
    n["status"]["conditions"] = conditions
    assert nl.stale_conditions(n, NOW, NOW + timedelta(seconds=90)) is None  # already Unknown


def test_taints_follow_conditions_and_keep_foreign_ones():
    foreign = {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}
    unknown = node("Unknown", taints=[foreign])
    taints = nl.desired_taints(unknown, NOW)
    assert foreign in taints
    assert {"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule"} in taints
    assert {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute",
            "timeAdded": "2024-06-01T12:00:00Z"} in taints
    not_ready = node("False", taints=taints)
    taints = nl.desired_taints(not_ready, NOW)
    assert {t["key"] for t in taints} == {"dedicated", "node.kubernetes.io/not-ready"}
    healthy = node("True", taints=taints, unschedulable=True)
    assert nl.desired_taints(healthy, NOW) == [
        foreign, {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]
    assert not nl.taints_changed(node(taints=[foreign]), [foreign])


def test_no_execute_taint_evicts_intolerant_pods_and_waits_for_toleration_seconds():
    tainted = node("Unknown", taints=[{"key": "node.kubernetes.io/unreachable",
                                       "effect": "NoExecute", "timeAdded": "2024-06-01T12:00:00Z"}])
    plain = {"metadata": {"name": "plain"}, "spec": {}}
    patient = {"metadata": {"name": "patient"}, "spec": {"tolerations": [
        {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
         "tolerationSeconds": 300}]}}
    forever = {"metadata": {"name": "forever"}, "spec": {"tolerations": [{"operator": "Exists"}]}}
    e = nl.evictions(tainted, [plain, patient, forever], NOW)
    assert e.now == [plain] and e.next_check == NOW + timedelta(seconds=300)
    assert nl.evictions(tainted, [patient], NOW + timedelta(seconds=300)).now == [patient]
    assert nl.disruption_condition(NOW)["reason"] == "DeletionByTaintManager"


def test_pods_on_an_unknown_node_are_marked_not_ready():
    pod = {"spec": {"nodeName": "n1"}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    assert nl.pods_to_mark_not_ready(node("Unknown"), [pod]) == [pod]
    assert nl.pods_to_mark_not_ready(node("True"), [pod]) == []


# --- garbage collection ----------------------------------------------------------------------

def owned(name, uid, owner_uids, finalizers=None, deleting=False, block=True):
    o = {"metadata": {"name": name, "uid": uid, "ownerReferences": [
        {"uid": u, "controller": True, "blockOwnerDeletion": block} for u in owner_uids]}}
    if finalizers:
        o["metadata"]["finalizers"] = finalizers
    if deleting:
        o["metadata"]["deletionTimestamp"] = "2024-06-01T11:59:00Z"
    return o


def test_dependents_of_a_deleted_owner_are_deleted_in_the_background():
    rs = owned("rs", "rs-uid", ["gone-deploy"])
    pod = owned("pod", "pod-uid", ["rs-uid"])
    c = gc.collect([rs, pod])
    assert c.delete == [(rs, "Background")]


def test_a_dangling_reference_is_dropped_when_another_owner_remains():
    owner = {"metadata": {"name": "o", "uid": "o"}}
    dep = owned("d", "d", ["o", "gone"])
    assert gc.collect([owner, dep]).drop_refs == {"d": ["gone"]}


def test_foreground_deletion_waits_for_blocking_dependents():
    deploy = {"metadata": {"name": "web", "uid": "dep", "finalizers": ["foregroundDeletion"],
                           "deletionTimestamp": "2024-06-01T11:59:00Z"}}
    rs = owned("rs", "rs", ["dep"])
    c = gc.collect([deploy, rs])
    assert c.delete == [(rs, "Foreground")] and c.remove_finalizer == {}
    assert gc.collect([deploy]).remove_finalizer == {"dep": "foregroundDeletion"}


def test_orphan_deletion_drops_references_then_the_finalizer():
    deploy = {"metadata": {"name": "web", "uid": "dep", "finalizers": ["orphan"],
                           "deletionTimestamp": "2024-06-01T11:59:00Z"}}
    rs = owned("rs", "rs", ["dep"])
    c = gc.collect([deploy, rs])
    assert c.delete == [] and c.drop_refs == {"rs": ["dep"]}
    assert c.remove_finalizer == {"dep": "orphan"}
