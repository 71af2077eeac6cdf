"""Network and UTS namespaces: create, enter, delete, without forking.

Namespaces are created in-process (unshare on a helper thread, then a bind mount of the
thread's namespace file), which costs ~0.5 ms against ~6 ms for pyroute2's forking helper.
Named network namespaces live in /run/netns as iproute2's do, so `ip netns exec` works on
them. Entering a namespace is per thread (setns), so `enter()` is safe in threaded code as
long as the caller stays on its thread for the duration.

Only the standard library is imported here: the CNI shim and short-lived commands use it too.
"""

import contextlib
import ctypes
import ctypes.util
import errno
import os
import threading

NETNS_RUN_DIR = "/run/netns"

CLONE_NEWUTS = 0x04000000
CLONE_NEWNET = 0x40000000
MS_BIND = 0x1000
MS_REC = 0x4000
MS_SHARED = 1 << 20
MNT_DETACH = 2

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]

_run_dir_lock = threading.Lock()


class NamespaceError(OSError):
    """A namespace operation failed; the message names the namespace and the operation."""


def _check(ret, what):
    if ret != 0:
        err = ctypes.get_errno()
        raise NamespaceError(err, f"{what}: {os.strerror(err)}")


def setns(fd, nstype=0):
    _check(_libc.setns(fd, nstype), "setns")


def unshare(flags):
    _check(_libc.unshare(flags), "unshare")


def mount(source, target, fstype, flags):
    _check(_libc.mount(source.encode() if source else None, target.encode(),
                       fstype.encode() if fstype else None, flags, None), f"mount {target}")


def umount(target):
    if _libc.umount2(target.encode(), MNT_DETACH) != 0:
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOENT):
            raise NamespaceError(err, f"umount {target}: {os.strerror(err)}")


def sethostname(name):
    raw = name.encode()
    _check(_libc.sethostname(raw, len(raw)), f"sethostname {name}")


def netns_path(name):
    """The bind-mount path of a named network namespace (as `ip netns` names it)."""
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"invalid network namespace name {name!r}: expected a plain file name")
    return os.path.join(NETNS_RUN_DIR, name)


def _prepare_run_dir():
    """Make /run/netns a shared mount point, exactly as `ip netns add` does the first time."""
    with _run_dir_lock:
        os.makedirs(NETNS_RUN_DIR, mode=0o755, exist_ok=True)
        try:
            mount("", NETNS_RUN_DIR, "none", MS_SHARED | MS_REC)
        except NamespaceError as e:
            if e.errno != errno.EINVAL:
                raise
            mount(NETNS_RUN_DIR, NETNS_RUN_DIR, "none", MS_BIND | MS_REC)
            mount("", NETNS_RUN_DIR, "none", MS_SHARED | MS_REC)


def _run_in_fresh_thread(fn):
    """unshare() changes the calling thread's namespaces; a throwaway thread keeps ours intact."""
    box = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as e:  # re-raised on the caller's thread
            box["error"] = e

    t = threading.Thread(target=target)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box.get("value")


def _bind_new_namespace(flag, kind, path, hostname=None):
    fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0o444)
    os.close(fd)

    def make():
        unshare(flag)
        if hostname is not None:
            sethostname(hostname)
        mount(f"/proc/thread-self/ns/{kind}", path, "none", MS_BIND)

    try:
        _run_in_fresh_thread(make)
    except BaseException:
        os.unlink(path)
        raise


def create(name):
    """Create the named network namespace /run/netns/NAME; FileExistsError if it exists."""
    path = netns_path(name)
    if not os.path.isdir(NETNS_RUN_DIR) or not os.path.ismount(NETNS_RUN_DIR):
        _prepare_run_dir()
    _bind_new_namespace(CLONE_NEWNET, "net", path)
    return path


def delete(name):
    """Remove the named network namespace; a missing one is not an error (idempotent teardown)."""
    path = netns_path(name)
    umount(path)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def exists(name):
    return os.path.ismount(netns_path(name))


def _loopback_up():
    """Bring up `lo` of the calling thread's network namespace (one ioctl, no netlink)."""
    import fcntl
    import socket
    import struct

    SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, req))[1]
        fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags | IFF_UP))


def create_sandbox(name, uts_path, hostname):
    """A pod's namespaces in one step: network namespace NAME with `lo` up, and a UTS
    namespace bound at UTS_PATH whose hostname is HOSTNAME. One unshare on one throwaway
    thread; ~3x cheaper than making them one by one."""
    path = netns_path(name)
    if not os.path.isdir(NETNS_RUN_DIR) or not os.path.ismount(NETNS_RUN_DIR):
        _prepare_run_dir()
    made = []
    try:
        for p in (path, uts_path):
            os.close(os.open(p, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0o444))
            made.append(p)

        def make():
            unshare(CLONE_NEWNET | CLONE_NEWUTS)
            sethostname(hostname)
            _loopback_up()
            mount("/proc/thread-self/ns/net", path, "none", MS_BIND)
            mount("/proc/thread-self/ns/uts", uts_path, "none", MS_BIND)

        _run_in_fresh_thread(make)
    except BaseException:
        for p in made:
            delete_bound(p)
        raise
    return path


def create_uts(path, hostname):
    """Create a UTS namespace whose hostname is HOSTNAME, held by a bind mount on PATH."""
    _bind_new_namespace(CLONE_NEWUTS, "uts", path, hostname=hostname)
    return path


def delete_bound(path):
    """Unmount and remove a namespace held by a bind mount at PATH (idempotent)."""
    umount(path)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def inode(path):
    """The namespace's identity: the inode of its bind mount (or /proc/PID/ns/* link)."""
    return os.stat(path).st_ino


@contextlib.contextmanager
def enter(path_or_name, kind="net"):
    """Run the body with the calling thread inside a namespace, then return to the original.

    Accepts a namespace name (looked up in /run/netns) or a path to a namespace file.
    """
    path = path_or_name if "/" in path_or_name else netns_path(path_or_name)
    flag = CLONE_NEWNET if kind == "net" else CLONE_NEWUTS
    own = os.open(f"/proc/thread-self/ns/{kind}", os.O_RDONLY)
    try:
        target = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        os.close(own)
        raise NamespaceError(errno.ENOENT, f"namespace {path} does not exist")
    try:
        setns(target, flag)
        try:
            yield
        finally:
            setns(own, flag)
    finally:
        os.close(target)
        os.close(own)


def processes_in(path):
    """PIDs of the processes whose network namespace is the one bound at PATH.

    This is how teardown finds the processes of a namespace it owns: by the namespace's
    identity, never by a process name.
    """
    try:
        want = os.stat(path)
    except FileNotFoundError:
        return []
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            st = os.stat(f"/proc/{entry}/ns/net")
        except OSError:
            continue
        if st.st_ino == want.st_ino and st.st_dev == want.st_dev:
            pids.append(int(entry))
    return pids
