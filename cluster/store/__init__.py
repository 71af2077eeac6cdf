"""The stores behind the API server, chosen by URL: embedded SQLite (default) or etcd.

    store = await open_store("sqlite:///var/lib/netsim/state.db")   # or "sqlite://:memory:"
    store = await open_store("etcd://127.0.0.1:2379")

Both keep the contract in `cluster.store.base`; the backends are imported only when opened,
so a process that uses SQLite does not load gRPC.
"""

from cluster.store.base import (Compacted, Conflict, Event, FutureRevision, KeyExists,
                                KeyNotFound, Store, StoreError)
from cluster.store.compactor import compact_periodically

__all__ = ["Compacted", "Conflict", "Event", "FutureRevision", "KeyExists", "KeyNotFound",
           "Store", "StoreError", "compact_periodically", "open_store"]

ACCEPTED = ("sqlite:///ABSOLUTE/PATH.db, sqlite://:memory:, etcd://HOST:PORT "
            "(port defaults to 2379)")


async def open_store(url: str) -> Store:
    """Open the store `url` names; StoreError naming the URL and the accepted forms if wrong."""
    if url.startswith("sqlite://"):
        path = url[len("sqlite://"):]
        if path != ":memory:" and not path.startswith("/"):
            raise StoreError(f"store URL {url!r}: the SQLite path must be absolute "
                             f"(three slashes: sqlite:///abs/path.db); accepted: {ACCEPTED}")
        from cluster.store.sqlite import SQLiteStore
        return SQLiteStore.open(path, url)
    if url.startswith("etcd://"):
        host, port = _host_port(url, url[len("etcd://"):].rstrip("/"))
        from cluster.store.etcd import EtcdStore
        return await EtcdStore.open(host, port, url)
    raise StoreError(f"store URL {url!r} is not one this server opens; accepted: {ACCEPTED}")


def _host_port(url: str, address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":") if ":" in address else (address, "", "2379")
    host = host.strip("[]")  # IPv6 literals come bracketed: etcd://[::1]:2379
    if not host or "/" in host or "," in address or not port.isdigit():
        raise StoreError(f"store URL {url!r}: expected etcd://HOST:PORT with one endpoint; "
                         f"accepted: {ACCEPTED}")
    return host, int(port)
