"""The load-balancer controller (the cloud-controller's part): Services of type LoadBalancer
get an address from the configured pool into `status.loadBalancer.ingress`; without a pool
they stay `<pending>` (`cluster.controllers.lbpool` decides and remembers who holds what).

The pool is rebuilt from the Services' stored status on the first sync after a start, so a
restarted controller hands out no address twice.
"""
from __future__ import annotations

from cluster.client import Controller, meta_namespace_key
from cluster.controllers.lbpool import LoadBalancerPool, ingress_ips, is_ours

from .context import SERVICES, Context


def new(ctx: Context) -> Controller:
    client = ctx.client
    services = ctx.informer(SERVICES)
    state: dict[str, LoadBalancerPool] = {}

    def pool() -> LoadBalancerPool:
        if "pool" not in state:
            # the first reconcile runs after the informer synced: every stored address is known
            state["pool"], to_fix = LoadBalancerPool.from_services(ctx.options.lb_pool,
                                                                   services.indexer.list())
            for svc in to_fix:
                controller.enqueue(meta_namespace_key(svc))
        return state["pool"]

    async def reconcile(key: str):
        svc = services.indexer.get_by_key(key)
        if svc is None:
            if pool().release(key):
                # a freed address may be what a pending Service waits for
                for other in services.indexer.list():
                    if is_ours(other) and not ingress_ips(other):
                        controller.enqueue(meta_namespace_key(other))
            return None
        assignment = pool().assign(svc)
        if assignment is None:
            return None
        if assignment.event:
            ctx.event(svc, "Warning", "AllocationFailed", assignment.event)
        if ((svc.get("status") or {}).get("loadBalancer") or {}) != assignment.load_balancer:
            status = dict(svc.get("status") or {}, loadBalancer=assignment.load_balancer)
            await client.update_status(SERVICES, dict(svc, status=status))
            if assignment.load_balancer:
                ip = assignment.load_balancer["ingress"][0]["ip"]
                ctx.event(svc, "Normal", "IPAllocated", f"Assigned IP [\"{ip}\"]")
        return None

    controller = Controller("loadbalancer", reconcile, workers=1)
    controller.watch(services)
    return controller
