"""A rate-limited queue of keys with client-go's workqueue semantics, on asyncio.

- A key is queued at most once however often it is added (dedup).
- A key being processed (handed out by `get`, not yet `done`) is not handed to a second
  worker; adding it meanwhile marks it dirty, and `done` queues it again.
- `add_after(key, delay)` queues it later (the earliest pending time wins).
- `add_rate_limited(key)` queues it after a per-key exponential backoff (5 ms doubling up to
  1000 s, client-go's ItemExponentialFailureRateLimiter); `forget(key)` resets it after success.
- `shutdown()` wakes every waiting worker; `get` then returns None.
"""
from __future__ import annotations

import asyncio
import collections
from typing import Hashable


class ExponentialRateLimiter:
    """Per-key delay `base * 2**failures`, capped at `maximum` (seconds)."""

    def __init__(self, base: float = 0.005, maximum: float = 1000.0):
        self.base, self.maximum = base, maximum
        self._failures: dict[Hashable, int] = {}

    def when(self, key: Hashable) -> float:
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        if failures > 60:  # 2**60 times anything overflows the cap anyway
            return self.maximum
        return min(self.base * 2 ** failures, self.maximum)

    def num_requeues(self, key: Hashable) -> int:
        return self._failures.get(key, 0)

    def forget(self, key: Hashable) -> None:
        self._failures.pop(key, None)


class WorkQueue:
    """Keys to reconcile; see the module docstring for the contract."""

    def __init__(self, rate_limiter: ExponentialRateLimiter | None = None):
        self.rate_limiter = rate_limiter or ExponentialRateLimiter()
        self._queue: collections.deque = collections.deque()
        self._dirty: set = set()
        self._processing: set = set()
        self._waiting: dict[Hashable, tuple[float, asyncio.TimerHandle]] = {}
        self._getters: collections.deque[asyncio.Future] = collections.deque()
        self._shutting_down = False

    def __len__(self) -> int:
        """Keys ready to be handed out (not those processing or waiting for a delay)."""
        return len(self._queue)

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    def add(self, key: Hashable) -> None:
        if self._shutting_down or key in self._dirty:
            return
        self._dirty.add(key)
        if key in self._processing:
            return  # `done` requeues it
        self._queue.append(key)
        self._wake_one()

    def _wake_one(self) -> None:
        while self._getters:
            getter = self._getters.popleft()
            if not getter.done():
                getter.set_result(None)
                return

    async def get(self) -> Hashable | None:
        """The next key, marked processing until `done(key)`; None once shut down and empty."""
        while not self._queue:
            if self._shutting_down:
                return None
            getter = asyncio.get_running_loop().create_future()
            self._getters.append(getter)
            try:
                await getter
            except asyncio.CancelledError:
                # Pass a wakeup we were given but cannot use on to another worker.
                if getter.done() and not getter.cancelled() and self._queue:
                    self._wake_one()
                raise
        key = self._queue.popleft()
        self._processing.add(key)
        self._dirty.discard(key)
        return key

    def done(self, key: Hashable) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._queue.append(key)
            self._wake_one()

    def add_after(self, key: Hashable, delay: float) -> None:
        if self._shutting_down:
            return
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        at = loop.time() + delay
        pending = self._waiting.get(key)
        if pending is not None:
            if pending[0] <= at:
                return
            pending[1].cancel()
        self._waiting[key] = (at, loop.call_at(at, self._ready, key))

    def _ready(self, key: Hashable) -> None:
        self._waiting.pop(key, None)
        self.add(key)

    def add_rate_limited(self, key: Hashable) -> None:
        self.add_after(key, self.rate_limiter.when(key))

    def forget(self, key: Hashable) -> None:
        self.rate_limiter.forget(key)

    def num_requeues(self, key: Hashable) -> int:
        return self.rate_limiter.num_requeues(key)

    def shutdown(self) -> None:
        """Stop accepting keys, drop delayed ones, and wake every waiting `get`."""
        self._shutting_down = True
        for _, handle in self._waiting.values():
            handle.cancel()
        self._waiting.clear()
        while self._getters:
            getter = self._getters.popleft()
            if not getter.done():
                getter.set_result(None)
