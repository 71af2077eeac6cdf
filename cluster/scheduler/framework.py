"""One scheduling cycle: filter the nodes, score the feasible ones, pick, bind or explain.

As upstream's `schedule_one.go`: a pod with no feasible node gets a FitError whose message counts
the reasons over all nodes ("0/3 nodes are available: 1 node(s) had untolerated taint
{node-role.kubernetes.io/control-plane: }, 2 Insufficient cpu."), which becomes the pod's
`PodScheduled=False` condition with reason `Unschedulable` and a FailedScheduling event; a
feasible pod is bound to the best-scoring node (ties broken at random) through a Binding.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime

from cluster.api.selectors import LabelSelector
from cluster.controllers.objects import format_time, is_pod_terminal
from cluster.scheduler.filters import run_filters
from cluster.scheduler.scores import score_nodes

SCHEDULER_NAME = "default-scheduler"
NO_NODES = "no nodes available to schedule pods"


def _meta(obj: dict) -> dict:
    return obj.get("metadata") or {}


def responsible_for(pod: dict, scheduler_name: str = SCHEDULER_NAME) -> bool:
    """Pods this scheduler should place: its schedulerName, unbound, not finished or deleting."""
    spec = pod.get("spec") or {}
    return ((spec.get("schedulerName") or SCHEDULER_NAME) == scheduler_name
            and not spec.get("nodeName") and not _meta(pod).get("deletionTimestamp")
            and not is_pod_terminal(pod))


def queue_key(pod: dict) -> tuple:
    """PrioritySort: higher priority first, then the pod that has waited longest."""
    return (-int((pod.get("spec") or {}).get("priority") or 0),
            _meta(pod).get("creationTimestamp") or "", _meta(pod).get("name") or "")


def fit_error(num_nodes: int, reasons_by_node: dict[str, list[str]]) -> str:
    """FitError.Error(): reasons counted over nodes, sorted as strings."""
    if num_nodes == 0:
        return NO_NODES
    histogram: dict[str, int] = {}
    for reasons in reasons_by_node.values():
        for r in reasons:
            histogram[r] = histogram.get(r, 0) + 1
    message = f"0/{num_nodes} nodes are available:"
    if histogram:
        message += " " + ", ".join(sorted(f"{n} {r}" for r, n in histogram.items())) + "."
    return message


@dataclass
class ScheduleResult:
    """`node` is where the pod goes, or None with `message` the FitError; `reasons` by node name
    (nodes that passed are absent), `scores` of the feasible nodes."""

    node: str | None
    message: str = ""
    reasons: dict[str, list[str]] = field(default_factory=dict)
    scores: dict[str, int] = field(default_factory=dict)


def schedule(pod: dict, nodes: list[dict], pods_on_nodes: dict[str, list[dict]],
             spread_selector: LabelSelector | None = None,
             rng: random.Random | None = None) -> ScheduleResult:
    """Place one pod. `pods_on_nodes` maps node name to the pods bound (or assumed bound) there;
    finished pods are ignored. `spread_selector` (scores.default_spread_selector) lets the
    default spreading count the pod's siblings."""
    if not nodes:
        return ScheduleResult(None, NO_NODES)
    live = {name: [p for p in pods if not is_pod_terminal(p)] for name, pods in pods_on_nodes.items()}
    reasons: dict[str, list[str]] = {}
    feasible = []
    for node in nodes:
        why = run_filters(pod, node, nodes, live)
        if why:
            reasons[_meta(node).get("name") or ""] = why
        else:
            feasible.append(node)
    if not feasible:
        return ScheduleResult(None, fit_error(len(nodes), reasons), reasons)
    scores = score_nodes(pod, feasible, live, spread_selector)
    best = max(scores.values())
    winners = sorted(name for name, s in scores.items() if s == best)
    chosen = winners[0] if len(winners) == 1 else (rng or random.Random()).choice(winners)
    return ScheduleResult(chosen, "", reasons, scores)


def binding(pod: dict, node_name: str) -> dict:
    """The Binding POSTed to pods/NAME/binding (DefaultBinder)."""
    meta = _meta(pod)
    return {"apiVersion": "v1", "kind": "Binding",
            "metadata": {"name": meta.get("name"), "namespace": meta.get("namespace"),
                         "uid": meta.get("uid")},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node_name}}


def unschedulable_condition(message: str, now: datetime) -> dict:
    return {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": message, "lastProbeTime": None, "lastTransitionTime": format_time(now)}


def with_unschedulable(pod: dict, message: str, now: datetime) -> list[dict] | None:
    """The pod's conditions with PodScheduled=False set, or None when already saying so
    (so an unschedulable pod retried often does not rewrite its status each time)."""
    conditions = list((pod.get("status") or {}).get("conditions") or [])
    for i, c in enumerate(conditions):
        if c.get("type") == "PodScheduled":
            if (c.get("status"), c.get("reason"), c.get("message")) == ("False", "Unschedulable",
                                                                        message):
                return None
            new = unschedulable_condition(message, now)
            if c.get("status") == "False":
                new["lastTransitionTime"] = c.get("lastTransitionTime") or new["lastTransitionTime"]
            conditions[i] = new
            return conditions
    return conditions + [unschedulable_condition(message, now)]


def event(pod: dict, node_name: str | None, message: str, now: datetime) -> dict:
    """The Scheduled or FailedScheduling event, as `kubectl describe pod` lists it."""
    meta = _meta(pod)
    ok = node_name is not None
    note = (f"Successfully assigned {meta.get('namespace')}/{meta.get('name')} to {node_name}"
            if ok else message)
    return {"apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": f"{meta.get('name')}.", "namespace": meta.get("namespace")},
            "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": meta.get("name"),
                               "namespace": meta.get("namespace"), "uid": meta.get("uid")},
            "type": "Normal" if ok else "Warning",
            "reason": "Scheduled" if ok else "FailedScheduling",
            "message": note, "source": {"component": SCHEDULER_NAME},
            "reportingComponent": SCHEDULER_NAME, "firstTimestamp": format_time(now),
            "lastTimestamp": format_time(now), "count": 1}
