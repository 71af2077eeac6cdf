"""Process containers: a real process started inside a pod's network and UTS namespaces.

The child enters the namespaces between fork and exec (setns on descriptors the parent opened),
so no `nsenter` or `ip netns exec` is spawned per container. It gets a session of its own, so
stopping it reaches every process it started; stdout and stderr are appended to the log file.
"""

import os
import signal
import subprocess
import time

from netsim import netns

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _open_namespaces(net, uts):
    fds = []
    try:
        for path, flag in ((net, netns.CLONE_NEWNET), (uts, netns.CLONE_NEWUTS)):
            if path:
                try:
                    fds.append((os.open(path, os.O_RDONLY | os.O_CLOEXEC), flag))
                except FileNotFoundError:
                    raise netns.NamespaceError(2, f"namespace {path} does not exist")
    except BaseException:
        for fd, _ in fds:
            os.close(fd)
        raise
    return fds


def enter_in_child(fds):
    """A preexec_fn that moves the forked child into the namespaces open on FDS."""
    def preexec():
        for fd, flag in fds:
            netns.setns(fd, flag)
    return preexec


class NamespaceFds:
    """Descriptors of a pod's namespaces, held open while a child is being started."""

    def __init__(self, net=None, uts=None):
        self.fds = _open_namespaces(net, uts)

    def preexec(self):
        return enter_in_child(self.fds) if self.fds else None

    def close(self):
        for fd, _ in self.fds:
            os.close(fd)
        self.fds = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def container_env(env):
    """The environment of a container process: a PATH, then the spec's values."""
    result = {"PATH": DEFAULT_PATH}
    result.update({k: str(v) for k, v in (env or {}).items()})
    return result


def spawn(argv, netns=None, uts=None, env=None, log_path=None, cwd="/"):
    """Start ARGV in the namespaces bound at NETNS and UTS; stdout+stderr appended to LOG_PATH.

    Returns the subprocess.Popen. FileNotFoundError names the executable when it is missing.
    """
    if not argv:
        raise ValueError("spawn: argv is empty: expected the command to run")
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL
    try:
        with NamespaceFds(netns, uts) as ns:
            return subprocess.Popen(
                list(argv), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=container_env(env), cwd=cwd, start_new_session=True,
                preexec_fn=ns.preexec())
    finally:
        if log is not subprocess.DEVNULL:
            log.close()


def _signal_group(pid, sig, leader_alive=True):
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        if leader_alive:  # not a group leader (a PID not started by spawn): signal it alone
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass


_NOT_OUR_CHILD = object()


def _reap(pid):
    """Exit code of child PID if it ended, None while it runs, _NOT_OUR_CHILD once a
    non-child is gone (its status belongs to its own parent)."""
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return _NOT_OUR_CHILD
        return None
    return os.waitstatus_to_exitcode(status) if done else None


def _wait_gone(pid):
    while True:
        code = _reap(pid)
        if code is not None:
            return code
        time.sleep(0.01)


def stop(proc_or_pid, grace=2.0):
    """SIGTERM the container's process group, SIGKILL it after GRACE seconds; the exit code.

    The exit code is negative for a signal, as Popen reports it; None when PID was not a
    child of this process (its status belongs to its parent).
    """
    proc = proc_or_pid if isinstance(proc_or_pid, subprocess.Popen) else None
    pid = proc.pid if proc else int(proc_or_pid)
    if proc is not None and proc.poll() is not None:
        return proc.returncode
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while True:
        code = proc.poll() if proc else _reap(pid)
        if code is not None:
            break
        if time.monotonic() >= deadline:
            _signal_group(pid, signal.SIGKILL)
            code = proc.wait() if proc else _wait_gone(pid)
            break
        time.sleep(0.01)
    # the leader is gone; children left in its session must not outlive the container
    _signal_group(pid, signal.SIGKILL, leader_alive=False)
    return None if code is _NOT_OUR_CHILD else code
