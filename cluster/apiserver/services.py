"""ClusterIPs and NodePorts of Services, allocated by the API server as upstream's Service REST
storage does (`pkg/registry/core/service/storage`).

A create allocates before the object is written and releases what it took if the write fails;
an update keeps what the stored Service holds (a PUT that omits `clusterIP` or a `nodePort`
gets the stored value back: PrepareForUpdate's patchAllocatedValues), frees what a type change
no longer needs (dropTypeDependentFields), allocates what it newly asks for and, once written,
releases what the old object held and the new one does not; a delete releases everything.
Allocation is synchronous between two awaits on the event loop, so concurrent creates can never
take the same address. At start the allocators are rebuilt from the stored Services (upstream's
repair controllers), which is what makes a restarted server safe.
"""

import logging

import copy

from cluster.api import errors
from cluster.api.resources import by_kind
from cluster.controllers.ipalloc import (ClusterIPAllocator, assign_cluster_ip,
                                         released_cluster_ips)
from cluster.controllers.portalloc import (DEFAULT_RANGE as DEFAULT_NODE_PORT_RANGE,
                                           NodePortAllocator, assign_node_ports,
                                           released_node_ports)
from .registry import Options, decode, encode

log = logging.getLogger(__name__)

DEFAULT_SERVICE_CIDR = "10.96.0.0/12"
SERVICES = by_kind("v1", "Service")


def _spec(svc):
    return (svc or {}).get("spec") or {}


def _needs_cluster_ip(svc):
    return _spec(svc).get("type") != "ExternalName"


def _needs_node_ports(svc):
    return _spec(svc).get("type") in ("NodePort", "LoadBalancer")


def _needs_health_check_port(svc):
    spec = _spec(svc)
    return spec.get("type") == "LoadBalancer" and spec.get("externalTrafficPolicy") == "Local"


def patch_allocated_values(new, old):
    """Fill what an update omits from what the stored Service holds, as upstream's
    patchAllocatedValues, so a PUT without clusterIP or nodePort does not ask for new ones."""
    spec, old_spec = new.setdefault("spec", {}), _spec(old)
    if _needs_cluster_ip(old) and _needs_cluster_ip(new):
        if not spec.get("clusterIP") and old_spec.get("clusterIP"):
            spec["clusterIP"] = old_spec["clusterIP"]
        if not spec.get("clusterIPs") and old_spec.get("clusterIPs"):
            spec["clusterIPs"] = list(old_spec["clusterIPs"])
    if _needs_node_ports(old) and _needs_node_ports(new):
        def used(s):
            return {p.get("nodePort") for p in _spec(s).get("ports") or [] if p.get("nodePort")}
        # a port the user kept on another Service port cannot be patched back in twice
        both = used(old) & used(new)
        by_name = {p.get("name") or "": p.get("nodePort") for p in old_spec.get("ports") or []}
        for port in spec.get("ports") or []:
            if not port.get("nodePort"):
                value = by_name.get(port.get("name") or "")
                if value and value not in both:
                    port["nodePort"] = value
    if _needs_health_check_port(old) and _needs_health_check_port(new):
        if not spec.get("healthCheckNodePort") and old_spec.get("healthCheckNodePort"):
            spec["healthCheckNodePort"] = old_spec["healthCheckNodePort"]


def drop_type_dependent_fields(new, old):
    """Clear what the new type does not use when the user left it as it was (upstream's
    dropTypeDependentFields): `kubectl patch -p '{"spec":{"type":"ExternalName",...}}'` on a
    ClusterIP Service then frees its address instead of failing validation."""
    spec, old_spec = new.setdefault("spec", {}), _spec(old)
    if not _needs_cluster_ip(new) and _needs_cluster_ip(old):
        if spec.get("clusterIP") == old_spec.get("clusterIP"):
            spec.pop("clusterIP", None)
        if spec.get("clusterIPs") == old_spec.get("clusterIPs"):
            spec.pop("clusterIPs", None)
        for field in ("ipFamilies", "ipFamilyPolicy"):
            if spec.get(field) == old_spec.get(field):
                spec.pop(field, None)
    if not _needs_node_ports(new) and _needs_node_ports(old):
        old_ports = {p.get("nodePort") for p in old_spec.get("ports") or []}
        for port in spec.get("ports") or []:
            if port.get("nodePort") in old_ports:
                port.pop("nodePort", None)
    if not _needs_health_check_port(new) and _needs_health_check_port(old):
        if spec.get("healthCheckNodePort") == old_spec.get("healthCheckNodePort"):
            spec.pop("healthCheckNodePort", None)
    external = _needs_node_ports(new) or spec.get("externalIPs")
    if not external and spec.get("externalTrafficPolicy") == old_spec.get("externalTrafficPolicy"):
        spec.pop("externalTrafficPolicy", None)
    if spec.get("type") != "LoadBalancer":
        for field in ("allocateLoadBalancerNodePorts", "loadBalancerClass"):
            if field in spec and spec.get(field) == old_spec.get(field):
                spec.pop(field)


class Allocation:
    """What one write took: `undo()` gives it back and restores the spec as it was asked for,
    when the write does not happen (or is retried under another generated name)."""

    def __init__(self, allocators, svc, spec, ips=(), ports=()):
        self._allocators, self._svc, self._spec = allocators, svc, spec
        self.ips, self.ports = list(ips), list(ports)

    def undo(self):
        self._allocators.release(self.ips, self.ports)
        self.ips, self.ports = [], []
        self._svc["spec"] = self._spec


class ServiceAllocators:
    """The ClusterIP and NodePort allocators of one API server."""

    def __init__(self, service_cidr=DEFAULT_SERVICE_CIDR, node_port_range=DEFAULT_NODE_PORT_RANGE):
        try:
            self.ips = ClusterIPAllocator(service_cidr)
        except ValueError:
            raise ValueError(f"service_cidr {service_cidr!r}: expected a CIDR such as "
                             f"{DEFAULT_SERVICE_CIDR}") from None
        self.ports = NodePortAllocator(node_port_range)

    @classmethod
    async def load(cls, store, service_cidr=DEFAULT_SERVICE_CIDR, node_port_range=DEFAULT_NODE_PORT_RANGE):
        """The allocators as the stored Services leave them; problems are logged as the repair
        controllers do (the younger of two Services holding one address must be recreated)."""
        allocators = cls(service_cidr, node_port_range)
        page, _ = await store.list(SERVICES.prefix())
        services = [decode(value, rev) for _, value, rev in page]
        allocators.ips, problems = ClusterIPAllocator.from_services(service_cidr, services)
        allocators.ports, more = NodePortAllocator.from_services(services, node_port_range)
        for problem in problems + more:
            log.warning("%s", problem)
        return allocators

    def release(self, ips=(), ports=()):
        for ip in ips:
            self.ips.release(ip)
        for port in ports:
            self.ports.release(port)

    def allocate(self, svc, old=None):
        """Fill the Service's clusterIP(s) and nodePorts in place (an update: `old` is the
        stored one); the Allocation made, to undo if the write fails. Raises upstream's 422
        when an explicit value is taken or out of range, and nothing stays allocated then."""
        asked = copy.deepcopy(svc.get("spec"))
        ips = assign_cluster_ip(self.ips, svc, old)
        try:
            ports = assign_node_ports(self.ports, svc, old)
        except BaseException:
            self.release(ips)
            svc["spec"] = asked
            raise
        return Allocation(self, svc, asked, ips, ports)

    @staticmethod
    def prepare_update(new, old):
        """What an update of a stored Service keeps and drops before it is validated."""
        patch_allocated_values(new, old)
        drop_type_dependent_fields(new, old)

    def written(self, new, old):
        """After an update was stored: free what `old` held that `new` no longer does."""
        self.release(released_cluster_ips(old, new), released_node_ports(old, new))

    def deleted(self, svc):
        self.release(released_cluster_ips(svc), released_node_ports(svc))


def kubernetes_service(cluster_ip, port):
    """The `default/kubernetes` Service every cluster has, as kube-apiserver's reconciler makes it."""
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kubernetes", "namespace": "default",
                         "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {"type": "ClusterIP", "clusterIP": cluster_ip, "clusterIPs": [cluster_ip],
                     "sessionAffinity": "None",
                     "ports": [{"name": "https", "port": 443, "protocol": "TCP",
                                "targetPort": port}]}}


async def ensure_kubernetes_service(registry, port):
    """Create `default/kubernetes` with the first address of the serviceCIDR, or bring its
    targetPort to the port the server listens on now."""
    res = SERVICES
    found = await registry.store.get(res.key("default", "kubernetes"))
    if found is None:
        wanted = kubernetes_service(registry.services.ips.kubernetes_service_ip, port)
        try:
            await registry.create(res, "default", wanted, Options({}))
        except errors.APIError as e:
            if e.code != 409:
                raise
        return
    svc = decode(*found)
    ports = _spec(svc).get("ports") or []
    if ports and ports[0].get("targetPort") != port:
        ports[0]["targetPort"] = port
        await registry.store.update(res.key("default", "kubernetes"), encode(svc), found[1])
