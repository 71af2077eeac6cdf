"""A pod's resource requests and limits, as the scheduler, LimitRanger and quota add them up.

The pod total is the sum over its containers, raised to the largest init container where that is
bigger (init containers run one at a time, before the others); sidecars (init containers with
`restartPolicy: Always`) keep running, so they add to the sum like regular containers.
"""
from __future__ import annotations

from cluster.api.quantity import Quantity, QuantityError

ResourceList = dict[str, Quantity]


def quantities(resource_list: dict | None) -> ResourceList:
    """Parsed quantities of a requests/limits map; values that do not parse are left to validation."""
    parsed = {}
    for name, value in (resource_list or {}).items():
        try:
            parsed[name] = Quantity.parse(value)
        except QuantityError:
            continue
    return parsed


def containers(spec: dict) -> list[dict]:
    """Init containers then containers, the order upstream's checks visit them in."""
    return list(spec.get("initContainers") or []) + list(spec.get("containers") or [])


def container_resources(container: dict, bucket: str) -> ResourceList:
    return quantities((container.get("resources") or {}).get(bucket))


def add(total: ResourceList, more: ResourceList) -> None:
    for name, q in more.items():
        total[name] = total[name] + q if name in total else q


def raise_to(total: ResourceList, other: ResourceList) -> None:
    for name, q in other.items():
        if name not in total or q > total[name]:
            total[name] = q


def pod_total(spec: dict, bucket: str) -> ResourceList:
    """The pod's effective `requests` or `limits` (bucket), upstream's PodRequests/PodLimits."""
    total: ResourceList = {}
    for container in spec.get("containers") or []:
        add(total, container_resources(container, bucket))
    sidecars: ResourceList = {}
    init_peak: ResourceList = {}
    for container in spec.get("initContainers") or []:
        own = container_resources(container, bucket)
        if container.get("restartPolicy") == "Always":
            add(total, own)
            add(sidecars, own)
            running = dict(sidecars)
        else:
            running = dict(own)
            add(running, sidecars)
        raise_to(init_peak, running)
    raise_to(total, init_peak)
    return total
