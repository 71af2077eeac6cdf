"""The Endpoints controller: the legacy Endpoints object of each Service with a selector, as
`kubectl get endpoints` shows it (`cluster.controllers.endpoints` computes it); deleted with
its Service."""
from __future__ import annotations

from cluster.api.errors import APIError
from cluster.api.resources import by_name
from cluster.client import Controller, split_key
from cluster.controllers import endpoints as epctl

from .context import SERVICES, Context, ignore_not_found
from .endpointslice import STALE_RETRY_SECONDS, TriggerTimes

ENDPOINTS = by_name("endpoints")


def new(ctx: Context) -> Controller:
    client = ctx.client
    services, pods, endpoints = ctx.informer(SERVICES), ctx.pods(), ctx.informer(ENDPOINTS)
    triggers = TriggerTimes(ctx)

    async def reconcile(key: str):
        ns, name = split_key(key)
        svc = services.indexer.get_by_key(key)
        existing = endpoints.indexer.get_by_key(key)
        if svc is None:
            triggers.take(key)
            if existing is not None:
                await ignore_not_found(client.delete(ENDPOINTS, name, ns))
            return None
        wanted = epctl.desired(svc, pods.indexer.list(ns), existing, triggers.take(key))
        if wanted is None or not epctl.needs_update(existing, wanted):
            return None
        try:
            if existing is None:
                await client.create(ENDPOINTS, wanted, ns)
            else:
                await client.update(ENDPOINTS, wanted, ns)
        except APIError as e:
            if e.code == 403 and "being terminated" in e.message:
                return None
            if e.code == 404:
                return STALE_RETRY_SECONDS  # deleted under a stale cache: look again
            raise
        return None

    controller = Controller("endpoints", reconcile, workers=ctx.options.workers)
    controller.watch(services, triggers.service_keys)
    controller.watch(pods, lambda pod: triggers.pod_keys(services, pod))
    controller.watch(endpoints)
    return controller
