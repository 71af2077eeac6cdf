"""The Namespace controller: a Namespace being deleted is emptied, resource by resource in
`cluster.controllers.namespace`'s order, its conditions say what is left, and once nothing is
left its `kubernetes` finalizer is removed, which lets the API server delete it."""
from __future__ import annotations

from cluster.api.errors import APIError
from cluster.api.resources import by_name
from cluster.client import Controller
from cluster.controllers import namespace as nsctl
from cluster.controllers.objects import is_deleting, name_of, namespace_of

from .context import Context

NAMESPACES = by_name("namespaces")
# While content remains, look again this often even if no event says so (a pod's grace period
# ends, a finalizer is removed by someone whose objects we do not watch).
RECHECK_SECONDS = 1.0


def new(ctx: Context) -> Controller:
    client = ctx.client
    namespaces = ctx.informer(NAMESPACES)

    async def reconcile(name: str):
        ns = namespaces.indexer.get_by_key(name)
        if ns is None or not is_deleting(ns):
            return None
        remaining = {}
        for res in nsctl.deletable_resources():
            listed = await client.list(res, name)
            remaining[res.plural] = listed.get("items") or []
        step = nsctl.step(ns, remaining, ctx.now())
        for res in step.delete:
            if not remaining.get(res.plural):
                continue
            try:
                # deletecollection; pods on nodes get their grace period from the kubelet
                await client.request("DELETE", client.path(res, name),
                                     body={"kind": "DeleteOptions", "apiVersion": "v1",
                                           "propagationPolicy": "Background"})
            except APIError as e:
                if e.code not in (404, 405):
                    raise
        if step.conditions != ((ns.get("status") or {}).get("conditions") or []):
            status = dict(ns.get("status") or {}, conditions=step.conditions)
            try:
                ns = await client.update_status(NAMESPACES, dict(ns, status=status))
            except APIError as e:
                if e.code != 404:
                    raise
                return None
        if step.finalize:
            try:
                await client.update(NAMESPACES, nsctl.finalized(ns), subresource="finalize")
            except APIError as e:
                if e.code != 404:
                    raise
            return None
        return RECHECK_SECONDS

    controller = Controller("namespace", reconcile, workers=ctx.options.workers)
    controller.watch(namespaces)

    def content_gone(obj):
        # the last pod of a terminating namespace going away is the moment to finalize
        obj = getattr(obj, "obj", obj)
        ns = namespaces.indexer.get_by_key(namespace_of(obj))
        if ns is not None and is_deleting(ns):
            controller.enqueue(name_of(ns))

    ctx.pods().add_event_handler(on_delete=content_gone)
    return controller
