"""What a pod asks of a node and what a node has left: requests against allocatable.

Upstream's `resourcehelper.PodRequests` (the larger of the containers' sum and each init
container, with sidecars running alongside both, plus overhead) and the scheduler's
`NodeInfo`: quantities as integers (milli-CPU, bytes, counts), so comparisons are exact.
"""
from __future__ import annotations

from cluster.api.quantity import Quantity, QuantityError

CPU, MEMORY, PODS, EPHEMERAL = "cpu", "memory", "pods", "ephemeral-storage"
# what a container without requests counts as when nodes are scored (never when filtering)
DEFAULT_MILLI_CPU_REQUEST = 100
DEFAULT_MEMORY_REQUEST = 200 * 1024 * 1024


def amount(name: str, value) -> int:
    """milli-CPU for cpu, the integer value (rounded up) for everything else; 0 if unreadable."""
    try:
        q = Quantity.parse(value)
    except QuantityError:
        return 0
    return q.milli_value() if name == CPU else q.value()


def resource_list(values: dict | None) -> dict[str, int]:
    return {name: amount(name, v) for name, v in (values or {}).items()}


def _add(total: dict, more: dict) -> None:
    for k, v in more.items():
        total[k] = total.get(k, 0) + v


def _max(total: dict, other: dict) -> None:
    for k, v in other.items():
        if v > total.get(k, 0):
            total[k] = v


def _requests(container: dict, non_zero: bool) -> dict[str, int]:
    reqs = resource_list((container.get("resources") or {}).get("requests"))
    if non_zero:
        reqs.setdefault(CPU, DEFAULT_MILLI_CPU_REQUEST)
        reqs.setdefault(MEMORY, DEFAULT_MEMORY_REQUEST)
    return reqs


def pod_requests(pod: dict, non_zero: bool = False) -> dict[str, int]:
    """The pod's effective requests; `non_zero` fills unset cpu/memory per container with
    upstream's scoring defaults (100m, 200Mi)."""
    spec = pod.get("spec") or {}
    reqs: dict[str, int] = {}
    for c in spec.get("containers") or []:
        _add(reqs, _requests(c, non_zero))
    init_peak: dict[str, int] = {}
    sidecars: dict[str, int] = {}
    for c in spec.get("initContainers") or []:
        own = _requests(c, non_zero)
        if c.get("restartPolicy") == "Always":
            # a sidecar keeps running next to everything started after it
            _add(reqs, own)
            _add(sidecars, own)
            _max(init_peak, sidecars)
        else:
            during = dict(own)
            _add(during, sidecars)
            _max(init_peak, during)
    _max(reqs, init_peak)
    _add(reqs, resource_list(spec.get("overhead")))
    return reqs


def allocatable(node: dict) -> dict[str, int]:
    status = node.get("status") or {}
    return resource_list(status.get("allocatable") or status.get("capacity"))


def requested(pods: list[dict], non_zero: bool = False) -> dict[str, int]:
    total: dict[str, int] = {}
    for p in pods:
        _add(total, pod_requests(p, non_zero))
    return total
