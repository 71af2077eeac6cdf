"""LimitRanger: default requests and limits for containers, then min/max/ratio bounds, per LimitRange.

Mutating: a container without a request or limit gets the LimitRange's `defaultRequest` and
`default` (which default, as the API does, from `max` and `min`), and the pod is annotated with
what was set. Validating: each Container (and the Pod as a whole, for `type: Pod`) must respect
`min`, `max` and `maxLimitRequestRatio`; a violation is refused with upstream's message, e.g.
`maximum cpu usage per Container is 1, but limit is 2`. Only pod creation is checked: a pod's
containers cannot change after it is created.
"""
from __future__ import annotations

from cluster.admission import (CREATE, AdmissionContext, AdmissionRequest, Plugin, aggregate,
                               forbidden)
from cluster.admission.podresources import ResourceList, container_resources, pod_total, quantities
from cluster.api.resources import by_kind

LIMIT_RANGES = by_kind("v1", "LimitRange")
ANNOTATION = "kubernetes.io/limit-ranger"


def effective_item(item: dict) -> dict[str, ResourceList]:
    """A LimitRange item's bounds with the API's defaulting applied (max -> default -> defaultRequest, min -> defaultRequest)."""
    parts = {key: quantities(item.get(key)) for key in
             ("min", "max", "default", "defaultRequest", "maxLimitRequestRatio")}
    if item.get("type") == "Container":
        for name, q in parts["max"].items():
            parts["default"].setdefault(name, q)
        for name, q in parts["default"].items():
            parts["defaultRequest"].setdefault(name, q)
        for name, q in parts["min"].items():
            parts["defaultRequest"].setdefault(name, q)
    return parts


def _min(kind, name, enforced, requests, limits) -> str | None:
    if name not in requests:
        return f"minimum {name} usage per {kind} is {enforced}.  No request is specified"
    if requests[name].milli_value() < enforced.milli_value():
        return f"minimum {name} usage per {kind} is {enforced}, but request is {requests[name]}"
    if name in limits and limits[name].milli_value() < enforced.milli_value():
        return f"minimum {name} usage per {kind} is {enforced}, but limit is {limits[name]}"
    return None


def _max(kind, name, enforced, requests, limits) -> str | None:
    if name not in limits:
        return f"maximum {name} usage per {kind} is {enforced}.  No limit is specified"
    if limits[name].milli_value() > enforced.milli_value():
        return f"maximum {name} usage per {kind} is {enforced}, but limit is {limits[name]}"
    if name in requests and requests[name].milli_value() > enforced.milli_value():
        return f"maximum {name} usage per {kind} is {enforced}, but request is {requests[name]}"
    return None


def _ratio(kind, name, enforced, requests, limits) -> str | None:
    request = requests[name].milli_value() if name in requests else 0
    limit = limits[name].milli_value() if name in limits else 0
    if request == 0:
        return (f"{name} max limit to request ratio per {kind} is {enforced},"
                " but no request is specified or request is 0")
    if limit == 0:
        return (f"{name} max limit to request ratio per {kind} is {enforced},"
                " but no limit is specified or limit is 0")
    ratio = limit / request
    if ratio * 1000 > enforced.milli_value():
        return f"{name} max limit to request ratio per {kind} is {enforced}, but provided ratio is {ratio:f}"
    return None


def _bounds(kind: str, parts: dict[str, ResourceList], requests: ResourceList,
            limits: ResourceList) -> list[str]:
    found = []
    for key, check in (("min", _min), ("max", _max), ("maxLimitRequestRatio", _ratio)):
        for name in sorted(parts[key]):
            message = check(kind, name, parts[key][name], requests, limits)
            if message:
                found.append(message)
    return found


def violations(limit_range: dict, pod: dict) -> list[str]:
    """Upstream's PodValidateLimitFunc: every bound of one LimitRange the pod breaks."""
    spec = pod.get("spec") or {}
    found = []
    for item in (limit_range.get("spec") or {}).get("limits") or []:
        parts = effective_item(item)
        if item.get("type") == "Container":
            for container in list(spec.get("containers") or []) + list(spec.get("initContainers") or []):
                found += _bounds("Container", parts, container_resources(container, "requests"),
                                 container_resources(container, "limits"))
        elif item.get("type") == "Pod":
            found += _bounds("Pod", parts, pod_total(spec, "requests"), pod_total(spec, "limits"))
    return found


def _set_defaults(container: dict, defaults: dict[str, ResourceList], kind: str) -> list[str]:
    """Fill missing requests and limits; returns the annotation notes, requests first as upstream."""
    notes = {}
    for bucket, key, word in (("limits", "default", "limit"), ("requests", "defaultRequest", "request")):
        present = (container.get("resources") or {}).get(bucket) or {}
        missing = sorted(n for n in defaults[key] if n not in present)
        if missing:
            target = container.setdefault("resources", {}).setdefault(bucket, {})
            for name in missing:
                target[name] = str(defaults[key][name])
            notes[word] = ", ".join(missing) + f" {word} for {kind} {container.get('name', '')}"
    return [notes[word] for word in ("request", "limit") if word in notes]


def apply_defaults(limit_range: dict, pod: dict) -> None:
    """Upstream's PodMutateLimitFunc: default requests/limits from the LimitRange's Container items."""
    defaults: dict[str, ResourceList] = {"default": {}, "defaultRequest": {}}
    for item in (limit_range.get("spec") or {}).get("limits") or []:
        if item.get("type") == "Container":
            parts = effective_item(item)
            defaults["default"].update(parts["default"])
            defaults["defaultRequest"].update(parts["defaultRequest"])
    if not defaults["default"] and not defaults["defaultRequest"]:
        return
    spec = pod.get("spec") or {}
    notes = []
    for container in spec.get("containers") or []:
        notes += _set_defaults(container, defaults, "container")
    for container in spec.get("initContainers") or []:
        notes += _set_defaults(container, defaults, "init container")
    if notes:
        annotations = pod.setdefault("metadata", {}).setdefault("annotations", {})
        annotations[ANNOTATION] = "LimitRanger plugin set: " + "; ".join(notes)


class LimitRanger(Plugin):
    def _applies(self, req: AdmissionRequest) -> bool:
        return (req.operation == CREATE and req.is_core("pods") and not req.subresource
                and req.obj is not None)

    async def admit(self, req: AdmissionRequest, ctx: AdmissionContext) -> None:
        if self._applies(req):
            for limit_range in await ctx.list(LIMIT_RANGES, req.namespace):
                apply_defaults(limit_range, req.obj)

    async def validate(self, req: AdmissionRequest, ctx: AdmissionContext) -> None:
        if not self._applies(req):
            return
        for limit_range in await ctx.list(LIMIT_RANGES, req.namespace):
            found = violations(limit_range, req.obj)
            if found:
                raise forbidden(req, aggregate(found))
