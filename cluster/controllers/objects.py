"""What every controller asks of an API object: timestamps, owner references, Pod readiness.

Predicates follow upstream's `podutil` and `controller_utils` (IsPodReady, IsPodActive,
GetControllerOf), so all controllers agree on what "ready" and "active" mean.
"""
from __future__ import annotations

from datetime import datetime, timezone

from cluster.api.times import format_micro_time, format_time, parse_time  # noqa: F401 (re-exported)


def meta(obj: dict) -> dict:
    return obj.get("metadata") or {}


def name_of(obj: dict) -> str:
    return meta(obj).get("name") or ""


def namespace_of(obj: dict) -> str:
    return meta(obj).get("namespace") or ""


def uid_of(obj: dict) -> str:
    return meta(obj).get("uid") or ""


def labels_of(obj: dict) -> dict:
    return meta(obj).get("labels") or {}


def is_deleting(obj: dict) -> bool:
    return bool(meta(obj).get("deletionTimestamp"))


def controller_ref(owner: dict, api_version: str, kind: str) -> dict:
    """The ownerReference a controller puts on what it creates (controller and blockOwnerDeletion)."""
    return {"apiVersion": api_version, "kind": kind, "name": name_of(owner), "uid": uid_of(owner),
            "controller": True, "blockOwnerDeletion": True}


def controller_of(obj: dict) -> dict | None:
    """The ownerReference with `controller: true`, as metav1.GetControllerOf."""
    for ref in meta(obj).get("ownerReferences") or []:
        if ref.get("controller"):
            return ref
    return None


def is_controlled_by(obj: dict, owner: dict) -> bool:
    ref = controller_of(obj)
    return ref is not None and ref.get("uid") == uid_of(owner)


def creation_key(obj: dict) -> tuple:
    """Oldest first (no timestamp counts as oldest), then by name: ByCreationTimestamp."""
    t = parse_time(meta(obj).get("creationTimestamp"))
    return (t or datetime.min.replace(tzinfo=timezone.utc), name_of(obj))


# --- pods -------------------------------------------------------------------------------------

def pod_condition(pod: dict, type_: str) -> dict | None:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return c
    return None


def is_pod_ready(pod: dict) -> bool:
    c = pod_condition(pod, "Ready")
    return c is not None and c.get("status") == "True"


def pod_ready_time(pod: dict) -> datetime | None:
    """When the pod last became Ready, or None when it is not ready."""
    c = pod_condition(pod, "Ready")
    if c is None or c.get("status") != "True":
        return None
    return parse_time(c.get("lastTransitionTime"))


def pod_phase(pod: dict) -> str:
    return (pod.get("status") or {}).get("phase") or "Pending"


def is_pod_terminal(pod: dict) -> bool:
    return pod_phase(pod) in ("Succeeded", "Failed")


def is_pod_active(pod: dict) -> bool:
    """Not finished and not being deleted: what a ReplicaSet counts (controller.IsPodActive)."""
    return not is_pod_terminal(pod) and not is_deleting(pod)


def is_pod_available(pod: dict, min_ready_seconds: int, now: datetime) -> bool:
    """Ready for at least minReadySeconds (podutil.IsPodAvailable)."""
    if not is_pod_ready(pod):
        return False
    if min_ready_seconds <= 0:
        return True
    since = pod_ready_time(pod)
    return since is not None and (now - since).total_seconds() >= min_ready_seconds


def pod_ips(pod: dict) -> list[str]:
    status = pod.get("status") or {}
    ips = [p.get("ip") for p in status.get("podIPs") or [] if p.get("ip")]
    if not ips and status.get("podIP"):
        ips = [status["podIP"]]
    return ips


def max_restart_count(pod: dict) -> int:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return max((s.get("restartCount") or 0 for s in statuses), default=0)
