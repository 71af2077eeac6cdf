"""The etcd store: the contract mapped onto etcd v3's own revisions, transactions and watches.

etcd already is the model the contract describes, so each operation is one request: create is
a transaction on version == 0, update and delete on mod_revision == expected (their failure
branch reads the key, to tell KeyNotFound from Conflict and name the current revision), list
is a range read at a revision, watch is a watch stream from after_revision + 1 with prev_kv so
a DELETED event carries the last value.

aetcd (1.0, works with etcd 3.4 and current protobuf) provides the gRPC channel and stubs; the
requests are built here because its helpers leave out range limits and revisions, and each
watch gets its own stream so that closing one watch cannot disturb another.
"""

import asyncio
from collections.abc import AsyncIterator

import aetcd
from aetcd import rpc

from cluster.store.base import (Compacted, Conflict, Event, FutureRevision, KeyExists,
                                KeyNotFound, Store, StoreError, prefix_end)

CONNECT_TIMEOUT = 5.0


class EtcdStore(Store):
    def __init__(self, client: aetcd.Client, url: str):
        self._client = client
        self.url = url
        self._kv = client.kvstub
        self._watch_stub = rpc.WatchStub(client.channel)
        self._closed = False

    @classmethod
    async def open(cls, host: str, port: int, url: str) -> "EtcdStore":
        client = aetcd.Client(host=host, port=port)
        await client.connect()
        store = cls(client, url)
        try:
            await asyncio.wait_for(store.current_revision(), CONNECT_TIMEOUT)
        except (StoreError, asyncio.TimeoutError) as err:
            await client.close()
            raise StoreError(f"store {url}: etcd does not answer ({err or 'timed out'}); "
                             f"is it running and listening for clients there?") from None
        return store

    async def _rpc(self, method, request):
        self._check_open()
        try:
            return await method(request)
        except rpc.AioRpcError as err:
            raise self._error(err) from None

    def _error(self, err: rpc.AioRpcError) -> StoreError:
        return StoreError(f"etcd at {self.url}: {err.code().name}: {err.details()}")

    # -- reads -------------------------------------------------------------------------------

    async def get(self, key: str) -> tuple[bytes, int] | None:
        response = await self._rpc(self._kv.Range, rpc.RangeRequest(key=key.encode()))
        if not response.kvs:
            return None
        return response.kvs[0].value, response.kvs[0].mod_revision

    async def list(self, prefix: str, limit: int = 0, start_after: str = "",
                   revision: int = 0) -> tuple[list[tuple[str, bytes, int]], int]:
        start = max(prefix, start_after + "\0") if start_after else prefix
        request = rpc.RangeRequest(key=start.encode() or b"\0", range_end=_range_end(prefix),
                                   limit=max(limit, 0), revision=revision)
        self._check_open()
        try:
            response = await self._kv.Range(request)
        except rpc.AioRpcError as err:
            if "compacted" in (err.details() or ""):
                raise Compacted(revision, await self._compact_revision(revision)) from None
            if "future revision" in (err.details() or ""):
                raise FutureRevision(revision, await self.current_revision()) from None
            raise self._error(err) from None
        items = [(kv.key.decode(), kv.value, kv.mod_revision) for kv in response.kvs]
        return items, revision or response.header.revision

    async def current_revision(self) -> int:
        response = await self._rpc(self._kv.Range,
                                   rpc.RangeRequest(key=b"\0", limit=1, count_only=True))
        return response.header.revision

    # -- writes ------------------------------------------------------------------------------

    async def _txn(self, compare: rpc.Compare, success: rpc.RequestOp,
                   key: bytes) -> rpc.TxnResponse:
        read = rpc.RequestOp(request_range=rpc.RangeRequest(key=key))
        return await self._rpc(self._kv.Txn, rpc.TxnRequest(
            compare=[compare], success=[success], failure=[read]))

    @staticmethod
    def _failure(key: str, expected_revision: int, response: rpc.TxnResponse) -> StoreError:
        kvs = response.responses[0].response_range.kvs
        if not kvs:
            return KeyNotFound(key)
        return Conflict(key, expected_revision, kvs[0].mod_revision)

    async def create(self, key: str, value: bytes) -> int:
        k = key.encode()
        response = await self._rpc(self._kv.Txn, rpc.TxnRequest(
            compare=[rpc.Compare(key=k, target=rpc.Compare.VERSION,
                                 result=rpc.Compare.EQUAL, version=0)],
            success=[rpc.RequestOp(request_put=rpc.PutRequest(key=k, value=value))]))
        if not response.succeeded:
            raise KeyExists(key)
        return response.header.revision

    async def update(self, key: str, value: bytes, expected_revision: int) -> int:
        if expected_revision <= 0:
            raise ValueError(f"update of {key!r}: expected_revision must be the key's mod "
                             f"revision (> 0), got {expected_revision}")
        k = key.encode()
        response = await self._txn(
            rpc.Compare(key=k, target=rpc.Compare.MOD, result=rpc.Compare.EQUAL,
                        mod_revision=expected_revision),
            rpc.RequestOp(request_put=rpc.PutRequest(key=k, value=value)), k)
        if not response.succeeded:
            raise self._failure(key, expected_revision, response)
        return response.header.revision

    async def delete(self, key: str, expected_revision: int = 0) -> tuple[bytes, int]:
        k = key.encode()
        if expected_revision:
            compare = rpc.Compare(key=k, target=rpc.Compare.MOD, result=rpc.Compare.EQUAL,
                                  mod_revision=expected_revision)
        else:
            compare = rpc.Compare(key=k, target=rpc.Compare.VERSION,
                                  result=rpc.Compare.GREATER, version=0)
        response = await self._txn(compare, rpc.RequestOp(
            request_delete_range=rpc.DeleteRangeRequest(key=k, prev_kv=True)), k)
        if not response.succeeded:
            raise self._failure(key, expected_revision, response)
        return (response.responses[0].response_delete_range.prev_kvs[0].value,
                response.header.revision)

    async def compact(self, revision: int) -> None:
        self._check_open()
        try:
            await self._kv.Compact(rpc.CompactionRequest(revision=revision))
        except rpc.AioRpcError as err:
            if "compacted" in (err.details() or ""):
                return  # already compacted at or past `revision`
            if "future revision" in (err.details() or ""):
                raise FutureRevision(revision, await self.current_revision()) from None
            raise self._error(err) from None

    # -- watch -------------------------------------------------------------------------------

    async def watch(self, prefix: str, after_revision: int) -> AsyncIterator[Event]:
        # Starting at after_revision itself (and dropping its changes) rather than one later
        # makes etcd refuse exactly when after_revision < the compacted revision, as the
        # contract says; etcd's own rule would also accept after_revision = compacted - 1,
        # though a deletion at the compacted revision is gone from its history by then.
        create = rpc.WatchCreateRequest(key=prefix.encode() or b"\0",
                                        range_end=_range_end(prefix),
                                        start_revision=max(after_revision, 1), prev_kv=True)
        async for response in self._watch_stream(create):
            if response.compact_revision:
                raise Compacted(after_revision, response.compact_revision)
            if response.canceled:
                raise StoreError(f"etcd at {self.url} cancelled the watch of {prefix!r}: "
                                 f"{response.cancel_reason or 'no reason given'}")
            for event in response.events:
                if event.kv.mod_revision > after_revision:
                    yield _event(event, after_revision)

    async def _watch_stream(self, create: rpc.WatchCreateRequest):
        """The responses of one watch stream; closing the generator ends the stream."""
        self._check_open()
        stop = asyncio.Event()

        async def requests():
            yield rpc.WatchRequest(create_request=create)
            await stop.wait()  # the stream lives as long as its request side

        call = self._watch_stub.Watch(requests())
        try:
            async for response in call:
                yield response
        except rpc.AioRpcError as err:
            if not self._closed:
                raise self._error(err) from None
        except asyncio.CancelledError:
            # Closing the channel cancels its calls; to the watcher that is the end of the
            # watch, not a cancellation of its own task, unless that is cancelled too.
            if not self._closed or asyncio.current_task().cancelling():
                raise
        finally:
            stop.set()
            call.cancel()

    async def _compact_revision(self, compacted: int) -> int:
        """etcd's compaction watermark, which a watch from a compacted revision reports."""
        create = rpc.WatchCreateRequest(key=b"\0", start_revision=compacted)
        stream = self._watch_stream(create)
        try:
            async for response in stream:
                if response.compact_revision:
                    return response.compact_revision
        finally:
            await stream.aclose()
        return compacted + 1

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"store {self.url} is closed")

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._client.close()


def _range_end(prefix: str) -> bytes:
    # etcd reads range_end "\0" as "every key from `key` on".
    return prefix_end(prefix).encode() or b"\0"


def _event(event, after_revision: int) -> Event:
    kv = event.kv
    key = kv.key.decode()
    prev = event.prev_kv.value if event.HasField("prev_kv") else None
    if event.type == rpc.Event.DELETE:
        if prev is None:
            # The value before the deletion was compacted away; a DELETED event without it
            # would hand the API server nothing to send, so the watcher must relist (as
            # Kubernetes' own etcd watcher does on a nil PrevKv).
            raise Compacted(after_revision, kv.mod_revision)
        return Event("DELETED", key, prev, kv.mod_revision, prev)
    if kv.version == 1:
        return Event("ADDED", key, kv.value, kv.mod_revision, None)
    return Event("MODIFIED", key, kv.value, kv.mod_revision, prev)
