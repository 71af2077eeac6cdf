"""The container runtime of one kubelet: process containers and built-in containers, their exits.

A process container is forked into the pod's network and UTS namespaces (and, when the pod
has volumes, a private mount namespace with the volumes bound at their mountPath), placed in
the pod's cgroups before it execs, with stdout and stderr appended to its log file, in a
session of its own (so stopping it reaches what it started). Its exit is noticed through a
pidfd on the event loop: no polling, and it works as well for a process adopted after a
kubelet restart (not our child: its exit code is then unknown).

Built-in containers (agnhost, echoserver, the default echo server) run on one
`ResidentServer` in this process; they end with it, so a restarted kubelet starts them again.
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import subprocess
import time
from typing import Callable

from netsim.containers import process, resident
from netsim.ledger import process_start_time

from . import mounts

UNKNOWN_EXIT = None


@dataclasses.dataclass
class Handle:
    """A running process container: PID (plus its kernel start time, so a reused PID is never
    signalled), the Popen when it is our child."""
    pid: int
    start: int | None
    proc: subprocess.Popen | None = None
    pidfd: int | None = None

    def alive(self) -> bool:
        if self.proc is not None:
            return self.proc.poll() is None
        return process_start_time(self.pid) == self.start and _not_zombie(self.pid)

    def exit_status(self) -> tuple[int | None, int | None]:
        """(exit code, signal) once it ended: a signal gives 128+N, as runtimes report it."""
        if self.proc is None:
            return UNKNOWN_EXIT, None
        code = self.proc.poll()
        if code is None:
            return None, None
        if code < 0:
            return 128 - code, -code
        return code, None


def _not_zombie(pid):
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return False


def _signal(handle: Handle, sig: int) -> None:
    if handle.proc is None and process_start_time(handle.pid) != handle.start:
        return  # the PID now belongs to someone else
    try:
        os.killpg(handle.pid, sig)
    except ProcessLookupError:
        with contextlib.suppress(ProcessLookupError):
            if handle.alive():
                os.kill(handle.pid, sig)


class Runtime:
    """ON_EXIT(uid, container, handle_or_None, exit_code, signal) is called on the loop when a
    container ends on its own or is stopped (handle is None for a built-in)."""

    def __init__(self, on_exit: Callable):
        self.on_exit = on_exit
        self.server = resident.ResidentServer(on_exit=self._builtin_exited)
        self._builtin_pods: dict[tuple[str, str], str] = {}  # (namespace, name) -> uid
        self._watched: dict[int, tuple[str, str, Handle]] = {}
        self._stopping: set[asyncio.Task] = set()  # the loop keeps only weak references to tasks

    # -- process containers ----------------------------------------------------------------

    def spawn(self, uid: str, name: str, argv: list[str], *, netns_path: str, uts: str, env: dict,
              log_path: str, cwd: str = "/", mount_plan: mounts.MountPlan | None = None,
              cgroup_procs: list[str] = ()) -> Handle:
        """Start ARGV as container NAME of pod UID; FileNotFoundError/PermissionError name it."""
        if not argv:
            raise ValueError(f"container {name!r}: no command: set command or args")
        log = open(log_path, "ab")
        fds = process.NamespaceFds(netns_path, uts)
        try:
            ns_preexec = fds.preexec()

            def preexec():
                # Into the cgroups first (a fork bomb or memory hog is bounded from its first
                # instruction), then the namespaces, then the volumes in a private mount table.
                for path in cgroup_procs:
                    with open(path, "w") as f:
                        f.write(str(os.getpid()))
                if ns_preexec:
                    ns_preexec()
                if mount_plan is not None:
                    mount_plan.apply()
                os.chdir(cwd)

            proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, env=process.container_env(env),
                                    cwd="/", start_new_session=True, preexec_fn=preexec)
        finally:
            fds.close()
            log.close()
        handle = Handle(proc.pid, process_start_time(proc.pid), proc)
        self._watch(uid, name, handle)
        return handle

    def adopt(self, uid: str, name: str, pid: int, start: int | None) -> Handle | None:
        """Watch a container process a previous kubelet started; None if it is gone."""
        handle = Handle(pid, start)
        if start is None or not handle.alive():
            return None
        self._watch(uid, name, handle)
        return handle

    def _watch(self, uid, name, handle):
        try:
            handle.pidfd = os.pidfd_open(handle.pid)
        except ProcessLookupError:
            handle.pidfd = None
            asyncio.get_running_loop().call_soon(self._ended, uid, name, handle)
            return
        self._watched[handle.pidfd] = (uid, name, handle)
        asyncio.get_running_loop().add_reader(handle.pidfd, self._readable, handle.pidfd)

    def _readable(self, fd):
        uid, name, handle = self._watched.pop(fd)
        asyncio.get_running_loop().remove_reader(fd)
        os.close(fd)
        handle.pidfd = None
        self._ended(uid, name, handle)

    def _ended(self, uid, name, handle):
        if handle.proc is not None:
            handle.proc.wait()
        # Whatever the container left in its session must not outlive it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(handle.pid, signal.SIGKILL)
        code, sig = handle.exit_status()
        self.on_exit(uid, name, handle, code, sig)

    async def stop(self, handles: list[Handle], grace: float) -> None:
        """SIGTERM every handle's process group, SIGKILL what still runs after GRACE seconds;
        returns once all have ended (their exits are reported through on_exit)."""
        live = [h for h in handles if h.alive()]
        for h in live:
            _signal(h, signal.SIGTERM)
        deadline = time.monotonic() + max(grace, 0)
        while live and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
            live = [h for h in live if h.alive()]
        for h in live:
            _signal(h, signal.SIGKILL)
        while any(h.alive() for h in live):
            await asyncio.sleep(0.01)
        # let the pidfd readers report the exits before the caller reads the records
        for _ in range(3):
            await asyncio.sleep(0)

    # -- built-in containers ---------------------------------------------------------------

    async def start_builtins(self, uid: str, ctx: resident.PodContext, containers: list) -> None:
        self._builtin_pods[(ctx.namespace, ctx.name)] = uid
        await self.server.start_pod(ctx, containers)

    def builtins_running(self, namespace: str, name: str) -> list[str]:
        return self.server.pods().get((namespace, name), [])

    async def stop_builtins(self, namespace: str, name: str, grace: float) -> dict:
        """Stop every built-in of the pod; {container: exit code}, also reported through on_exit."""
        uid = self._builtin_pods.pop((namespace, name), None)
        codes = await self.server.stop_pod(namespace, name, grace=grace)
        for cname, code in codes.items():
            if uid:
                self.on_exit(uid, cname, None, code, signal.SIGKILL if code == resident.KILLED else None)
        return codes

    def kill_builtin(self, namespace: str, name: str, container: str, grace: float) -> None:
        """Stop one built-in (a failed liveness probe) as SIGTERM would, for at most GRACE
        seconds; it is reported exited with the code it ends with (KILLED past the grace)."""
        async def stop():
            code = await self.server.stop_container(namespace, name, container, grace=grace)
            if code is not None:
                self._builtin_exited(namespace, name, container, code,
                                     signal.SIGKILL if code == resident.KILLED else None)

        self._stopping.add(task := asyncio.get_running_loop().create_task(stop()))
        task.add_done_callback(self._stopping.discard)

    def _builtin_exited(self, namespace, name, container, code, sig=None):
        uid = self._builtin_pods.get((namespace, name))
        if uid:
            self.on_exit(uid, container, None, code, sig)

    async def close(self) -> None:
        """The kubelet stops: built-ins end with it; process containers keep running."""
        for fd in list(self._watched):
            asyncio.get_running_loop().remove_reader(fd)
            os.close(fd)
        self._watched.clear()
        self._builtin_pods.clear()
        await self.server.close()


def in_pod(netns_path: str, uts: str, argv: list[str], env: dict, timeout: float,
           mount_plan: mounts.MountPlan | None = None) -> tuple[int, bytes]:
    """Run ARGV inside the pod's namespaces (an exec probe): (exit code, output); blocking."""
    with process.NamespaceFds(netns_path, uts) as fds:
        ns_preexec = fds.preexec()

        def preexec():
            if ns_preexec:
                ns_preexec()
            if mount_plan is not None:
                mount_plan.apply()

        try:
            proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                                  env=process.container_env(env), cwd="/", start_new_session=True,
                                  preexec_fn=preexec, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            return -1, (e.output or b"") + f"command timed out after {timeout}s".encode()
        except OSError as e:
            return 126, str(e).encode()
    return proc.returncode, proc.stdout + proc.stderr

