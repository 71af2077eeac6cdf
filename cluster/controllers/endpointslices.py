"""The EndpointSlices of a Service: which pods back it, and the fewest writes to get there.

Upstream's EndpointSlice controller (`pkg/controller/endpointslice`, the reconciler in
`k8s.io/endpointslice`): one endpoint per pod that has an IP and is not terminal, with `ready`,
`serving` and `terminating` conditions, `nodeName`, the node's zone, the pod as `targetRef`;
named target ports resolved per pod, so pods that disagree on a port number land in different
slices; at most 100 endpoints per slice; existing slices are kept, topped up and updated before a
new one is created, a slice that would be deleted while another is created is reused, and a
Service with no endpoints keeps one empty placeholder slice, as `kubectl get endpointslices` shows
on a real cluster.
"""
from __future__ import annotations

import copy
import ipaddress
from dataclasses import dataclass, field

from cluster.controllers.objects import (controller_ref, is_deleting, is_pod_ready,
                                         is_pod_terminal, labels_of, name_of, namespace_of,
                                         pod_ips, uid_of)

MAX_ENDPOINTS_PER_SLICE = 100
CONTROLLER_NAME = "endpointslice-controller.k8s.io"
LABEL_SERVICE_NAME = "kubernetes.io/service-name"
LABEL_MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
LABEL_HEADLESS = "service.kubernetes.io/headless"
TRIGGER_TIME_ANNOTATION = "endpoints.kubernetes.io/last-change-trigger-time"
ZONE_LABEL = "topology.kubernetes.io/zone"
_RESERVED_LABELS = (LABEL_SERVICE_NAME, LABEL_MANAGED_BY, LABEL_HEADLESS)


# --- what a Service selects ----------------------------------------------------------------

def manages(service: dict) -> bool:
    """Only Services with a selector get controller-made endpoints; ExternalName never does."""
    spec = service.get("spec") or {}
    return spec.get("selector") is not None and spec.get("type") != "ExternalName"


def selects(service: dict, pod: dict) -> bool:
    selector = (service.get("spec") or {}).get("selector") or {}
    labels = labels_of(pod)
    return (namespace_of(pod) == namespace_of(service) and bool(selector)
            and all(labels.get(k) == v for k, v in selector.items()))


def should_pod_be_in_endpoints(pod: dict, include_terminating: bool) -> bool:
    """Upstream's ShouldPodBeInEndpoints: an IP, not Succeeded/Failed, terminating if allowed."""
    if is_pod_terminal(pod) or not pod_ips(pod):
        return False
    return include_terminating or not is_deleting(pod)


def find_port(pod: dict, service_port: dict) -> int | None:
    """The container port a Service port's targetPort means in this pod (podutil.FindPort):
    a number as is, a name looked up in the containers and then the sidecars, protocol matching."""
    target = service_port.get("targetPort", service_port.get("port"))
    if isinstance(target, int):
        return target
    protocol = service_port.get("protocol") or "TCP"
    spec = pod.get("spec") or {}
    sidecars = [c for c in spec.get("initContainers") or [] if c.get("restartPolicy") == "Always"]
    for container in (spec.get("containers") or []) + sidecars:
        for port in container.get("ports") or []:
            if port.get("name") == target and (port.get("protocol") or "TCP") == protocol:
                return port.get("containerPort")
    return None


def endpoint_ports(service: dict, pod: dict) -> list[dict]:
    ports = []
    for sp in (service.get("spec") or {}).get("ports") or []:
        number = find_port(pod, sp)
        if number is None:
            continue  # upstream logs and leaves the port out for this pod
        port = {"name": sp.get("name") or "", "port": number, "protocol": sp.get("protocol") or "TCP"}
        if sp.get("appProtocol"):
            port["appProtocol"] = sp["appProtocol"]
        ports.append(port)
    return ports


def address_types(service: dict) -> list[str]:
    return list((service.get("spec") or {}).get("ipFamilies") or ["IPv4"])


def _family(ip: str) -> str:
    return f"IPv{ipaddress.ip_address(ip).version}"


def should_set_hostname(pod: dict, service: dict) -> bool:
    spec = pod.get("spec") or {}
    return (bool(spec.get("hostname")) and spec.get("subdomain") == name_of(service)
            and namespace_of(pod) == namespace_of(service))


def pod_to_endpoint(pod: dict, service: dict, node: dict | None, address_type: str) -> dict | None:
    addresses = [ip for ip in pod_ips(pod) if _family(ip) == address_type]
    if not addresses:
        return None
    serving = is_pod_ready(pod)
    terminating = is_deleting(pod)
    publish = bool((service.get("spec") or {}).get("publishNotReadyAddresses"))
    # ready is never true for a terminating pod unless not-ready addresses are published
    ready = publish or (serving and not terminating)
    endpoint = {"addresses": addresses[:1],
                "conditions": {"ready": ready, "serving": serving, "terminating": terminating}}
    if should_set_hostname(pod, service):
        endpoint["hostname"] = pod["spec"]["hostname"]
    node_name = (pod.get("spec") or {}).get("nodeName")
    if node_name:
        endpoint["nodeName"] = node_name
    zone = labels_of(node or {}).get(ZONE_LABEL)
    if zone:
        endpoint["zone"] = zone
    endpoint["targetRef"] = {"kind": "Pod", "namespace": namespace_of(pod), "name": name_of(pod),
                             "uid": uid_of(pod)}
    return endpoint


def _endpoint_key(endpoint: dict) -> tuple:
    """Identity of an endpoint across updates (upstream hashes addresses, hostname and pod)."""
    ref = endpoint.get("targetRef") or {}
    return (tuple(endpoint.get("addresses") or ()), endpoint.get("hostname") or "",
            ref.get("namespace") or "", ref.get("name") or "")


def _ports_key(ports: list[dict]) -> tuple:
    return tuple(sorted((p.get("name") or "", p.get("port") or 0, p.get("protocol") or "TCP",
                         p.get("appProtocol") or "") for p in ports or []))


def desired_endpoints(service: dict, pods: list[dict], nodes: dict[str, dict]
                      ) -> dict[tuple[str, tuple], tuple[list[dict], dict[tuple, dict]]]:
    """(addressType, port mapping) -> (ports, endpoints by identity), for the selected pods.
    `nodes` maps node name to Node, for zones."""
    desired: dict = {}
    for pod in sorted(pods, key=lambda p: (namespace_of(p), name_of(p))):
        if not selects(service, pod) or not should_pod_be_in_endpoints(pod, True):
            continue
        ports = endpoint_ports(service, pod)
        node = nodes.get((pod.get("spec") or {}).get("nodeName") or "")
        for address_type in address_types(service):
            endpoint = pod_to_endpoint(pod, service, node, address_type)
            if endpoint is None:
                continue
            _, endpoints = desired.setdefault((address_type, _ports_key(ports)), (ports, {}))
            endpoints[_endpoint_key(endpoint)] = endpoint
    return desired


# --- slices --------------------------------------------------------------------------------

def slice_labels(service: dict) -> dict:
    labels = {k: v for k, v in labels_of(service).items() if k not in _RESERVED_LABELS}
    labels[LABEL_SERVICE_NAME] = name_of(service)
    labels[LABEL_MANAGED_BY] = CONTROLLER_NAME
    if (service.get("spec") or {}).get("clusterIP") == "None":
        labels[LABEL_HEADLESS] = ""
    return labels


def slice_prefix(service_name: str) -> str:
    """generateName for a Service's slices: `NAME-`, or NAME when the dash would not fit."""
    return f"{service_name}-" if len(service_name) + 1 <= 253 else service_name


def new_slice(service: dict, address_type: str, ports: list[dict]) -> dict:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"generateName": slice_prefix(name_of(service)),
                     "namespace": namespace_of(service),
                     "labels": slice_labels(service),
                     "ownerReferences": [controller_ref(service, "v1", "Service")]},
        "addressType": address_type,
        "endpoints": [],
        "ports": copy.deepcopy(ports),
    }


def owned_slices(service: dict, slices: list[dict]) -> list[dict]:
    """The slices this controller made for the Service (others, e.g. mirrored ones, are not ours)."""
    return [s for s in slices
            if labels_of(s).get(LABEL_MANAGED_BY) == CONTROLLER_NAME
            and labels_of(s).get(LABEL_SERVICE_NAME) == name_of(service)
            and namespace_of(s) == namespace_of(service)]


@dataclass
class SliceChanges:
    """Writes to make: `create` have no name yet (generateName), `update` are modified copies of
    existing slices (resourceVersion kept for optimistic concurrency), `delete` are existing."""

    create: list[dict] = field(default_factory=list)
    update: list[dict] = field(default_factory=list)
    delete: list[dict] = field(default_factory=list)

    def empty(self) -> bool:
        return not (self.create or self.update or self.delete)


def _is_placeholder(s: dict) -> bool:
    return not s.get("endpoints") and not s.get("ports")


def _by_port_mapping(service, address_type, ports, wanted: dict, existing: list[dict],
                     max_per_slice: int, changes: SliceChanges) -> None:
    """Upstream's reconcileByPortMapping for one (addressType, ports) group."""
    wanted = dict(wanted)
    labels = slice_labels(service)
    to_update: dict[str, dict] = {}
    unchanged: dict[str, dict] = {}
    # 1. keep desired endpoints where they are; drop the others
    for s in existing:
        kept, changed = [], False
        for ep in s.get("endpoints") or []:
            want = wanted.pop(_endpoint_key(ep), None)
            if want is not None:
                kept.append(want)
                changed = changed or want != ep
        dropped = len(kept) != len(s.get("endpoints") or [])
        if (changed or dropped) and not kept:
            changes.delete.append(s)
        elif changed or dropped or labels_of(s) != labels:
            updated = copy.deepcopy(s)
            updated["endpoints"] = kept
            updated.setdefault("metadata", {})["labels"] = dict(labels)
            to_update[name_of(s)] = updated
        else:
            unchanged[name_of(s)] = s
    remaining = list(wanted.values())
    # 2. fill the slices being updated anyway, fullest first
    for s in sorted(to_update.values(), key=lambda s: -len(s["endpoints"])):
        while remaining and len(s["endpoints"]) < max_per_slice:
            s["endpoints"].append(remaining.pop(0))
    # 3. the rest goes to the unchanged slice that fits it best, or to new slices
    while remaining:
        target = None
        if len(remaining) < max_per_slice and unchanged:
            best = max_per_slice
            for s in unchanged.values():
                diff = max_per_slice - (len(remaining) + len(s.get("endpoints") or []))
                if 0 <= diff < best:
                    best, target = diff, s
        if target is None:
            target = new_slice(service, address_type, ports)
        else:
            del unchanged[name_of(target)]
            target = copy.deepcopy(target)
        while remaining and len(target["endpoints"]) < max_per_slice:
            target["endpoints"].append(remaining.pop(0))
        if name_of(target):
            to_update[name_of(target)] = target
        else:
            changes.create.append(target)
    changes.update.extend(to_update.values())


def reconcile(service: dict, pods: list[dict], nodes: dict[str, dict], slices: list[dict],
              trigger_time: str | None = None,
              max_per_slice: int = MAX_ENDPOINTS_PER_SLICE) -> SliceChanges:
    """The writes that bring the Service's slices (`slices`: any slices; only this controller's
    for this Service are considered) to the endpoints its pods call for. `trigger_time` (RFC 3339)
    is the last pod or Service change, annotated on what is written."""
    existing = owned_slices(service, slices)
    changes = SliceChanges()
    if not manages(service):
        return changes
    types = address_types(service)
    desired = desired_endpoints(service, pods, nodes)
    for s in existing:
        if s.get("addressType") not in types:
            changes.delete.append(s)
    for address_type in types:
        own = [s for s in existing if s.get("addressType") == address_type]
        part = SliceChanges()
        groups: dict[tuple, list[dict]] = {}
        for s in own:
            groups.setdefault(_ports_key(s.get("ports")), []).append(s)
        for (kind, key), (ports, endpoints) in desired.items():
            if kind == address_type:
                _by_port_mapping(service, address_type, ports, endpoints, groups.pop(key, []),
                                 max_per_slice, part)
        for stale in groups.values():
            part.delete.extend(stale)
        if len(part.delete) == len(own) and not part.create:
            # a Service without endpoints keeps one empty slice
            if len(part.delete) == 1 and _is_placeholder(part.delete[0]):
                part.delete = []
            else:
                part.create.append(new_slice(service, address_type, []))
        # a slice about to be deleted is reused for one about to be created
        while part.delete and part.create:
            reused, fresh = part.delete.pop(), part.create.pop(0)
            fresh["metadata"] = copy.deepcopy(reused["metadata"])
            fresh["metadata"]["labels"] = slice_labels(service)
            part.update.append(fresh)
        changes.create += part.create
        changes.update += part.update
        changes.delete += part.delete
    if trigger_time:
        for s in changes.create + changes.update:
            s["metadata"].setdefault("annotations", {})[TRIGGER_TIME_ANNOTATION] = trigger_time
    return changes
