"""The node lifecycle controller: a node whose kubelet stops renewing its Lease (and posting
status) for longer than the grace period gets Ready=Unknown, the conditions' taints follow
(`node.kubernetes.io/unreachable`, `not-ready`, `unschedulable`, ...), its pods stop being
Ready, and pods that do not tolerate a NoExecute taint are evicted when their toleration runs
out (`cluster.controllers.nodelifecycle` decides each of these)."""
from __future__ import annotations

import copy

from cluster.api.errors import APIError
from cluster.api.resources import by_name
from cluster.client import Controller
from cluster.controllers import nodelifecycle as nlc
from cluster.controllers.objects import format_time, name_of, namespace_of, uid_of

from .context import NODE_NAME_INDEX, NODES, PODS, Context, ignore_not_found

LEASES = by_name("leases")


def new(ctx: Context) -> Controller:
    client = ctx.client
    grace = ctx.options.node_monitor_grace
    nodes, pods = ctx.informer(NODES), ctx.pods()
    leases = ctx.informer(LEASES, nlc.LEASE_NAMESPACE)
    heartbeats = nlc.HeartbeatTracker()

    async def reconcile(name: str):
        node = nodes.indexer.get_by_key(name)
        if node is None:
            heartbeats.forget(name)
            return None
        now = ctx.now()
        lease = leases.indexer.get_by_key(f"{nlc.LEASE_NAMESPACE}/{name}")
        last_heard = heartbeats.observe(node, lease, now)
        conditions = nlc.stale_conditions(node, last_heard, now, grace)
        if conditions is not None:
            node = copy.deepcopy(node)
            node.setdefault("status", {})["conditions"] = conditions
            node = await client.update_status(NODES, node)
            ctx.event(node, "Normal", "NodeNotReady", f"Node {name} status is now: NodeNotReady")
        taints = nlc.desired_taints(node, now)
        if nlc.taints_changed(node, taints):
            node = copy.deepcopy(node)
            node.setdefault("spec", {})["taints"] = taints
            node = await client.update(NODES, node)
        on_node = pods.indexer.by_index(NODE_NAME_INDEX, name)
        for pod in nlc.pods_to_mark_not_ready(node, on_node):
            await ignore_not_found(client.update_status(PODS, _not_ready(pod, now)))
        evict = nlc.evictions(node, on_node, now)
        for pod in evict.now:
            await _evict(ctx, pod, now)
        # look again when the next heartbeat would be missed or a toleration runs out
        waits = [grace - (now - last_heard).total_seconds()]
        if evict.next_check is not None:
            waits.append((evict.next_check - now).total_seconds())
        waits = [w for w in waits if w > 0]
        return max(0.05, min(waits)) if waits else None

    controller = Controller("nodelifecycle", reconcile, workers=ctx.options.workers)
    controller.watch(nodes)
    controller.watch(leases, lambda lease: [name_of(lease)])
    controller.watch(pods, lambda pod: [n] if (n := (pod.get("spec") or {}).get("nodeName")) else [])
    return controller


def _not_ready(pod: dict, now) -> dict:
    pod = copy.deepcopy(pod)
    for c in pod.get("status", {}).get("conditions") or []:
        if c.get("type") == "Ready":
            c.update(status="False", lastTransitionTime=format_time(now))
    return pod


async def _evict(ctx: Context, pod: dict, now) -> None:
    """Mark the pod a DisruptionTarget, then delete it (the taint eviction controller)."""
    marked = copy.deepcopy(pod)
    conditions = marked.setdefault("status", {}).setdefault("conditions", [])
    conditions[:] = [c for c in conditions if c.get("type") != "DisruptionTarget"]
    conditions.append(nlc.disruption_condition(now))
    try:
        await ctx.client.update_status(PODS, marked)
        await ctx.client.delete(PODS, name_of(pod), namespace_of(pod),
                                preconditions={"uid": uid_of(pod)})
    except APIError as e:
        if e.code not in (404, 409):
            raise
        return
    ctx.event(pod, "Normal", "TaintManagerEviction",
              f"Marking for deletion Pod {namespace_of(pod)}/{name_of(pod)}")
