"""The pattern every controller and node agent follows: informers -> a queue of keys -> workers
running a level-triggered, idempotent `reconcile(key)`.

    factory = SharedInformerFactory(client)
    deployments = factory.informer(DEPLOYMENTS)
    replicasets = factory.informer(REPLICASETS)

    async def reconcile(key):
        ns, name = split_key(key)
        d = deployments.indexer.get_by_key(key)
        if d is None:
            return                      # gone: nothing to do (or clean up what it owned)
        ...read the cache, compute the desired state, write only the difference...

    controller = Controller("deployment", reconcile, workers=4)
    controller.watch(deployments)                          # the object's own key
    controller.watch(replicasets, owner_key("Deployment"))  # a child wakes its owner
    factory.start()
    await controller.run()                                  # until cancelled

The rules that make this robust:
- Handlers only enqueue keys; a key is the whole instruction ("look at ns/name again"), so
  many events for one object collapse into one reconcile, and no event payload is trusted.
- `reconcile` reads the current state from the informers' caches (never from the event),
  compares it with the desired state and writes the difference, so running it twice, late, or
  after a missed event is harmless: that is what makes restarts and relists safe.
- An exception requeues the key with per-key exponential backoff (5 ms .. 1000 s); a 409
  Conflict is the normal case of a stale cache and simply retries. Returning a number of
  seconds asks to look again later (e.g. a timeout to check); returning None after success
  resets the key's backoff.
- A key is never reconciled by two workers at once (the WorkQueue guarantees it), so workers
  may run in parallel across keys without locks.
- Workers start only once every watched informer has synced, so the first reconcile of a key
  sees a complete cache, not a partially listed one.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable, Iterable

from cluster.api.errors import APIError

from .cache import DeletedFinalStateUnknown, meta_namespace_key
from .informer import Informer
from .workqueue import ExponentialRateLimiter, WorkQueue

log = logging.getLogger(__name__)

Reconcile = Callable[[str], Awaitable[float | None]]
KeysOf = Callable[[dict], Iterable[str]]


def own_key(obj: dict) -> list[str]:
    return [meta_namespace_key(obj)]


def owner_key(kind: str) -> KeysOf:
    """Keys of the owners of kind `kind` named in an object's ownerReferences (same namespace)."""

    def keys(obj: dict) -> list[str]:
        meta = obj["metadata"]
        ns = meta.get("namespace")
        return [f"{ns}/{ref['name']}" if ns else ref["name"]
                for ref in meta.get("ownerReferences") or [] if ref.get("kind") == kind]

    keys.__name__ = f"owner_key_{kind}"
    return keys


class Controller:
    """A named work queue of keys fed by informers and drained by `workers` reconcile loops."""

    def __init__(self, name: str, reconcile: Reconcile, *, workers: int = 2,
                 rate_limiter: ExponentialRateLimiter | None = None):
        self.name = name
        self.reconcile = reconcile
        self.workers = workers
        self.queue = WorkQueue(rate_limiter)
        self.informers: list[Informer] = []

    def watch(self, informer: Informer, keys_of: KeysOf = own_key) -> None:
        """Enqueue `keys_of(obj)` on every add, update and delete the informer reports."""

        def enqueue(obj):
            if isinstance(obj, DeletedFinalStateUnknown):
                if keys_of is own_key:
                    self.queue.add(obj.key)
                    return
                obj = obj.obj
            for key in keys_of(obj):
                self.queue.add(key)

        informer.add_event_handler(on_add=enqueue, on_update=lambda old, new: enqueue(new),
                                   on_delete=enqueue)
        if keys_of is not own_key:
            # An update can move a child from one owner to another: both must look again.
            informer.add_event_handler(on_update=lambda old, new: enqueue(old))
        self.informers.append(informer)

    def enqueue(self, key: str) -> None:
        self.queue.add(key)

    async def run(self, sync_timeout: float | None = None) -> None:
        """Wait for the informers' caches, then run the workers until cancelled."""
        for informer in self.informers:
            informer.start()
        for informer in self.informers:
            if not await informer.wait_for_sync(sync_timeout):
                raise TimeoutError(f"controller {self.name}: {informer!r} did not sync within "
                                   f"{sync_timeout}s; is the API server reachable?")
        workers = [asyncio.create_task(self._worker(), name=f"{self.name} worker {i}")
                   for i in range(self.workers)]
        try:
            await asyncio.gather(*workers)
        finally:
            self.queue.shutdown()
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    async def _worker(self) -> None:
        queue = self.queue
        while (key := await queue.get()) is not None:
            try:
                again = await self.reconcile(key)
            except asyncio.CancelledError:
                queue.done(key)
                raise
            except APIError as e:
                level = logging.DEBUG if e.code == 409 else logging.WARNING
                log.log(level, "%s: reconcile %s: %s (retry %d)", self.name, key, e,
                        queue.num_requeues(key) + 1)
                queue.add_rate_limited(key)
            except Exception:
                log.exception("%s: reconcile %s failed (retry %d)", self.name, key,
                              queue.num_requeues(key) + 1)
                queue.add_rate_limited(key)
            else:
                queue.forget(key)
                if again:
                    queue.add_after(key, again)
            queue.done(key)
