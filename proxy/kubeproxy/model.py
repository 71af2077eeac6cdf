"""What kube-proxy sees of the API: Service ports and their endpoints, as plain values.

Converts Service and EndpointSlice objects, exactly as the API serves them (dicts of their
JSON), into `ServicePort`s and `Endpoint`s the way upstream's service and endpoints change
trackers do: headless and ExternalName Services are skipped, EndpointSlices are grouped by
their `kubernetes.io/service-name` label, endpoints are deduplicated by ip:port and sorted,
and `categorize_endpoints` picks the Cluster and Local endpoint sets (ready first, serving
terminating endpoints as the fallback). IPv4 only: the node namespaces are single-stack.
"""

import dataclasses
import ipaddress
import socket
import typing

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
DEFAULT_STICKY_SECONDS = 10800
PROTOCOLS = ("TCP", "UDP", "SCTP")


class ModelError(ValueError):
    """An API object kube-proxy cannot use; the message names the object and the field."""


class ServicePortName(typing.NamedTuple):
    # A tuple, not a dataclass: it keys every per-port map, and a tuple hashes and compares in C,
    # several times faster than a dataclass's generated methods.
    namespace: str
    name: str
    port: str
    protocol: str

    def __str__(self):
        base = f"{self.namespace}/{self.name}"
        return f"{base}:{self.port}" if self.port else base


@dataclasses.dataclass(frozen=True, slots=True)
class ServicePort:
    """One port of one Service, with everything the rules of that port depend on."""
    name: ServicePortName
    cluster_ip: str
    port: int
    node_port: int = 0
    external_ips: tuple = ()
    load_balancer_vips: tuple = ()
    load_balancer_source_ranges: tuple = ()
    session_affinity_client_ip: bool = False
    sticky_max_age_seconds: int = DEFAULT_STICKY_SECONDS
    external_policy_local: bool = False
    internal_policy_local: bool = False
    health_check_node_port: int = 0

    @property
    def protocol(self):
        return self.name.protocol

    @property
    def externally_accessible(self):
        return bool(self.node_port or self.load_balancer_vips or self.external_ips)

    @property
    def uses_cluster_endpoints(self):
        return not self.internal_policy_local or (self.externally_accessible and not self.external_policy_local)

    @property
    def uses_local_endpoints(self):
        return self.internal_policy_local or (self.external_policy_local and self.externally_accessible)


class Endpoint(typing.NamedTuple):
    # A tuple for the same reason as ServicePortName: endpoints key maps and are compared a lot.
    ip: str
    port: int
    is_local: bool = False
    ready: bool = True
    serving: bool = True
    terminating: bool = False

    def __str__(self):
        return f"{self.ip}:{self.port}"


@dataclasses.dataclass(frozen=True, slots=True)
class Node:
    """The node this kube-proxy runs on: its name (matches EndpointSlice nodeName) and IP."""
    name: str
    ip: str


def _ref(obj, kind):
    meta = obj.get("metadata") or {}
    return f"{kind} {meta.get('namespace', '?')}/{meta.get('name', '?')}"


def _meta(obj, kind):
    meta = obj.get("metadata")
    if not isinstance(meta, dict) or not meta.get("name") or not meta.get("namespace"):
        raise ModelError(f"{_ref(obj, kind)}: metadata.name and metadata.namespace: expected non-empty strings")
    return meta["namespace"], meta["name"]


def _ipv4(text):
    """TEXT as a dotted-quad IPv4 address, or None. inet_pton accepts exactly what
    ipaddress.IPv4Address does (no leading zeros, four parts) at a twentieth of the cost."""
    try:
        text = text.strip()
        socket.inet_pton(socket.AF_INET, text)
    except (OSError, AttributeError, TypeError):
        return None
    return text


def _port_number(value, where, field):
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 65535:
        raise ModelError(f"{where}: {field}: expected a port number 1-65535, got {value!r}")
    return value


def _protocol(value, where, field):
    value = value or "TCP"
    if value not in PROTOCOLS:
        raise ModelError(f"{where}: {field}: expected one of {', '.join(PROTOCOLS)}, got {value!r}")
    return value


def _cluster_ipv4(spec):
    for ip in spec.get("clusterIPs") or [spec.get("clusterIP") or ""]:
        if ip and ip != "None" and _ipv4(ip):
            return _ipv4(ip)
    return None


def service_ports(service):
    """The ServicePorts of SERVICE (a Service object as a dict); [] for headless/ExternalName."""
    namespace, name = _meta(service, "Service")
    where = _ref(service, "Service")
    spec = service.get("spec") or {}
    kind = spec.get("type") or "ClusterIP"
    cluster_ip = _cluster_ipv4(spec)
    if kind == "ExternalName" or cluster_ip is None:
        return []
    externally_routed = kind in ("NodePort", "LoadBalancer")
    external_ips = tuple(_ipv4(ip) for ip in spec.get("externalIPs") or () if _ipv4(ip))
    vips = []
    if kind == "LoadBalancer":
        for ingress in ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or ():
            # ipMode Proxy means the load balancer proxies to the node: no VIP rules, as upstream.
            if _ipv4(ingress.get("ip") or "") and ingress.get("ipMode", "VIP") == "VIP":
                vips.append(_ipv4(ingress["ip"]))
    ranges = []
    for i, text in enumerate(spec.get("loadBalancerSourceRanges") or ()):
        try:
            net = ipaddress.ip_network(str(text).strip(), strict=False)
        except ValueError:
            raise ModelError(f"{where}: spec.loadBalancerSourceRanges[{i}]: expected a CIDR such as "
                             f"203.0.113.0/24, got {text!r}") from None
        if net.version == 4:
            ranges.append(str(net))
    # Upstream's ExternallyAccessible: a ClusterIP Service with externalIPs is one too, so its
    # Local policy holds for traffic to those IPs.
    externally_accessible = externally_routed or bool(spec.get("externalIPs"))
    etp_local = externally_accessible and spec.get("externalTrafficPolicy") == "Local"
    affinity = spec.get("sessionAffinity") or "None"
    if affinity not in ("None", "ClientIP"):
        raise ModelError(f"{where}: spec.sessionAffinity: expected None or ClientIP, got {affinity!r}")
    sticky = (((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}).get("timeoutSeconds")
              or DEFAULT_STICKY_SECONDS)
    ports = spec.get("ports") or []
    result = []
    for i, p in enumerate(ports):
        field = f"spec.ports[{i}]"
        port = _port_number(p.get("port"), where, f"{field}.port")
        if port == 0:
            raise ModelError(f"{where}: {field}.port: expected a port number 1-65535, got 0")
        protocol = _protocol(p.get("protocol"), where, f"{field}.protocol")
        result.append(ServicePort(
            name=ServicePortName(namespace, name, p.get("name") or "", protocol),
            cluster_ip=cluster_ip,
            port=port,
            node_port=_port_number(p.get("nodePort") or 0, where, f"{field}.nodePort") if externally_routed else 0,
            external_ips=external_ips,
            load_balancer_vips=tuple(vips),
            load_balancer_source_ranges=tuple(ranges),
            session_affinity_client_ip=affinity == "ClientIP",
            sticky_max_age_seconds=int(sticky),
            external_policy_local=etp_local,
            internal_policy_local=spec.get("internalTrafficPolicy") == "Local",
            health_check_node_port=(spec.get("healthCheckNodePort") or 0)
            if kind == "LoadBalancer" and etp_local else 0,
        ))
    return result


def endpoints_map(endpoint_slices, node_name, errors=None):
    """{ServicePortName: (Endpoint, ...)} from EndpointSlice objects, as upstream's cache builds it.

    Endpoints of one Service port are merged across slices, deduplicated by ip:port (a
    non-terminating endpoint wins over a terminating one with the same address) and sorted by
    their "ip:port" string. Non-IPv4 slices are skipped; is_local means nodeName == NODE_NAME.
    A slice kube-proxy cannot use raises ModelError, or with an ERRORS list is recorded there
    and skipped.
    """
    by_port = {}
    for es in endpoint_slices:
        try:
            for key, e in _slice_endpoints(es, node_name):
                merged = by_port.setdefault(key, {})
                text = str(e)
                if text not in merged or not e.terminating:
                    merged[text] = e
        except ModelError as err:
            if errors is None:
                raise
            errors.append(str(err))
    return {k: tuple(v[s] for s in sorted(v)) for k, v in by_port.items() if v}


def _slice_endpoints(es, node_name):
    """(ServicePortName, Endpoint) pairs of one EndpointSlice; validated before any is returned."""
    namespace, _ = _meta(es, "EndpointSlice")
    where = _ref(es, "EndpointSlice")
    service = ((es.get("metadata") or {}).get("labels") or {}).get(SERVICE_NAME_LABEL)
    if not service:
        raise ModelError(f"{where}: metadata.labels[{SERVICE_NAME_LABEL}]: expected the owning Service's name")
    if es.get("addressType", "IPv4") != "IPv4":
        return []
    endpoints = []
    for j, ep in enumerate(es.get("endpoints") or ()):
        addresses = ep.get("addresses") or ()
        if not addresses:
            continue
        ip = _ipv4(addresses[0])
        if ip is None:
            raise ModelError(f"{where}: endpoints[{j}].addresses[0]: expected an IPv4 address, got {addresses[0]!r}")
        cond = ep.get("conditions") or {}
        # (is_local, ready, serving, terminating), the same for every port of the slice
        endpoints.append((ip, (bool(node_name) and ep.get("nodeName") == node_name, cond.get("ready") is not False,
                               cond.get("serving") is not False, cond.get("terminating") is True)))
    pairs = []
    for i, p in enumerate(es.get("ports") or ()):
        number = _port_number(p.get("port") or 0, where, f"ports[{i}].port")
        if number == 0:
            continue
        key = ServicePortName(namespace, service, p.get("name") or "",
                              _protocol(p.get("protocol"), where, f"ports[{i}].protocol"))
        pairs.extend((key, Endpoint(ip, number, *flags)) for ip, flags in endpoints)
    return pairs


def categorize_endpoints(endpoints, svc):
    """(cluster, local, all_reachable, has_any) endpoints of SVC, as upstream's CategorizeEndpoints
    (without topology hints): ready endpoints, or serving-and-terminating ones when none is ready."""
    cluster, local = [], []
    has_any = False
    if svc.uses_cluster_endpoints:
        cluster = [e for e in endpoints if e.ready]
        if not cluster:
            cluster = [e for e in endpoints if e.serving and e.terminating]
        has_any = bool(cluster)
    if not svc.uses_local_endpoints:
        return cluster, local, cluster, has_any
    local_ready = local_terminating = False
    for e in endpoints:
        if e.ready:
            has_any = True
            local_ready = local_ready or e.is_local
        elif e.serving and e.terminating:
            has_any = True
            local_terminating = local_terminating or e.is_local
    if local_ready:
        local = [e for e in endpoints if e.is_local and e.ready]
    elif local_terminating:
        local = [e for e in endpoints if e.is_local and e.serving and e.terminating]
    if not svc.uses_cluster_endpoints:
        return cluster, local, local, has_any
    reachable = list(cluster) + [e for e in local if e not in cluster]
    return cluster, local, reachable, has_any
