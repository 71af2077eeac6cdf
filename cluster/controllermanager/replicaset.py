"""The ReplicaSet controller: keeps `spec.replicas` pods of a ReplicaSet alive and its status
current (`cluster.controllers.replicaset` decides; this module watches and writes).

Pods are created in slow-start batches and counted only once the pod informer has shown every
create and delete this controller made (Expectations), so a slow watch never doubles a
ReplicaSet's pods.
"""
from __future__ import annotations

import asyncio

from cluster.api.errors import APIError
from cluster.api.resources import by_name
from cluster.api.selectors import from_label_selector
from cluster.client import Controller, meta_namespace_key, split_key
from cluster.controllers import replicaset as rsctl
from cluster.controllers.objects import (controller_of, is_deleting, labels_of, name_of,
                                         namespace_of, uid_of)

from .context import PODS, Context, ignore_not_found
from .expectations import Expectations

REPLICASETS = by_name("replicasets")


def _owner_key(pod: dict) -> str | None:
    ref = controller_of(pod)
    if ref is None or ref.get("kind") != "ReplicaSet":
        return None
    return f"{namespace_of(pod)}/{ref.get('name')}"


def new(ctx: Context) -> Controller:
    client = ctx.client
    rss, pods = ctx.informer(REPLICASETS), ctx.pods()
    expectations = Expectations()

    def pod_added(pod):
        key = _owner_key(pod)
        if key:
            expectations.creation_observed(key)

    def pod_updated(old, new):
        key = _owner_key(new)
        if key and is_deleting(new) and not is_deleting(old):
            expectations.deletion_observed(key, meta_namespace_key(new))

    def pod_deleted(pod):
        pod = getattr(pod, "obj", pod)
        key = _owner_key(pod)
        if key:
            expectations.deletion_observed(key, meta_namespace_key(pod))

    pods.add_event_handler(on_add=pod_added, on_update=pod_updated, on_delete=pod_deleted)

    def replica_sets_of(pod: dict) -> list[str]:
        """The ReplicaSet controlling a pod, or for an orphan those that would adopt it."""
        key = _owner_key(pod)
        if key:
            return [key]
        if controller_of(pod) is not None:
            return []
        return [meta_namespace_key(rs) for rs in rss.indexer.list(namespace_of(pod))
                if from_label_selector((rs.get("spec") or {}).get("selector")).matches(labels_of(pod))]

    async def create_pods(key: str, rs: dict, count: int) -> None:
        ns = namespace_of(rs)
        expectations.expect_creations(key, count)
        batches = rsctl.slow_start_batches(count)
        for i, size in enumerate(batches):
            results = await asyncio.gather(*(client.create(PODS, rsctl.pod_from_template(rs), ns)
                                             for _ in range(size)), return_exceptions=True)
            failed = [r for r in results if isinstance(r, BaseException)]
            if failed:
                # the pods never made will never be observed
                expectations.creation_observed(key, len(failed) + sum(batches[i + 1:]))
                error = failed[0]
                if isinstance(error, APIError) and error.code == 403 and "being terminated" in error.message:
                    return  # the namespace is going away: nothing more to make
                raise error

    async def delete_pods(key: str, victims: list[dict]) -> None:
        keys = [meta_namespace_key(p) for p in victims]
        expectations.expect_deletions(key, keys)

        async def delete(pod, pod_key):
            try:
                await client.delete(PODS, name_of(pod), namespace_of(pod),
                                    preconditions={"uid": uid_of(pod)})
            except APIError as e:
                expectations.deletion_observed(key, pod_key)
                if e.code not in (404, 409):
                    raise

        results = await asyncio.gather(*(delete(p, k) for p, k in zip(victims, keys)),
                                       return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                raise r

    async def reconcile(key: str):
        rs = rss.indexer.get_by_key(key)
        if rs is None:
            expectations.forget(key)
            return None
        ns, _ = split_key(key)
        in_namespace = pods.indexer.list(ns)
        claim = rsctl.claim_pods(rs, in_namespace)
        for pod in claim.adopt:
            await ignore_not_found(client.patch(PODS, name_of(pod), rsctl.adoption_patch(pod, rs),
                                                ns, patch_type="strategic"))
        for pod in claim.release:
            await ignore_not_found(client.patch(PODS, name_of(pod), rsctl.release_patch(pod, rs),
                                                ns, patch_type="strategic"))
        now = ctx.now()
        if expectations.satisfied(key):
            plan = rsctl.plan(rs, claim.owned, _related(rs, rss, in_namespace), now)
            if plan.create:
                await create_pods(key, rs, len(plan.create))
            if plan.delete:
                await delete_pods(key, plan.delete)
        status = rsctl.status(rs, claim.owned, now)
        current = rs.get("status") or {}
        if any(current.get(k, 0) != v for k, v in status.items()) or \
                ("terminatingReplicas" in current and "terminatingReplicas" not in status):
            updated = dict(rs, status={**{k: v for k, v in current.items()
                                           if k not in ("terminatingReplicas",)}, **status})
            await client.update_status(REPLICASETS, updated)
        min_ready = int((rs.get("spec") or {}).get("minReadySeconds") or 0)
        if min_ready and status["readyReplicas"] > status["availableReplicas"]:
            return float(min_ready)  # look again when the ready ones become available
        return None

    controller = Controller("replicaset", reconcile, workers=ctx.options.workers)
    controller.watch(rss)
    controller.watch(pods, replica_sets_of)
    return controller


def _related(rs: dict, rss, pods: list[dict]) -> list[dict]:
    """Active pods of the ReplicaSets that share this one's controller (one Deployment's), for
    the scale-down ranking that prefers nodes crowded with siblings."""
    owner = controller_of(rs)
    if owner is None:
        return [p for p in pods if (controller_of(p) or {}).get("uid") == uid_of(rs)]
    siblings = {uid_of(r) for r in rss.indexer.list(namespace_of(rs))
                if (controller_of(r) or {}).get("uid") == owner.get("uid")}
    return [p for p in pods if (controller_of(p) or {}).get("uid") in siblings]
