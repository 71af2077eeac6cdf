"""The ledger: every kernel object and process a cluster creates, recorded before it exists.

One JSON object per line, appended with O_APPEND by any process of the cluster (the CLI, node
agents), so a SIGKILL at any point leaves a ledger that names everything that might exist.
Teardown walks it backwards and removes exactly those objects, each removal idempotent; it
never looks for objects by name pattern.

Kinds: `netns` (a named network namespace), `uts` (a UTS namespace bound at a path),
`link` (a link inside one of our namespaces; it goes away with its namespace, recorded so that
a reader can see what was made; links a CNI plugin makes are recorded from its result, after
the fact), `process` (pid plus its start time, so a reused pid is never signalled; an optional
`wave` orders the stops: a lower wave is stopped, and waited for, before a higher one, so that
the kubelets are gone before the control plane and neither recreates what teardown removes;
`stop: kill` says SIGKILL at once, for processes whose state lives in the ledger and the store,
where a graceful stop would only cost time),
`cgroup` (a cgroup directory, removed once the processes are gone, children first), `dir` (a
directory made outside the cluster's state directory, removed with what it holds).
"""

import contextlib
import json
import os
import shutil
import signal
import time

from . import netns


def process_start_time(pid):
    """The kernel's start time of PID (clock ticks since boot), or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # Field 22; the command name (field 2) may hold spaces, so split after its closing paren.
    return int(stat.rsplit(b")", 1)[1].split()[19])


class Ledger:
    def __init__(self, path):
        self.path = path

    def record(self, kind, **attrs):
        entry = {"kind": kind, "at": round(time.time(), 4), **attrs}
        line = (json.dumps(entry, sort_keys=True) + "\n").encode()
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
        return entry

    def record_process(self, pid, role, wave=None, **attrs):
        if wave is not None:
            attrs["wave"] = wave
        return self.record("process", pid=pid, start=process_start_time(pid), role=role, **attrs)

    def entries(self):
        try:
            with open(self.path) as f:
                lines = f.readlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            line = line.strip()
            if not line:
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                # A line torn by a kill mid-write names nothing we could have created yet.
                continue
        return out


def alive_as_recorded(entry):
    """Whether the process ENTRY names still runs (not a zombie, not a reused pid)."""
    start = process_start_time(entry["pid"])
    return start is not None and start == entry.get("start") and _exists(entry["pid"])


def _signal_and_wait(pids, grace):
    """SIGTERM PIDS and wait up to GRACE for them to exit, then SIGKILL (GRACE 0: SIGKILL at
    once); returns once they are gone (a SIGKILLed process may take a moment to exit)."""
    pending = list(pids)
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, KILL_WAIT_S)) if grace else \
            ((signal.SIGKILL, KILL_WAIT_S),):
        for pid in pending:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while pending and time.monotonic() < deadline:
            pending = [p for p in pending if _exists(p)]
            if pending:
                time.sleep(0.01)


KILL_WAIT_S = 2.0


def _exists(pid):
    """Whether PID still runs; a zombie has exited (its parent, often init, reaps it later)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except OSError:
        return False
    if state == b"Z":
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        return False
    return True


def stop_processes(entries, grace=2.0):
    """Stop the recorded processes still alive as recorded, wave by wave: SIGTERM, then SIGKILL
    after GRACE; those recorded with stop="kill" get SIGKILL at once. Returns how many."""
    live = {}
    for e in entries:
        if e["kind"] == "process" and e["pid"] != os.getpid() and alive_as_recorded(e):
            live[e["pid"]] = (e.get("wave", LAST_WAVE), e.get("stop") == "kill")
    for wave in sorted({w for w, _ in live.values()}):
        for kill in (True, False):
            pids = sorted(p for p, (w, k) in live.items() if w == wave and k == kill)
            if pids:
                _signal_and_wait(pids, 0 if kill else grace)
    return len(live)


LAST_WAVE = 1 << 30
CGROUP_RMDIR_WAIT_S = 1.0


def _remove_cgroup(path):
    """rmdir a cgroup; a cgroup whose last task is still exiting answers EBUSY for a moment."""
    deadline = time.monotonic() + CGROUP_RMDIR_WAIT_S
    while True:
        try:
            os.rmdir(path)
            return True
        except FileNotFoundError:
            return False
        except OSError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)


def _processes_in_any(paths):
    """PIDs whose network namespace is one of those bound at PATHS, by (device, inode), as
    netns.processes_in finds them for one; one scan of /proc for all (a cluster has a namespace
    per pod, and a scan per namespace would cost O(pods x processes))."""
    want = set()
    for path in paths:
        with contextlib.suppress(OSError, ValueError):
            st = os.stat(path)
            want.add((st.st_dev, st.st_ino))
    if not want:
        return []
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                st = os.stat(f"/proc/{entry}/ns/net")
                if (st.st_dev, st.st_ino) in want:
                    pids.append(int(entry))
    return pids


def teardown(ledger, grace=2.0, on_progress=None):
    """Remove everything LEDGER holds, newest first. Returns a count per kind removed."""
    entries = ledger.entries()
    removed = {}

    def count(kind):
        removed[kind] = removed.get(kind, 0) + 1
        if on_progress:
            on_progress(kind)

    # Recorded processes first (they hold sockets inside pod namespaces, and a namespace with
    # open sockets outlives its bind mount), in their recorded waves.
    for _ in range(stop_processes(entries, grace)):
        count("process")
    me = os.getpid()

    # Then whatever still runs inside our own namespaces, found by namespace identity.
    leftovers = _processes_in_any(netns.netns_path(e["name"]) for e in entries if e["kind"] == "netns")
    _signal_and_wait([p for p in leftovers if p != me], 0.5)

    for e in reversed(entries):
        if e["kind"] == "netns":
            if netns.exists(e["name"]):
                count("netns")
            netns.delete(e["name"])
        elif e["kind"] == "uts":
            if os.path.exists(e["path"]):
                count("uts")
            netns.delete_bound(e["path"])
        elif e["kind"] == "dir":
            if os.path.isdir(e["path"]):
                count("dir")
                shutil.rmtree(e["path"], ignore_errors=True)
                with contextlib.suppress(OSError):
                    os.rmdir(os.path.dirname(e["path"]))  # the per-state-dir parent, once empty
        elif e["kind"] == "cgroup":
            # Newest first: a container's cgroup goes before its pod's and its node's.
            if _remove_cgroup(e["path"]):
                count("cgroup")
    return removed
