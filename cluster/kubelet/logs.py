"""Container logs, served the way the API server's `pods/log` asks the kubelet for them.

Files: `<root>/logs/<namespace>_<pod>_<uid>/<container>/<restartCount>.log` holds each
instance's stdout and stderr (the layout of /var/log/pods); `<container>.log` beside them is a
symlink to the current instance.

Endpoint: HTTP on a unix socket (its path is in the Node's `netsim.dev/kubelet-socket`
annotation), as upstream's kubelet API on port 10250:

    GET /containerLogs/{namespace}/{pod}/{container}?previous=&tailLines=&limitBytes=&follow=

answers 200 text/plain with the log (`previous=true`: the instance before the current one;
`tailLines=N`: the last N lines; `limitBytes=N`: at most N bytes; `follow=true`: keeps the
response open and streams what the container writes until the client goes away), or 404 with
a message naming what was not found.
"""
from __future__ import annotations

import asyncio
import contextlib
import os

from aiohttp import web

FOLLOW_POLL_SECONDS = 0.2


def instance_logs(root: str, namespace: str, pod: str, container: str) -> tuple[str | None, str]:
    """(path of the current instance's log, container directory); newest pod incarnation."""
    base = os.path.join(root, "logs")
    prefix = f"{namespace}_{pod}_"
    dirs = [os.path.join(base, d) for d in os.listdir(base) if d.startswith(prefix)] \
        if os.path.isdir(base) else []
    dirs = [d for d in dirs if os.path.isdir(os.path.join(d, container))]
    if not dirs:
        return None, ""
    directory = os.path.join(max(dirs, key=os.path.getmtime), container)
    current = os.path.join(directory, f"{container}.log")
    return (os.path.realpath(current) if os.path.lexists(current) else None), directory


def previous_of(current: str) -> str | None:
    number = int(os.path.basename(current).split(".")[0])
    path = os.path.join(os.path.dirname(current), f"{number - 1}.log")
    return path if number > 0 and os.path.exists(path) else None


def read_log(path: str, tail_lines: int | None, limit_bytes: int | None) -> bytes:
    with open(path, "rb") as f:
        data = f.read()
    if tail_lines is not None:
        lines = data.splitlines(keepends=True)
        data = b"".join(lines[-tail_lines:]) if tail_lines > 0 else b""
    if limit_bytes is not None:
        data = data[:limit_bytes]
    return data


def _int_param(request, name):
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise web.HTTPBadRequest(text=f"{name}: {raw!r} is not an integer") from None


class LogServer:
    def __init__(self, socket_path: str, root: str):
        self.socket_path, self.root = socket_path, root
        self._runner = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/containerLogs/{namespace}/{pod}/{container}", self.container_logs)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)
        os.makedirs(os.path.dirname(os.path.abspath(self.socket_path)), exist_ok=True)
        await web.UnixSite(self._runner, self.socket_path).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)

    async def container_logs(self, request: web.Request) -> web.StreamResponse:
        ns, pod, container = (request.match_info[k] for k in ("namespace", "pod", "container"))
        current, _ = instance_logs(self.root, ns, pod, container)
        if current is None:
            raise web.HTTPNotFound(text=f'container "{container}" in pod "{pod}" (namespace {ns}) '
                                        "has no logs on this node")
        path = current
        if request.query.get("previous") == "true":
            path = previous_of(current)
            if path is None:
                raise web.HTTPBadRequest(text=f'previous terminated container "{container}" in pod '
                                              f'"{pod}" not found')
        data = read_log(path, _int_param(request, "tailLines"), _int_param(request, "limitBytes"))
        if request.query.get("follow") != "true":
            return web.Response(body=data, content_type="text/plain")
        resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await resp.prepare(request)
        await resp.write(data)
        offset = os.path.getsize(path)
        while True:
            await asyncio.sleep(FOLLOW_POLL_SECONDS)
            try:
                size = os.path.getsize(path)
            except FileNotFoundError:
                break  # the pod was removed
            if size > offset:
                with open(path, "rb") as f:
                    f.seek(offset)
                    chunk = f.read(size - offset)
                offset = size
                await resp.write(chunk)
        return resp
