"""pods/log: container logs fetched from the pod's kubelet, as upstream's LogREST proxies them.

The API server reads the pod, picks its container (the only one, or the one named; several and
none named is upstream's 400 "choose one of"), finds the kubelet of the pod's node through the
socket the Node announces in its `netsim.dev/kubelet-socket` annotation (netsim's kubelets serve
on a unix socket where upstream's listen on port 10250), and streams the kubelet's answer to
`GET /containerLogs/{namespace}/{pod}/{container}` back: with `follow=true` until the client
leaves, the kubelet ends the stream or the server stops. The kubelet's 404 and 400 reach the
client as a Status with the kubelet's own text.

Query options are upstream's PodLogOptions. `timestamps`, `sinceSeconds` and `sinceTime` need
a time for each line, which the kubelet's log files do not hold: they are refused with 400
rather than ignored, so nobody mistakes the whole log for its last minutes.
"""
from __future__ import annotations

import asyncio
import contextlib
import urllib.parse

import aiohttp
from aiohttp import web

from cluster.api import errors
from cluster.api.errors import Cause
from cluster.api.resources import lookup

from . import watch

KUBELET_SOCKET_ANNOTATION = "netsim.dev/kubelet-socket"  # cluster.kubelet.node announces it
PODS, NODES = lookup("", "v1", "pods"), lookup("", "v1", "nodes")
CONNECT_TIMEOUT_S = 5.0


def _integer(query, name):
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise errors.bad_request(f"PodLogOptions {name}: {raw!r} is not an integer") from None


def _flag(query, name):
    raw = query.get(name, "")
    if raw in ("", "false", "False", "0"):
        return False
    if raw in ("true", "True", "1"):
        return True
    raise errors.bad_request(f"PodLogOptions {name}: {raw!r} is not a boolean (true or false)")


def kubelet_query(query, pod_name):
    """The kubelet's query for the request's PodLogOptions, validated as upstream validates them."""
    tail, limit, since = (_integer(query, n) for n in ("tailLines", "limitBytes", "sinceSeconds"))
    causes = []
    if tail is not None and tail < 0:
        causes.append(Cause.invalid("tailLines", tail, "must be greater than or equal to 0"))
    if limit is not None and limit < 1:
        causes.append(Cause.invalid("limitBytes", limit, "must be greater than 0"))
    if since is not None and query.get("sinceTime"):
        causes.append(Cause.forbidden("", "at most one of `sinceTime` or `sinceSeconds` may be specified"))
    elif since is not None and since < 1:
        causes.append(Cause.invalid("sinceSeconds", since, "must be greater than 0"))
    if causes:
        raise errors.invalid("PodLogOptions", pod_name, causes)
    if _flag(query, "timestamps"):
        raise errors.bad_request("PodLogOptions timestamps=true: timestamps are not supported: the "
                                 "kubelet's log files hold no time for each line; leave it false")
    for name in ("sinceSeconds", "sinceTime"):
        if query.get(name):
            raise errors.bad_request(f"PodLogOptions {name}: not supported: the kubelet's log files "
                                     "hold no time for each line; use tailLines or limitBytes")
    if query.get("stream", "All") not in ("", "All"):
        raise errors.bad_request(f"PodLogOptions stream={query['stream']}: not supported: the kubelet "
                                 "writes stdout and stderr to one log; leave it All")
    passed = {"previous": _flag(query, "previous"), "follow": _flag(query, "follow"),
              "tailLines": tail, "limitBytes": limit}
    return {k: ("true" if v is True else str(v)) for k, v in passed.items() if v not in (None, False)}


def container_of(pod, name):
    """The container to read, as upstream's validateContainer picks it; 400 names the choices."""
    spec = pod.get("spec") or {}
    names = [c.get("name", "") for key in ("initContainers", "containers", "ephemeralContainers")
             for c in spec.get(key) or []]
    pod_name = pod["metadata"]["name"]
    if name:
        if name not in names:
            raise errors.bad_request(f"container {name} is not valid for pod {pod_name}")
        return name
    containers = spec.get("containers") or []
    if len(containers) == 1:
        return containers[0]["name"]
    if not containers:
        raise errors.bad_request(f"a container name must be specified for pod {pod_name}")
    raise errors.bad_request(f"a container name must be specified for pod {pod_name}, "
                             f"choose one of: [{' '.join(names)}]")


async def kubelet_socket(registry, pod, container):
    node_name = (pod.get("spec") or {}).get("nodeName")
    if not node_name:
        raise errors.bad_request(f'container "{container}" in pod "{pod["metadata"]["name"]}" is '
                                 "waiting to start: the pod is not scheduled to a node yet")
    try:
        node = await registry.get(NODES, "", node_name)
    except errors.APIError as e:
        if e.code != 404:
            raise
        raise errors.bad_request(f'pod "{pod["metadata"]["name"]}" is bound to node "{node_name}", '
                                 "which is not registered: no kubelet serves its logs") from None
    path = ((node.get("metadata") or {}).get("annotations") or {}).get(KUBELET_SOCKET_ANNOTATION)
    if not path:
        raise errors.internal(f'node "{node_name}" has no {KUBELET_SOCKET_ANNOTATION} annotation: '
                              "its kubelet announces no log endpoint")
    return node_name, path


async def serve(request, registry, namespace, name):
    """GET pods/log: the container's log as text/plain, streamed from its kubelet."""
    query = request.query
    params = kubelet_query(query, name)
    pod = await registry.get(PODS, namespace, name)
    container = container_of(pod, query.get("container", ""))
    node_name, socket_path = await kubelet_socket(registry, pod, container)
    path = "/containerLogs/" + "/".join(urllib.parse.quote(p, safe="") for p in (namespace, name, container))
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT_S)
    async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=socket_path),
                                     timeout=timeout) as session:
        try:
            answer = await session.get(f"http://kubelet{path}", params=params)
        except aiohttp.ClientConnectionError as e:
            raise errors.internal(f'the kubelet of node "{node_name}" does not answer on '
                                  f"{socket_path}: {e}") from None
        async with answer:
            if answer.status != 200:
                raise _status_of(answer.status, (await answer.text()).strip())
            resp = web.StreamResponse(status=200, headers={"Content-Type": "text/plain",
                                                           "Cache-Control": "no-cache, private"})
            await resp.prepare(request)
            await _copy(answer, resp, request.app[watch.STOPPING])
            return resp


async def _copy(answer, resp, stopping):
    """Kubelet body to client, chunk by chunk, until either side ends or the server stops.

    The response has begun: an end of either side just ends it (the client sees a short log,
    as upstream's when a kubelet goes away mid-stream).
    """
    stop = asyncio.ensure_future(stopping.wait())
    try:
        while True:
            read = asyncio.ensure_future(answer.content.readany())
            done, _ = await asyncio.wait((read, stop), return_when=asyncio.FIRST_COMPLETED)
            if read not in done:
                read.cancel()
                with contextlib.suppress(BaseException):
                    await read
                return
            chunk = read.result()
            if not chunk:
                return
            await resp.write(chunk)
    except (aiohttp.ClientError, ConnectionResetError):
        return
    finally:
        stop.cancel()


def _status_of(code, text):
    if code == 404:
        return errors.APIError(404, "NotFound", text)
    if code == 400:
        return errors.bad_request(text)
    return errors.internal(f"the kubelet answered {code}: {text}")
