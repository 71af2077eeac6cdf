"""What every controller of the manager is built from: the client, the shared informers, the
options and a clock (tests move it), plus the few helpers more than one controller needs."""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

from cluster.api.errors import APIError
from cluster.api.resources import Resource, by_name
from cluster.client import Client, SharedInformerFactory, index_by_field
from cluster.controllers.objects import format_time, meta

log = logging.getLogger(__name__)

PODS, NODES, SERVICES, EVENTS = (by_name(n) for n in ("pods", "nodes", "services", "events"))
NODE_NAME_INDEX = "spec.nodeName"
COMPONENT = "controller-manager"


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class Options:
    """`lb_pool`: LoadBalancer address pool entries (none: Services stay pending);
    `node_monitor_grace`: seconds without a heartbeat before a node is NotReady (upstream's
    --node-monitor-grace-period)."""

    lb_pool: list[str] = field(default_factory=list)
    node_monitor_grace: float = 40.0
    workers: int = 4


@dataclass
class Context:
    client: Client
    factory: SharedInformerFactory
    options: Options = field(default_factory=Options)
    now: Callable[[], datetime] = utcnow
    _background: set = field(default_factory=set)

    def pods(self):
        """The shared pod informer, indexed by node."""
        return self.factory.informer(PODS, indexers={NODE_NAME_INDEX: index_by_field(NODE_NAME_INDEX)})

    def informer(self, resource: Resource, namespace: str | None = None):
        return self.factory.informer(resource, namespace)

    def event(self, obj: dict, type_: str, reason: str, message: str) -> None:
        """Record an Event about `obj` without waiting for it (upstream's recorder is async too);
        a failure to record is logged, never raised."""
        m = meta(obj)
        t = format_time(self.now())
        ev = {"apiVersion": "v1", "kind": "Event",
              "metadata": {"generateName": f"{m.get('name')}.",
                           "namespace": m.get("namespace") or "default"},
              "involvedObject": {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"),
                                 "name": m.get("name"), "namespace": m.get("namespace"),
                                 "uid": m.get("uid"), "resourceVersion": m.get("resourceVersion")},
              "type": type_, "reason": reason, "message": message,
              "source": {"component": COMPONENT}, "reportingComponent": COMPONENT,
              "firstTimestamp": t, "lastTimestamp": t, "count": 1}
        self.spawn(self._create_event(ev))

    async def _create_event(self, ev: dict) -> None:
        try:
            await self.client.create(EVENTS, ev)
        except APIError as e:
            log.debug("event %s/%s not recorded: %s", ev["involvedObject"]["name"], ev["reason"], e)

    def spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def drain(self) -> None:
        tasks = list(self._background)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def ignore_not_found(coro):
    """Await a write whose target may already be gone (404 is what we wanted)."""
    try:
        return await coro
    except APIError as e:
        if e.code != 404:
            raise
        return None
