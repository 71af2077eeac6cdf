"""The Deployment controller: one rollout step per sync (`cluster.controllers.deployment`
decides: create the new ReplicaSet, scale new and old, clean up old revisions), then the
Deployment's revision annotation and status."""
from __future__ import annotations

from cluster.api.errors import APIError
from cluster.api.resources import by_name
from cluster.client import Controller, owner_key, split_key
from cluster.controllers import deployment as dctl
from cluster.controllers.objects import controller_of, meta, name_of, namespace_of, uid_of

from .context import Context, ignore_not_found
from .replicaset import REPLICASETS

DEPLOYMENTS = by_name("deployments")


def _without_times(status: dict) -> dict:
    """A status as compared for changes: condition timestamps alone are not worth a write."""
    out = dict(status)
    out["conditions"] = [{k: v for k, v in c.items() if k not in ("lastUpdateTime",
                                                                  "lastTransitionTime")}
                         for c in status.get("conditions") or []]
    return out


def new(ctx: Context) -> Controller:
    client = ctx.client
    deployments, rss, pods = ctx.informer(DEPLOYMENTS), ctx.informer(REPLICASETS), ctx.pods()

    def pods_by_rs(d: dict, ns: str) -> dict[str, list[dict]]:
        """Pods by their ReplicaSet's uid; only a Recreate rollout waits for them."""
        if ((d.get("spec") or {}).get("strategy") or {}).get("type") != "Recreate":
            return {}
        out: dict[str, list[dict]] = {}
        for pod in pods.indexer.list(ns):
            ref = controller_of(pod)
            if ref is not None:
                out.setdefault(ref.get("uid"), []).append(pod)
        return out

    async def reconcile(key: str):
        d = deployments.indexer.get_by_key(key)
        if d is None:
            return None
        ns, _ = split_key(key)
        in_namespace = rss.indexer.list(ns)
        plan = dctl.plan(d, in_namespace, pods_by_rs(d, ns))
        after = {uid_of(rs): rs for rs in in_namespace}
        collision = (d.get("status") or {}).get("collisionCount")
        if plan.create is not None:
            if plan.collision_count is not None:
                collision = plan.collision_count
            try:
                made = await client.create(REPLICASETS, plan.create, ns)
            except APIError as e:
                if e.code != 409:
                    raise
                # the name is taken: by our own ReplicaSet the cache has not shown yet, or by a
                # stranger, which the next sync sees and hashes around (collisionCount)
                return 0.05
            after[uid_of(made)] = made
        for rs in plan.scale:
            after[uid_of(rs)] = await client.update(REPLICASETS, rs)
        for rs in plan.delete:
            await ignore_not_found(client.delete(REPLICASETS, name_of(rs), ns,
                                                 preconditions={"uid": uid_of(rs)}))
            after.pop(uid_of(rs), None)
        annotations = meta(d).get("annotations") or {}
        if plan.revision and annotations.get(dctl.REVISION) != plan.revision:
            d = await client.patch(DEPLOYMENTS, name_of(d), {"metadata": {
                "annotations": {dctl.REVISION: plan.revision},
                "resourceVersion": meta(d).get("resourceVersion")}}, ns)
        current = dict(d.get("status") or {})
        if collision is not None:
            current["collisionCount"] = collision
        status = dctl.status(dict(d, status=current), list(after.values()), ctx.now())
        if _without_times(status) != _without_times(d.get("status") or {}):
            await client.update_status(DEPLOYMENTS, dict(d, status=status))
        return None

    controller = Controller("deployment", reconcile, workers=ctx.options.workers)
    controller.watch(deployments)
    controller.watch(rss, owner_key("Deployment"))

    def pod_gone(pod):
        # a Recreate rollout waits for the old pods to be gone
        pod = getattr(pod, "obj", pod)
        ref = controller_of(pod)
        rs = rss.indexer.get_by_key(f"{namespace_of(pod)}/{ref.get('name')}") if ref else None
        for key in owner_key("Deployment")(rs) if rs else []:
            controller.enqueue(key)

    pods.add_event_handler(on_delete=pod_gone)
    return controller
