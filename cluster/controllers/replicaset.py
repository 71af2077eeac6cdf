"""A ReplicaSet's decisions: which pods it owns, how many to create, which to delete first.

Upstream's `pkg/controller/replicaset` and `controller_utils`: pods matching the selector with no
controller are adopted, owned pods that stop matching are released; the difference between active
pods and `spec.replicas` is created from the template (generateName `NAME-`, a controller
ownerReference) or deleted in upstream's ActivePodsWithRanks order, so a scale-down removes
unscheduled, pending, not-ready, doubled-up, recently-ready, crash-looping and young pods first.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from datetime import datetime

from cluster.api.selectors import from_label_selector
from cluster.controllers.objects import (controller_of, controller_ref, creation_key,
                                         is_deleting, is_pod_active, is_pod_available,
                                         is_pod_ready, labels_of, max_restart_count, meta,
                                         name_of, namespace_of, parse_time, pod_phase,
                                         pod_ready_time, uid_of)

BURST_REPLICAS = 500
DELETION_COST_ANNOTATION = "controller.kubernetes.io/pod-deletion-cost"
_PHASE_ORDINAL = {"Pending": 0, "Unknown": 1, "Running": 2}


# --- ownership ---------------------------------------------------------------------------------

@dataclass
class Claim:
    """Pods the ReplicaSet controls (`owned`, adopted ones included), pods to adopt (patch in an
    ownerReference) and pods to release (patch theirs out)."""

    owned: list[dict] = field(default_factory=list)
    adopt: list[dict] = field(default_factory=list)
    release: list[dict] = field(default_factory=list)


def claim_pods(rs: dict, pods: list[dict]) -> Claim:
    """Upstream's PodControllerRefManager.ClaimPods; a ReplicaSet being deleted adopts nothing."""
    selector = from_label_selector((rs.get("spec") or {}).get("selector"))
    claim = Claim()
    for pod in pods:
        if namespace_of(pod) != namespace_of(rs):
            continue
        ref = controller_of(pod)
        matches = selector.matches(labels_of(pod))
        if ref is not None:
            if ref.get("uid") != uid_of(rs):
                continue
            if matches:
                claim.owned.append(pod)
            elif not is_deleting(pod):
                claim.release.append(pod)
        elif matches and not is_deleting(pod) and not is_deleting(rs):
            claim.adopt.append(pod)
            claim.owned.append(pod)
    return claim


def adoption_patch(pod: dict, owner: dict, api_version: str = "apps/v1",
                   kind: str = "ReplicaSet") -> dict:
    """The strategic-merge patch that adopts a pod; its uid makes it fail on a recreated pod."""
    return {"metadata": {"ownerReferences": [controller_ref(owner, api_version, kind)],
                         "uid": uid_of(pod)}}


def release_patch(pod: dict, owner: dict) -> dict:
    """The strategic-merge patch that drops `owner`'s reference from a pod."""
    return {"metadata": {"ownerReferences": [{"$patch": "delete", "uid": uid_of(owner)}],
                         "uid": uid_of(pod)}}


# --- creating -----------------------------------------------------------------------------------

def pod_name_prefix(controller_name: str) -> str:
    """`NAME-` for the generateName of the pods, NAME alone when the dash would not fit."""
    return f"{controller_name}-" if len(controller_name) + 1 <= 253 else controller_name


def pod_from_template(owner: dict, api_version: str = "apps/v1", kind: str = "ReplicaSet") -> dict:
    """A new pod from the owner's template (upstream's GetPodFromTemplate)."""
    template = (owner.get("spec") or {}).get("template") or {}
    tmeta = template.get("metadata") or {}
    metadata = {"generateName": pod_name_prefix(name_of(owner)), "namespace": namespace_of(owner),
                "ownerReferences": [controller_ref(owner, api_version, kind)]}
    for key in ("labels", "annotations", "finalizers"):
        if tmeta.get(key):
            metadata[key] = copy.deepcopy(tmeta[key])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata,
            "spec": copy.deepcopy(template.get("spec") or {})}


def slow_start_batches(count: int, initial: int = 1) -> list[int]:
    """Batch sizes for creating `count` pods: 1, 2, 4, ... so a failing template costs one
    failed call, not hundreds (upstream's slowStartBatch); stop at the first batch with an error."""
    batches, size = [], initial
    while count > 0:
        batches.append(min(size, count))
        count -= batches[-1]
        size *= 2
    return batches


# --- deleting -----------------------------------------------------------------------------------

def _deletion_cost(pod: dict) -> int:
    try:
        return int((meta(pod).get("annotations") or {}).get(DELETION_COST_ANNOTATION, 0))
    except ValueError:
        return 0


def _log_rank(t: datetime | None, now: datetime) -> int:
    if t is None:
        return -1
    nanos = (now - t).total_seconds() * 1e9
    return int(math.log2(nanos)) if nanos > 0 else -1


def _deletion_key(pod: dict, rank: int, now: datetime) -> tuple:
    """Sorts pods so the first are deleted first (ActivePodsWithRanks with LogarithmicScaleDown)."""
    spec = pod.get("spec") or {}
    ready = is_pod_ready(pod)
    created = parse_time(meta(pod).get("creationTimestamp"))
    return (
        bool(spec.get("nodeName")),                      # unassigned first
        _PHASE_ORDINAL.get(pod_phase(pod), 3),            # Pending < Unknown < Running
        ready,                                            # not ready first
        _deletion_cost(pod),                              # lower pod-deletion-cost first
        -rank,                                            # more co-located siblings first
        # the most recently ready first, by log2 buckets of how long ago; a tie goes by uid
        (_log_rank(pod_ready_time(pod), now), uid_of(pod)) if ready else (0, ""),
        -max_restart_count(pod),                          # more restarts first
        _log_rank(created, now) if created else -2,       # empty, newer, then older
        uid_of(pod),
    )


def pods_to_delete(pods: list[dict], count: int, related: list[dict] | None = None,
                   now: datetime | None = None) -> list[dict]:
    """The `count` pods to delete out of `pods` (the active owned ones). `related` are the active
    pods of sibling ReplicaSets too (the same Deployment): a pod on a node crowded with them goes
    first."""
    if count >= len(pods):
        return list(pods)
    now = now or datetime.now().astimezone()
    on_node: dict[str, int] = {}
    for p in related if related is not None else pods:
        if is_pod_active(p):
            node = (p.get("spec") or {}).get("nodeName") or ""
            on_node[node] = on_node.get(node, 0) + 1
    ranked = sorted(pods, key=lambda p: _deletion_key(
        p, on_node.get((p.get("spec") or {}).get("nodeName") or "", 0), now))
    return ranked[:count]


# --- the sync ------------------------------------------------------------------------------------

@dataclass
class ReplicaSetPlan:
    """What one sync does: pods to create (objects for POST) and pods to delete."""

    create: list[dict] = field(default_factory=list)
    delete: list[dict] = field(default_factory=list)


def plan(rs: dict, owned: list[dict], related: list[dict] | None = None,
         now: datetime | None = None, burst: int = BURST_REPLICAS) -> ReplicaSetPlan:
    """Create or delete the difference between active owned pods and spec.replicas, at most
    `burst` per sync. Nothing happens while the ReplicaSet itself is being deleted."""
    if is_deleting(rs):
        return ReplicaSetPlan()
    active = [p for p in owned if is_pod_active(p)]
    diff = len(active) - int((rs.get("spec") or {}).get("replicas", 1))
    if diff < 0:
        return ReplicaSetPlan(create=[pod_from_template(rs) for _ in range(min(-diff, burst))])
    if diff > 0:
        return ReplicaSetPlan(delete=pods_to_delete(active, min(diff, burst), related, now))
    return ReplicaSetPlan()


def status(rs: dict, owned: list[dict], now: datetime) -> dict:
    """status.replicas, fullyLabeledReplicas, readyReplicas, availableReplicas,
    observedGeneration, as calculateStatus does (terminating pods are not counted)."""
    template_labels = (((rs.get("spec") or {}).get("template") or {}).get("metadata") or {}).get(
        "labels") or {}
    min_ready = int((rs.get("spec") or {}).get("minReadySeconds") or 0)
    active = [p for p in owned if is_pod_active(p)]
    result = {
        "replicas": len(active),
        "fullyLabeledReplicas": sum(all(labels_of(p).get(k) == v for k, v in template_labels.items())
                                    for p in active),
        "readyReplicas": sum(is_pod_ready(p) for p in active),
        "availableReplicas": sum(is_pod_available(p, min_ready, now) for p in active),
        "observedGeneration": meta(rs).get("generation", 0),
    }
    terminating = sum(1 for p in owned if is_deleting(p))
    if terminating:
        result["terminatingReplicas"] = terminating
    return result


def oldest_first(replica_sets: list[dict]) -> list[dict]:
    return sorted(replica_sets, key=creation_key)
