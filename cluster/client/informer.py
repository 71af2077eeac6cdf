"""Reflector, Informer and SharedInformerFactory: a local, always-current copy of a resource.

As client-go's: the Reflector lists (page by page, at one revision) and then watches from the
list's resourceVersion, feeding a DeltaFIFO; a watch that ends is resumed from the last
resourceVersion seen (bookmarks advance it, so a quiet watch does not fall behind compaction);
410 Expired means the history is gone, so it lists again, and the DeltaFIFO turns objects that
vanished meanwhile into deletions of `DeletedFinalStateUnknown`. A server that is away or
failing (unreachable, 5xx, 429, a watch closed at once) is watched again from the same point
after a backoff (0.8 s doubling to 30 s, with jitter); any other failure lists again after it.

The Informer pops the DeltaFIFO, applies each change to its Indexer and then calls the event
handlers (`on_add(obj)`, `on_update(old, new)`, `on_delete(obj_or_DeletedFinalStateUnknown)`),
so a handler always finds the cache already holding what it was told. Everything runs as tasks
on the caller's event loop; handlers should be quick (enqueue a key, see controller.py) and may
be coroutines.
"""
from __future__ import annotations

import asyncio
import copy
import inspect
import logging
import random
from typing import Callable

from cluster.api.errors import APIError
from cluster.api.resources import Resource

from . import fifo as fifo_
from .cache import NAMESPACE_INDEX, IndexFunc, Indexer, index_by_namespace
from .rest import Client

log = logging.getLogger(__name__)

# Watches are re-opened after a random 5-10 minutes (client-go's minWatchTimeout spread), so
# many clients do not all reconnect at once after the server restarts.
WATCH_TIMEOUT = (300, 600)


class Backoff:
    """Exponential backoff with jitter; `reset()` after a success."""

    def __init__(self, initial: float = 0.8, maximum: float = 30.0, factor: float = 2.0,
                 jitter: float = 1.0):
        self.initial, self.maximum, self.factor, self.jitter = initial, maximum, factor, jitter
        self._next = initial

    def delay(self) -> float:
        """The next wait: `initial`, then growing by `factor` up to `maximum`, each plus up to
        `jitter` times itself at random."""
        base = self._next
        self._next = min(self._next * self.factor, self.maximum)
        return base * (1 + random.random() * self.jitter)

    def reset(self) -> None:
        self._next = self.initial


class _Expired(Exception):
    """The resume point was compacted away: list again."""


class Reflector:
    """Keeps a DeltaFIFO in step with the server's view of one resource (and selectors)."""

    def __init__(self, client: Client, resource: Resource, store: fifo_.DeltaFIFO, *,
                 namespace: str | None = None, label_selector: str = "", field_selector: str = "",
                 page_size: int = 500, backoff: Backoff | None = None,
                 watch_timeout: tuple[float, float] = WATCH_TIMEOUT):
        self.client, self.resource, self.store = client, resource, store
        self.namespace, self.label_selector, self.field_selector = namespace, label_selector, field_selector
        self.page_size = page_size
        self.backoff = backoff or Backoff()
        self.watch_timeout = watch_timeout
        self.last_sync_resource_version = ""
        self.lists = 0  # how many (re)lists ran: relists after 410 show up here

    def __repr__(self) -> str:
        where = f" in {self.namespace}" if self.namespace else ""
        return f"Reflector({self.resource.plural}{where})"

    async def run(self) -> None:
        """List and watch until cancelled."""
        while True:
            try:
                await self._list()
                await self._watch()
            except _Expired as e:
                log.info("%r: %s; listing again", self, e)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # any failure: the next list repairs the cache
                delay = self.backoff.delay()
                log.warning("%r: %s; listing again in %.1fs", self, e, delay)
                await asyncio.sleep(delay)

    async def _list(self) -> None:
        items, rv = await self.client.list_all(self.resource, self.namespace,
                                               label_selector=self.label_selector,
                                               field_selector=self.field_selector,
                                               page_size=self.page_size)
        kind, api_version = self.resource.kind, self.resource.api_version
        for item in items:
            # List items carry no kind (the list does); handlers expect whole objects.
            item.setdefault("kind", kind)
            item.setdefault("apiVersion", api_version)
        self.store.replace(items)
        self.last_sync_resource_version = rv
        self.lists += 1

    async def _watch(self) -> None:
        """Watch from the last resourceVersion, again and again; returns never, raises to relist."""
        store = self.store
        while True:
            watch = self.client.watch(self.resource, self.namespace,
                                      resource_version=self.last_sync_resource_version,
                                      label_selector=self.label_selector,
                                      field_selector=self.field_selector, allow_bookmarks=True,
                                      timeout_seconds=int(random.uniform(*self.watch_timeout)))
            started, events = asyncio.get_running_loop().time(), 0
            try:
                async with watch:
                    async for type_, obj in watch:
                        events += 1
                        self.backoff.reset()  # the server answers again
                        if type_ == "ADDED":
                            store.add(obj)
                        elif type_ == "MODIFIED":
                            store.update(obj)
                        elif type_ == "DELETED":
                            store.delete(obj)
                        # BOOKMARK: only the resume point moves.
                        self.last_sync_resource_version = watch.resource_version
                if events or asyncio.get_running_loop().time() - started >= 1:
                    continue  # the server's timeout: resume at once
                # client-go's "very short watch": a server closing at once (e.g. shutting
                # down) must not make us spin; the resume point is still good.
                reason = "the watch closed at once without an event"
            except APIError as e:  # Unreachable included
                if e.code == 410:
                    raise _Expired(e.message) from e
                if e.code < 500 and e.code != 429:
                    raise  # e.g. 403: list again, which also reports the refusal
                reason = str(e)  # the server is away or busy; the resume point is still good
            delay = self.backoff.delay()
            log.info("%r: %s; watching again from resourceVersion %s in %.1fs", self, reason,
                     self.last_sync_resource_version, delay)
            await asyncio.sleep(delay)


Handler = Callable[..., object]


class _Handlers:
    __slots__ = ("on_add", "on_update", "on_delete")

    def __init__(self, on_add, on_update, on_delete):
        self.on_add, self.on_update, self.on_delete = on_add, on_update, on_delete


class Informer:
    """A cache of one resource (in a namespace, with selectors) kept current by a Reflector,
    with event handlers; `start()` it, `await wait_for_sync()`, read `indexer`."""

    def __init__(self, client: Client, resource: Resource, namespace: str | None = None, *,
                 label_selector: str = "", field_selector: str = "", resync_period: float = 0,
                 indexers: dict[str, IndexFunc] | None = None, page_size: int = 500,
                 backoff: Backoff | None = None):
        self.resource = resource
        self.indexer = Indexer({NAMESPACE_INDEX: index_by_namespace, **(indexers or {})})
        self.fifo = fifo_.DeltaFIFO(self.indexer)
        self.reflector = Reflector(client, resource, self.fifo, namespace=namespace,
                                   label_selector=label_selector, field_selector=field_selector,
                                   page_size=page_size, backoff=backoff)
        self.resync_period = resync_period
        self._handlers: list[_Handlers] = []
        self._tasks: list[asyncio.Task] = []
        self._replays: set[asyncio.Future] = set()

    def __repr__(self) -> str:
        return f"Informer({self.reflector!r})"

    def add_indexers(self, indexers: dict[str, IndexFunc]) -> None:
        self.indexer.add_indexers(indexers)

    def add_event_handler(self, on_add: Handler | None = None, on_update: Handler | None = None,
                          on_delete: Handler | None = None) -> None:
        """Register handlers; one added after the cache filled is told of every object, as an add."""
        handlers = _Handlers(on_add, on_update, on_delete)
        self._handlers.append(handlers)
        if on_add is not None and len(self.indexer):
            # Plain handlers replay at once; coroutine handlers in a task of their own.
            replay = [on_add(obj) for obj in self.indexer.list()]
            pending = [r for r in replay if inspect.isawaitable(r)]
            if pending:
                task = asyncio.ensure_future(asyncio.gather(*pending))
                self._replays.add(task)
                task.add_done_callback(self._replays.discard)

    @property
    def started(self) -> bool:
        return bool(self._tasks)

    def start(self) -> None:
        """Start listing, watching and dispatching on the running loop (again: no effect)."""
        if self.started:
            return
        self._tasks.append(asyncio.create_task(self.reflector.run(), name=repr(self.reflector)))
        self._tasks.append(asyncio.create_task(self._process_loop(), name=f"{self!r} handlers"))
        if self.resync_period > 0:
            self._tasks.append(asyncio.create_task(self._resync_loop(), name=f"{self!r} resync"))

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks + list(self._replays), []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def __aenter__(self) -> "Informer":
        self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    def has_synced(self) -> bool:
        """True once the first list has reached the cache and the handlers."""
        return self.fifo.has_synced()

    async def wait_for_sync(self, timeout: float | None = None) -> bool:
        """Wait until has_synced(); False if `timeout` seconds pass first."""
        try:
            await asyncio.wait_for(self.fifo.synced.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    @property
    def last_sync_resource_version(self) -> str:
        return self.reflector.last_sync_resource_version

    async def _resync_loop(self) -> None:
        while True:
            await asyncio.sleep(self.resync_period)
            self.fifo.resync()

    async def _process_loop(self) -> None:
        while True:
            await self.fifo.pop(self._process)

    async def _process(self, key: str, deltas: list[fifo_.Delta]) -> None:
        indexer = self.indexer
        for delta in deltas:
            obj = delta.object
            old = indexer.get_by_key(key)
            if delta.type == fifo_.DELETED:
                if old is None:
                    continue  # added and deleted before the cache saw it: nobody was told
                indexer.delete_key(key)
                await self._dispatch("on_delete", obj)
            elif old is not None:
                indexer.update(obj)
                await self._dispatch("on_update", old, obj)
            else:
                indexer.add(obj)
                await self._dispatch("on_add", obj)

    async def _dispatch(self, name: str, *args) -> None:
        for handlers in self._handlers:
            handler = getattr(handlers, name)
            if handler is None:
                continue
            try:
                result = handler(*args)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                # A failing handler must not stop the cache or the other handlers.
                log.exception("%r: %s handler failed", self, name)


class SharedInformerFactory:
    """One Informer per (resource, namespace, selectors), shared by every controller asking."""

    def __init__(self, client: Client, *, resync_period: float = 0, backoff: Backoff | None = None):
        self.client = client
        self.resync_period = resync_period
        self.backoff = backoff
        self._informers: dict[tuple, Informer] = {}

    def informer(self, resource: Resource, namespace: str | None = None, *,
                 label_selector: str = "", field_selector: str = "",
                 indexers: dict[str, IndexFunc] | None = None) -> Informer:
        """The shared informer; `indexers` are added to it if it does not have them yet."""
        key = (resource, namespace, label_selector, field_selector)
        informer = self._informers.get(key)
        if informer is None:
            informer = self._informers[key] = Informer(
                self.client, resource, namespace, label_selector=label_selector,
                field_selector=field_selector, resync_period=self.resync_period,
                backoff=copy.copy(self.backoff))
        missing = {n: f for n, f in (indexers or {}).items() if not informer.indexer.has_index(n)}
        if missing:
            informer.add_indexers(missing)
        return informer

    def start(self) -> None:
        """Start every informer not yet started (call again after asking for more)."""
        for informer in self._informers.values():
            informer.start()

    async def wait_for_sync(self, timeout: float | None = None) -> bool:
        results = await asyncio.gather(*(i.wait_for_sync(timeout) for i in self._informers.values()))
        return all(results)

    async def shutdown(self) -> None:
        await asyncio.gather(*(i.stop() for i in self._informers.values()))
