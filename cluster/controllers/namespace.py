"""Emptying a Namespace that is being deleted, and when to finalize it.

Upstream's namespace controller (`pkg/controller/namespace/deletion`): once a Namespace has a
deletionTimestamp (phase Terminating) every namespaced resource in it is deleted by collection,
its status conditions say what is left, and when nothing is left the `kubernetes` finalizer is
removed through the `finalize` subresource, after which the API server deletes the Namespace.
Workload controllers are deleted before what they manage, so nothing is recreated meanwhile.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import datetime

from cluster.api.resources import RESOURCES, Resource
from cluster.controllers.objects import format_time, is_deleting, meta

FINALIZER = "kubernetes"
# deleted first, in this order; every other namespaced resource follows in registry order
_FIRST = ("deployments", "replicasets", "pods")


def deletable_resources() -> list[Resource]:
    """The namespaced resources a namespace deletion empties, in deletion order."""
    served = [r for r in RESOURCES if r.namespaced and "deletecollection" in r.verbs]
    first = [r for plural in _FIRST for r in served if r.plural == plural]
    return first + [r for r in served if r not in first]


def _group_resource(r: Resource) -> str:
    # upstream prints resource.group, so core resources end in a dot ("pods.")
    return f"{r.plural}.{r.group}"


@dataclass
class NamespaceStep:
    """What to do now: resources to delete by collection (in order), the status conditions to
    write, and whether to finalize (all content gone)."""

    delete: list[Resource] = field(default_factory=list)
    conditions: list[dict] = field(default_factory=list)
    finalize: bool = False


def _condition(type_: str, status: str, reason: str, message: str, now: datetime,
               old: dict | None) -> dict:
    t = format_time(now)
    if old and old.get("status") == status and old.get("lastTransitionTime"):
        t = old["lastTransitionTime"]
    return {"type": type_, "status": status, "lastTransitionTime": t, "reason": reason,
            "message": message}


def step(namespace: dict, remaining: dict[str, list[dict]], now: datetime) -> NamespaceStep:
    """The next step for a Namespace, given the objects left in it by resource plural.
    An active Namespace needs nothing."""
    if not is_deleting(namespace):
        return NamespaceStep()
    resources = deletable_resources()
    counts = {r: len(remaining.get(r.plural) or []) for r in resources}
    to_delete = [r for r in resources
                 if any(not is_deleting(o) for o in remaining.get(r.plural) or [])]
    finalizers: dict[str, int] = {}
    for r in resources:
        for obj in remaining.get(r.plural) or []:
            for f in meta(obj).get("finalizers") or []:
                finalizers[f] = finalizers.get(f, 0) + 1
    old = {c.get("type"): c for c in (namespace.get("status") or {}).get("conditions") or []}

    def cond(type_, status, reason, message):
        return _condition(type_, status, reason, message, now, old.get(type_))

    left = sorted(f"{_group_resource(r)} has {n} resource instances"
                  for r, n in counts.items() if n)
    held = sorted(f"{f} in {n} resource instances" for f, n in finalizers.items())
    conditions = [
        cond("NamespaceDeletionDiscoveryFailure", "False", "ResourcesDiscovered",
             "All resources successfully discovered"),
        cond("NamespaceDeletionGroupVersionParsingFailure", "False", "ParsedGroupVersions",
             "All legacy kube types successfully parsed"),
        cond("NamespaceDeletionContentFailure", "False", "ContentDeleted",
             "All content successfully deleted, may be waiting on finalization"),
        cond("NamespaceContentRemaining", "True", "SomeResourcesRemain",
             "Some resources are remaining: " + ", ".join(left)) if left else
        cond("NamespaceContentRemaining", "False", "ContentRemoved",
             "All content successfully removed"),
        cond("NamespaceFinalizersRemaining", "True", "SomeFinalizersRemain",
             "Some content in the namespace has finalizers remaining: " + ", ".join(held))
        if held else
        cond("NamespaceFinalizersRemaining", "False", "ContentHasNoFinalizers",
             "All content-preserving finalizers finished"),
    ]
    finalize = not left and FINALIZER in ((namespace.get("spec") or {}).get("finalizers") or [])
    return NamespaceStep(to_delete, conditions, finalize)


def finalized(namespace: dict) -> dict:
    """The Namespace to PUT to its `finalize` subresource: the `kubernetes` finalizer removed."""
    out = copy.deepcopy(namespace)
    spec = out.setdefault("spec", {})
    spec["finalizers"] = [f for f in spec.get("finalizers") or [] if f != FINALIZER]
    return out
