"""The scheduler against the API server: pods that are not bound yet (`spec.nodeName` empty,
this scheduler's `schedulerName`) are placed one at a time by `framework.schedule` and bound
through the `binding` subresource.

As upstream's scheduler: a pod is *assumed* on its node as soon as it is placed, so the next
pod's cycle already counts it, and the binding runs in the background; the assumption ends
when the informer shows the pod bound (or gone), or the binding fails and the pod is tried
again. A pod that fits nowhere gets `PodScheduled=False` with the FitError message and a
FailedScheduling event, and waits until a node changes or a bound pod goes away (or five
minutes pass, upstream's podMaxInUnschedulablePodsDuration).
"""
from __future__ import annotations

import asyncio
import copy
import logging
import random
from datetime import datetime, timezone

from cluster.api.errors import APIError
from cluster.api.resources import by_name
from cluster.client import Client, Controller, SharedInformerFactory, index_by_field
from cluster.client import meta_namespace_key, split_key
from cluster.controllers.objects import is_pod_terminal
from cluster.scheduler import framework
from cluster.scheduler.scores import default_spread_selector

log = logging.getLogger(__name__)

PODS, NODES, SERVICES, REPLICASETS, EVENTS = (
    by_name(n) for n in ("pods", "nodes", "services", "replicasets", "events"))
NODE_INDEX = "spec.nodeName"
UNSCHEDULABLE_RETRY_SECONDS = 300.0


def _node_of(pod: dict) -> str:
    return (pod.get("spec") or {}).get("nodeName") or ""


def _schedulable_view(node: dict) -> tuple:
    """What of a node the filters and scores read: a heartbeat alone changes none of it."""
    status = node.get("status") or {}
    return (node.get("spec"), (node.get("metadata") or {}).get("labels"),
            status.get("allocatable"), status.get("capacity"))


class Scheduler:
    def __init__(self, client: Client, scheduler_name: str = framework.SCHEDULER_NAME, *,
                 factory: SharedInformerFactory | None = None, rng: random.Random | None = None):
        self.client = client
        self.name = scheduler_name
        self.rng = rng or random.Random()
        self.factory = factory or SharedInformerFactory(client)
        self.pods = self.factory.informer(PODS, indexers={NODE_INDEX: index_by_field(NODE_INDEX)})
        self.nodes = self.factory.informer(NODES)
        self.services = self.factory.informer(SERVICES)
        self.replicasets = self.factory.informer(REPLICASETS)
        self.assumed: dict[str, dict] = {}  # pod key -> the pod as bound, until the cache shows it
        self.unschedulable: set[str] = set()
        self._background: set[asyncio.Task] = set()
        self.controller = Controller("scheduler", self.schedule_one, workers=1)
        for informer in (self.pods, self.nodes, self.services, self.replicasets):
            self.controller.informers.append(informer)
        self.pods.add_event_handler(on_add=self._pod_added, on_update=self._pod_updated,
                                    on_delete=self._pod_deleted)
        self.nodes.add_event_handler(on_add=lambda n: self._retry_unschedulable(),
                                     on_update=self._node_updated)

    # -- events -------------------------------------------------------------------------------

    def _pod_added(self, pod: dict) -> None:
        key = meta_namespace_key(pod)
        if _node_of(pod):
            self.assumed.pop(key, None)
        elif framework.responsible_for(pod, self.name):
            self.controller.enqueue(key)

    def _pod_updated(self, old: dict, new: dict) -> None:
        key = meta_namespace_key(new)
        if _node_of(new):
            self.assumed.pop(key, None)
            if is_pod_terminal(new) and not is_pod_terminal(old):
                self._retry_unschedulable()  # a finished pod frees its node's resources
        elif framework.responsible_for(new, self.name):
            self.controller.enqueue(key)

    def _pod_deleted(self, pod) -> None:
        pod = getattr(pod, "obj", pod)
        key = meta_namespace_key(pod)
        self.assumed.pop(key, None)
        self.unschedulable.discard(key)
        if _node_of(pod):
            self._retry_unschedulable()

    def _node_updated(self, old: dict, new: dict) -> None:
        if _schedulable_view(old) != _schedulable_view(new):
            self._retry_unschedulable()

    def _retry_unschedulable(self) -> None:
        for key in list(self.unschedulable):
            self.controller.enqueue(key)

    # -- one scheduling cycle -----------------------------------------------------------------

    def pods_on_nodes(self) -> dict[str, list[dict]]:
        """Pods by node: those the cache shows bound, and those assumed but not shown yet."""
        index = self.pods.indexer
        out = {node: index.by_index(NODE_INDEX, node) for node in index.index_values(NODE_INDEX)}
        for key, pod in self.assumed.items():
            cached = index.get_by_key(key)
            if cached is not None and not _node_of(cached):
                out.setdefault(_node_of(pod), []).append(pod)
        return out

    async def schedule_one(self, key: str):
        pod = self.pods.indexer.get_by_key(key)
        if pod is None or not framework.responsible_for(pod, self.name) or key in self.assumed:
            self.unschedulable.discard(key)
            return None
        ns, _ = split_key(key)
        selector = default_spread_selector(pod, self.services.indexer.list(ns),
                                           self.replicasets.indexer.list(ns))
        result = framework.schedule(pod, self.nodes.indexer.list(), self.pods_on_nodes(),
                                    selector, self.rng)
        now = datetime.now(timezone.utc)
        if result.node is None:
            self.unschedulable.add(key)
            conditions = framework.with_unschedulable(pod, result.message, now)
            if conditions is not None:
                status = dict(pod.get("status") or {}, conditions=conditions)
                try:
                    await self.client.update_status(PODS, dict(pod, status=status))
                except APIError as e:
                    if e.code == 404:
                        return None
                    raise
                self._emit(framework.event(pod, None, result.message, now))
            return UNSCHEDULABLE_RETRY_SECONDS
        self.unschedulable.discard(key)
        bound = copy.deepcopy(pod)
        bound["spec"]["nodeName"] = result.node
        self.assumed[key] = bound
        self._spawn(self._bind(key, pod, result.node, now))
        return None

    async def _bind(self, key: str, pod: dict, node: str, now: datetime) -> None:
        ns, name = split_key(key)
        try:
            await self.client.create(PODS, framework.binding(pod, node), ns, subresource="binding")
        except APIError as e:
            self.assumed.pop(key, None)
            if e.code == 404:
                return
            # 409: bound meanwhile (by someone else) or being deleted: the cache will say
            log.log(logging.DEBUG if e.code == 409 else logging.WARNING,
                    "binding %s to %s: %s", key, node, e)
            self.controller.queue.add_rate_limited(key)
            return
        self._emit(framework.event(pod, node, "", now))

    # -- background writes --------------------------------------------------------------------

    def _emit(self, event: dict) -> None:
        async def create():
            try:
                await self.client.create(EVENTS, event)
            except APIError as e:
                log.debug("event for %s not recorded: %s", event["involvedObject"]["name"], e)
        self._spawn(create())

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def run(self, sync_timeout: float | None = None) -> None:
        """Schedule until cancelled."""
        self.factory.start()
        try:
            await self.controller.run(sync_timeout)
        finally:
            tasks = list(self._background)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.factory.shutdown()
