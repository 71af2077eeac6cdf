"""NodePort allocation from the service-node-port-range (30000-32767 by default).

Upstream's `portallocator` and the Service REST storage's `initNodePorts`/`updateNodePorts`:
explicit ports are honoured or rejected with `provided port is already allocated`; random
allocation prefers ports above a static band at the bottom of the range; Service ports that share
a port number (TCP and UDP of 53) share one NodePort; a LoadBalancer with
`allocateLoadBalancerNodePorts: false` gets only the ports it asks for; `externalTrafficPolicy:
Local` on a LoadBalancer also gets a `healthCheckNodePort`.
"""
from __future__ import annotations

import random

from cluster.api.errors import Cause, internal, invalid
from cluster.controllers.allocator import (AllocationError, AlreadyAllocated, NotInRange,
                                           OffsetBitmap, RangeFull, range_offset)
from cluster.controllers.objects import creation_key, name_of, namespace_of

DEFAULT_RANGE = "30000-32767"


def parse_range(text: str) -> tuple[int, int]:
    """`30000-32767` (or one port) as (first, size); ValueError names what is expected."""
    first, _, last = text.partition("-")
    try:
        low, high = int(first), int(last or first)
    except ValueError:
        raise ValueError(f"service-node-port-range {text!r}: expected FIRST-LAST, e.g. 30000-32767")
    if not 0 < low <= high <= 65535:
        raise ValueError(f"service-node-port-range {text!r}: ports must be 1-65535, first <= last")
    return low, high - low + 1


class NodePortAllocator:
    def __init__(self, port_range: str = DEFAULT_RANGE, rng: random.Random | None = None):
        self.range = port_range
        self.base, size = parse_range(port_range)
        self._bitmap = OffsetBitmap(size, range_offset(size, 16, 128, 32), rng)

    def _slot(self, port: int) -> int:
        slot = port - self.base if isinstance(port, int) else -1
        if not 0 <= slot < self._bitmap.size:
            raise NotInRange(f"provided port is not in the valid range. The range of valid ports"
                             f" is {self.range}")
        return slot

    def allocate(self, explicit: int | None = None) -> int:
        if explicit is not None:
            if not self._bitmap.take(self._slot(explicit)):
                raise AlreadyAllocated("provided port is already allocated")
            return explicit
        slot = self._bitmap.allocate_next()
        if slot is None:
            raise RangeFull("range is full")
        return self.base + slot

    def release(self, port: int) -> None:
        try:
            self._bitmap.release(self._slot(port))
        except NotInRange:
            pass

    def is_allocated(self, port: int) -> bool:
        try:
            return self._slot(port) in self._bitmap
        except NotInRange:
            return False

    def allocated(self) -> list[int]:
        return [self.base + s for s in self._bitmap.used()]

    def free(self) -> int:
        return self._bitmap.free()

    @classmethod
    def from_services(cls, services: list[dict], port_range: str = DEFAULT_RANGE,
                      rng: random.Random | None = None) -> tuple["NodePortAllocator", list[str]]:
        """The allocator as stored Services leave it, and one problem per port out of range or
        held twice (the younger Service is reported; upstream's repair controller)."""
        allocator = cls(port_range, rng)
        problems = []
        for svc in sorted(services, key=creation_key):
            who = f"{namespace_of(svc)}/{name_of(svc)}"
            for port in node_ports_of(svc):
                try:
                    allocator.allocate(port)
                except NotInRange:
                    problems.append(f"Port {port} is not within the port range {port_range};"
                                    f" please recreate service {who}")
                except AlreadyAllocated:
                    problems.append(f"Port {port} was assigned to multiple services; please"
                                    f" recreate service {who}")
        return allocator, problems


def node_ports_of(service: dict) -> list[int]:
    """The distinct node ports a Service holds, its healthCheckNodePort included."""
    spec = service.get("spec") or {}
    ports = [p.get("nodePort") for p in spec.get("ports") or []]
    ports.append(spec.get("healthCheckNodePort"))
    return sorted({p for p in ports if isinstance(p, int) and p > 0})


def _wants_node_ports(spec: dict) -> bool:
    kind = spec.get("type")
    return kind == "NodePort" or (kind == "LoadBalancer"
                                  and spec.get("allocateLoadBalancerNodePorts", True) is not False)


def _needs_health_check_port(spec: dict) -> bool:
    return spec.get("type") == "LoadBalancer" and spec.get("externalTrafficPolicy") == "Local"


def assign_node_ports(allocator: NodePortAllocator, service: dict,
                      old: dict | None = None) -> list[int]:
    """Fill `nodePort` of each Service port (and `healthCheckNodePort`) in place, keeping the
    ports an update's `old` object already holds. Returns the ports this call allocated; on an
    error nothing stays allocated and the APIError is upstream's."""
    spec = service.setdefault("spec", {})
    held = set(node_ports_of(old)) if old else set()
    taken: list[int] = []

    def take(port: int | None, field: str) -> int:
        if port is not None and port in held:
            return port
        try:
            got = allocator.allocate(port)
        except RangeFull as e:
            _rollback()
            raise internal(f"failed to allocate a nodePort: {e}") from e
        except AllocationError as e:
            _rollback()
            raise invalid("Service", name_of(service), [Cause.invalid(field, port, str(e))]) from e
        taken.append(got)
        return got

    def _rollback():
        for p in taken:
            allocator.release(p)

    by_port: dict[int, int] = {}
    ports = spec.get("ports") or []
    for i, sp in enumerate(ports):
        if spec.get("type") not in ("NodePort", "LoadBalancer"):
            sp.pop("nodePort", None)
            continue
        if not sp.get("nodePort") and not _wants_node_ports(spec):
            continue  # no new ports, but explicit ones are respected
        shared = by_port.get(sp.get("port"))
        if shared is None:
            # a later port with the same number may carry the user's choice
            requested = sp.get("nodePort") or next(
                (q.get("nodePort") for q in ports[i:]
                 if q.get("port") == sp.get("port") and q.get("nodePort")), None)
            sp["nodePort"] = by_port[sp.get("port")] = take(requested, f"spec.ports[{i}].nodePort")
        elif not sp.get("nodePort"):
            sp["nodePort"] = shared
        elif sp["nodePort"] != shared:
            take(sp["nodePort"], f"spec.ports[{i}].nodePort")
    if _needs_health_check_port(spec):
        spec["healthCheckNodePort"] = take(spec.get("healthCheckNodePort") or None,
                                           "spec.healthCheckNodePort")
    else:
        spec.pop("healthCheckNodePort", None)
    return taken


def released_node_ports(old: dict, new: dict | None = None) -> list[int]:
    """Ports `old` held that `new` does not (all of them when the Service was deleted)."""
    return sorted(set(node_ports_of(old)) - set(node_ports_of(new or {})))
