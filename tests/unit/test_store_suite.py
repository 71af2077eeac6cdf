"""The store contract, run against both backends: SQLite in a temp dir and a private etcd.

Each test writes under its own key prefix, so tests can share one etcd (revisions are global
there: tests compare revisions, never expect particular numbers).
"""

import asyncio
import secrets

import pytest

from cluster.store import (Compacted, Conflict, FutureRevision, KeyExists, KeyNotFound,
                           StoreError, open_store)
from tests.support.etcd import etcd_url  # noqa: F401  (the session fixture)


@pytest.fixture(params=["sqlite", "etcd"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite://{tmp_path}/state.db"
    return request.getfixturevalue("etcd_url")


@pytest.fixture
def run(store_url):
    """run(body): open the store, await body(store), close it, all in a fresh event loop."""
    def runner(body):
        async def main():
            store = await open_store(store_url)
            try:
                return await body(store)
            finally:
                await store.close()
        return asyncio.run(main())
    return runner


@pytest.fixture
def prefix():
    return f"/registry/t{secrets.token_hex(4)}/"


async def take(watch, count, timeout=5.0):
    return [await asyncio.wait_for(anext(watch), timeout) for _ in range(count)]


def test_create_get_update_delete(run, prefix):
    key = prefix + "default/web"

    async def body(store):
        created = await store.create(key, b"v1")
        assert await store.get(key) == (b"v1", created)
        updated = await store.update(key, b"v2", created)
        assert updated > created
        assert await store.get(key) == (b"v2", updated)
        assert await store.current_revision() >= updated
        value, deleted = await store.delete(key, updated)
        assert (value, deleted > updated) == (b"v2", True)
        assert await store.get(key) is None
        assert await store.list(prefix) == ([], await store.current_revision())
    run(body)


def test_create_on_existing_key_fails_and_works_again_after_delete(run, prefix):
    key = prefix + "default/web"

    async def body(store):
        first = await store.create(key, b"v1")
        with pytest.raises(KeyExists):
            await store.create(key, b"other")
        assert await store.get(key) == (b"v1", first)
        await store.delete(key)
        again = await store.create(key, b"v2")
        assert again > first and await store.get(key) == (b"v2", again)
    run(body)


def test_update_and_delete_of_missing_keys(run, prefix):
    key = prefix + "default/ghost"

    async def body(store):
        with pytest.raises(KeyNotFound):
            await store.update(key, b"v", 1)
        with pytest.raises(KeyNotFound):
            await store.delete(key)
        revision = await store.create(key, b"v")
        await store.delete(key, revision)
        with pytest.raises(KeyNotFound):
            await store.update(key, b"v", revision)
    run(body)


def test_stale_writes_conflict_and_name_the_current_revision(run, prefix):
    key = prefix + "default/web"

    async def body(store):
        stale = await store.create(key, b"v1")
        current = await store.update(key, b"v2", stale)
        with pytest.raises(Conflict) as update_conflict:
            await store.update(key, b"lost", stale)
        assert update_conflict.value.current_revision == current
        with pytest.raises(Conflict) as delete_conflict:
            await store.delete(key, stale)
        assert delete_conflict.value.current_revision == current
        assert await store.get(key) == (b"v2", current)
    run(body)


def test_revisions_increase_across_keys(run, prefix):
    async def body(store):
        revisions = []
        for i in range(5):
            revisions.append(await store.create(f"{prefix}ns/k{i}", b"v"))
            revisions.append(await store.update(f"{prefix}ns/k{i}", b"w", revisions[-1]))
        revisions.append((await store.delete(f"{prefix}ns/k0"))[1])
        assert revisions == sorted(set(revisions))
    run(body)


def test_list_returns_only_the_prefix_in_key_order(run, prefix):
    async def body(store):
        for name in ["b", "a", "c"]:
            await store.create(f"{prefix}pods/default/{name}", name.encode())
        # Neighbours that share the prefix's characters but not the prefix itself.
        await store.create(f"{prefix}podsx/default/z", b"z")
        await store.create(f"{prefix}pod/default/y", b"y")
        items, revision = await store.list(f"{prefix}pods/")
        assert [(k.rsplit("/", 1)[1], v) for k, v, _ in items] == [
            ("a", b"a"), ("b", b"b"), ("c", b"c")]
        assert revision == await store.current_revision()
        assert all(0 < mod <= revision for _, _, mod in items)
    run(body)


def test_paginated_list_is_consistent_at_its_revision(run, prefix):
    async def body(store):
        for i in range(5):
            await store.create(f"{prefix}k{i}", b"old")
        page1, at = await store.list(prefix, limit=2)
        assert [k for k, _, _ in page1] == [f"{prefix}k0", f"{prefix}k1"]
        # Changes after the first page must not show in the later ones.
        _, rev2 = await store.get(f"{prefix}k2")
        await store.update(f"{prefix}k2", b"new", rev2)
        await store.delete(f"{prefix}k3")
        await store.create(f"{prefix}k9", b"new")
        page2, at2 = await store.list(prefix, limit=2, start_after=page1[-1][0], revision=at)
        page3, _ = await store.list(prefix, limit=2, start_after=page2[-1][0], revision=at)
        assert at2 == at
        assert [(k, v) for k, v, _ in page1 + page2 + page3] == [
            (f"{prefix}k{i}", b"old") for i in range(5)]
        now, _ = await store.list(prefix, start_after=f"{prefix}k1")
        assert [(k, v) for k, v, _ in now] == [
            (f"{prefix}k2", b"new"), (f"{prefix}k4", b"old"), (f"{prefix}k9", b"new")]
        with pytest.raises(FutureRevision):
            await store.list(prefix, revision=await store.current_revision() + 100)
    run(body)


def test_watch_replays_history_then_follows_live_changes(run, prefix):
    key, other = prefix + "default/web", prefix + "default/db"

    async def body(store):
        start = await store.current_revision()
        created = await store.create(key, b"v1")
        updated = await store.update(key, b"v2", created)
        watch = store.watch(prefix, start)
        history = await take(watch, 2)
        assert [(e.type, e.key, e.value, e.revision, e.prev_value) for e in history] == [
            ("ADDED", key, b"v1", created, None), ("MODIFIED", key, b"v2", updated, b"v1")]
        added = await store.create(other, b"d1")
        _, deleted = await store.delete(key)
        live = await take(watch, 2)
        assert [(e.type, e.key, e.value, e.revision) for e in live] == [
            ("ADDED", other, b"d1", added), ("DELETED", key, b"v2", deleted)]
        assert live[1].prev_value == b"v2"  # DELETED carries the last value
        await watch.aclose()
    run(body)


def test_watch_from_a_revision_skips_older_changes(run, prefix):
    key = prefix + "default/web"

    async def body(store):
        created = await store.create(key, b"v1")
        updated = await store.update(key, b"v2", created)
        watch = store.watch(prefix, created)
        assert [(e.type, e.revision) for e in await take(watch, 1)] == [("MODIFIED", updated)]
        await watch.aclose()
    run(body)


def test_watch_sees_only_its_prefix(run, prefix):
    async def body(store):
        watch = store.watch(prefix + "pods/", await store.current_revision())
        await store.create(prefix + "services/default/web", b"svc")
        await store.create(prefix + "podsx/default/web", b"neighbour")
        mine = await store.create(prefix + "pods/default/web", b"pod")
        events = await take(watch, 1)
        assert [(e.key, e.revision) for e in events] == [(prefix + "pods/default/web", mine)]
        await watch.aclose()
    run(body)


def test_cancelling_the_watching_task_stops_the_watch(run, prefix):
    async def body(store):
        seen = []
        start = await store.current_revision()

        async def consume():
            async for event in store.watch(prefix, start):
                seen.append(event.key)

        task = asyncio.create_task(consume())
        await store.create(prefix + "a", b"1")
        for _ in range(100):
            if seen:
                break
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await store.create(prefix + "b", b"2")  # a store with a cancelled watcher still writes
        await asyncio.sleep(0.05)
        assert seen == [prefix + "a"]
    run(body)


def test_closing_the_store_ends_its_watches(store_url, prefix):
    async def body():
        store = await open_store(store_url)
        watch = store.watch(prefix, await store.current_revision())
        waiting = asyncio.ensure_future(anext(watch))
        await asyncio.sleep(0.05)  # the watch is established and waiting for changes
        await store.close()
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(waiting, 2)
        with pytest.raises(StoreError, match="closed"):
            await store.get(prefix + "x")
    asyncio.run(body())


def test_compacted_history_cannot_be_watched_or_listed(run, prefix):
    key = prefix + "default/web"

    async def body(store):
        revisions = [await store.create(key, b"0")]
        for i in range(1, 5):
            revisions.append(await store.update(key, str(i).encode(), revisions[-1]))
        before = revisions[0] - 1
        keep = revisions[2]
        await store.compact(keep)
        await store.compact(revisions[1])  # an older compaction is a no-op
        with pytest.raises(Compacted) as listed:
            await store.list(prefix, revision=revisions[1])
        assert listed.value.compact_revision == keep
        for after in (before, keep - 1):
            with pytest.raises(Compacted) as watched:
                await take(store.watch(prefix, after), 1)
            assert watched.value.compact_revision == keep
        # The store can still be read as it was at the compacted revision, and watched after.
        items, at = await store.list(prefix, revision=keep)
        assert (items, at) == ([(key, b"2", keep)], keep)
        watch = store.watch(prefix, keep)
        assert [(e.value, e.revision) for e in await take(watch, 2)] == [
            (b"3", revisions[3]), (b"4", revisions[4])]
        await watch.aclose()
        assert await store.get(key) == (b"4", revisions[4])
    run(body)


def test_a_deletion_at_the_compacted_revision(run, prefix):
    async def body(store):
        await store.create(prefix + "gone", b"x")
        _, deleted = await store.delete(prefix + "gone")
        await store.compact(deleted)
        with pytest.raises(Compacted):
            await take(store.watch(prefix, deleted - 1), 1)
        assert await store.list(prefix, revision=deleted) == ([], deleted)
        watch = store.watch(prefix, deleted)
        created = await store.create(prefix + "next", b"y")
        assert [(e.type, e.revision) for e in await take(watch, 1)] == [("ADDED", created)]
        await watch.aclose()
    run(body)


def test_concurrent_read_modify_write_loses_no_update(run, prefix):
    key = prefix + "counter"
    workers, increments = 8, 15

    async def body(store):
        await store.create(key, b"0")
        conflicts = 0

        async def increment():
            nonlocal conflicts
            for _ in range(increments):
                while True:
                    value, revision = await store.get(key)
                    await asyncio.sleep(0)  # let the other writers read the same revision
                    try:
                        await store.update(key, str(int(value) + 1).encode(), revision)
                        break
                    except Conflict:
                        conflicts += 1

        await asyncio.gather(*(increment() for _ in range(workers)))
        value, _ = await store.get(key)
        assert int(value) == workers * increments
        assert conflicts > 0  # the writers really did race
    run(body)


def test_many_keys_written_concurrently(run, prefix):
    async def body(store):
        revisions = await asyncio.gather(
            *(store.create(f"{prefix}ns/k{i:03}", str(i).encode()) for i in range(100)))
        assert len(set(revisions)) == 100
        items, _ = await store.list(prefix)
        assert [(k, v, r) for k, v, r in items] == [
            (f"{prefix}ns/k{i:03}", str(i).encode(), revisions[i]) for i in range(100)]
    run(body)
