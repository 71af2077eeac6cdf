"""What only the SQLite store does: persistence, one owner per file, kine's table, backlog."""

import asyncio
import sqlite3

import pytest

from cluster.store import Compacted, StoreError, open_store
from cluster.store import sqlite as sqlite_store


def run(body):
    return asyncio.run(body())


def test_state_and_revisions_survive_a_restart(tmp_path):
    url = f"sqlite://{tmp_path}/state.db"

    async def first():
        store = await open_store(url)
        created = await store.create("/registry/pods/default/web", b"v1")
        updated = await store.update("/registry/pods/default/web", b"v2", created)
        await store.create("/registry/pods/default/tmp", b"x")
        await store.delete("/registry/pods/default/tmp")
        await store.compact(updated)
        last = await store.current_revision()
        await store.close()
        return created, updated, last

    created, updated, last = run(first)

    async def second():
        store = await open_store(url)
        try:
            assert await store.get("/registry/pods/default/web") == (b"v2", updated)
            assert await store.current_revision() == last
            assert await store.create("/registry/pods/default/db", b"d") == last + 1
            with pytest.raises(Compacted):
                await store.list("/registry/", revision=created)
        finally:
            await store.close()
    run(second)


def test_a_second_server_on_the_same_file_is_refused(tmp_path):
    url = f"sqlite://{tmp_path}/state.db"

    async def body():
        store = await open_store(url)
        try:
            with pytest.raises(StoreError, match="in use by another process") as refused:
                await open_store(url)
            assert url in str(refused.value)
        finally:
            await store.close()
        reopened = await open_store(url)  # once the owner is gone it opens again
        await reopened.close()
    run(body)


def test_the_table_itself_refuses_two_successors_of_one_row(tmp_path):
    path = tmp_path / "state.db"

    async def body():
        store = await open_store(f"sqlite://{path}")
        revision = await store.create("/registry/pods/default/web", b"v1")
        await store.update("/registry/pods/default/web", b"v2", revision)
        await store.close()
        return revision

    revision = run(body)
    # Any other writer of the file (kine's own layout) hits the same unique index.
    db = sqlite3.connect(path)
    with pytest.raises(sqlite3.IntegrityError):
        db.execute("INSERT INTO kine (name, created, deleted, create_revision, prev_revision, "
                   "value) VALUES (?, 0, 0, ?, ?, ?)",
                   ("/registry/pods/default/web", revision, revision, b"lost"))
    db.close()


def test_compaction_removes_superseded_rows_and_tombstones(tmp_path):
    path = tmp_path / "state.db"

    async def body():
        store = await open_store(f"sqlite://{path}")
        revision = await store.create("/registry/configmaps/default/c", b"0")
        for i in range(1, 200):
            revision = await store.update("/registry/configmaps/default/c", b"%d" % i, revision)
        gone = await store.create("/registry/configmaps/default/gone", b"x")
        await store.delete("/registry/configmaps/default/gone", gone)
        await store.create("/registry/configmaps/default/last", b"y")
        await store.compact(await store.current_revision())
        assert await store.get("/registry/configmaps/default/c") == (b"199", revision)
        await store.close()

    run(body)
    db = sqlite3.connect(path)
    names = [name for (name,) in db.execute("SELECT name FROM kine ORDER BY id")]
    db.close()
    assert names == ["/registry/configmaps/default/c", "/registry/configmaps/default/last"]


def test_a_watcher_that_falls_behind_still_gets_every_event(tmp_path, monkeypatch):
    monkeypatch.setattr(sqlite_store, "MAX_BACKLOG", 5)

    async def body():
        store = await open_store("sqlite://:memory:")
        watch = store.watch("/registry/", 0)
        first = await store.create("/registry/k", b"0")
        assert (await anext(watch)).revision == first  # subscribed, now stop reading
        revision = first
        for i in range(1, 50):
            revision = await store.update("/registry/k", b"%d" % i, revision)
        values = [(await anext(watch)).value for _ in range(49)]
        assert values == [b"%d" % i for i in range(1, 50)]
        await store.create("/registry/live", b"")
        assert (await asyncio.wait_for(anext(watch), 2)).key == "/registry/live"
        await watch.aclose()
        await store.close()
    run(body)

