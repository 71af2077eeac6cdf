"""The EndpointSlice controller: a Service's slices follow the pods it selects
(`cluster.controllers.endpointslices` computes the fewest writes).

A write this controller made is awaited in the slice informer before the Service is synced
again (upstream's EndpointSliceTracker): syncing against a cache that does not yet hold a slice
it just created would create a second one.
"""
from __future__ import annotations

from cluster.api.errors import APIError
from cluster.api.resources import by_name
from cluster.client import Controller, meta_namespace_key, split_key
from cluster.controllers import endpointslices as esctl
from cluster.controllers.objects import format_time, labels_of, meta, name_of, namespace_of

from .context import NODES, SERVICES, Context, ignore_not_found

ENDPOINTSLICES = by_name("endpointslices")
STALE_RETRY_SECONDS = 0.05


def services_selecting(services, pod: dict) -> list[str]:
    """Keys of the Services in the pod's namespace whose selector matches it."""
    return [meta_namespace_key(s) for s in services.indexer.list(namespace_of(pod))
            if esctl.selects(s, pod)]


class TriggerTimes:
    """The time of the oldest change not yet written, per Service (the value of the
    endpoints.kubernetes.io/last-change-trigger-time annotation)."""

    def __init__(self, ctx: Context):
        self._ctx, self._pending = ctx, {}

    def changed(self, key: str) -> None:
        self._pending.setdefault(key, self._ctx.now())

    def take(self, key: str) -> str | None:
        t = self._pending.pop(key, None)
        return format_time(t) if t else None

    def pod_keys(self, services, pod: dict) -> list[str]:
        """keys_of for pods: the Services selecting POD, each marked changed now."""
        keys = services_selecting(services, pod)
        for key in keys:
            self.changed(key)
        return keys

    def service_keys(self, svc: dict) -> list[str]:
        """keys_of for Services: the Service itself, marked changed now."""
        key = meta_namespace_key(svc)
        self.changed(key)
        return [key]


class SliceTracker:
    """Slices written (name -> resourceVersion) or deleted (name -> None) per Service, until
    the informer shows them."""

    def __init__(self):
        self._expected: dict[str, dict[str, int | None]] = {}

    def wrote(self, key: str, obj: dict) -> None:
        self._expected.setdefault(key, {})[name_of(obj)] = int(meta(obj)["resourceVersion"])

    def deleted(self, key: str, obj: dict) -> None:
        self._expected.setdefault(key, {})[name_of(obj)] = None

    def stale(self, key: str, slices: list[dict]) -> bool:
        expected = self._expected.get(key)
        if not expected:
            return False
        have = {name_of(s): int(meta(s).get("resourceVersion") or 0) for s in slices}
        for name, rv in list(expected.items()):
            if (rv is None and name not in have) or (rv is not None and have.get(name, -1) >= rv):
                del expected[name]
        if not expected:
            del self._expected[key]
        return bool(expected)

    def forget(self, key: str) -> None:
        self._expected.pop(key, None)


def new(ctx: Context) -> Controller:
    client = ctx.client
    services, pods, nodes = ctx.informer(SERVICES), ctx.pods(), ctx.informer(NODES)
    slices = ctx.informer(ENDPOINTSLICES)
    triggers, tracker = TriggerTimes(ctx), SliceTracker()

    def service_of_slice(s: dict) -> list[str]:
        if labels_of(s).get(esctl.LABEL_MANAGED_BY) != esctl.CONTROLLER_NAME:
            return []
        service = labels_of(s).get(esctl.LABEL_SERVICE_NAME)
        return [f"{namespace_of(s)}/{service}"] if service else []

    async def reconcile(key: str):
        svc = services.indexer.get_by_key(key)
        if svc is None:
            tracker.forget(key)  # its slices go with it: they are owned by the Service
            triggers.take(key)
            return None
        ns, name = split_key(key)
        mine = [s for s in slices.indexer.list(ns) if service_of_slice(s) == [key]]
        if tracker.stale(key, mine):
            return STALE_RETRY_SECONDS
        node_map = {name_of(n): n for n in nodes.indexer.list()}
        changes = esctl.reconcile(svc, pods.indexer.list(ns), node_map, mine, triggers.take(key))
        for s in changes.create:
            try:
                tracker.wrote(key, await client.create(ENDPOINTSLICES, s, ns))
            except APIError as e:
                if e.code == 403 and "being terminated" in e.message:
                    return None
                raise
        for s in changes.update:
            tracker.wrote(key, await client.update(ENDPOINTSLICES, s, ns))
        for s in changes.delete:
            await ignore_not_found(client.delete(ENDPOINTSLICES, name_of(s), ns))
            tracker.deleted(key, s)
        return None

    controller = Controller("endpointslice", reconcile, workers=ctx.options.workers)
    controller.watch(services, triggers.service_keys)
    controller.watch(pods, lambda pod: triggers.pod_keys(services, pod))
    controller.watch(slices, service_of_slice)
    return controller
