"""Pod sandboxes on disk and in the kernel: the kubelet's checkpoint of every pod it runs.

A sandbox is the pod's network and UTS namespaces (`netsim.sandbox`), its CNI attachment
(`eth0`, through the libcni-style runtime in the node's network namespace) and its cgroup. Its
record, `<root>/pods/<uid>/sandbox.json`, is written *before* anything is made and updated as
containers start, so a kubelet killed at any point finds on its next start every sandbox it may
have made: the ones whose pod is gone are torn down (CNI DEL, namespaces, cgroup), the others
are adopted. Teardown is idempotent: each step accepts that its object is already gone.

The record file is a log: each save appends the whole record as one JSON line, and the last
line that parses is the record (a save cut short by a kill leaves the lines before it whole).
A new file per save (written aside, renamed over) cost more than anything else a pod makes on
a journal-less ext4, where every inode allocation scans past those freed in the last minutes.

Names: the pod's network namespace is `<prefix>_<namespace>_<pod>_<uid[:8]>` (one pod
incarnation, one name, readable in `ip netns list`); the CNI container ID is sha256 of the UID.
Container logs live in `<root>/logs/<namespace>_<pod>_<uid>/<container>/<restart>.log`, the
layout of /var/log/pods.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import signal
import tempfile
import time

from cni.runtime import RuntimeConf
from netsim import netns
from netsim import sandbox as podsandbox

NETNS_NAME_MAX = 255
_RECORD = "sandbox.json"
_COMPACT_BYTES = 64 * 1024  # a log past this is rewritten as its last line (crash loops save often)


def sandbox_id(uid: str) -> str:
    """The pod sandbox's ID as CNI sees it: 64 hex characters, like a containerd sandbox ID."""
    return hashlib.sha256(uid.encode()).hexdigest()


def netns_name(prefix: str, namespace: str, name: str, uid: str) -> str:
    full = f"{prefix}_{namespace}_{name}_{uid[:8]}"
    if len(full) <= NETNS_NAME_MAX:
        return full
    return f"{prefix}_{hashlib.sha256(full.encode()).hexdigest()[:32]}_{uid[:8]}"


@dataclasses.dataclass
class SandboxRecord:
    """What the kubelet made for one pod incarnation (UID); saved as JSON in its pod directory."""
    uid: str
    namespace: str
    name: str
    netns: str
    dir: str
    log_dir: str
    id: str = ""
    ips: list = dataclasses.field(default_factory=list)
    cgroups: list = dataclasses.field(default_factory=list)
    created: float = 0.0
    grace: int = 30
    # container name -> {"pid", "start", "restartCount", "builtin", "id", "startedAt"}
    containers: dict = dataclasses.field(default_factory=dict)
    networked: bool = False

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def netns_path(self) -> str:
        return netns.netns_path(self.netns)

    @property
    def uts(self) -> str:
        return podsandbox.uts_path(self.dir)

    def runtime_conf(self) -> RuntimeConf:
        return RuntimeConf(container_id=self.id, netns=self.netns_path, ifname="eth0",
                           args=[("IgnoreUnknown", "1"), ("K8S_POD_NAMESPACE", self.namespace),
                                 ("K8S_POD_NAME", self.name), ("K8S_POD_INFRA_CONTAINER_ID", self.id),
                                 ("K8S_POD_UID", self.uid)])

    def save(self) -> None:
        """Append the record to its log (a reader, or the next kubelet, sees it whole or sees
        the previous one). The leading newline ends a line a killed save cut short."""
        line = f"\n{json.dumps(dataclasses.asdict(self))}\n".encode()
        path = os.path.join(self.dir, _RECORD)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except FileNotFoundError:
            os.makedirs(self.dir, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            if os.fstat(fd).st_size > _COMPACT_BYTES:
                self._rewrite(line)
                return
            view = memoryview(line)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)

    def _rewrite(self, line: bytes) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".sandbox-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(line)
            os.replace(tmp, os.path.join(self.dir, _RECORD))
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise


def read_record(path: str) -> dict | None:
    """The last whole record in the record log at PATH; None if it holds none (a kubelet
    killed during the first save) or is unreadable."""
    try:
        with open(path, "rb") as f:
            lines = f.read().split(b"\n")
    except OSError:
        return None
    for line in reversed(lines):
        if line.strip():
            try:
                doc = json.loads(line)
            except ValueError:
                continue  # cut short by a kill
            if isinstance(doc, dict):
                return doc
    return None


def load_records(root: str) -> list[SandboxRecord]:
    """Every sandbox record under ROOT/pods (unreadable ones are skipped: they name nothing)."""
    pods = os.path.join(root, "pods")
    records = []
    for uid in sorted(os.listdir(pods)) if os.path.isdir(pods) else []:
        doc = read_record(os.path.join(pods, uid, _RECORD))
        try:
            records.append(SandboxRecord(**doc))
        except TypeError:  # none, or not a record
            continue
    return records


def remove_unrecorded_dirs(root: str) -> list[str]:
    """Remove the pod directories under ROOT/pods that hold no whole record; returns them. A
    record is written before anything of its sandbox is made and removed after all of it is
    gone, so such a directory is only what a kubelet killed while writing the first record, or
    while removing the directory, left behind: plain files. Call it before any sandbox is being
    made."""
    pods = os.path.join(root, "pods")
    removed = []
    for uid in sorted(os.listdir(pods)) if os.path.isdir(pods) else []:
        path = os.path.join(pods, uid)
        if read_record(os.path.join(path, _RECORD)) is None:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def stop_unrecorded(records: list[SandboxRecord], known: set[int]) -> list[int]:
    """SIGKILL every session running in RECORDS' network namespaces that no PID in KNOWN leads,
    and wait until they are gone; returns their leaders' PIDs.

    For sandboxes whose record says a container was being spawned: the kubelet that forked it
    may have died before saving its PID. Its process is a session leader (containers start in
    a session of their own) in the pod's namespace; processes of a known container belong to
    that container's session, and `netsim exec` keeps the caller's."""
    leaders = [pid for r in records for pid in netns.processes_in(r.netns_path)
               if pid not in known and _session_of(pid) == pid]
    for pid in leaders:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + STOP_WAIT_S
    while time.monotonic() < deadline and any(_session_of(pid) == pid for pid in leaders):
        time.sleep(0.01)
    return leaders


STOP_WAIT_S = 2.0


def _session_of(pid):
    """The session ID of PID, None once it is gone or a zombie (its parent reaps it)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == b"Z" else int(fields[3])


class Sandboxes:
    """Makes and removes sandboxes: namespaces, CNI ADD/DEL (in the node's namespace), records.

    Methods block (kernel work, plugin calls): the kubelet runs them on its thread pool.
    """

    def __init__(self, root: str, ledger, cni, conflist, node_netns: str | None, prefix: str):
        self.root = root
        self.ledger = ledger
        self.cni = cni
        self.conflist = conflist
        self.node_netns = node_netns
        self.prefix = prefix

    def new_record(self, pod: dict) -> SandboxRecord:
        meta = pod["metadata"]
        uid, ns, name = meta["uid"], meta["namespace"], meta["name"]
        return SandboxRecord(
            uid=uid, namespace=ns, name=name, netns=netns_name(self.prefix, ns, name, uid),
            dir=os.path.join(self.root, "pods", uid),
            log_dir=os.path.join(self.root, "logs", f"{ns}_{name}_{uid}"), id=sandbox_id(uid),
            grace=int((pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30)))

    def _in_node(self):
        return netns.enter(self.node_netns) if self.node_netns else contextlib.nullcontext()

    def create(self, record: SandboxRecord) -> None:
        """Namespaces, then CNI ADD: record.ips is set. The record is saved before each step."""
        record.save()
        os.makedirs(record.log_dir, exist_ok=True)
        if not (netns.exists(record.netns) and os.path.ismount(record.uts)):
            # A kubelet killed while making them may have left a mount point without its mount
            # (either namespace): what is there is removed, or the creation fails forever.
            netns.delete(record.netns)
            netns.delete_bound(record.uts)
            podsandbox.create(self.ledger, {"namespace": record.namespace, "name": record.name,
                                            "netns": record.netns}, record.dir)
        rt = record.runtime_conf()
        with self._in_node():
            result = self.cni.add_network_list(self.conflist, rt)
        for iface in result.get("interfaces", []):
            self.ledger.record("link", name=iface.get("name"), type="cni",
                               netns=iface.get("sandbox") or self.node_netns, pod=record.netns)
        record.ips = [ip["address"].split("/")[0] for ip in result.get("ips", [])]
        record.networked = True
        record.save()

    def network_down(self, record: SandboxRecord) -> None:
        """CNI DEL (idempotent: a second DEL, or one for a namespace already gone, succeeds)."""
        with self._in_node():
            self.cni.del_network_list(self.conflist, record.runtime_conf())
        record.networked = False
        if os.path.isdir(record.dir):
            record.save()

    def destroy(self, record: SandboxRecord, keep_logs: bool = False) -> None:
        """CNI DEL, namespaces, cgroups, then the pod's directories: nothing of it is left."""
        self.network_down(record)
        netns.delete(record.netns)
        netns.delete_bound(record.uts)
        for path in record.cgroups:
            with contextlib.suppress(FileNotFoundError):
                os.rmdir(path)
        if not keep_logs:
            shutil.rmtree(record.log_dir, ignore_errors=True)
        # The directory with the record last: a kubelet killed before this finds the record and
        # removes the rest; one killed during it leaves files only (remove_unrecorded_dirs).
        shutil.rmtree(record.dir, ignore_errors=True)
