"""open_store: which URLs open which store, and what a wrong one is told."""

import asyncio
import socket

import pytest

from cluster.store import StoreError, open_store


@pytest.mark.parametrize("url, complaint", [
    ("sqlite://state.db", "must be absolute"),
    ("/var/lib/state.db", "not one this server opens"),
    ("mysql://db:3306/k8s", "not one this server opens"),
    ("etcd://a:2379,b:2379", "one endpoint"),
    ("etcd://host:client", "etcd://HOST:PORT"),
])
def test_a_wrong_url_is_named_with_the_accepted_forms(url, complaint):
    with pytest.raises(StoreError) as refused:
        asyncio.run(open_store(url))
    message = str(refused.value)
    assert url in message and complaint in message
    assert "sqlite:///ABSOLUTE/PATH.db" in message and "etcd://HOST:PORT" in message


def test_a_missing_directory_is_named(tmp_path):
    url = f"sqlite://{tmp_path}/missing/state.db"
    with pytest.raises(StoreError, match=f"{tmp_path}/missing does not exist"):
        asyncio.run(open_store(url))


def test_an_etcd_that_does_not_answer_is_named():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again below: nothing listens there
    url = f"etcd://127.0.0.1:{port}"
    with pytest.raises(StoreError, match="etcd does not answer") as refused:
        asyncio.run(open_store(url))
    assert url in str(refused.value)


def test_memory_store_opens():
    async def body():
        store = await open_store("sqlite://:memory:")
        assert await store.create("/registry/namespaces/default", b"{}") == 1
        await store.close()
    asyncio.run(body())
