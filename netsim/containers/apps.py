"""The built-in images as apps: what a Builtin listens on and how it stops.

An App is what the resident server and the standalone runner both start: listeners opened in
the pod's namespace, an optional one-shot body, and what SIGTERM means for it.
"""

import asyncio
import dataclasses
from typing import Awaitable, Callable



@dataclasses.dataclass
class App:
    listeners: list
    run: Callable[[], Awaitable[int]] | None = None  # one-shot body returning the exit code
    started: Callable[[], None] | None = None        # log lines once the sockets are open
    on_sigterm: Callable[[], float] | None = None    # seconds to keep serving after SIGTERM
    sigterm_code: int = 143  # no SIGTERM handler: the process dies of the signal (128+15)


def build(spec, ctx):
    """The App for Builtin SPEC running with context CTX."""
    from netsim.containers import agnhost, echo
    if spec.image == "agnhost":
        return agnhost.APPS[spec.subcommand](spec, ctx)
    if spec.image == "echoserver":
        return echo.echoserver(spec, ctx)
    if spec.image == "echo":
        return echo.echo(spec, ctx)
    raise ValueError(f"no built-in image {spec.image!r}: expected agnhost, echoserver or echo")


class Running:
    """An App serving on its sockets, and everything to close when its container ends."""

    def __init__(self, app, ctx):
        self.app = app
        self.ctx = ctx
        self.handles = []   # asyncio Servers (TCP) and datagram transports (UDP)
        self.task = None    # the one-shot body, when the app has one

    async def start(self, bound):
        """Serve BOUND [(Listener, socket)], the sockets opened in the pod's namespace."""
        loop = asyncio.get_running_loop()
        for listener, sock in bound:
            if listener.protocol == "TCP":
                self.handles.append(await loop.create_server(listener.factory, sock=sock))
            else:
                transport, _ = await loop.create_datagram_endpoint(listener.factory, sock=sock)
                self.handles.append(transport)
        if self.app.started:
            self.app.started()

    def close(self, abort):
        """Close listeners, connections (ABORT: reset instead of flushing) and work in flight."""
        for handle in self.handles:
            handle.close()
        self.handles = []
        for transport in list(self.ctx.connections):
            transport.abort() if abort else transport.close()
        for task in list(self.ctx.tasks):
            task.cancel()
        if self.task is not None and self.task is not asyncio.current_task():
            self.task.cancel()
