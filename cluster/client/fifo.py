"""DeltaFIFO: the queue between a Reflector (which adds) and an Informer (which pops).

As client-go's DeltaFIFO, it holds per key the changes (Deltas) not yet applied to the cache,
and hands out keys in the order they were first queued, so a key changed many times is handled
once, with all its pending changes. `replace(objects)` after a (re)list queues a Replaced delta
per listed object and, for every object the cache (or the queue) knows that the list no longer
has, a Deleted delta carrying `DeletedFinalStateUnknown`: it vanished while no watch was open.

Unlike client-go, pending deltas are compressed as they arrive, so a key never holds more than
a deletion and a re-creation, however many events piled up: consumers are level-triggered and
need the latest state, and a slow consumer then costs one entry per key, not one per event.
"""
from __future__ import annotations

import asyncio
import collections
import inspect
from dataclasses import dataclass
from typing import Awaitable, Callable

from .cache import DeletedFinalStateUnknown, Indexer

ADDED, UPDATED, DELETED, REPLACED, SYNC = "Added", "Updated", "Deleted", "Replaced", "Sync"


@dataclass(frozen=True)
class Delta:
    type: str
    object: dict | DeletedFinalStateUnknown


class FIFOClosed(Exception):
    """pop() on a closed DeltaFIFO."""


def _merge(pending: list[Delta], new: Delta) -> None:
    """Append `new` to a key's pending deltas, keeping only what a consumer still needs."""
    if not pending:
        pending.append(new)
        return
    last = pending[-1]
    if new.type == DELETED:
        if last.type == DELETED:
            # Two deletions: keep the one that knows the final state (client-go's isDeletionDup).
            if isinstance(last.object, DeletedFinalStateUnknown):
                pending[-1] = new
        else:
            pending[-1] = new
            if len(pending) > 1 and pending[-2].type == DELETED:
                pending.pop(-2)
        return
    if last.type == DELETED:
        pending.append(new)
    else:
        # A newer state supersedes an unapplied one; an object not yet added stays "Added".
        pending[-1] = Delta(ADDED if last.type == ADDED else new.type, new.object)


class DeltaFIFO:
    """Pending deltas per key, popped in FIFO order of keys; `known` is the informer's cache."""

    def __init__(self, known: Indexer):
        self.known = known
        self.key_func = known.key_func
        self._items: dict[str, list[Delta]] = {}
        self._queue: collections.deque[str] = collections.deque()
        self._wakeup = asyncio.Event()
        self._closed = False
        self._populated = False
        self._initial_population = 0
        self.synced = asyncio.Event()  # set when has_synced() becomes true

    def _queue_delta(self, type_: str, obj) -> None:
        key = obj.key if isinstance(obj, DeletedFinalStateUnknown) else self.key_func(obj)
        pending = self._items.get(key)
        if pending is None:
            pending = self._items[key] = []
            self._queue.append(key)
            self._wakeup.set()
        _merge(pending, Delta(type_, obj))

    def add(self, obj: dict) -> None:
        self._populated = True
        self._queue_delta(ADDED, obj)

    def update(self, obj: dict) -> None:
        self._populated = True
        self._queue_delta(UPDATED, obj)

    def delete(self, obj: dict) -> None:
        self._populated = True
        self._queue_delta(DELETED, obj)

    def replace(self, objs: list[dict]) -> None:
        """The complete current set after a (re)list."""
        listed = set()
        for obj in objs:
            listed.add(self.key_func(obj))
            self._queue_delta(REPLACED, obj)
        for key in self.known.list_keys():
            if key not in listed:
                self._queue_delta(DELETED, DeletedFinalStateUnknown(key, self.known.get_by_key(key)))
        for key, pending in list(self._items.items()):
            # Queued but never applied, and gone from the list: it must not be added later.
            if key not in listed and key not in self.known and pending[-1].type != DELETED:
                self._queue_delta(DELETED, DeletedFinalStateUnknown(key, pending[-1].object))
        if not self._populated:
            self._populated = True
            self._initial_population = len(self._queue)
            if not self._initial_population:
                self.synced.set()

    def resync(self) -> None:
        """A Sync delta for every cached object with nothing pending (pending changes win)."""
        for key in self.known.list_keys():
            if key not in self._items:
                self._queue_delta(SYNC, self.known.get_by_key(key))

    def has_synced(self) -> bool:
        """True once the first list (or any add) was queued and all of the first list was popped."""
        return self._populated and self._initial_population == 0

    def __len__(self) -> int:
        return len(self._queue)

    def close(self) -> None:
        self._closed = True
        self._wakeup.set()

    async def pop(self, process: Callable[[str, list[Delta]], Awaitable[None] | None]) -> None:
        """Wait for a key, hand it and its deltas to `process`, and count it as processed after."""
        while not self._queue:
            if self._closed:
                raise FIFOClosed("the DeltaFIFO was closed")
            self._wakeup.clear()
            await self._wakeup.wait()
        key = self._queue.popleft()
        deltas = self._items.pop(key)
        try:
            result = process(key, deltas)
            if inspect.isawaitable(result):
                await result
        finally:
            if self._initial_population > 0:
                self._initial_population -= 1
                if not self._initial_population:
                    self.synced.set()
