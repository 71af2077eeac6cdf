"""What a built-in container's handlers may do: the container's side of the world.

Handlers never touch namespaces or files themselves: they ask the context for the pod's
hostname, a socket opened inside the pod's network namespace, a shell command run inside the
pod's namespaces, a log line, or to exit. The resident server and the standalone runner each
build a context, so both run the same handler code.
"""

import asyncio
import dataclasses
import socket
import sys
import time
from typing import Callable

from netsim import netns
from netsim.containers import process


@dataclasses.dataclass
class Listener:
    """A socket a built-in serves: PROTOCOL (TCP or UDP) on PORT, ADDRESS "" for any.

    FACTORY makes the asyncio protocol of one connection (TCP) or of the socket (UDP).
    """
    protocol: str
    port: int
    factory: Callable
    address: str = ""


def bind(listener):
    """Open, bind (and listen on) LISTENER's socket in the calling thread's network namespace.

    Any address is served dual-stack when the namespace has IPv6, as Go's ":port" is.
    """
    kind = socket.SOCK_STREAM if listener.protocol == "TCP" else socket.SOCK_DGRAM
    if listener.address:
        family = socket.AF_INET6 if ":" in listener.address else socket.AF_INET
        candidates = [(family, listener.address)]
    else:
        candidates = [(socket.AF_INET6, "::"), (socket.AF_INET, "0.0.0.0")]
    last = None
    for family, address in candidates:
        sock = socket.socket(family, kind | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
        try:
            if family == socket.AF_INET6 and not listener.address:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            if kind == socket.SOCK_STREAM:
                # restart while old connections sit in TIME_WAIT; UDP must not share ports
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((address, listener.port))
            if kind == socket.SOCK_STREAM:
                sock.listen(1024)
            return sock
        except OSError as e:
            sock.close()
            last = e
            # no IPv6 in this namespace: fall back to IPv4; any other error is the answer
            if family == socket.AF_INET6 and e.errno in (97, 99):  # EAFNOSUPPORT, EADDRNOTAVAIL
                continue
            raise
    raise last


def go_log_line(message):
    """A line as Go's log.Printf writes it."""
    return time.strftime("%Y/%m/%d %H:%M:%S ") + message.rstrip("\n") + "\n"


class ContainerContext:
    """The running container as its handlers see it.

    NETNS and UTS are namespace paths, or None when the process already runs inside them
    (standalone). WRITE and WRITE_ERROR take one text for stdout and stderr (one log file in
    the resident server); EXIT(code) ends the container.
    """

    def __init__(self, *, hostname, pod="", namespace="", node="", ip="", env=None,
                 netns_path=None, uts_path=None, write=None, write_error=None, exit=None):
        self.hostname = hostname
        self.pod = pod
        self.namespace = namespace
        self.node = node
        self.ip = ip
        self.env = dict(env or {})
        self.netns = netns_path
        self.uts = uts_path
        self._write = write or (lambda text: (sys.stdout.write(text), sys.stdout.flush()))
        self._write_error = write_error or self._write
        self._exit = exit
        self.terminating = False     # SIGTERM received (readiness turns false)
        self.tasks = set()           # request work in flight, cancelled when the container stops
        self.connections = set()     # open transports, closed when the container stops

    def print(self, text):
        """Write TEXT as fmt.Printf would (no timestamp)."""
        self._write(text if text.endswith("\n") else text + "\n")

    def log(self, message):
        """Write MESSAGE as log.Printf would (timestamped)."""
        self._write(go_log_line(message))

    def eprint(self, text):
        """Write TEXT as the original writes to stderr."""
        self._write_error(text if text.endswith("\n") else text + "\n")

    def exit(self, code):
        self._exit(code)

    def socket(self, family, kind, proto=0):
        """A socket opened inside the pod's network namespace (it stays bound to it)."""
        if self.netns is None:
            return socket.socket(family, kind, proto)
        with netns.enter(self.netns):
            return socket.socket(family, kind, proto)

    async def shell(self, command):
        """Run `/bin/sh -c COMMAND` in the pod's namespaces: (combined output, exit code)."""
        with process.NamespaceFds(self.netns, self.uts) as ns:
            proc = await asyncio.create_subprocess_exec(
                "/bin/sh", "-c", command, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                env=process.container_env(self.env), cwd="/", start_new_session=True,
                preexec_fn=ns.preexec())
        try:
            output, _ = await proc.communicate()
        finally:
            if proc.returncode is None:  # cancelled: the pod is stopping
                proc.kill()
                await proc.wait()
        return output, proc.returncode
