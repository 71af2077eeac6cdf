"""Watch: a stream of `{"type", "object"}` JSON lines from the store's history and live changes.

Upstream's semantics: without a resourceVersion (or with "0") the stream starts with an ADDED
event per existing object; with resourceVersion N it replays every change after N, or one
ERROR event carrying a 410 Expired Status when that history was compacted. Selectors filter
with the object's previous value, so an object leaving the selection is reported DELETED and
one entering it ADDED. `allowWatchBookmarks` adds periodic BOOKMARK events, and
`sendInitialEvents=true` (with `resourceVersionMatch=NotOlderThan`, as kubectl ≥ 1.35 asks
for) sends the initial ADDED events and then a BOOKMARK annotated
`k8s.io/initial-events-end: "true"`.
"""

import asyncio
import contextlib
import functools
import random

from aiohttp import web

from cluster.api import errors, selectors
from cluster.store import Compacted, StoreError

from . import negotiation
from .negotiation import dumps
from .registry import decode, parse_rv, with_rv

# Set when the server shuts down: every open watch ends.
STOPPING = web.AppKey("watches-stopping", asyncio.Event)
# How often an idle watch that allows bookmarks gets one (upstream: about once a minute).
BOOKMARK_INTERVAL = 30.0
# A watch without timeoutSeconds ends after a random 30-60 minutes, as upstream spreads them.
DEFAULT_TIMEOUT = (1800.0, 3600.0)


def _flag(query, name):
    value = query.get(name, "")
    if value in ("true", "1", "True"):
        return True
    if value in ("", "false", "0", "False"):
        return False
    raise errors.bad_request(f"{name}: Invalid value: {value!r}: must be true or false")


class _Encoder:
    """Event lines in the form the client asked for (objects, Table rows, object metadata)."""

    def __init__(self, res, form, include_object):
        self.res, self.form, self.include_object = res, form, include_object
        self.columns_sent = False

    def event(self, type_, value=None, revision=0, obj=None):
        if self.form == negotiation.OBJECT:
            body = dumps(obj) if obj is not None else with_rv(value, revision)
            return b'{"type":"%s","object":%s}\n' % (type_.encode(), body)
        if obj is None:
            obj = decode(value, revision)
        if self.form == negotiation.TABLE:
            doc = negotiation.tables().table(self.res, [obj], include_object=self.include_object)
            if self.columns_sent:
                # Later events leave the columns out, as upstream does to save bandwidth.
                doc["columnDefinitions"] = []
            self.columns_sent = True
        else:
            doc = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                   "metadata": obj.get("metadata", {})}
        return dumps({"type": type_, "object": doc}) + b"\n"

    def bookmark(self, revision, initial_events_end=False):
        meta = {"resourceVersion": str(revision)}
        if initial_events_end:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        # A bookmark carries the kind and a resourceVersion only, in every response form.
        doc = {"kind": self.res.kind, "apiVersion": self.res.api_version, "metadata": meta}
        return dumps({"type": "BOOKMARK", "object": doc}) + b"\n"

    def error(self, err):
        return dumps({"type": "ERROR", "object": err.status()}) + b"\n"


def _check_options(query):
    """(start revision or None for "send the current state first", bookmarks, initial-events end)."""
    bookmarks = _flag(query, "allowWatchBookmarks")
    rv, rvm = query.get("resourceVersion", ""), query.get("resourceVersionMatch", "")
    send_initial = query.get("sendInitialEvents", "")
    if send_initial:
        initial = _flag(query, "sendInitialEvents")
        if rvm != "NotOlderThan":
            raise errors.invalid("ListOptions", "", [errors.Cause.forbidden(
                "resourceVersionMatch", "sendInitialEvents requires setting resourceVersionMatch to "
                "NotOlderThan")], "meta.k8s.io")
        if initial and not bookmarks:
            raise errors.invalid("ListOptions", "", [errors.Cause.forbidden(
                "allowWatchBookmarks", "sendInitialEvents requires allowWatchBookmarks=true")],
                "meta.k8s.io")
        if initial:
            return (parse_rv(rv) if rv else 0), bookmarks, True, True
        return (parse_rv(rv) if rv and rv != "0" else None), bookmarks, False, False
    if rvm:
        raise errors.invalid("ListOptions", "", [errors.Cause.forbidden(
            "resourceVersionMatch", "resourceVersionMatch is forbidden for watch unless "
            "sendInitialEvents is provided")], "meta.k8s.io")
    if rv in ("", "0"):
        return None, bookmarks, True, False
    return parse_rv(rv), bookmarks, False, False


async def serve(request, registry, res, ns, name, query, form):
    """Stream a watch of RES (in NS, or one object NAME) until the timeout or the client leaves."""
    label_sel = selectors.parse_label_selector(query.get("labelSelector", ""))
    field_text = query.get("fieldSelector", "")
    if name:
        field_text = ",".join(filter(None, [field_text, f"metadata.name={name}"]))
    field_sel = selectors.parse_field_selector(field_text, res)
    filtering = not (label_sel.empty() and field_sel.empty())
    start, bookmarks, initial, initial_end = _check_options(query)
    try:
        timeout = float(query["timeoutSeconds"]) if query.get("timeoutSeconds") else \
            random.uniform(*DEFAULT_TIMEOUT)
    except ValueError:
        raise errors.bad_request(f"timeoutSeconds: Invalid value: {query.get('timeoutSeconds')!r}: "
                                 "must be a number of seconds")
    encoder = _Encoder(res, form, query.get("includeObject", "Metadata") or "Metadata")

    def matches(obj):
        return label_sel.matches(obj["metadata"].get("labels") or {}) and field_sel.matches(obj)

    resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json",
                                                   "Cache-Control": "no-cache, private"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    prefix = res.prefix(ns)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    position = start or 0
    if initial:
        if start:
            await registry._not_older_than(start)
        page, position = await registry.store.list(prefix)
        chunk = []
        for _, value, mod in page:
            if filtering:
                obj = decode(value, mod)
                if not matches(obj):
                    continue
                chunk.append(encoder.event("ADDED", obj=obj))
            else:
                chunk.append(encoder.event("ADDED", value, mod))
        if initial_end:
            chunk.append(encoder.bookmark(position, initial_events_end=True))
        if chunk:
            await resp.write(b"".join(chunk))
    events = registry.store.watch(prefix, position)
    stopping = asyncio.ensure_future(request.app[STOPPING].wait())
    pending = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(events.__anext__())
            wait = deadline - loop.time()
            if bookmarks:
                wait = min(wait, BOOKMARK_INTERVAL)
            if wait <= 0:
                break
            done, _ = await asyncio.wait((pending, stopping), timeout=wait,
                                         return_when=asyncio.FIRST_COMPLETED)
            if stopping in done:
                break
            if not done:
                if loop.time() >= deadline:
                    break
                await resp.write(encoder.bookmark(position))
                continue
            finished, pending = pending, None
            try:
                event = finished.result()
            except StopAsyncIteration:
                break
            except Compacted as e:
                await resp.write(encoder.error(errors.gone(
                    f"too old resource version: {start} ({e.compact_revision})")))
                break
            except StoreError as e:
                await resp.write(encoder.error(errors.internal(f"watch of {res.plural} ended: {e}")))
                break
            position = event.revision
            if name and not event.key.endswith("/" + name):
                continue
            line = _event_line(encoder, event, filtering, matches)
            if line:
                await resp.write(line)
    except ConnectionResetError:
        pass  # the client left
    finally:
        stopping.cancel()
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending
        await events.aclose()
    return resp


@functools.lru_cache(maxsize=256)
def _decoded(value, revision):
    """VALUE as an object, decoded once for every filtered watch that sees the same event (the
    store hands each the same bytes: a pod event reaches every kubelet's watch). Shared: callers
    only read it."""
    return decode(value, revision)


def _event_line(encoder, event, filtering, matches):
    type_, revision = event.type, event.revision
    if not filtering:
        return encoder.event(type_, event.value, revision)
    obj = _decoded(event.value, revision)
    now_matches = matches(obj)
    if type_ == "MODIFIED":
        before = matches(_decoded(event.prev_value, revision)) if event.prev_value else False
        if before and not now_matches:
            type_ = "DELETED"
        elif now_matches and not before:
            type_ = "ADDED"
        elif not now_matches:
            return None
    elif not now_matches:
        return None
    # The stored bytes are the object: objects go out as stored, not decoded and encoded again.
    return encoder.event(type_, event.value, revision, obj=None if encoder.form == negotiation.OBJECT else obj)
