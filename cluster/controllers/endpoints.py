"""The legacy Endpoints object of a Service, which `kubectl get endpoints` shows.

Upstream's endpoints controller (`pkg/controller/endpoint`): one address per selected pod with an
IP (`addresses` when ready, `notReadyAddresses` otherwise; all ready with
`publishNotReadyAddresses`, and then terminating pods too), ports resolved per pod, addresses
with the same ports packed into one subset (RepackSubsets); over 1000 addresses the object is
truncated, keeping ready ones first, and annotated `endpoints.kubernetes.io/over-capacity:
truncated`. Labels are the Service's plus `endpointslice.kubernetes.io/skip-mirror`, so the
mirroring controller leaves it alone.
"""
from __future__ import annotations

import ipaddress

from cluster.controllers.endpointslices import (LABEL_HEADLESS, TRIGGER_TIME_ANNOTATION,
                                                endpoint_ports, manages, selects,
                                                should_pod_be_in_endpoints,
                                                should_set_hostname)
from cluster.controllers.objects import (is_pod_ready, labels_of, meta, name_of, namespace_of,
                                         pod_ips, uid_of)

MAX_CAPACITY = 1000
OVER_CAPACITY_ANNOTATION = "endpoints.kubernetes.io/over-capacity"
LABEL_SKIP_MIRROR = "endpointslice.kubernetes.io/skip-mirror"


def _address(pod: dict, service: dict) -> dict:
    address = {"ip": pod_ips(pod)[0]}
    if should_set_hostname(pod, service):
        address["hostname"] = pod["spec"]["hostname"]
    node_name = (pod.get("spec") or {}).get("nodeName")
    if node_name:
        address["nodeName"] = node_name
    address["targetRef"] = {"kind": "Pod", "namespace": namespace_of(pod), "name": name_of(pod),
                            "uid": uid_of(pod)}
    return address


def _address_key(address: dict) -> tuple:
    ip = ipaddress.ip_address(address["ip"])
    return (ip.version, int(ip), (address.get("targetRef") or {}).get("uid") or "")


def _ports_key(ports: list[dict]) -> tuple:
    return tuple(sorted((p.get("name") or "", p["port"], p.get("protocol") or "TCP")
                        for p in ports))


def subsets(service: dict, pods: list[dict]) -> list[dict]:
    """The packed subsets: addresses grouped by identical ports, sorted as RepackSubsets does."""
    publish = bool((service.get("spec") or {}).get("publishNotReadyAddresses"))
    groups: dict[tuple, dict] = {}
    for pod in pods:
        if not selects(service, pod) or not should_pod_be_in_endpoints(pod, publish):
            continue
        ports = endpoint_ports(service, pod)
        headless_without_ports = (not (service.get("spec") or {}).get("ports")
                                  and (service.get("spec") or {}).get("clusterIP") == "None")
        if not ports and not headless_without_ports:
            continue
        group = groups.setdefault(_ports_key(ports), {"ports": ports, "ready": [], "not": []})
        (group["ready"] if publish or is_pod_ready(pod) else group["not"]).append(_address(pod, service))
    packed = []
    for key in sorted(groups):
        group = groups[key]
        subset = {}
        if group["ready"]:
            subset["addresses"] = sorted(group["ready"], key=_address_key)
        if group["not"]:
            subset["notReadyAddresses"] = sorted(group["not"], key=_address_key)
        if group["ports"]:
            subset["ports"] = sorted(group["ports"], key=lambda p: (p["name"], p["port"]))
        packed.append(subset)
    return packed


def truncate(subsets_: list[dict], capacity: int = MAX_CAPACITY) -> bool:
    """Cut the subsets to `capacity` addresses in place, ready ones kept first and each subset
    keeping its proportion (upstream's truncateEndpoints); True when something was cut."""
    ready = sum(len(s.get("addresses") or []) for s in subsets_)
    not_ready = sum(len(s.get("notReadyAddresses") or []) for s in subsets_)
    if ready + not_ready <= capacity:
        return False
    truncate_ready = ready > capacity
    limit = capacity if truncate_ready else capacity - ready
    total = ready if truncate_ready else not_ready
    room = limit
    for s in subsets_:
        field = "addresses" if truncate_ready else "notReadyAddresses"
        have = s.get(field) or []
        share = min(-(-len(have) * limit // total), room)
        kept = have[:share]
        if truncate_ready:
            s.pop("notReadyAddresses", None)
        room -= len(kept)
        if kept:
            s[field] = kept
        else:
            s.pop(field, None)
    return True


def desired(service: dict, pods: list[dict], existing: dict | None = None,
            trigger_time: str | None = None) -> dict | None:
    """The Endpoints object the Service should have, or None when the controller does not manage
    it (no selector, ExternalName). `existing` lends its metadata (resourceVersion, annotations)."""
    if not manages(service):
        return None
    packed = subsets(service, pods)
    labels = {k: v for k, v in labels_of(service).items() if k != LABEL_HEADLESS}
    labels[LABEL_SKIP_MIRROR] = "true"
    if (service.get("spec") or {}).get("clusterIP") == "None":
        labels[LABEL_HEADLESS] = ""
    metadata = {k: v for k, v in meta(existing or {}).items()
                if k not in ("labels", "annotations", "managedFields")}
    metadata.update({"name": name_of(service), "namespace": namespace_of(service), "labels": labels})
    annotations = dict(meta(existing or {}).get("annotations") or {})
    annotations.pop(OVER_CAPACITY_ANNOTATION, None)
    if truncate(packed):
        annotations[OVER_CAPACITY_ANNOTATION] = "truncated"
    if trigger_time:
        annotations[TRIGGER_TIME_ANNOTATION] = trigger_time
    if annotations:
        metadata["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Endpoints", "metadata": metadata, "subsets": packed}


def needs_update(existing: dict | None, wanted: dict) -> bool:
    """Whether writing `wanted` changes anything a reader sees (the trigger time alone does not)."""
    if existing is None:
        return True
    def shown(obj):
        annotations = dict(meta(obj).get("annotations") or {})
        annotations.pop(TRIGGER_TIME_ANNOTATION, None)
        return (obj.get("subsets") or [], meta(obj).get("labels") or {}, annotations)
    return shown(existing) != shown(wanted)
