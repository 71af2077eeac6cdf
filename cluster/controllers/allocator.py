"""A bitmap of numbered slots with upstream's static/dynamic split, under ClusterIPs and NodePorts.

As upstream's `allocator.NewAllocationMapWithOffset`, the first `offset` slots form a static
band that random allocation uses only when the rest is full, so a user who picks an address or
port from the start of the range (10.96.0.10 for DNS, 30000+ for a NodePort) rarely collides
with one handed out at random (KEP-3070, KEP-3668).
"""
from __future__ import annotations

import random


class AllocationError(Exception):
    """Why a value could not be allocated; the message is upstream's."""


class AlreadyAllocated(AllocationError):
    pass


class NotInRange(AllocationError):
    pass


class RangeFull(AllocationError):
    pass


def range_offset(size: int, minimum: int, maximum: int, step: int) -> int:
    """min(max(minimum, size/step), maximum), and 0 for ranges no larger than `minimum`."""
    if size <= minimum:
        return 0
    return min(max(minimum, size // step), maximum)


class OffsetBitmap:
    """Slots 0..size-1; `allocate_next` prefers a random free slot at or above `offset`."""

    def __init__(self, size: int, offset: int, rng: random.Random | None = None,
                 reserved: tuple[int, ...] = ()):
        self.size = size
        self.offset = offset
        self._rng = rng or random.Random()
        self._used: set[int] = set()
        # reserved slots are never picked at random, only taken by name
        self._reserved = frozenset(reserved)

    def __contains__(self, slot: int) -> bool:
        return slot in self._used

    def __len__(self) -> int:
        return len(self._used)

    def take(self, slot: int) -> bool:
        """Mark `slot` used; False when it already was."""
        if slot in self._used:
            return False
        self._used.add(slot)
        return True

    def release(self, slot: int) -> None:
        self._used.discard(slot)

    def free(self) -> int:
        """Slots `allocate_next` can still hand out."""
        return self.size - len(self._used | self._reserved)

    def allocate_next(self) -> int | None:
        if self.free() <= 0:
            return None
        for low, high in ((self.offset, self.size), (0, self.offset)):
            span = high - low
            if span <= 0:
                continue
            start = self._rng.randrange(span)
            for i in range(span):
                slot = low + (start + i) % span
                if slot not in self._used and slot not in self._reserved:
                    self._used.add(slot)
                    return slot
        return None

    def used(self) -> list[int]:
        return sorted(self._used)
