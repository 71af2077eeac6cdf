"""A container's private mount table: its volumes bound at their mountPath, the host untouched.

`MountPlan.apply()` runs in the forked child before exec: unshare(CLONE_NEWNS), make every
mount private (nothing propagates back to the host), then bind each volume directory on its
target. A target that does not exist on the host is made inside an overlay of its nearest
existing ancestor (upper and work directories under the pod's scratch directory), so the
host's own directories never change. The host's root itself is not overlaid (that would hide
/proc, /dev and /sys): a mountPath whose parent is missing right under `/` is refused with a
message saying so (`check_target`, called before the fork, where errors can be reported).
"""
from __future__ import annotations

import dataclasses
import os

from netsim import netns

from .env import ConfigError

CLONE_NEWNS = 0x00020000
MS_RDONLY = 0x1
MS_REMOUNT = 0x20
MS_PRIVATE = 1 << 18
MS_REC_PRIVATE = netns.MS_REC | MS_PRIVATE


def _nearest_existing(path):
    while not os.path.exists(path):
        path = os.path.dirname(path)
    return path


def check_target(target: str, where: str) -> None:
    if not target.startswith("/") or ".." in target.split("/"):
        raise ConfigError(f"{where}: mountPath {target!r} must be an absolute path without '..'")
    if _nearest_existing(target) == "/" and target != "/":
        top = "/" + target.strip("/").split("/")[0]
        raise ConfigError(f"{where}: mountPath {target!r}: {top} does not exist on this host, and "
                          f"netsim does not create directories in the host's root; use a path under "
                          f"an existing directory (e.g. /mnt{target})")


@dataclasses.dataclass
class Bind:
    source: str
    target: str
    read_only: bool = False


@dataclasses.dataclass
class MountPlan:
    binds: list
    scratch: str

    def apply(self) -> None:
        """In the child: a private mount namespace with the binds (raises OSError on failure)."""
        netns.unshare(CLONE_NEWNS)
        netns.mount("", "/", "", MS_REC_PRIVATE)
        overlays = 0
        for bind in self.binds:
            if not os.path.exists(bind.target):
                base = _nearest_existing(bind.target)
                upper = os.path.join(self.scratch, f"upper{overlays}")
                work = os.path.join(self.scratch, f"work{overlays}")
                os.makedirs(upper, exist_ok=True)
                os.makedirs(work, exist_ok=True)
                overlays += 1
                _mount_overlay(base, upper, work)
                os.makedirs(bind.target, exist_ok=True)
            netns.mount(bind.source, bind.target, "", netns.MS_BIND)
            if bind.read_only:
                netns.mount("", bind.target, "", netns.MS_BIND | MS_REMOUNT | MS_RDONLY)



def _mount_overlay(base, upper, work):
    import ctypes

    options = f"lowerdir={base},upperdir={upper},workdir={work}".encode()
    # netns.mount passes no data argument; overlay needs its options there.
    if netns._libc.mount(b"overlay", base.encode(), b"overlay", 0, options) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"overlay on {base}: {os.strerror(err)}")
