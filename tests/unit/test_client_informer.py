"""Informers against the real API server (in-process, SQLite): list+watch into the cache, relist
after 410 with DeletedFinalStateUnknown, bookmarks moving the resume point, indexes, sharing."""

import asyncio
import logging

import pytest

from cluster.apiserver import watch as server_watch
from cluster.client import (Backoff, DeletedFinalStateUnknown, Informer,
                            SharedInformerFactory, index_by_field)
from tests.support.apiserver import running_apiserver, sqlite_apiserver  # noqa: F401  (fixture)
from tests.unit.test_client_rest import (CONFIGMAPS, CONTAINERS, NAMESPACES, PODS, api, ns,  # noqa: F401
                                         run_with_client)


async def until(condition, timeout=5.0, what="the condition"):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            pytest.fail(f"{what} did not hold within {timeout}s")
        await asyncio.sleep(0.01)


def on_server(api, coro):
    """Await a coroutine on the API server's own loop (its thread)."""
    return asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, api.loop))


@pytest.fixture
def restartable(tmp_path):
    """A server of the test's own, free to stop, restart and compact."""
    with running_apiserver(f"sqlite://{tmp_path}/state.db", str(tmp_path)) as api:
        yield api


async def restart(api):
    """Stop the server as a crash would (its store closed under it, every watch cut) and start
    it again on the same address over the same database."""
    async def stop_and_start(server):
        await server.store.close()
        await server.stop()
        await server.start()
    await on_server(api, stop_and_start(api.server))


def recording(informer):
    events = []
    informer.add_event_handler(
        on_add=lambda o: events.append(("add", o["metadata"]["name"])),
        on_update=lambda old, new: events.append(("update", new["metadata"]["name"],
                                                  (old.get("data") or {}).get("v"),
                                                  (new.get("data") or {}).get("v"))),
        on_delete=lambda o: events.append(("delete", o)))
    return events


def names(informer):
    return sorted(o["metadata"]["name"] for o in informer.indexer.list())


def test_list_then_watch_delivers_adds_updates_and_deletes_into_the_cache(api, ns):
    async def body(c):
        await c.create(CONFIGMAPS, {"metadata": {"name": "listed"}, "data": {"v": "1"}}, ns)
        informer = Informer(c, CONFIGMAPS, ns)
        events = recording(informer)
        async with informer:
            assert await informer.wait_for_sync(5) and informer.has_synced()
            assert events == [("add", "listed")]  # handlers ran before sync is reported
            await c.create(CONFIGMAPS, {"metadata": {"name": "watched"}, "data": {"v": "1"}}, ns)
            await c.patch(CONFIGMAPS, "listed", {"data": {"v": "2"}}, ns)
            await c.delete(CONFIGMAPS, "watched", ns)
            await until(lambda: len(events) == 4, what="three watch events")
        assert events[1:3] == [("add", "watched"), ("update", "listed", "1", "2")]
        kind, deleted = events[3]
        assert kind == "delete" and deleted["metadata"]["name"] == "watched"
        assert names(informer) == ["listed"]
        cached = informer.indexer.get_by_key(f"{ns}/listed")
        assert cached["kind"] == "ConfigMap" and cached["data"] == {"v": "2"}
    run_with_client(api, body)


def test_a_relist_after_410_ends_with_the_right_cache_and_a_final_state_unknown_delete(restartable, caplog):
    api = restartable
    caplog.set_level(logging.INFO, logger="cluster.client.informer")

    async def body(c):
        ns = (await c.create(NAMESPACES, {"metadata": {"name": "t"}}))["metadata"]["name"]
        for name in ("gone", "changed", "same"):
            await c.create(CONFIGMAPS, {"metadata": {"name": name}, "data": {"v": "1"}}, ns)
        informer = Informer(c, CONFIGMAPS, ns, backoff=Backoff(initial=1.0, jitter=0))
        events = recording(informer)
        async with informer:
            await informer.wait_for_sync(5)
            del events[:]
            # The watch breaks; while the reflector waits to reconnect, objects change and the
            # history it would resume from is compacted away.
            await restart(api)
            await c.delete(CONFIGMAPS, "gone", ns)
            await c.patch(CONFIGMAPS, "changed", {"data": {"v": "2"}}, ns)
            await c.create(CONFIGMAPS, {"metadata": {"name": "new"}, "data": {"v": "1"}}, ns)
            head = await on_server(api, api.server.store.current_revision())
            await on_server(api, api.server.store.compact(head))
            await until(lambda: names(informer) == ["changed", "new", "same"], what="the relist")
            await until(lambda: any(e[0] == "delete" for e in events))
        assert informer.reflector.lists == 2
        assert any("too old resource version" in r.getMessage() for r in caplog.records)
        deletes = [e[1] for e in events if e[0] == "delete"]
        assert deletes == [DeletedFinalStateUnknown(f"{ns}/gone", deletes[0].obj)]
        assert deletes[0].obj["metadata"]["name"] == "gone"  # the last state the cache saw
        assert ("update", "changed", "1", "2") in events and ("add", "new") in events
        assert informer.indexer.get_by_key(f"{ns}/changed")["data"] == {"v": "2"}
    run_with_client(api, body)


def test_bookmarks_move_the_resume_point_past_changes_the_informer_does_not_select(
        restartable, monkeypatch):
    api = restartable
    monkeypatch.setattr(server_watch, "BOOKMARK_INTERVAL", 0.1)

    async def body(c):
        ns = (await c.create(NAMESPACES, {"metadata": {"name": "t"}}))["metadata"]["name"]
        await c.create(CONFIGMAPS, {"metadata": {"name": "mine", "labels": {"app": "mine"}}}, ns)
        await c.create(CONFIGMAPS, {"metadata": {"name": "other"}}, ns)
        informer = Informer(c, CONFIGMAPS, ns, label_selector="app=mine",
                            backoff=Backoff(initial=0.2, jitter=0))
        events = recording(informer)
        async with informer:
            await informer.wait_for_sync(5)
            for i in range(3):
                last = await c.patch(CONFIGMAPS, "other", {"data": {"i": str(i)}}, ns)
            head = last["metadata"]["resourceVersion"]
            await until(lambda: informer.last_sync_resource_version == head, what="a bookmark at " + head)
            assert events == [("add", "mine")]  # no event reached the handlers
            # Resuming from the bookmark survives a compaction up to it: no relist needed.
            await restart(api)
            await on_server(api, api.server.store.compact(int(head)))
            await c.patch(CONFIGMAPS, "mine", {"data": {"v": "after"}}, ns)
            await until(lambda: ("update", "mine", None, "after") in events, what="the resumed watch")
        assert informer.reflector.lists == 1
    run_with_client(api, body)


def test_an_index_by_node_answers_which_pods_run_on_a_node(api, ns):
    async def body(c):
        informer = Informer(c, PODS, ns, indexers={"node": index_by_field("spec.nodeName")})
        async with informer:
            await informer.wait_for_sync(5)
            for name in ("a", "b", "c"):
                await c.create(PODS, {"metadata": {"name": name}, "spec": CONTAINERS}, ns)
            for name, node in (("a", "node-1"), ("b", "node-2"), ("c", "node-1")):
                await c.create(PODS, {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
                                      "target": {"kind": "Node", "name": node}}, ns,
                               subresource="binding")
            await until(lambda: len(informer.indexer.by_index("node", "node-1")) == 2)
            assert informer.indexer.index_keys("node", "node-1") == [f"{ns}/a", f"{ns}/c"]
            assert [p["metadata"]["name"] for p in informer.indexer.by_index("node", "node-2")] == ["b"]
            await c.delete(PODS, "c", ns, grace_period_seconds=0)
            await until(lambda: informer.indexer.index_keys("node", "node-1") == [f"{ns}/a"])
    run_with_client(api, body)


def test_the_factory_shares_one_informer_per_resource_namespace_and_selector(api, ns):
    async def body(c):
        await c.create(CONFIGMAPS, {"metadata": {"name": "x", "labels": {"app": "a"}}}, ns)
        factory = SharedInformerFactory(c)
        first = factory.informer(CONFIGMAPS, ns)
        assert factory.informer(CONFIGMAPS, ns) is first
        selected = factory.informer(CONFIGMAPS, ns, label_selector="app=b")
        assert selected is not first
        factory.start()
        try:
            assert await factory.wait_for_sync(5)
            assert names(first) == ["x"] and names(selected) == []
            late = recording(first)  # a handler added after the cache filled hears of it all
            assert late == [("add", "x")]
        finally:
            await factory.shutdown()
    run_with_client(api, body)


def test_resync_replays_every_cached_object_as_an_update(api, ns):
    async def body(c):
        await c.create(CONFIGMAPS, {"metadata": {"name": "r"}, "data": {"v": "1"}}, ns)
        informer = Informer(c, CONFIGMAPS, ns, resync_period=0.1)
        events = recording(informer)
        async with informer:
            await until(lambda: ("update", "r", "1", "1") in events, what="a resync")
    run_with_client(api, body)
