"""Running the controllers: build the chosen ones over one client and one SharedInformerFactory
and run them until cancelled.

    async with Client.from_kubeconfig(path) as client:
        await ControllerManager(client, Options(lb_pool=["172.18.255.0/28"])).run()

Leader election is left out: one controller manager runs per cluster. Every controller is
level-triggered and its informers list before it acts, so a manager killed at any point and
started again converges to the same objects (see `expectations` for the one place where
memory matters, and why a fresh process needs none).
"""
from __future__ import annotations

import asyncio
import logging
from typing import Callable

from cluster.client import Client, Controller, SharedInformerFactory

from . import (deployment, endpoints, endpointslice, garbagecollector, loadbalancer, namespace,
               nodelifecycle, replicaset, serviceaccount)
from .context import Context, Options

log = logging.getLogger(__name__)

# upstream's controller names (kube-controller-manager --controllers)
CONTROLLERS: dict[str, Callable[[Context], Controller]] = {
    "namespace": namespace.new,
    "deployment": deployment.new,
    "replicaset": replicaset.new,
    "serviceaccount": serviceaccount.new,
    "endpointslice": endpointslice.new,
    "endpoints": endpoints.new,
    "node-lifecycle": nodelifecycle.new,
    "service-lb": loadbalancer.new,
    "garbage-collector": garbagecollector.new,
}


def select(spec: str | list[str] | None) -> list[str]:
    """Controller names from `--controllers` (upstream's form: `*`, `name`, `-name`, commas)."""
    items = spec.split(",") if isinstance(spec, str) else list(spec or ["*"])
    items = [i.strip() for i in items if i.strip()] or ["*"]
    for item in items:
        name = item.lstrip("-")
        if name != "*" and name not in CONTROLLERS:
            raise ValueError(f"--controllers {item!r}: unknown controller; known: *, "
                             + ", ".join(CONTROLLERS) + " (prefix with - to disable)")
    chosen = list(CONTROLLERS) if "*" in items else []
    for item in items:
        if item.startswith("-"):
            chosen = [c for c in chosen if c != item[1:]]
        elif item != "*" and item not in chosen:
            chosen.append(item)
    return chosen


class ControllerManager:
    def __init__(self, client: Client, options: Options | None = None,
                 controllers: str | list[str] | None = None, *, now=None):
        self.client = client
        self.factory = SharedInformerFactory(client)
        self.context = Context(client, self.factory, options or Options())
        if now is not None:
            self.context.now = now
        self.names = select(controllers)
        self.controllers = {name: CONTROLLERS[name](self.context) for name in self.names}

    async def run(self, sync_timeout: float | None = None) -> None:
        """Run every controller until cancelled; one failing stops them all (and says which)."""
        self.factory.start()
        tasks = {asyncio.create_task(c.run(sync_timeout), name=name): name
                 for name, c in self.controllers.items()}
        log.info("controller manager running: %s", ", ".join(self.names))
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.context.drain()
            await self.factory.shutdown()
