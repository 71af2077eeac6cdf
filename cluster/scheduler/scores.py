"""Score plugins of the default profile, each normalized to 0-100 and weighted as upstream.

TaintToleration (3: fewer untolerated PreferNoSchedule taints), NodeAffinity (2: preferred
terms), NodeResourcesFit with LeastAllocated (1: most room left), NodeResourcesBalancedAllocation
(1: cpu and memory used evenly) and PodTopologySpread (2: fewer matching pods in the node's
hostname and zone domains; the system default constraints apply to pods without their own).
"""
from __future__ import annotations

import math

from cluster.api.selectors import LabelSelector, from_label_selector
from cluster.controllers.nodelifecycle import tolerates
from cluster.scheduler import resources as res
from cluster.scheduler.filters import (domain_counts, node_selector_term_matches,
                                       spread_constraints)

MAX_SCORE = 100
WEIGHTS = {"TaintToleration": 3, "NodeAffinity": 2, "NodeResourcesFit": 1,
           "NodeResourcesBalancedAllocation": 1, "PodTopologySpread": 2}
HOSTNAME_LABEL = "kubernetes.io/hostname"
ZONE_LABEL = "topology.kubernetes.io/zone"
# PodTopologySpread's system defaults (ScheduleAnyway)
DEFAULT_CONSTRAINTS = ((HOSTNAME_LABEL, 3), (ZONE_LABEL, 5))


def _name(obj: dict) -> str:
    return (obj.get("metadata") or {}).get("name") or ""


def _labels(obj: dict) -> dict:
    return (obj.get("metadata") or {}).get("labels") or {}


def normalize(scores: dict[str, int], reverse: bool = False) -> dict[str, int]:
    """framework's DefaultNormalizeScore."""
    top = max(scores.values(), default=0)
    if top == 0:
        return {k: MAX_SCORE if reverse else 0 for k in scores}
    out = {}
    for k, v in scores.items():
        s = MAX_SCORE * v // top
        out[k] = MAX_SCORE - s if reverse else s
    return out


def taint_toleration(pod, nodes, **_) -> dict[str, int]:
    tolerations = [t for t in (pod.get("spec") or {}).get("tolerations") or []
                   if t.get("effect") in (None, "", "PreferNoSchedule")]
    counts = {}
    for node in nodes:
        counts[_name(node)] = sum(
            1 for taint in (node.get("spec") or {}).get("taints") or []
            if taint.get("effect") == "PreferNoSchedule"
            and not any(tolerates(t, taint) for t in tolerations))
    return normalize(counts, reverse=True)


def node_affinity(pod, nodes, **_) -> dict[str, int]:
    preferred = ((((pod.get("spec") or {}).get("affinity") or {}).get("nodeAffinity") or {})
                 .get("preferredDuringSchedulingIgnoredDuringExecution") or [])
    raw = {_name(n): sum(int(p.get("weight") or 0) for p in preferred
                         if node_selector_term_matches(p.get("preference") or {}, n))
           for n in nodes}
    return normalize(raw)


def _fractions(pod, node, pods_on_node) -> tuple[dict, dict]:
    have = res.allocatable(node)
    used = res.requested(pods_on_node, non_zero=True)
    for k, v in res.pod_requests(pod, non_zero=True).items():
        used[k] = used.get(k, 0) + v
    return have, used


def least_allocated(pod, nodes, pods_on_nodes, **_) -> dict[str, int]:
    out = {}
    for node in nodes:
        have, used = _fractions(pod, node, pods_on_nodes.get(_name(node), []))
        parts = []
        for r in (res.CPU, res.MEMORY):
            cap, req = have.get(r, 0), used.get(r, 0)
            parts.append(0 if cap == 0 or req > cap else (cap - req) * MAX_SCORE // cap)
        out[_name(node)] = sum(parts) // len(parts)
    return out


def balanced_allocation(pod, nodes, pods_on_nodes, **_) -> dict[str, int]:
    out = {}
    for node in nodes:
        have, used = _fractions(pod, node, pods_on_nodes.get(_name(node), []))
        fractions = [min(1.0, used.get(r, 0) / have[r]) for r in (res.CPU, res.MEMORY)
                     if have.get(r)]
        if len(fractions) < 2:
            out[_name(node)] = MAX_SCORE
            continue
        std = abs(fractions[0] - fractions[1]) / 2
        out[_name(node)] = int((1 - std) * MAX_SCORE)
    return out


def default_spread_selector(pod: dict, services: list[dict], replica_sets: list[dict]
                            ) -> LabelSelector | None:
    """The selector the default spreading counts pods by: the selectors of the Services that
    select the pod and of the ReplicaSet that controls it, merged (upstream's DefaultSelector)."""
    labels = _labels(pod)
    namespace = (pod.get("metadata") or {}).get("namespace")
    requirements = []
    for svc in services:
        selector = (svc.get("spec") or {}).get("selector") or {}
        if ((svc.get("metadata") or {}).get("namespace") == namespace and selector
                and all(labels.get(k) == v for k, v in selector.items())):
            requirements += from_label_selector({"matchLabels": selector}).requirements
    owner = next((r for r in (pod.get("metadata") or {}).get("ownerReferences") or []
                  if r.get("controller")), None)
    for rs in replica_sets:
        if owner and (rs.get("metadata") or {}).get("uid") == owner.get("uid"):
            requirements += from_label_selector((rs.get("spec") or {}).get("selector")).requirements
    if not requirements:
        return None
    return LabelSelector(tuple(dict.fromkeys(requirements)))


def topology_spread(pod, nodes, pods_on_nodes, spread_selector: LabelSelector | None = None,
                    **_) -> dict[str, int]:
    """Fewer matching pods in the node's domains scores higher (PodTopologySpread's Score)."""
    constraints = [(c.get("topologyKey"), int(c.get("maxSkew", 1)),
                    from_label_selector(c.get("labelSelector")))
                   for c in spread_constraints(pod, "ScheduleAnyway")]
    if not spread_constraints(pod) and spread_selector is not None:
        constraints = [(key, skew, spread_selector) for key, skew in DEFAULT_CONSTRAINTS]
    raw: dict[str, float] = {}
    for key, skew, selector in constraints:
        counts = domain_counts(key, selector, pod, nodes, pods_on_nodes)
        if not counts:
            continue
        # domains weigh by log(count + 2): a hostname constraint counts less than a zone one
        weight = math.log(len(counts) + 2)
        for node in nodes:
            domain = _labels(node).get(key)
            if domain is not None:
                raw[_name(node)] = raw.get(_name(node), 0.0) + counts.get(domain, 0) * weight + skew - 1
    if not raw:
        return {_name(n): 0 for n in nodes}
    top, low = max(raw.values()), min(raw.values())
    out = {}
    for node in nodes:
        s = raw.get(_name(node))
        if s is None:
            out[_name(node)] = 0
        elif top == 0:
            out[_name(node)] = MAX_SCORE
        else:
            out[_name(node)] = int(MAX_SCORE * (top + low - s) / top)
    return out


SCORES = {"TaintToleration": taint_toleration, "NodeAffinity": node_affinity,
          "NodeResourcesFit": least_allocated,
          "NodeResourcesBalancedAllocation": balanced_allocation,
          "PodTopologySpread": topology_spread}


def score_nodes(pod: dict, nodes: list[dict], pods_on_nodes: dict[str, list[dict]],
                spread_selector: LabelSelector | None = None) -> dict[str, int]:
    """Weighted sum of every score plugin, by node name."""
    total = {_name(n): 0 for n in nodes}
    for plugin, fn in SCORES.items():
        scores = fn(pod, nodes, pods_on_nodes=pods_on_nodes, spread_selector=spread_selector)
        for name, s in scores.items():
            total[name] += s * WEIGHTS[plugin]
    return total
