"""Deployments and ReplicaSets: names, rollout steps, scaling and which pods go first."""
from datetime import datetime, timedelta, timezone

from cluster.controllers import deployment as dep, replicaset as rsc

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=timezone.utc)


def ts(seconds_ago):
    return (NOW - timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def deployment(replicas=4, image="nginx:1", strategy=None, **status):
    return {"metadata": {"name": "web", "namespace": "default", "uid": "d-uid", "generation": 1},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                     "strategy": strategy or {"type": "RollingUpdate", "rollingUpdate":
                                              {"maxSurge": "25%", "maxUnavailable": "25%"}},
                     "revisionHistoryLimit": 10,
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "c", "image": image}]}}},
            "status": status}


def materialize(rs, created, available=None, uid=None):
    """The ReplicaSet as the API server and its controller would leave it."""
    rs["metadata"].update(creationTimestamp=ts(created), uid=uid or rs["metadata"]["name"])
    n = rs["spec"]["replicas"]
    rs["status"] = {"replicas": n, "availableReplicas": n if available is None else available,
                    "readyReplicas": n if available is None else available}
    return rs


# --- pod-template-hash and the new ReplicaSet ------------------------------------------------

def test_hash_is_safe_encoded_fnv_and_changes_with_template_and_collisions():
    d = deployment()
    h = dep.compute_hash(d["spec"]["template"])
    assert h == dep.compute_hash(d["spec"]["template"])
    assert set(h) <= set("bcdf456789")  # digits 0-9 encode to these letters
    assert dep.compute_hash(deployment(image="nginx:2")["spec"]["template"]) != h
    assert dep.compute_hash(d["spec"]["template"], 1) != h
    assert dep.safe_encode("0123456789") == "456789bcdf"
    assert dep.fnv32a(b"") == 0x811C9DC5 and dep.fnv32a(b"a") == 0xE40C292C


def test_new_replica_set_shape():
    rs, collisions = dep.new_replica_set(deployment(), [])
    h = dep.compute_hash(deployment()["spec"]["template"])
    assert collisions is None
    assert rs["metadata"]["name"] == f"web-{h}"
    assert rs["metadata"]["labels"] == {"app": "web", "pod-template-hash": h}
    assert rs["spec"]["selector"]["matchLabels"] == {"app": "web", "pod-template-hash": h}
    assert rs["spec"]["template"]["metadata"]["labels"]["pod-template-hash"] == h
    assert rs["metadata"]["ownerReferences"][0] == {
        "apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "d-uid",
        "controller": True, "blockOwnerDeletion": True}
    assert rs["metadata"]["annotations"] == {"deployment.kubernetes.io/desired-replicas": "4",
                                             "deployment.kubernetes.io/max-replicas": "5",
                                             "deployment.kubernetes.io/revision": "1"}
    assert rs["spec"]["replicas"] == 4


def test_name_collision_bumps_collision_count():
    d = deployment()
    h = dep.compute_hash(d["spec"]["template"])
    squatter = {"metadata": {"name": f"web-{h}"}}
    rs, collisions = dep.new_replica_set(d, [], existing_names={squatter["metadata"]["name"]})
    assert collisions == 1 and rs["metadata"]["name"] == f"web-{dep.compute_hash(d['spec']['template'], 1)}"


def test_first_sync_creates_then_nothing_to_do():
    d = deployment()
    p = dep.plan(d, [])
    assert p.create is not None and p.revision == "1"
    rs = materialize(p.create, 10)
    d["status"] = {"replicas": 4, "updatedReplicas": 4, "availableReplicas": 4}
    p = dep.plan(d, [rs])
    assert p.create is None and not p.scale and not p.delete


# --- rolling update arithmetic ----------------------------------------------------------------

def test_fenceposts():
    assert dep.resolve_fenceposts("25%", "25%", 4) == (1, 1)
    assert dep.resolve_fenceposts("25%", "25%", 10) == (3, 2)
    assert dep.resolve_fenceposts(0, 0, 10) == (0, 1)
    assert dep.max_unavailable(deployment(0)) == 0


def test_rolling_update_steps_surge_then_scale_down_old():
    d = deployment(4)
    old = materialize(dep.plan(d, []).create, 100)
    d2 = deployment(4, image="nginx:2")
    p = dep.plan(d2, [old])
    new = p.create
    assert new["spec"]["replicas"] == 1          # 4 old + 1 new = replicas + maxSurge
    assert new["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
    new = materialize(new, 5, available=0)
    p = dep.plan(d2, [old, new])
    # new not available yet: 5 total, min available 3, 1 new unavailable -> old may lose 1
    assert [(r["metadata"]["name"], r["spec"]["replicas"]) for r in p.scale] == [
        (old["metadata"]["name"], 3)]
    old = materialize(p.scale[0], 100)
    p = dep.plan(d2, [old, new])
    assert [(r["metadata"]["name"], r["spec"]["replicas"]) for r in p.scale] == [
        (new["metadata"]["name"], 2)]


def test_unhealthy_old_replicas_are_cleaned_up_first():
    d = deployment(4, image="nginx:2")
    old = materialize(dep.new_replica_set(deployment(4), [])[0], 100, available=2)
    old["spec"]["replicas"] = 4
    new = materialize(dep.new_replica_set(d, [old])[0], 5, available=0)
    new["spec"]["replicas"] = 1
    # budget = 5 - 3 - 1 = 1: one of the two unavailable old pods goes
    assert dep.scale_down_old(d, new, [old]) == {old["metadata"]["name"]: 3}


def test_recreate_scales_old_to_zero_waits_for_pods_then_creates():
    recreate = {"type": "Recreate"}
    old = materialize(dep.plan(deployment(3, strategy=recreate), []).create, 100)
    d2 = deployment(3, image="nginx:2", strategy=recreate)
    p = dep.plan(d2, [old])
    assert [r["spec"]["replicas"] for r in p.scale] == [0] and p.create is None
    old = p.scale[0]
    old["status"] = {"replicas": 0}
    running = {old["metadata"]["uid"]: [{"status": {"phase": "Running"}}]}
    assert dep.plan(d2, [old], running).create is None
    created = dep.plan(d2, [old], {}).create
    assert created["spec"]["replicas"] == 3


def test_scaling_mid_rollout_is_proportional():
    d = deployment(10)
    old = materialize(dep.new_replica_set(d, [])[0], 100)
    old["spec"]["replicas"] = 8
    d2 = deployment(10, image="nginx:2")
    new = materialize(dep.new_replica_set(d2, [old])[0], 10)
    new["spec"]["replicas"] = 5
    for rs in (old, new):
        rs["metadata"]["annotations"].update({"deployment.kubernetes.io/desired-replicas": "10",
                                              "deployment.kubernetes.io/max-replicas": "13"})
    d3 = deployment(20, image="nginx:2")  # maxSurge 5 -> 25 allowed, 12 to add
    assert dep.is_scaling_event(d3, [old, new])
    sizes = {r["metadata"]["name"]: r["spec"]["replicas"] for r in dep.plan(d3, [old, new]).scale}
    assert sizes == {old["metadata"]["name"]: 15, new["metadata"]["name"]: 10}
    assert sum(sizes.values()) == 25


def test_old_replica_sets_beyond_history_limit_are_deleted_oldest_revision_first():
    d = deployment(1)
    d["spec"]["revisionHistoryLimit"] = 1
    olds = []
    for rev in (1, 2, 3):
        rs = materialize(dep.new_replica_set(deployment(1, image=f"v{rev}"), [])[0], 100 - rev)
        rs["spec"]["replicas"] = 0
        rs["status"] = {"replicas": 0}
        rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = str(rev)
        olds.append(rs)
    new = materialize(dep.new_replica_set(d, olds)[0], 1)
    d["status"] = {"replicas": 1, "updatedReplicas": 1, "availableReplicas": 1}
    deleted = dep.plan(d, olds + [new]).delete
    assert [dep.revision(r) for r in deleted] == [1, 2]


def test_status_counts_and_conditions():
    d = deployment(2)
    rs = materialize(dep.plan(d, []).create, 10)
    rs["metadata"]["uid"] = "rs"
    s = dep.status(d, [rs], NOW)
    assert (s["replicas"], s["updatedReplicas"], s["readyReplicas"], s["availableReplicas"],
            s["unavailableReplicas"]) == (2, 2, 2, 2, 0)
    available, progressing = s["conditions"]
    assert (available["status"], available["reason"]) == ("True", "MinimumReplicasAvailable")
    assert progressing["reason"] == "NewReplicaSetAvailable"
    assert progressing["message"] == f'ReplicaSet "{rs["metadata"]["name"]}" has successfully progressed.'
    rs["status"] = {"replicas": 2, "availableReplicas": 0, "readyReplicas": 0}
    s = dep.status(deployment(2), [rs], NOW)
    assert s["conditions"][0]["message"] == "Deployment does not have minimum availability."


# --- ReplicaSet ------------------------------------------------------------------------------

def rs_obj(replicas=3):
    return {"metadata": {"name": "web-abc", "namespace": "default", "uid": "rs-uid",
                         "generation": 2},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"},
                                               "annotations": {"a": "b"}},
                                  "spec": {"containers": [{"name": "c"}]}}}}


def a_pod(name, node="n1", phase="Running", ready=True, ready_for=1000, created=2000,
          restarts=0, owner="rs-uid", labels=None):
    p = {"metadata": {"name": name, "namespace": "default", "uid": name,
                      "labels": labels or {"app": "web"}, "creationTimestamp": ts(created)},
         "spec": {"nodeName": node},
         "status": {"phase": phase, "containerStatuses": [{"restartCount": restarts}],
                    "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                                    "lastTransitionTime": ts(ready_for)}]}}
    if owner:
        p["metadata"]["ownerReferences"] = [{"uid": owner, "controller": True, "name": "web-abc",
                                             "kind": "ReplicaSet"}]
    return p


def test_pod_from_template():
    p = rsc.pod_from_template(rs_obj())
    assert p["metadata"]["generateName"] == "web-abc-"
    assert p["metadata"]["labels"] == {"app": "web"} and p["metadata"]["annotations"] == {"a": "b"}
    assert p["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet"
    assert p["spec"] == {"containers": [{"name": "c"}]}


def test_plan_creates_and_deletes_the_difference():
    pods = [a_pod("a"), a_pod("b")]
    assert len(rsc.plan(rs_obj(3), pods).create) == 1
    assert len(rsc.plan(rs_obj(1), pods, now=NOW).delete) == 1
    gone = a_pod("c")
    gone["metadata"]["deletionTimestamp"] = ts(1)
    assert len(rsc.plan(rs_obj(3), pods + [gone]).create) == 1  # terminating pods do not count
    assert rsc.slow_start_batches(10) == [1, 2, 4, 3]


def test_delete_order_follows_upstream_ranking():
    pods = [a_pod("old-ready", ready_for=10000, created=20000),
            a_pod("unscheduled", node="", phase="Pending", ready=False),
            a_pod("pending", phase="Pending", ready=False),
            a_pod("not-ready", ready=False),
            a_pod("fresh-ready", ready_for=5, created=20000),
            a_pod("crashy", ready_for=10000, created=20000, restarts=5)]
    order = [p["metadata"]["name"] for p in rsc.pods_to_delete(pods, 5, now=NOW)]
    assert order == ["unscheduled", "pending", "not-ready", "fresh-ready", "crashy"]


def test_doubled_up_pods_go_before_lonely_ones():
    pods = [a_pod("alone", node="n1"), a_pod("crowd1", node="n2"), a_pod("crowd2", node="n2")]
    assert rsc.pods_to_delete(pods, 1, now=NOW)[0]["metadata"]["name"].startswith("crowd")


def test_claim_adopts_orphans_and_releases_non_matching():
    orphan = a_pod("orphan", owner=None)
    strayed = a_pod("strayed", labels={"app": "other"})
    foreign = a_pod("foreign", owner="someone-else")
    claim = rsc.claim_pods(rs_obj(), [a_pod("mine"), orphan, strayed, foreign])
    assert [p["metadata"]["name"] for p in claim.owned] == ["mine", "orphan"]
    assert claim.adopt == [orphan] and claim.release == [strayed]
    assert rsc.adoption_patch(orphan, rs_obj())["metadata"]["uid"] == "orphan"


def test_replica_set_status():
    pods = [a_pod("a"), a_pod("b", ready=False)]
    s = rsc.status(rs_obj(), pods, NOW)
    assert s == {"replicas": 2, "fullyLabeledReplicas": 2, "readyReplicas": 1,
                 "availableReplicas": 1, "observedGeneration": 2}
