"""Periodic compaction keeps one interval of history and never less than keep_revisions."""

import asyncio

import pytest

from cluster.store import Compacted, compact_periodically, open_store

INTERVAL = 0.2


async def compacted_after_one_tick(extra_writes: int) -> int:
    """Write revisions 1-10, start the compactor, write `extra_writes` more, wait one tick."""
    store = await open_store("sqlite://:memory:")
    revision = await store.create("/registry/k", b"0")
    for i in range(1, 10):
        revision = await store.update("/registry/k", b"%d" % i, revision)
    compactor = asyncio.create_task(compact_periodically(store, INTERVAL, keep_revisions=3))
    await asyncio.sleep(0)  # the compactor notes the head, 10, as its first mark
    for i in range(extra_writes):
        revision = await store.update("/registry/k", b"x", revision)
    try:
        for _ in range(int(4 * INTERVAL / 0.005)):
            await asyncio.sleep(0.005)
            try:
                await store.list("/registry/", revision=1)
            except Compacted as compacted:
                return compacted.compact_revision
        pytest.fail("no compaction within four intervals")
    finally:
        compactor.cancel()
        await store.close()


def test_history_since_the_previous_tick_is_kept():
    assert asyncio.run(compacted_after_one_tick(extra_writes=10)) == 10


def test_at_least_keep_revisions_are_kept():
    assert asyncio.run(compacted_after_one_tick(extra_writes=1)) == 11 - 3
