"""The garbage collector: dependents of deleted owners are deleted, orphaned or waited for, by
ownerReferences, over every resource it watches (`cluster.controllers.garbagecollector`
decides in one pass over all of them).

One key stands for the whole graph: any change enqueues it after a short delay, so a burst of
events (a Deployment's hundred pods) costs one pass, not a hundred. An owner the informers do
not hold is looked up before its dependents are deleted, as upstream's isDangling does, so a
cache that is behind, or an owner of a kind not watched here, never costs a dependent its life.
"""
from __future__ import annotations

from cluster.api.errors import APIError
from cluster.api.resources import Resource, by_kind, by_name
from cluster.client import Controller
from cluster.controllers import garbagecollector as gc
from cluster.controllers.objects import meta, name_of, namespace_of, uid_of

from .context import Context, ignore_not_found

# What owns or is owned in this cluster: workloads, their pods, Services' slices, nodes' leases.
WATCHED = ("deployments", "replicasets", "pods", "services", "endpointslices", "nodes", "leases",
           "configmaps", "secrets", "serviceaccounts")
GRAPH_KEY = "graph"
BATCH_SECONDS = 0.1


def new(ctx: Context) -> Controller:
    client = ctx.client
    informers = [(by_name(n), ctx.pods() if n == "pods" else ctx.informer(by_name(n)))
                 for n in WATCHED]

    async def owner_exists(obj: dict, ref: dict) -> bool:
        res = by_kind(ref.get("apiVersion") or "", ref.get("kind") or "")
        if res is None:
            return True  # a kind this server does not serve: not ours to judge
        try:
            owner = await client.get(res, ref.get("name"), namespace_of(obj) if res.namespaced else None)
        except APIError as e:
            if e.code == 404:
                return False
            raise
        return uid_of(owner) == ref.get("uid")

    async def reconcile(_key: str):
        where: dict[str, Resource] = {}
        objects = []
        for res, informer in informers:
            for obj in informer.indexer.list():
                where[uid_of(obj)] = res
                objects.append(obj)
        known = set(where)
        plan = gc.collect(objects)
        for obj, propagation in plan.delete:
            dangling = [r for r in meta(obj).get("ownerReferences") or [] if r.get("uid") not in known]
            confirmed = [not await owner_exists(obj, r) for r in dangling]
            if not all(confirmed) or len(dangling) < len(meta(obj).get("ownerReferences") or []):
                continue
            await ignore_not_found(client.delete(where[uid_of(obj)], name_of(obj), namespace_of(obj)
                                                 or None, propagation_policy=propagation,
                                                 preconditions={"uid": uid_of(obj)}))
        by_uid = {uid_of(o): o for o in objects}
        for uid, owners in plan.drop_refs.items():
            obj = by_uid[uid]
            refs = meta(obj).get("ownerReferences") or []
            drop = {r.get("uid") for r in refs if r.get("uid") in owners
                    and (r.get("uid") in known or not await owner_exists(obj, r))}
            if drop:
                kept = [r for r in refs if r.get("uid") not in drop]
                await _patch(client, where[uid], obj, {"metadata": {"ownerReferences": kept,
                                                                    "uid": uid}})
        for uid, finalizer in plan.remove_finalizer.items():
            obj = by_uid[uid]
            left = [f for f in meta(obj).get("finalizers") or [] if f != finalizer]
            await _patch(client, where[uid], obj, {"metadata": {"finalizers": left, "uid": uid}})
        return None

    controller = Controller("garbagecollector", reconcile, workers=1)
    for _, informer in informers:
        informer.add_event_handler(on_add=lambda o: controller.queue.add_after(GRAPH_KEY, BATCH_SECONDS),
                                   on_update=lambda o, n: controller.queue.add_after(GRAPH_KEY, BATCH_SECONDS),
                                   on_delete=lambda o: controller.queue.add_after(GRAPH_KEY, BATCH_SECONDS))
        controller.informers.append(informer)
    return controller


async def _patch(client, res: Resource, obj: dict, patch: dict) -> None:
    await ignore_not_found(client.patch(res, name_of(obj), patch, namespace_of(obj) or None))
