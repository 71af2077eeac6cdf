"""The resident server: one asyncio process per node serving the built-in containers of its pods.

One Python interpreter per built-in container costs ~25 MB and ~100 ms; here every pod's
sockets live in one process. Each listening socket is opened inside the pod's network namespace
(setns to the pod, socket/bind/listen, setns back: ~10 µs) and stays bound to that namespace,
so the pod's traffic reaches it exactly as it would reach a process in the pod. Stopping a pod
closes every socket it holds: a namespace only goes away once nothing holds a socket in it.
"""

import asyncio
import contextlib
import dataclasses
import os
import resource
import socket

from netsim import netns
from netsim.containers import apps
from netsim.containers.context import ContainerContext, bind

KILLED = 137  # exit code of a container still running when its grace period ends (SIGKILL)


@dataclasses.dataclass
class PodContext:
    """The pod as its containers see it. NETNS and UTS are namespace paths (bind mounts)."""
    namespace: str
    name: str
    node: str = ""
    ip: str = ""
    netns: str | None = None
    uts: str | None = None
    log_dir: str | None = None
    env: dict = dataclasses.field(default_factory=dict)


class ContainerStartError(RuntimeError):
    """A built-in container could not start; the message names the pod, container and port."""


class PortInUse(ContainerStartError):
    pass


def raise_open_file_limit():
    """Raise RLIMIT_NOFILE to its hard limit: every pod holds sockets and a log file here."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def pod_hostname(pod):
    """The hostname in the pod's UTS namespace (the pod name when it has none)."""
    if not pod.uts:
        return pod.name
    with netns.enter(pod.uts, kind="uts"):
        return socket.gethostname()


class _Container(apps.Running):
    def __init__(self, name, spec, app, ctx, log):
        super().__init__(app, ctx)
        self.name = name
        self.spec = spec
        self.log = log


class ResidentServer:
    """Built-in containers of many pods, in the running asyncio loop.

    ON_EXIT(namespace, pod, container, code) is called when a container ends on its own
    (netexec's /exit, /shutdown, a finished `connect`); it is then no longer running, and
    `start_pod` with that container starts it again (the agent's restart policy decides).
    """

    def __init__(self, on_exit=None):
        raise_open_file_limit()
        self.on_exit = on_exit
        self._pods = {}

    def pods(self):
        """{(namespace, name): [running container names]}"""
        return {key: list(running) for key, running in self._pods.items()}

    async def start_pod(self, pod, containers):
        """Start each (name, Builtin) of CONTAINERS not already running in POD.

        Every listening socket is open inside pod.netns when this returns. If one cannot be
        opened (port in use...), none of this call's containers start and ContainerStartError
        (PortInUse for EADDRINUSE) names the pod, container and port.
        """
        key = (pod.namespace, pod.name)
        running = self._pods.get(key, {})
        todo = [(name, spec) for name, spec in containers if name not in running]
        if not todo:
            return
        hostname = pod_hostname(pod)
        prepared = []
        try:
            with netns.enter(pod.netns) if pod.netns else contextlib.nullcontext():
                for name, spec in todo:
                    container = self._container(key, pod, name, spec, hostname)
                    bound = []
                    prepared.append((container, bound))
                    for listener in container.app.listeners:
                        bound.append((listener, self._bind(pod, name, listener)))
        except BaseException:
            for container, bound in prepared:
                for _, sock in bound:
                    sock.close()
                if container.log:
                    container.log.close()
            raise
        running = self._pods.setdefault(key, {})
        for container, bound in prepared:
            running[container.name] = container
            await container.start(bound)
            if container.app.run is not None:
                container.task = asyncio.get_running_loop().create_task(self._run_once(key, container))

    async def stop_pod(self, namespace, name, grace=0.0):
        """Stop every container of the pod as SIGTERM would, then close all its sockets.

        Built-ins that keep serving after SIGTERM (netexec --delay-shutdown; serve-hostname)
        do so for at most GRACE seconds (the pod's terminationGracePeriodSeconds), with
        netexec's /readyz answering 503 meanwhile. Returns {container: exit code}.
        """
        running = self._pods.get((namespace, name), {})
        linger = {}
        for cname, container in running.items():
            container.ctx.terminating = True
            linger[cname] = container.app.on_sigterm() if container.app.on_sigterm else 0.0
        delay = min(max(linger.values(), default=0.0), grace)
        if delay > 0:
            await asyncio.sleep(delay)
        running = self._pods.pop((namespace, name), {})
        codes = {}
        for cname, container in running.items():
            self._close(container, abort=True)
            codes[cname] = KILLED if linger.get(cname, 0.0) > grace else container.app.sigterm_code
        await _sockets_closed()
        return codes

    async def stop_container(self, namespace, pod, container, grace=0.0):
        """Stop one container of the pod as SIGTERM would; the pod's other containers keep running.

        What a kubelet does to a container that failed its liveness probe. As in stop_pod, a
        built-in that keeps serving after SIGTERM does so for at most GRACE seconds. Returns the
        exit code (KILLED when the grace period ran out first), without calling ON_EXIT: the
        caller asked for the stop. Returns None when the container is not running, or ended
        on its own (ON_EXIT reported it) or with its pod while it was terminating.
        """
        key = (namespace, pod)
        target = self._pods.get(key, {}).get(container)
        if target is None:
            return None
        target.ctx.terminating = True
        linger = target.app.on_sigterm() if target.app.on_sigterm else 0.0
        if min(linger, grace) > 0:
            await asyncio.sleep(min(linger, grace))
        running = self._pods.get(key, {})
        if running.get(container) is not target:
            return None
        del running[container]
        if not running:
            del self._pods[key]
        self._close(target, abort=True)
        await _sockets_closed()
        return KILLED if linger > grace else target.app.sigterm_code

    async def close(self):
        """Stop every pod at once (the node agent is shutting down)."""
        for namespace, name in list(self._pods):
            await self.stop_pod(namespace, name)

    def _container(self, key, pod, name, spec, hostname):
        log = None
        if pod.log_dir:
            os.makedirs(pod.log_dir, exist_ok=True)
            log = open(os.path.join(pod.log_dir, f"{name}.log"), "a", buffering=1)
        env = dict(pod.env)
        env.update(spec.env)
        ctx = ContainerContext(
            hostname=hostname, pod=pod.name, namespace=pod.namespace, node=pod.node, ip=pod.ip,
            env=env, netns_path=pod.netns, uts_path=pod.uts,
            write=(lambda text: log.closed or log.write(text)) if log else (lambda text: None),
            exit=lambda code: self._exited(key, name, code))
        return _Container(name, spec, apps.build(spec, ctx), ctx, log)

    @staticmethod
    def _bind(pod, container, listener):
        try:
            return bind(listener)
        except OSError as e:
            what = (f"pod {pod.namespace}/{pod.name} container {container!r}: cannot listen on "
                    f"{listener.protocol} port {listener.port}")
            if e.errno == 98:  # EADDRINUSE
                raise PortInUse(f"{what}: the port is already in use in the pod's network "
                                f"namespace (another container or process of the pod holds it)") from e
            raise ContainerStartError(f"{what}: {e.strerror}") from e

    async def _run_once(self, key, container):
        try:
            code = await container.app.run()
        except asyncio.CancelledError:
            raise
        except Exception as e:
            container.ctx.eprint(f"UNKNOWN: {e}")
            code = 1
        self._exited(key, container.name, code)

    def _exited(self, key, name, code):
        running = self._pods.get(key, {})
        container = running.pop(name, None)
        if container is None:
            return
        if not running:
            del self._pods[key]
        self._close(container, abort=False)
        if self.on_exit:
            self.on_exit(key[0], key[1], name, code)

    @staticmethod
    def _close(container, abort):
        container.close(abort=abort)
        if container.log:
            container.log.close()


async def _sockets_closed():
    # transports close their sockets on the next loop iterations
    await asyncio.sleep(0)
    await asyncio.sleep(0)
