"""Server-side printing: the meta.k8s.io/v1 Table that `kubectl get` renders.

Columns and cell formats are those of upstream's `pkg/printers/internalversion/printers.go`
(NAME, READY, STATUS, RESTARTS, AGE for pods; priority-1 columns appear with `-o wide`), and AGE
reads as kubectl's `HumanDuration` ("45s", "5m3s", "3h12m", "9d").
"""
from __future__ import annotations

from datetime import datetime, timezone

from cluster.api.resources import Resource
from cluster.api.selectors import selector_string
from cluster.api.times import parse_time

NONE = "<none>"


def human_duration(seconds: float) -> str:
    """kubectl's duration.HumanDuration: two significant units at most, coarser as time passes."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        rest = s % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d{rest}h" if rest else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        rest = (hours // 24) % 365
        return f"{hours // 24 // 365}y{rest}d" if rest else f"{hours // 24 // 365}y"
    return f"{hours // 24 // 365}y"


def age(timestamp: str | None, now: datetime) -> str:
    t = parse_time(timestamp)
    if t is None:
        return "<unknown>"
    return human_duration((now - t).total_seconds())


def _col(name: str, type_: str = "string", priority: int = 0, fmt: str = "",
         description: str = "") -> dict:
    return {"name": name, "type": type_, "format": fmt, "description": description,
            "priority": priority}


NAME = _col("Name", fmt="name", description="Name must be unique within a namespace.")
AGE = _col("Age", description="CreationTimestamp is a timestamp representing the server time when"
           " this object was created.")


def _meta(obj: dict) -> dict:
    return obj.get("metadata") or {}


def _join_or_none(values) -> str:
    values = [str(v) for v in values if v not in (None, "")]
    return ",".join(values) if values else NONE


# --- pods -----------------------------------------------------------------------------------

def _exit_reason(terminated: dict, prefix: str = "") -> str:
    if terminated.get("reason"):
        return prefix + terminated["reason"]
    if terminated.get("signal"):
        return f"{prefix}Signal:{terminated['signal']}"
    return f"{prefix}ExitCode:{terminated.get('exitCode', 0)}"


def _restarts(count: int, last_finished: datetime | None, now: datetime) -> str:
    if count and last_finished is not None:
        return f"{count} ({human_duration((now - last_finished).total_seconds())} ago)"
    return str(count)


def _pod_row(pod: dict, now: datetime) -> list:
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    init_specs = spec.get("initContainers") or []
    sidecars = {c.get("name") for c in init_specs if c.get("restartPolicy") == "Always"}
    total = len(spec.get("containers") or []) + len(sidecars)
    ready = restarts = 0
    last_finished = None
    reason = status.get("reason") or status.get("phase") or ""

    def note_restart(cs):
        nonlocal restarts, last_finished
        restarts += cs.get("restartCount") or 0
        finished = parse_time(((cs.get("lastState") or {}).get("terminated") or {}).get("finishedAt"))
        if finished and (last_finished is None or finished > last_finished):
            last_finished = finished

    initializing = False
    for i, cs in enumerate(status.get("initContainerStatuses") or []):
        note_restart(cs)
        state = cs.get("state") or {}
        terminated, waiting = state.get("terminated"), state.get("waiting")
        if cs.get("name") in sidecars and cs.get("started"):
            if cs.get("ready"):
                ready += 1
            continue
        if terminated is not None and terminated.get("exitCode", 0) == 0:
            continue
        if terminated is not None:
            reason = _exit_reason(terminated, "Init:")
        elif waiting and waiting.get("reason") and waiting["reason"] != "PodInitializing":
            reason = "Init:" + waiting["reason"]
        else:
            reason = f"Init:{i}/{len(init_specs)}"
        initializing = True
        break
    if not initializing:
        has_running = False
        for cs in reversed(status.get("containerStatuses") or []):
            note_restart(cs)
            state = cs.get("state") or {}
            if (state.get("waiting") or {}).get("reason"):
                reason = state["waiting"]["reason"]
            elif state.get("terminated") is not None:
                reason = _exit_reason(state["terminated"])
            elif state.get("running") is not None and cs.get("ready"):
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            pod_ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                            for c in status.get("conditions") or [])
            reason = "Running" if pod_ready else "NotReady"
    if _meta(pod).get("deletionTimestamp"):
        reason = "Unknown" if status.get("reason") == "NodeLost" else "Terminating"
    gates = spec.get("readinessGates") or []
    if gates:
        true_conditions = {c.get("type") for c in status.get("conditions") or []
                           if c.get("status") == "True"}
        gates_cell = f"{sum(g.get('conditionType') in true_conditions for g in gates)}/{len(gates)}"
    else:
        gates_cell = NONE
    return [_meta(pod).get("name", ""), f"{ready}/{total}", reason,
            _restarts(restarts, last_finished, now), age(_meta(pod).get("creationTimestamp"), now),
            status.get("podIP") or NONE, spec.get("nodeName") or NONE,
            status.get("nominatedNodeName") or NONE, gates_cell]


POD_COLUMNS = [NAME, _col("Ready", description="The aggregate readiness state of this pod for"
                          " accepting traffic."),
               _col("Status", description="The aggregate status of the containers in this pod."),
               _col("Restarts", description="The number of times the containers in this pod have"
                    " been restarted and when the last container in this pod has restarted."),
               AGE, _col("IP", priority=1, description="IP address allocated to the pod."),
               _col("Node", priority=1, description="Name of the node this pod is assigned to."),
               _col("Nominated Node", priority=1, description="Name of the node where the pod is"
                    " nominated to run."),
               _col("Readiness Gates", priority=1, description="Readiness gates of the pod.")]


# --- services and endpoints -----------------------------------------------------------------

def _load_balancer_addresses(status: dict) -> list[str]:
    return [i.get("ip") or i.get("hostname") for i in
            ((status or {}).get("loadBalancer") or {}).get("ingress") or []
            if i.get("ip") or i.get("hostname")]


def _service_external_ip(svc: dict) -> str:
    spec = svc.get("spec") or {}
    kind = spec.get("type") or "ClusterIP"
    external = list(spec.get("externalIPs") or [])
    if kind == "ExternalName":
        return spec.get("externalName") or NONE
    if kind == "LoadBalancer":
        addresses = _load_balancer_addresses(svc.get("status")) + external
        return ",".join(addresses) if addresses else "<pending>"
    return ",".join(external) if external else NONE


def _service_ports(ports) -> str:
    cells = []
    for p in ports or []:
        port = f"{p.get('port')}:{p['nodePort']}" if p.get("nodePort") else str(p.get("port"))
        cells.append(f"{port}/{p.get('protocol') or 'TCP'}")
    return ",".join(cells) if cells else NONE


def _service_row(svc: dict, now: datetime) -> list:
    spec = svc.get("spec") or {}
    selector = spec.get("selector")
    selector_cell = ",".join(f"{k}={v}" for k, v in sorted(selector.items())) if selector else NONE
    return [_meta(svc).get("name", ""), spec.get("type") or "ClusterIP",
            spec.get("clusterIP") or NONE, _service_external_ip(svc),
            _service_ports(spec.get("ports")), age(_meta(svc).get("creationTimestamp"), now),
            selector_cell]


SERVICE_COLUMNS = [NAME, _col("Type"), _col("Cluster-IP"), _col("External-IP"), _col("Port(s)"),
                   AGE, _col("Selector", priority=1)]


def _first_three(items: list[str]) -> str:
    if not items:
        return NONE
    shown = ",".join(items[:3])
    return shown + (f" + {len(items) - 3} more..." if len(items) > 3 else "")


def _endpoints_row(ep: dict, now: datetime) -> list:
    items = []
    for subset in ep.get("subsets") or []:
        ports = subset.get("ports") or []
        for address in subset.get("addresses") or []:
            if ports:
                items += [f"{address.get('ip')}:{p.get('port')}" for p in ports]
            else:
                items.append(str(address.get("ip")))
    return [_meta(ep).get("name", ""), _first_three(items),
            age(_meta(ep).get("creationTimestamp"), now)]


def _endpoint_slice_row(es: dict, now: datetime) -> list:
    ports = [str(p["port"]) for p in es.get("ports") or [] if p.get("port") is not None]
    addresses = [a for e in es.get("endpoints") or [] for a in e.get("addresses") or []]
    return [_meta(es).get("name", ""), es.get("addressType", ""),
            ",".join(ports) if ports else "<unset>",
            _first_three(addresses) if addresses else "<unset>",
            age(_meta(es).get("creationTimestamp"), now)]


# --- workloads ------------------------------------------------------------------------------

def _containers_and_images(obj: dict) -> tuple[str, str]:
    containers = ((((obj.get("spec") or {}).get("template") or {}).get("spec") or {})
                  .get("containers") or [])
    return (",".join(c.get("name", "") for c in containers),
            ",".join(c.get("image", "") for c in containers))


def _deployment_row(d: dict, now: datetime) -> list:
    spec, status = d.get("spec") or {}, d.get("status") or {}
    containers, images = _containers_and_images(d)
    return [_meta(d).get("name", ""), f"{status.get('readyReplicas') or 0}/{spec.get('replicas', 1)}",
            status.get("updatedReplicas") or 0, status.get("availableReplicas") or 0,
            age(_meta(d).get("creationTimestamp"), now), containers, images,
            selector_string(spec.get("selector"))]


def _replica_set_row(rs: dict, now: datetime) -> list:
    spec, status = rs.get("spec") or {}, rs.get("status") or {}
    containers, images = _containers_and_images(rs)
    return [_meta(rs).get("name", ""), spec.get("replicas", 1), status.get("replicas") or 0,
            status.get("readyReplicas") or 0, age(_meta(rs).get("creationTimestamp"), now),
            containers, images, selector_string(spec.get("selector"))]


WORKLOAD_WIDE = [_col("Containers", priority=1), _col("Images", priority=1),
                 _col("Selector", priority=1)]


# --- cluster objects ------------------------------------------------------------------------

def _node_row(node: dict, now: datetime) -> list:
    spec, status = node.get("spec") or {}, node.get("status") or {}
    ready = next((c.get("status") for c in status.get("conditions") or []
                  if c.get("type") == "Ready"), None)
    state = {"True": "Ready", "False": "NotReady"}.get(ready, "Unknown")
    if spec.get("unschedulable"):
        state += ",SchedulingDisabled"
    roles = sorted(k.split("/", 1)[1] for k in (_meta(node).get("labels") or {})
                   if k.startswith("node-role.kubernetes.io/") and k.split("/", 1)[1])
    info = status.get("nodeInfo") or {}

    def address(kind):
        return _join_or_none(a.get("address") for a in status.get("addresses") or []
                             if a.get("type") == kind)

    return [_meta(node).get("name", ""), state, ",".join(roles) or NONE,
            age(_meta(node).get("creationTimestamp"), now), info.get("kubeletVersion", ""),
            address("InternalIP"), address("ExternalIP"), info.get("osImage") or "<unknown>",
            info.get("kernelVersion") or "<unknown>", info.get("containerRuntimeVersion") or "<unknown>"]


def _namespace_row(ns: dict, now: datetime) -> list:
    return [_meta(ns).get("name", ""), (ns.get("status") or {}).get("phase", ""),
            age(_meta(ns).get("creationTimestamp"), now)]


def _config_map_row(cm: dict, now: datetime) -> list:
    return [_meta(cm).get("name", ""), len(cm.get("data") or {}) + len(cm.get("binaryData") or {}),
            age(_meta(cm).get("creationTimestamp"), now)]


def _secret_row(s: dict, now: datetime) -> list:
    return [_meta(s).get("name", ""), s.get("type", ""), len(s.get("data") or {}),
            age(_meta(s).get("creationTimestamp"), now)]


def _created_at_row(obj: dict, now: datetime) -> list:
    return [_meta(obj).get("name", ""), _meta(obj).get("creationTimestamp", "")]


def _name_age_row(obj: dict, now: datetime) -> list:
    return [_meta(obj).get("name", ""), age(_meta(obj).get("creationTimestamp"), now)]


def _quota_row(q: dict, now: datetime) -> list:
    hard = (q.get("status") or {}).get("hard") or (q.get("spec") or {}).get("hard") or {}
    used = (q.get("status") or {}).get("used") or {}
    requests, limits = [], []
    for name in sorted(hard):
        cell = f"{name}: {used.get(name, '0')}/{hard[name]}"
        (limits if name.startswith("limits.") else requests).append(cell)
    return [_meta(q).get("name", ""), age(_meta(q).get("creationTimestamp"), now),
            ", ".join(requests), ", ".join(limits)]


def _ingress_row(ing: dict, now: datetime) -> list:
    spec = ing.get("spec") or {}
    hosts = [r.get("host") or "*" for r in spec.get("rules") or []]
    ports = "80, 443" if spec.get("tls") else "80"
    return [_meta(ing).get("name", ""), spec.get("ingressClassName") or NONE,
            ",".join(hosts) if hosts else "*",
            ",".join(_load_balancer_addresses(ing.get("status"))),
            ports, age(_meta(ing).get("creationTimestamp"), now)]


def _ingress_class_row(ic: dict, now: datetime) -> list:
    spec = ic.get("spec") or {}
    params = spec.get("parameters")
    params_cell = NONE
    if params:
        group = params.get("apiGroup")
        kind = f"{params.get('kind')}.{group}" if group else params.get("kind")
        params_cell = f"{kind}/{params.get('name')}"
    return [_meta(ic).get("name", ""), spec.get("controller", ""), params_cell,
            age(_meta(ic).get("creationTimestamp"), now)]


def _network_policy_row(np_: dict, now: datetime) -> list:
    selector = selector_string((np_.get("spec") or {}).get("podSelector") or {})
    return [_meta(np_).get("name", ""), selector, age(_meta(np_).get("creationTimestamp"), now)]


def _binding_row(b: dict, now: datetime) -> list:
    ref = b.get("roleRef") or {}
    subjects = b.get("subjects") or []

    def names(kind):
        return ", ".join(
            (f"{s.get('namespace', '')}/{s.get('name')}" if kind == "ServiceAccount" else s.get("name"))
            for s in subjects if s.get("kind") == kind)

    return [_meta(b).get("name", ""), f"{ref.get('kind')}/{ref.get('name')}",
            age(_meta(b).get("creationTimestamp"), now), names("User"), names("Group"),
            names("ServiceAccount")]


def _lease_row(lease: dict, now: datetime) -> list:
    return [_meta(lease).get("name", ""), (lease.get("spec") or {}).get("holderIdentity") or NONE,
            age(_meta(lease).get("creationTimestamp"), now)]


def _event_row(ev: dict, now: datetime) -> list:
    involved = ev.get("involvedObject") or {}
    first = ev.get("firstTimestamp") or ev.get("eventTime") or _meta(ev).get("creationTimestamp")
    last = ev.get("lastTimestamp") or first
    source = (ev.get("source") or {}).get("component") or ev.get("reportingComponent") or ""
    host = (ev.get("source") or {}).get("host")
    return [age(last, now), ev.get("type", ""), ev.get("reason", ""),
            f"{(involved.get('kind') or '').lower()}/{involved.get('name', '')}",
            involved.get("fieldPath", ""), f"{source}, {host}" if host else source,
            (ev.get("message") or "").strip(), age(first, now), ev.get("count") or 1,
            _meta(ev).get("name", "")]


# column definitions and row function per kind
PRINTERS = {
    "Pod": (POD_COLUMNS, _pod_row),
    "Service": (SERVICE_COLUMNS, _service_row),
    "Endpoints": ([NAME, _col("Endpoints"), AGE], _endpoints_row),
    "EndpointSlice": ([NAME, _col("AddressType"), _col("Ports"), _col("Endpoints"), AGE],
                      _endpoint_slice_row),
    "Deployment": ([NAME, _col("Ready"), _col("Up-to-date", "integer"),
                    _col("Available", "integer"), AGE] + WORKLOAD_WIDE, _deployment_row),
    "ReplicaSet": ([NAME, _col("Desired", "integer"), _col("Current", "integer"),
                    _col("Ready", "integer"), AGE] + WORKLOAD_WIDE, _replica_set_row),
    "Node": ([NAME, _col("Status"), _col("Roles"), AGE, _col("Version"),
              _col("Internal-IP", priority=1), _col("External-IP", priority=1),
              _col("OS-Image", priority=1), _col("Kernel-Version", priority=1),
              _col("Container-Runtime", priority=1)], _node_row),
    "Namespace": ([NAME, _col("Status"), AGE], _namespace_row),
    "ConfigMap": ([NAME, _col("Data", "integer"), AGE], _config_map_row),
    "Secret": ([NAME, _col("Type"), _col("Data", "integer"), AGE], _secret_row),
    "LimitRange": ([NAME, _col("Created At", "date")], _created_at_row),
    "ResourceQuota": ([NAME, AGE, _col("Request"), _col("Limit")], _quota_row),
    "Ingress": ([NAME, _col("Class"), _col("Hosts"), _col("Address"), _col("Ports"), AGE],
                _ingress_row),
    "IngressClass": ([NAME, _col("Controller"), _col("Parameters"), AGE], _ingress_class_row),
    "NetworkPolicy": ([NAME, _col("Pod-Selector"), AGE], _network_policy_row),
    "Role": ([NAME, _col("Created At", "date")], _created_at_row),
    "ClusterRole": ([NAME, _col("Created At", "date")], _created_at_row),
    "RoleBinding": ([NAME, _col("Role"), AGE, _col("Users", priority=1),
                     _col("Groups", priority=1), _col("ServiceAccounts", priority=1)], _binding_row),
    "ClusterRoleBinding": ([NAME, _col("Role"), AGE, _col("Users", priority=1),
                            _col("Groups", priority=1), _col("ServiceAccounts", priority=1)],
                           _binding_row),
    "Lease": ([NAME, _col("Holder"), AGE], _lease_row),
    "Event": ([_col("Last Seen"), _col("Type"), _col("Reason"), _col("Object"),
               _col("Subobject", priority=1), _col("Source", priority=1), _col("Message"),
               _col("First Seen", priority=1), _col("Count", "integer", priority=1),
               _col("Name", priority=1)], _event_row),
}
DEFAULT_PRINTER = ([NAME, AGE], _name_age_row)


def _row_object(obj: dict, include_object: str):
    if include_object == "None":
        return None
    if include_object == "Metadata":
        return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                "metadata": _meta(obj)}
    return obj


def table(resource: Resource, objects: list[dict], *, include_object: str = "Object",
          list_rv: str = "", now: datetime | None = None) -> dict:
    """A meta.k8s.io/v1 Table of `objects`; includeObject is None, Metadata or Object."""
    columns, row_of = PRINTERS.get(resource.kind, DEFAULT_PRINTER)
    now = now or datetime.now(timezone.utc)
    rows = []
    for obj in objects:
        row = {"cells": row_of(obj, now)}
        included = _row_object(obj, include_object)
        if included is not None:
            row["object"] = included
        rows.append(row)
    result = {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {},
              "columnDefinitions": columns, "rows": rows}
    if list_rv:
        result["metadata"]["resourceVersion"] = list_rv
    return result
