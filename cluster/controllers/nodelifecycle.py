"""Node health from heartbeats, the taints that follow from it, and taint-based eviction.

Upstream's node lifecycle controller (`pkg/controller/nodelifecycle`) and taint eviction
controller: a kubelet heartbeats by renewing its Lease in `kube-node-lease` (and by posting node
status); a node not heard from within the grace period gets its Ready, MemoryPressure,
DiskPressure and PIDPressure conditions set to Unknown ("Kubelet stopped posting node status.");
conditions become taints (`node.kubernetes.io/not-ready` for Ready=False,
`node.kubernetes.io/unreachable` for Unknown, NoSchedule and NoExecute; pressure and
`unschedulable` taints NoSchedule); pods that do not tolerate a NoExecute taint are evicted, those
with `tolerationSeconds` when it runs out.

Heartbeats are judged by when this controller saw them change, not by the kubelet's clock, as
upstream does; after a restart every node gets a full grace period again.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cluster.controllers.objects import (format_micro_time, format_time, meta, name_of,
                                         parse_time, uid_of)

LEASE_NAMESPACE = "kube-node-lease"
DEFAULT_GRACE_SECONDS = 40  # --node-monitor-grace-period
DEFAULT_LEASE_SECONDS = 40

TAINT_NOT_READY = "node.kubernetes.io/not-ready"
TAINT_UNREACHABLE = "node.kubernetes.io/unreachable"
TAINT_UNSCHEDULABLE = "node.kubernetes.io/unschedulable"
TAINT_MEMORY_PRESSURE = "node.kubernetes.io/memory-pressure"
TAINT_DISK_PRESSURE = "node.kubernetes.io/disk-pressure"
TAINT_PID_PRESSURE = "node.kubernetes.io/pid-pressure"
TAINT_NETWORK_UNAVAILABLE = "node.kubernetes.io/network-unavailable"

# (condition, status) -> taint key, as nodeConditionToTaintKeyStatusMap
_CONDITION_TAINTS = {
    ("Ready", "False"): TAINT_NOT_READY,
    ("Ready", "Unknown"): TAINT_UNREACHABLE,
    ("MemoryPressure", "True"): TAINT_MEMORY_PRESSURE,
    ("DiskPressure", "True"): TAINT_DISK_PRESSURE,
    ("NetworkUnavailable", "True"): TAINT_NETWORK_UNAVAILABLE,
    ("PIDPressure", "True"): TAINT_PID_PRESSURE,
}
_CONTROLLER_TAINTS = set(_CONDITION_TAINTS.values()) | {TAINT_UNSCHEDULABLE}
_WATCHED_CONDITIONS = ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure")


def node_lease(node: dict, now: datetime, duration_seconds: int = DEFAULT_LEASE_SECONDS) -> dict:
    """The Lease a kubelet keeps renewing for its node (owned by the Node, so it goes with it)."""
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": name_of(node), "namespace": LEASE_NAMESPACE,
                         "ownerReferences": [{"apiVersion": "v1", "kind": "Node",
                                              "name": name_of(node), "uid": uid_of(node)}]},
            "spec": {"holderIdentity": name_of(node), "leaseDurationSeconds": duration_seconds,
                     "renewTime": format_micro_time(now)}}


def _condition(node: dict, type_: str) -> dict | None:
    for c in (node.get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return c
    return None


def ready_status(node: dict) -> str:
    c = _condition(node, "Ready")
    return (c or {}).get("status") or "Unknown"


class HeartbeatTracker:
    """When each node's heartbeat (Ready's lastHeartbeatTime or its Lease's renewTime) was last
    seen to change, by this controller's clock (upstream's nodeHealthMap)."""

    def __init__(self):
        self._seen: dict[str, tuple] = {}

    def observe(self, node: dict, lease: dict | None, now: datetime) -> datetime:
        """Record what the node and its lease say now; the time of the last change seen."""
        name = name_of(node)
        heartbeat = (_condition(node, "Ready") or {}).get("lastHeartbeatTime")
        renew = ((lease or {}).get("spec") or {}).get("renewTime")
        previous = self._seen.get(name)
        if previous is None:
            # first sight: a node with a lease or a heartbeat gets a full grace period from now
            probe = now if (renew or heartbeat) else (
                parse_time(meta(node).get("creationTimestamp")) or now)
        elif (heartbeat, renew) != previous[:2]:
            probe = now
        else:
            probe = previous[2]
        self._seen[name] = (heartbeat, renew, probe)
        return probe

    def forget(self, node_name: str) -> None:
        self._seen.pop(node_name, None)


def stale_conditions(node: dict, last_heard: datetime, now: datetime,
                     grace_seconds: float = DEFAULT_GRACE_SECONDS) -> list[dict] | None:
    """The node's conditions with Ready and the pressures set to Unknown when it has not been
    heard from within the grace period; None when nothing changes."""
    if now - last_heard <= timedelta(seconds=grace_seconds):
        return None
    conditions = copy.deepcopy((node.get("status") or {}).get("conditions") or [])
    by_type = {c.get("type"): c for c in conditions}
    t = format_time(now)
    changed = False
    for type_ in _WATCHED_CONDITIONS:
        c = by_type.get(type_)
        if c is None:
            conditions.append({"type": type_, "status": "Unknown", "reason": "NodeStatusNeverUpdated",
                               "message": "Kubelet never posted node status.",
                               "lastHeartbeatTime": meta(node).get("creationTimestamp"),
                               "lastTransitionTime": t})
            changed = True
        elif c.get("status") != "Unknown":
            c.update(status="Unknown", reason="NodeStatusUnknown",
                     message="Kubelet stopped posting node status.", lastTransitionTime=t)
            changed = True
    return conditions if changed else None


def desired_taints(node: dict, now: datetime) -> list[dict]:
    """The node's taints with the controller's own set from its conditions and spec.unschedulable;
    others' taints are kept; a NoExecute taint that stays keeps its timeAdded."""
    current = list((node.get("spec") or {}).get("taints") or [])
    wanted: list[tuple[str, str]] = []
    for c in (node.get("status") or {}).get("conditions") or []:
        key = _CONDITION_TAINTS.get((c.get("type"), c.get("status")))
        if key:
            wanted.append((key, "NoSchedule"))
            if key in (TAINT_NOT_READY, TAINT_UNREACHABLE):
                wanted.append((key, "NoExecute"))
    if (node.get("spec") or {}).get("unschedulable"):
        wanted.append((TAINT_UNSCHEDULABLE, "NoSchedule"))
    kept = [t for t in current if t.get("key") not in _CONTROLLER_TAINTS
            or (t.get("key"), t.get("effect")) in wanted]
    have = {(t.get("key"), t.get("effect")) for t in kept}
    for key, effect in dict.fromkeys(wanted):
        if (key, effect) not in have:
            taint = {"key": key, "effect": effect}
            if effect == "NoExecute":
                taint["timeAdded"] = format_time(now)
            kept.append(taint)
    return kept


def taints_changed(node: dict, taints: list[dict]) -> bool:
    return list((node.get("spec") or {}).get("taints") or []) != taints


# --- taint-based eviction ------------------------------------------------------------------------

def tolerates(toleration: dict, taint: dict) -> bool:
    """v1.Toleration.ToleratesTaint."""
    if toleration.get("effect") and toleration["effect"] != taint.get("effect"):
        return False
    if toleration.get("key") and toleration["key"] != taint.get("key"):
        return False
    operator = toleration.get("operator") or "Equal"
    if operator == "Exists":
        return True
    return operator == "Equal" and (toleration.get("value") or "") == (taint.get("value") or "")


@dataclass
class Evictions:
    """Pods to evict now, and when to look again for pods whose tolerationSeconds run out."""

    now: list[dict] = field(default_factory=list)
    next_check: datetime | None = None


def evictions(node: dict, pods: list[dict], now: datetime) -> Evictions:
    """Pods on the node that a NoExecute taint evicts (taint eviction controller)."""
    taints = [t for t in (node.get("spec") or {}).get("taints") or [] if t.get("effect") == "NoExecute"]
    result = Evictions()
    if not taints:
        return result
    for pod in pods:
        if meta(pod).get("deletionTimestamp"):
            continue
        tolerations = [t for t in (pod.get("spec") or {}).get("tolerations") or []
                       if t.get("effect") in (None, "", "NoExecute")]
        deadline = None
        for taint in taints:
            used = [t for t in tolerations if tolerates(t, taint)]
            if not used:
                deadline = now
                break
            seconds = [t["tolerationSeconds"] for t in used if t.get("tolerationSeconds") is not None]
            if seconds:
                since = parse_time(taint.get("timeAdded")) or now
                at = since + timedelta(seconds=max(0, min(seconds)))
                deadline = at if deadline is None else min(deadline, at)
        if deadline is None:
            continue
        if deadline <= now:
            result.now.append(pod)
        elif result.next_check is None or deadline < result.next_check:
            result.next_check = deadline
    return result


def disruption_condition(now: datetime) -> dict:
    """The condition put on a pod before the taint eviction controller deletes it."""
    return {"type": "DisruptionTarget", "status": "True", "reason": "DeletionByTaintManager",
            "message": "Taint manager: deleting due to NoExecute taint",
            "lastTransitionTime": format_time(now)}


def pods_to_mark_not_ready(node: dict, pods: list[dict]) -> list[dict]:
    """Pods on a node whose Ready is Unknown that still claim to be Ready (MarkPodsNotReady):
    their Ready condition goes False so Services stop sending them traffic."""
    if ready_status(node) != "Unknown":
        return []
    return [p for p in pods if (p.get("spec") or {}).get("nodeName") == name_of(node)
            and any(c.get("type") == "Ready" and c.get("status") == "True"
                    for c in (p.get("status") or {}).get("conditions") or [])]
