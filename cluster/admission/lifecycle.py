"""NamespaceLifecycle: no writes into namespaces that do not exist or are being deleted.

As upstream: objects cannot be created in a Terminating namespace (updates and deletes still
work, so finalizers can finish), writes into a missing namespace answer `namespaces "x" not
found`, and the `default`, `kube-system` and `kube-public` namespaces cannot be deleted.
"""
from __future__ import annotations

from cluster.admission import CREATE, DELETE, AdmissionContext, AdmissionRequest, Plugin, forbidden
from cluster.api import errors
from cluster.api.resources import by_kind

NAMESPACES = by_kind("v1", "Namespace")
IMMORTAL = frozenset({"default", "kube-system", "kube-public"})


def terminating(namespace: dict) -> bool:
    return ((namespace.get("status") or {}).get("phase") == "Terminating"
            or bool((namespace.get("metadata") or {}).get("deletionTimestamp")))


class NamespaceLifecycle(Plugin):
    async def validate(self, req: AdmissionRequest, ctx: AdmissionContext) -> None:
        if req.is_core("namespaces"):
            if req.operation == DELETE and req.name in IMMORTAL:
                raise forbidden(req, "this namespace may not be deleted")
            return
        if not req.namespace or not req.resource.namespaced:
            return
        namespace = await ctx.get(NAMESPACES, None, req.namespace)
        if namespace is None:
            raise errors.not_found(NAMESPACES, req.namespace)
        if req.operation == CREATE and terminating(namespace):
            error = forbidden(req, f"unable to create new content in namespace {req.namespace}"
                                   " because it is being terminated")
            error.details.setdefault("causes", []).append({
                "reason": "NamespaceTerminating", "field": "metadata.namespace",
                "message": f"namespace {req.namespace} is being terminated"})
            raise error
