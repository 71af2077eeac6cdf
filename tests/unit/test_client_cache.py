"""The Indexer and the DeltaFIFO without a server: keys, indexes, delta compression, relists."""

import asyncio

import pytest

from cluster.client.cache import (DeletedFinalStateUnknown, Indexer, index_by_field,
                                  index_by_namespace, meta_namespace_key, split_key)
from cluster.client.fifo import ADDED, DELETED, REPLACED, SYNC, UPDATED, DeltaFIFO


def pod(name, ns="default", node="", rv="1", labels=None):
    obj = {"metadata": {"name": name, "namespace": ns, "resourceVersion": rv,
                        "labels": labels or {}}, "spec": {}}
    if node:
        obj["spec"]["nodeName"] = node
    return obj


def test_keys_are_namespace_slash_name_or_the_name_of_a_cluster_scoped_object():
    assert meta_namespace_key(pod("web", "shop")) == "shop/web"
    assert meta_namespace_key({"metadata": {"name": "node-1"}}) == "node-1"
    assert split_key("shop/web") == ("shop", "web") and split_key("node-1") == ("", "node-1")
    assert meta_namespace_key(DeletedFinalStateUnknown("shop/web", pod("web", "shop"))) == "shop/web"


def test_an_index_by_node_follows_pods_as_they_are_bound_moved_and_deleted():
    cache = Indexer({"node": index_by_field("spec.nodeName"), "namespace": index_by_namespace})
    cache.add(pod("a", node="n1"))
    cache.add(pod("b", node="n1"))
    cache.add(pod("c"))  # not scheduled: not indexed under any node
    assert [p["metadata"]["name"] for p in cache.by_index("node", "n1")] == ["a", "b"]
    assert cache.index_values("node") == ["n1"]
    cache.update(pod("b", node="n2", rv="2"))
    cache.update(pod("c", node="n2", rv="2"))
    assert cache.index_keys("node", "n1") == ["default/a"]
    assert cache.index_keys("node", "n2") == ["default/b", "default/c"]
    cache.delete(pod("a"))
    assert cache.by_index("node", "n1") == [] and "n1" not in cache.index_values("node")
    assert len(cache) == 2 and cache.get_by_key("default/b")["metadata"]["resourceVersion"] == "2"
    with pytest.raises(KeyError, match="index 'zone' does not exist; known: node, namespace"):
        cache.by_index("zone", "a")


def test_an_index_added_later_covers_the_objects_already_cached():
    cache = Indexer()
    cache.add(pod("a", node="n1"))
    cache.add_indexers({"node": index_by_field("spec.nodeName")})
    assert cache.index_keys("node", "n1") == ["default/a"]


def test_list_filters_by_namespace_and_label_selector():
    cache = Indexer({"namespace": index_by_namespace})
    cache.add(pod("a", "x", labels={"app": "web"}))
    cache.add(pod("b", "x", labels={"app": "db"}))
    cache.add(pod("c", "y", labels={"app": "web"}))
    assert [p["metadata"]["name"] for p in cache.list("x")] == ["a", "b"]
    assert sorted(p["metadata"]["name"] for p in cache.list(label_selector="app in (web)")) == ["a", "c"]
    assert [p["metadata"]["name"] for p in cache.list("x", "app!=web")] == ["b"]


async def _drain(fifo):
    popped = []
    while len(fifo):
        await fifo.pop(lambda key, deltas: popped.append((key, [(d.type, d.object) for d in deltas])))
    return popped


def _types(popped):
    return [(key, [t for t, _ in deltas]) for key, deltas in popped]


def test_many_changes_to_one_key_are_popped_once_with_the_latest_state():
    async def body():
        fifo = DeltaFIFO(Indexer())
        fifo.add(pod("a", rv="1"))
        fifo.add(pod("b", rv="2"))
        for rv in "345":
            fifo.update(pod("a", rv=rv))
        popped = await _drain(fifo)
        assert _types(popped) == [("default/a", [ADDED]), ("default/b", [ADDED])]
        assert popped[0][1][0][1]["metadata"]["resourceVersion"] == "5"
    asyncio.run(body())


def test_a_deletion_and_a_recreation_both_survive_compression():
    async def body():
        known = Indexer()
        known.add(pod("a", rv="1"))
        fifo = DeltaFIFO(known)
        fifo.update(pod("a", rv="2"))
        fifo.delete(pod("a", rv="3"))
        fifo.add(pod("a", rv="4"))
        fifo.update(pod("a", rv="5"))
        popped = await _drain(fifo)
        assert _types(popped) == [("default/a", [DELETED, ADDED])]
        assert [o["metadata"]["resourceVersion"] for _, o in popped[0][1]] == ["3", "5"]
    asyncio.run(body())


def test_a_relist_replaces_and_turns_objects_that_vanished_into_deleted_final_state_unknown():
    async def body():
        known = Indexer()
        known.add(pod("kept", rv="1"))
        known.add(pod("gone", rv="1"))
        fifo = DeltaFIFO(known)
        fifo.add(pod("queued-then-gone", rv="2"))
        fifo.replace([pod("kept", rv="3"), pod("new", rv="4")])
        popped = dict((k, d) for k, d in await _drain(fifo))
        assert [t for t, _ in popped["default/kept"]] == [REPLACED]
        assert [t for t, _ in popped["default/new"]] == [REPLACED]
        (t, gone), = popped["default/gone"]
        assert t == DELETED and gone == DeletedFinalStateUnknown("default/gone", pod("gone", rv="1"))
        (t, queued), = popped["default/queued-then-gone"]
        assert t == DELETED and isinstance(queued, DeletedFinalStateUnknown)
    asyncio.run(body())


def test_a_known_deletion_wins_over_an_unknown_final_state():
    async def body():
        known = Indexer()
        known.add(pod("a", rv="1"))
        fifo = DeltaFIFO(known)
        fifo.delete(pod("a", rv="2"))
        fifo.replace([])
        (_, deltas), = await _drain(fifo)
        assert [(t, o["metadata"]["resourceVersion"]) for t, o in deltas] == [(DELETED, "2")]
    asyncio.run(body())


def test_resync_queues_cached_objects_without_pending_changes_only():
    async def body():
        known = Indexer()
        known.add(pod("a"))
        known.add(pod("b"))
        fifo = DeltaFIFO(known)
        fifo.update(pod("b", rv="2"))
        fifo.resync()
        popped = dict((k, [t for t, _ in d]) for k, d in await _drain(fifo))
        assert popped == {"default/b": [UPDATED], "default/a": [SYNC]}
    asyncio.run(body())


def test_has_synced_once_every_object_of_the_first_list_was_popped():
    async def body():
        fifo = DeltaFIFO(Indexer())
        assert not fifo.has_synced()
        fifo.replace([pod("a"), pod("b")])
        fifo.add(pod("c"))
        await fifo.pop(lambda k, d: None)
        assert not fifo.has_synced()
        await fifo.pop(lambda k, d: None)
        assert fifo.has_synced()  # "c" came from the watch, after the list
    asyncio.run(body())
