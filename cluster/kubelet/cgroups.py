"""CPU and memory limits of containers, through cgroups (v2 when the host has it, else v1).

Each container with a limit gets its own cgroup, `<root>/<node>/pod<uid>/<container>` under
the cpu and memory hierarchies (v1: /sys/fs/cgroup/cpu and /sys/fs/cgroup/memory; v2: the one
unified tree, with the controllers enabled down the path), as the kubelet's pod and container
cgroups nest. A CPU limit of N millicores is a CFS quota of N*100 µs per 100 ms period; a
memory limit is the hard limit in bytes (the kernel OOM-kills the container beyond it). The
directories are created children-last and removed children-first once the processes are gone.
With a ledger, each directory is recorded before it is made, so that the cluster's teardown
removes it also after the kubelet was killed.
"""
from __future__ import annotations

import contextlib
import errno
import os

from cluster.api.quantity import Quantity, QuantityError

from .env import ConfigError

CGROUP_MOUNT = "/sys/fs/cgroup"
CFS_PERIOD_US = 100_000


def limits_of(container: dict) -> tuple[int | None, int | None]:
    """(cpu millicores, memory bytes) of the container's limits; None where it sets none."""
    limits = (container.get("resources") or {}).get("limits") or {}
    try:
        cpu = Quantity.parse(limits["cpu"]).milli_value() if "cpu" in limits else None
        memory = Quantity.parse(limits["memory"]).value() if "memory" in limits else None
    except QuantityError as e:
        raise ConfigError(f"container {container.get('name')!r} resources.limits: {e}") from None
    return cpu, memory


def available(mount: str = CGROUP_MOUNT) -> bool:
    """Whether limits can be applied: cpu and memory on the unified (v2) tree at MOUNT, or the
    v1 cpu and memory hierarchies mounted under it."""
    try:
        with open(os.path.join(mount, "cgroup.controllers")) as f:
            return {"cpu", "memory"} <= set(f.read().split())
    except FileNotFoundError:
        return all(os.path.isdir(os.path.join(mount, c)) for c in ("cpu", "memory"))


class Cgroups:
    """Creates per-container cgroups under ROOT_NAME/NODE in the host's hierarchy."""

    def __init__(self, root_name: str, node: str, mount: str = CGROUP_MOUNT, ledger=None):
        self.mount = mount
        self.ledger = ledger
        self.v2 = os.path.exists(os.path.join(mount, "cgroup.controllers"))
        self.available = available(mount)  # read once: every container with limits asks
        self.relative = os.path.join(root_name.strip("/"), node)

    def _hierarchies(self):
        return [self.mount] if self.v2 else [os.path.join(self.mount, c) for c in ("cpu", "memory")]

    def _make(self, base, parts):
        """mkdir each level of PARTS under BASE (v2: enabling cpu and memory for the children)."""
        path, made = base, []
        for part in parts:
            if self.v2:
                with contextlib.suppress(OSError):
                    with open(os.path.join(path, "cgroup.subtree_control"), "w") as f:
                        f.write("+cpu +memory")
            path = os.path.join(path, part)
            if not os.path.isdir(path):
                if self.ledger is not None:
                    self.ledger.record("cgroup", path=path)
                try:
                    os.mkdir(path)
                    made.append(path)
                except FileExistsError:
                    pass  # another container of the node, started on another worker, made it
        return path

    def container(self, uid: str, name: str, cpu_milli: int | None, memory: int | None) -> list[str]:
        """Create the container's cgroups with its limits; the `cgroup.procs` files to join."""
        parts = self.relative.split("/") + [f"pod{uid}", name]
        if not self.available:
            raise FileNotFoundError(errno.ENOENT, f"container {name!r} has CPU or memory limits, but this host has "
                                    f"no cgroup cpu and memory controllers at {self.mount} (v2, or v1 "
                                    "hierarchies named cpu and memory): mount them, or drop the limits")
        procs = []
        for base in self._hierarchies():
            path = self._make(base, parts)
            if self.v2:
                if cpu_milli is not None:
                    _write(path, "cpu.max", f"{cpu_milli * CFS_PERIOD_US // 1000} {CFS_PERIOD_US}")
                if memory is not None:
                    _write(path, "memory.max", str(memory))
            elif base.endswith("cpu") and cpu_milli is not None:
                _write(path, "cpu.cfs_period_us", str(CFS_PERIOD_US))
                _write(path, "cpu.cfs_quota_us", str(cpu_milli * CFS_PERIOD_US // 1000))
            elif base.endswith("memory") and memory is not None:
                _write(path, "memory.limit_in_bytes", str(memory))
            procs.append(os.path.join(path, "cgroup.procs"))
        return procs

    def pod_dirs(self, uid: str, containers: list[str]) -> list[str]:
        """Every directory of the pod's cgroups, children first: the removal order."""
        dirs = []
        for base in self._hierarchies():
            pod = os.path.join(base, self.relative, f"pod{uid}")
            dirs += [os.path.join(pod, c) for c in containers] + [pod]
        return dirs

    def remove_node(self) -> None:
        """Remove the node's (and, when empty, the root's) cgroup directories: teardown."""
        for base in self._hierarchies():
            path = os.path.join(base, self.relative)
            while path != base:
                try:
                    os.rmdir(path)
                except FileNotFoundError:
                    pass
                except OSError:
                    break  # still holds pods (or another node's cgroups)
                path = os.path.dirname(path)

    def oom_killed(self, uid: str, container: str) -> bool:
        """Whether the kernel OOM-killed a process of the container's memory cgroup."""
        base = self.mount if self.v2 else os.path.join(self.mount, "memory")
        directory = os.path.join(base, self.relative, f"pod{uid}", container)
        name = "memory.events" if self.v2 else "memory.oom_control"
        try:
            with open(os.path.join(directory, name)) as f:
                fields = dict(line.split() for line in f if line.strip())
        except OSError:
            return False
        return int(fields.get("oom_kill", "0")) > 0


def _write(directory, name, value):
    with open(os.path.join(directory, name), "w") as f:
        f.write(value)
