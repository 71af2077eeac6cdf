"""What a controller wrote and has not yet seen come back through its informer.

Upstream's ControllerExpectations: a ReplicaSet that created 5 pods must not create them again
because the pod informer has not delivered them yet, so it waits (for the adds and deletes it
expects, or for the expectations to expire) before it counts pods again. Expectations live in
memory only: after a restart the informers list everything first, so there is nothing to wait
for.
"""
from __future__ import annotations

import time
from typing import Callable, Iterable

TTL_SECONDS = 300.0  # upstream's ExpectationsTimeout


class Expectations:
    def __init__(self, ttl: float = TTL_SECONDS, clock: Callable[[], float] = time.monotonic):
        self.ttl, self.clock = ttl, clock
        self._adds: dict[str, int] = {}
        self._deletes: dict[str, set[str]] = {}
        self._since: dict[str, float] = {}

    def expect_creations(self, key: str, count: int) -> None:
        self._adds[key] = self._adds.get(key, 0) + count
        self._since[key] = self.clock()

    def creation_observed(self, key: str, count: int = 1) -> None:
        """An add came back (or a create failed and never will: lower by what did not happen)."""
        if self._adds.get(key, 0) > 0:
            self._adds[key] = max(0, self._adds[key] - count)

    def expect_deletions(self, key: str, pod_keys: Iterable[str]) -> None:
        self._deletes.setdefault(key, set()).update(pod_keys)
        self._since[key] = self.clock()

    def deletion_observed(self, key: str, pod_key: str) -> None:
        pending = self._deletes.get(key)
        if pending is not None:
            pending.discard(pod_key)

    def satisfied(self, key: str) -> bool:
        """Nothing pending, or pending so long that the writes must have been lost."""
        if self._adds.get(key, 0) <= 0 and not self._deletes.get(key):
            return True
        return self.clock() - self._since.get(key, 0.0) > self.ttl

    def forget(self, key: str) -> None:
        self._adds.pop(key, None)
        self._deletes.pop(key, None)
        self._since.pop(key, None)
