"""Filter plugins of the default profile, in upstream's order, with upstream's reasons.

Each filter answers the reasons a node cannot take the pod (empty when it can): NodeUnschedulable,
NodeName, TaintToleration, NodeAffinity (nodeSelector and required affinity), NodePorts,
NodeResourcesFit, PodTopologySpread (DoNotSchedule constraints). The first filter that fails
decides for a node, as the framework stops there.
"""
from __future__ import annotations

from cluster.api.selectors import LabelSelector, from_label_selector
from cluster.controllers.nodelifecycle import TAINT_UNSCHEDULABLE, tolerates
from cluster.scheduler import resources as res

ERR_UNSCHEDULABLE = "node(s) were unschedulable"
ERR_NODE_NAME = "node(s) didn't match the requested node name"
ERR_NODE_AFFINITY = "node(s) didn't match Pod's node affinity/selector"
ERR_NODE_PORTS = "node(s) didn't have free ports for the requested pod ports"
ERR_TOO_MANY_PODS = "Too many pods"
ERR_TOPOLOGY_SPREAD = "node(s) didn't match pod topology spread constraints"
ERR_TOPOLOGY_LABEL = "node(s) didn't match pod topology spread constraints (missing required label)"


def _spec(obj: dict) -> dict:
    return obj.get("spec") or {}


def _labels(obj: dict) -> dict:
    return (obj.get("metadata") or {}).get("labels") or {}


def _name(obj: dict) -> str:
    return (obj.get("metadata") or {}).get("name") or ""


def node_unschedulable(pod: dict, node: dict, **_) -> list[str]:
    if not _spec(node).get("unschedulable"):
        return []
    taint = {"key": TAINT_UNSCHEDULABLE, "effect": "NoSchedule"}
    if any(tolerates(t, taint) for t in _spec(pod).get("tolerations") or []):
        return []
    return [ERR_UNSCHEDULABLE]


def node_name(pod: dict, node: dict, **_) -> list[str]:
    wanted = _spec(pod).get("nodeName")
    return [] if not wanted or wanted == _name(node) else [ERR_NODE_NAME]


def untolerated_taint(pod: dict, node: dict, effects=("NoSchedule", "NoExecute")) -> dict | None:
    tolerations = _spec(pod).get("tolerations") or []
    for taint in _spec(node).get("taints") or []:
        if taint.get("effect") in effects and not any(tolerates(t, taint) for t in tolerations):
            return taint
    return None


def taint_toleration(pod: dict, node: dict, **_) -> list[str]:
    taint = untolerated_taint(pod, node)
    if taint is None:
        return []
    return [f"node(s) had untolerated taint {{{taint.get('key')}: {taint.get('value') or ''}}}"]


def _match_expression(expr: dict, value: str | None) -> bool:
    op, values = expr.get("operator"), expr.get("values") or []
    if op == "In":
        return value is not None and value in values
    if op == "NotIn":
        return value is None or value not in values
    if op == "Exists":
        return value is not None
    if op == "DoesNotExist":
        return value is None
    if op in ("Gt", "Lt") and value is not None and len(values) == 1:
        try:
            have, want = int(value), int(values[0])
        except ValueError:
            return False
        return have > want if op == "Gt" else have < want
    return False


def node_selector_term_matches(term: dict, node: dict) -> bool:
    """A NodeSelectorTerm: all expressions and fields hold; an empty term matches nothing."""
    exprs = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not exprs and not fields:
        return False
    labels = _labels(node)
    return (all(_match_expression(e, labels.get(e.get("key"))) for e in exprs)
            and all(e.get("key") == "metadata.name" and _match_expression(e, _name(node))
                    for e in fields))


def matches_node_affinity(pod: dict, node: dict) -> bool:
    labels = _labels(node)
    if any(labels.get(k) != v for k, v in (_spec(pod).get("nodeSelector") or {}).items()):
        return False
    required = (((_spec(pod).get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution"))
    if required is None:
        return True
    return any(node_selector_term_matches(t, node) for t in required.get("nodeSelectorTerms") or [])


def node_affinity(pod: dict, node: dict, **_) -> list[str]:
    return [] if matches_node_affinity(pod, node) else [ERR_NODE_AFFINITY]


def _host_ports(pod: dict) -> list[tuple[str, str, int]]:
    ports = []
    spec = _spec(pod)
    for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        for p in c.get("ports") or []:
            if p.get("hostPort"):
                ports.append((p.get("hostIP") or "0.0.0.0", p.get("protocol") or "TCP",
                              p["hostPort"]))
    return ports


def node_ports(pod: dict, node: dict, pods_on_node: list[dict] = (), **_) -> list[str]:
    wanted = _host_ports(pod)
    if not wanted:
        return []
    used = [u for other in pods_on_node for u in _host_ports(other)]
    for ip, proto, port in wanted:
        for uip, uproto, uport in used:
            if (port, proto) == (uport, uproto) and (ip == uip or "0.0.0.0" in (ip, uip)):
                return [ERR_NODE_PORTS]
    return []


def node_resources_fit(pod: dict, node: dict, pods_on_node: list[dict] = (), **_) -> list[str]:
    """Requests against allocatable minus what the node's pods request (upstream's fitsRequest).
    A node that reports no `pods` allocatable is not limited in pod count."""
    reasons = []
    have = res.allocatable(node)
    used = res.requested(pods_on_node)
    if res.PODS in have and len(pods_on_node) + 1 > have[res.PODS]:
        reasons.append(ERR_TOO_MANY_PODS)
    want = res.pod_requests(pod)
    ordered = [res.CPU, res.MEMORY, res.EPHEMERAL] + sorted(
        k for k in want if k not in (res.CPU, res.MEMORY, res.EPHEMERAL, res.PODS))
    for name in ordered:
        need = want.get(name, 0)
        if need > 0 and need > have.get(name, 0) - used.get(name, 0):
            reasons.append(f"Insufficient {name}")
    return reasons


# --- topology spread -----------------------------------------------------------------------------

def spread_constraints(pod: dict, when: str | None = None) -> list[dict]:
    return [c for c in _spec(pod).get("topologySpreadConstraints") or []
            if when is None or c.get("whenUnsatisfiable", "DoNotSchedule") == when]


def domain_counts(key: str, selector: LabelSelector, pod: dict, nodes: list[dict],
                  pods_on_nodes: dict[str, list[dict]]) -> dict[str, int]:
    """Pods of the pod's namespace matching `selector` per topology domain of `key`, over the
    nodes that carry the key and that the pod's node affinity allows (upstream counts only
    those); terminating pods do not count."""
    namespace = (pod.get("metadata") or {}).get("namespace")
    counts: dict[str, int] = {}
    for node in nodes:
        domain = _labels(node).get(key)
        if domain is None or not matches_node_affinity(pod, node):
            continue
        counts[domain] = counts.get(domain, 0) + sum(
            1 for other in pods_on_nodes.get(_name(node), [])
            if (other.get("metadata") or {}).get("namespace") == namespace
            and selector.matches(_labels(other))
            and not (other.get("metadata") or {}).get("deletionTimestamp"))
    return counts


def pod_topology_spread(pod: dict, node: dict, nodes: list[dict] = (),
                        pods_on_nodes: dict | None = None, **_) -> list[str]:
    for c in spread_constraints(pod, "DoNotSchedule"):
        domain = _labels(node).get(c.get("topologyKey"))
        if domain is None:
            return [ERR_TOPOLOGY_LABEL]
        selector = from_label_selector(c.get("labelSelector"))
        counts = domain_counts(c.get("topologyKey"), selector, pod, list(nodes), pods_on_nodes or {})
        self_match = 1 if selector.matches(_labels(pod)) else 0
        lowest = min(counts.values()) if counts else 0
        min_domains = c.get("minDomains")
        if min_domains and len(counts) < min_domains:
            lowest = 0
        if counts.get(domain, 0) + self_match - lowest > int(c.get("maxSkew", 1)):
            return [ERR_TOPOLOGY_SPREAD]
    return []


FILTERS = (node_unschedulable, node_name, taint_toleration, node_affinity, node_ports,
           node_resources_fit, pod_topology_spread)


def run_filters(pod: dict, node: dict, nodes: list[dict], pods_on_nodes: dict[str, list[dict]]
                ) -> list[str]:
    """The reasons the first failing filter gives for this node; empty when it fits."""
    on_node = pods_on_nodes.get(_name(node), [])
    for f in FILTERS:
        reasons = f(pod, node, pods_on_node=on_node, nodes=nodes, pods_on_nodes=pods_on_nodes)
        if reasons:
            return reasons
    return []
