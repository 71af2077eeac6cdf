"""What the server decides about an object, kind by kind, as upstream's registry strategies do:
the status it starts with, which part of an object each endpoint may change (spec through the
main resource, status through `/status`), when `metadata.generation` moves, and how a pod's
deletion is made graceful."""

import copy
import datetime
import secrets
import uuid

# Upstream's name generator alphabet: no vowels (no words), no look-alikes (0/o, 1/l).
_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"

# metadata fields a client cannot set: the server owns them.
_SYSTEM_METADATA = ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds",
                    "generation", "selfLink", "managedFields")


def now():
    return datetime.datetime.now(datetime.timezone.utc)


def timestamp(when=None):
    """RFC 3339 at second precision, as metav1.Time serializes."""
    return (when or now()).strftime("%Y-%m-%dT%H:%M:%SZ")


def generate_name(prefix):
    return prefix + "".join(secrets.choice(_GENERATE_ALPHABET) for _ in range(5))


def has_status(resource):
    return "status" in resource.subresources


def _tracks_generation(obj):
    return "spec" in obj


def prepare_for_create(resource, obj):
    """Server-set metadata and the status an object starts with (clients cannot preset it)."""
    meta = obj.setdefault("metadata", {})
    for field in _SYSTEM_METADATA:
        meta.pop(field, None)
    meta.pop("resourceVersion", None)
    meta["uid"] = str(uuid.uuid4())
    meta["creationTimestamp"] = timestamp()
    if _tracks_generation(obj):
        meta["generation"] = 1
    kind = resource.kind
    if kind == "Pod":
        obj["status"] = {"phase": "Pending", "qosClass": pod_qos_class(obj.get("spec") or {})}
    elif kind == "Namespace":
        # The namespace controller empties the namespace, then removes this finalizer.
        obj.setdefault("spec", {})["finalizers"] = ["kubernetes"]
        obj["status"] = {"phase": "Active"}
    elif kind == "Service":
        obj["status"] = {"loadBalancer": {}}
    elif has_status(resource) and kind != "Node":
        # A node registers itself with its status; every other kind earns its status later.
        obj.pop("status", None)


def prepare_for_update(resource, new, old, subresource):
    """Keep what this endpoint may not change; bump generation when the spec changed."""
    meta, old_meta = new.setdefault("metadata", {}), old["metadata"]
    if subresource == "status":
        # A status write changes status only (metav1.ResetObjectMetaForStatus and the strategies).
        status = new.get("status")
        new.clear()
        new.update(copy.deepcopy(old))
        if status is None:
            new.pop("status", None)
        else:
            new["status"] = status
        new["metadata"]["resourceVersion"] = meta.get("resourceVersion", old_meta.get("resourceVersion"))
        return
    for field in _SYSTEM_METADATA:
        if field in old_meta:
            meta[field] = old_meta[field]
        else:
            meta.pop(field, None)
    if resource.kind == "Namespace":
        # spec.finalizers changes only through /finalize, as upstream.
        if subresource == "finalize":
            status = old.get("status")
            finalizers = (new.get("spec") or {}).get("finalizers") or []
            new.clear()
            new.update(copy.deepcopy(old))
            new["spec"] = dict(new.get("spec") or {}, finalizers=finalizers)
            if status is not None:
                new["status"] = status
            return
        new.setdefault("spec", {})["finalizers"] = (old.get("spec") or {}).get("finalizers", [])
    if has_status(resource):
        if "status" in old:
            new["status"] = copy.deepcopy(old["status"])
        else:
            new.pop("status", None)
    if _tracks_generation(new) and old_meta.get("generation") is not None:
        changed = {k: v for k, v in new.items() if k not in ("metadata", "status")} != \
                  {k: v for k, v in old.items() if k not in ("metadata", "status")}
        meta["generation"] = old_meta["generation"] + (1 if changed else 0)


def pod_qos_class(spec):
    """BestEffort, Burstable or Guaranteed, as upstream's qos.GetPodQOS decides it."""
    containers = list(spec.get("containers") or []) + list(spec.get("initContainers") or [])
    requests_any = limits_any = False
    guaranteed = True
    for c in containers:
        res = c.get("resources") or {}
        requests, limits = res.get("requests") or {}, res.get("limits") or {}
        if any(k in ("cpu", "memory") for k in requests):
            requests_any = True
        if any(k in ("cpu", "memory") for k in limits):
            limits_any = True
        for name in ("cpu", "memory"):
            if name not in limits or (name in requests and str(requests[name]) != str(limits[name])):
                guaranteed = False
    if not requests_any and not limits_any:
        return "BestEffort"
    return "Guaranteed" if guaranteed and limits_any else "Burstable"


def pod_grace_period(pod, requested):
    """Seconds a pod gets to terminate: 0 when nobody runs it (not bound, or already finished)."""
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    grace = requested if requested is not None else spec.get("terminationGracePeriodSeconds", 30)
    if not spec.get("nodeName") or status.get("phase") in ("Failed", "Succeeded"):
        return 0
    return max(int(grace), 0)
