"""The kubelet: the pods the API server binds to one node, made real and reported back.

An informer watches the pods with `spec.nodeName=<node>`; a `Controller` runs a level-triggered
`sync(key)` per pod (upstream's SyncPod / computePodActions): pods of an incarnation that is
gone are killed and torn down; a pod being deleted gets SIGTERM, its grace period, SIGKILL,
CNI DEL, its namespaces removed, and is then deleted with gracePeriodSeconds=0; a pod without
a sandbox gets one (namespaces, CNI ADD); then init containers run in order, each to
completion (sidecars, init containers with restartPolicy Always, start and keep running),
then the containers, restarted per restartPolicy with crash-loop backoff; probes drive
readiness and liveness; the status is written when it changed. Container exits and probe
changes only enqueue the pod's key: every decision is taken in `sync`, from the current state.

On start, the sandbox records of a previous run are loaded (sandboxes.py): their process
containers are adopted, built-ins started again, and records no pod matches torn down.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import hashlib
import logging
import os
import time

from cluster.api.errors import APIError
from cluster.api.resources import lookup
from cluster.client import Controller, Informer
from cni.runtime import CNIConfig, load_conflist
from netsim.containers import images, resident
from netsim.ledger import Ledger

from . import cgroups as cgroupsmod
from . import env as envmod
from . import probes as probesmod
from . import runtime as runtimemod
from . import volumes as volumesmod
from .backoff import CrashLoopBackoff
from .node import NodeReporter
from .sandboxes import Sandboxes, SandboxRecord, load_records, remove_unrecorded_dirs, stop_unrecorded
from .status import (INIT, REGULAR, RUNNING, SIDECAR, TERMINAL_PHASES, TERMINATED, WAITING,
                     ContainerRecord, pod_status)

log = logging.getLogger(__name__)

PODS = lookup("", "v1", "pods")
CONFIG_RETRY_SECONDS = 2.0
ORPHAN_GRACE_SECONDS = 2.0


@dataclasses.dataclass
class KubeletConfig:
    node_name: str
    root_dir: str
    conflist: str
    cni_bin_dirs: list
    node_netns: str | None = None
    netns_prefix: str | None = None
    cni_cache_dir: str | None = None
    ledger: str | None = None
    node_ips: list = dataclasses.field(default_factory=list)
    pod_cidrs: list = dataclasses.field(default_factory=list)
    node_labels: dict = dataclasses.field(default_factory=dict)
    max_pods: int = 110
    lease_seconds: float = 10.0
    status_report_seconds: float = 60.0
    backoff_initial: float = 10.0
    backoff_max: float = 300.0
    cgroup_root: str = "netsim"
    workers: int = 8
    logs_socket: str | None = None


@dataclasses.dataclass
class PodState:
    """What this kubelet runs for one pod incarnation."""
    record: SandboxRecord
    pod: dict | None = None
    containers: dict = dataclasses.field(default_factory=dict)  # name -> ContainerRecord
    handles: dict = dataclasses.field(default_factory=dict)     # name -> runtime.Handle
    builtins: set = dataclasses.field(default_factory=set)      # names running on the server
    probes: dict = dataclasses.field(default_factory=dict)      # name -> {kind: (worker, task)}
    gates: dict = dataclasses.field(default_factory=dict)       # name -> startup Event
    volume_dirs: dict | None = None
    cgroup_names: set = dataclasses.field(default_factory=set)
    liveness_killed: set = dataclasses.field(default_factory=set)  # restart whatever they exit with


def _container_id(uid, name, restart):
    return hashlib.sha256(f"{uid}/{name}/{restart}".encode()).hexdigest()


def _liveness_grace(pod: dict, name: str) -> float:
    """Seconds between SIGTERM and SIGKILL for a container its liveness probe failed: the
    probe's terminationGracePeriodSeconds, else the pod's (upstream's order)."""
    spec = pod.get("spec") or {}
    for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        if c.get("name") == name:
            probe = c.get("livenessProbe") or {}
            if probe.get("terminationGracePeriodSeconds") is not None:
                return float(probe["terminationGracePeriodSeconds"])
    return float(spec.get("terminationGracePeriodSeconds", 30))


def _kind(c, init):
    if not init:
        return REGULAR
    return SIDECAR if c.get("restartPolicy") == "Always" else INIT


class Kubelet:
    def __init__(self, client, config: KubeletConfig):
        self.client = client
        self.config = config
        os.makedirs(config.root_dir, exist_ok=True)
        self.ledger = Ledger(config.ledger or os.path.join(config.root_dir, "ledger.jsonl"))
        self.cni = CNIConfig(path=config.cni_bin_dirs,
                             cache_dir=config.cni_cache_dir or os.path.join(config.root_dir, "cni-cache"))
        self._use_inprocess_plugins()
        self.sandboxes = Sandboxes(config.root_dir, self.ledger, self.cni, load_conflist(config.conflist),
                                   config.node_netns, config.netns_prefix or config.node_netns or config.node_name)
        self.cgroups = cgroupsmod.Cgroups(config.cgroup_root, config.node_name, ledger=self.ledger)
        self.backoff = CrashLoopBackoff(config.backoff_initial, config.backoff_max)
        self.runtime = runtimemod.Runtime(self._container_exited)
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=config.workers)
        self.informer = Informer(client, PODS, field_selector=f"spec.nodeName={config.node_name}")
        self.controller = Controller(f"kubelet {config.node_name}", self.sync, workers=config.workers)
        self.controller.watch(self.informer)
        self.node = NodeReporter(client, config)
        self.states: dict[str, PodState] = {}
        self.logs_server = None

    def _use_inprocess_plugins(self):
        """netsim's own plugins answer in this process (cni.invoke); others are executed."""
        import importlib

        from cni.install import PLUGIN_MODULES
        from cni.invoke import InProcessExec

        plugins = {}
        for type_name, module in PLUGIN_MODULES.items():
            plugin = importlib.import_module(module)
            if hasattr(plugin, "warm"):
                plugin.warm()
            plugins[type_name] = plugin
        self.cni.exec = InProcessExec(plugins, fallback=self.cni.run_executable)

    async def _blocking(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    # -- running ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Register the node, adopt what a previous run left, then sync pods until cancelled."""
        await self.node.register()
        self._adopt()
        tasks = [asyncio.create_task(self.node.heartbeat(), name="kubelet heartbeat")]
        if self.config.logs_socket:
            from .logs import LogServer

            self.logs_server = LogServer(self.config.logs_socket, self.config.root_dir)
            await self.logs_server.start()
        try:
            tasks.append(asyncio.create_task(self.controller.run(), name="kubelet pods"))
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.close()

    async def close(self) -> None:
        """Stop watching; process containers keep running (a restarted kubelet adopts them)."""
        await self.informer.stop()
        for st in self.states.values():
            self._stop_probes(st)
        await self.runtime.close()
        if self.logs_server:
            await self.logs_server.stop()
        self.pool.shutdown(wait=True)

    def _adopt(self) -> None:
        remove_unrecorded_dirs(self.config.root_dir)
        records = load_records(self.config.root_dir)
        for record in records:
            st = PodState(record)
            for name, saved in record.containers.items():
                fields = {f.name for f in dataclasses.fields(ContainerRecord)}
                r = ContainerRecord(**{k: v for k, v in saved.items() if k in fields})
                st.containers[name] = r
                if r.state != RUNNING:
                    continue
                if saved.get("builtin"):
                    # Built-ins ended with the previous kubelet: start them again, same count.
                    r.state, r.reason = WAITING, "ContainerCreating"
                    continue
                handle = self.runtime.adopt(record.uid, name, saved.get("pid"), saved.get("start"))
                if handle is None:
                    r.state, r.reason, r.exit_code = TERMINATED, "ContainerStatusUnknown", 137
                    r.message = "The container could not be located when the kubelet restarted"
                    r.finished_at = time.time()
                else:
                    st.handles[name] = handle
            self.states[record.uid] = st
            self.controller.enqueue(record.key)
        # A container the previous kubelet forked but died before recording would run beside
        # its restarted self, and outlive its pod's namespace once the pod is deleted.
        known = {h.pid for st in self.states.values() for h in st.handles.values()}
        spawning = [r for r in records if any(c.get("spawning") for c in r.containers.values())]
        for pid in stop_unrecorded(spawning, known):
            log.info("killed process %d: a container the previous kubelet started but did not record", pid)

    # -- sync ------------------------------------------------------------------------------

    async def sync(self, key: str) -> float | None:
        pod = self.informer.indexer.get_by_key(key)
        uid = pod["metadata"]["uid"] if pod else None
        for st in [s for s in self.states.values() if s.record.key == key and s.record.uid != uid]:
            await self._kill(st, min(st.record.grace, ORPHAN_GRACE_SECONDS))
            await self._blocking(self.sandboxes.destroy, st.record)
            self._forget(st)
        if pod is None or (pod.get("spec") or {}).get("nodeName") != self.config.node_name:
            return None
        meta = pod["metadata"]
        st = self.states.get(uid)
        if meta.get("deletionTimestamp"):
            if st is not None:
                await self._kill(st, float(meta.get("deletionGracePeriodSeconds") or 0))
                await self._blocking(self.sandboxes.destroy, st.record)
                self._forget(st)
            try:
                await self.client.delete(PODS, meta["name"], meta["namespace"], grace_period_seconds=0,
                                         preconditions={"uid": uid})
            except APIError as e:
                if e.code not in (404, 409):
                    raise
            return None
        if (pod.get("status") or {}).get("phase") in TERMINAL_PHASES and st is None:
            return None  # finished under an earlier kubelet; nothing of it runs here
        if st is None:
            st = PodState(self.sandboxes.new_record(pod))
            self.states[uid] = st
            st.record.created = time.time()
            await self._blocking(self.sandboxes.create, st.record)
        elif not st.record.networked and (pod.get("status") or {}).get("phase") not in TERMINAL_PHASES:
            await self._blocking(self.sandboxes.create, st.record)
        st.pod = pod
        again = await self._sync_containers(st, pod)
        status = pod_status(pod, st.record.ips, self.node.host_ips, st.containers, time.time(),
                            st.record.created)
        if status["phase"] in TERMINAL_PHASES:
            await self._kill(st, 0)
            if st.record.networked:
                await self._blocking(self.sandboxes.network_down, st.record)
            again = None
        if status != pod.get("status"):
            try:
                await self.client.update_status(PODS, {**pod, "status": status})
            except APIError as e:
                if e.code != 404:
                    raise  # 409: a newer pod is in the cache soon; sync again then
                return None  # deleted meanwhile: its watch event brings the teardown
        return again

    def _forget(self, st: PodState) -> None:
        self._stop_probes(st)
        self.states.pop(st.record.uid, None)
        self.backoff.forget(f"{st.record.uid}/")

    async def _kill(self, st: PodState, grace: float) -> None:
        """Stop every container of the pod: SIGTERM, GRACE seconds, SIGKILL."""
        self._stop_probes(st)
        handles = list(st.handles.values())
        jobs = [self.runtime.stop(handles, grace)]
        if st.builtins:
            jobs.append(self.runtime.stop_builtins(st.record.namespace, st.record.name, grace))
        await asyncio.gather(*jobs)

    # -- containers ------------------------------------------------------------------------

    async def _sync_containers(self, st: PodState, pod: dict) -> float | None:
        spec = pod.get("spec") or {}
        policy = spec.get("restartPolicy", "Always")
        if (pod.get("status") or {}).get("phase") in TERMINAL_PHASES:
            return None
        for c in spec.get("initContainers") or []:
            r = self._record(st, c, _kind(c, True))
            if r.kind == SIDECAR:
                if r.state != RUNNING:
                    return await self._start_when_due(st, pod, c, r)
                self._ensure_probes(st, pod, c, r)
                if not r.started:
                    return None  # the next init container waits for the sidecar's startup probe
                continue
            if r.succeeded:
                continue
            if r.state == RUNNING:
                return None
            if r.state == TERMINATED and policy == "Never":
                return None  # the pod has failed
            return await self._start_when_due(st, pod, c, r)
        delays = []
        for c in spec.get("containers") or []:
            r = self._record(st, c, REGULAR)
            if r.state == RUNNING:
                self._ensure_probes(st, pod, c, r)
                continue
            if r.state == TERMINATED and not (policy == "Always" or (policy == "OnFailure" and (
                    r.exit_code != 0 or c["name"] in st.liveness_killed))):
                continue  # as upstream, OnFailure restarts a container its liveness probe killed
            delay = await self._start_when_due(st, pod, c, r)
            if delay:
                delays.append(delay)
        return min(delays) if delays else None

    def _record(self, st, c, kind) -> ContainerRecord:
        r = st.containers.get(c["name"])
        if r is None:
            r = st.containers[c["name"]] = ContainerRecord(c["name"], kind, c.get("image", ""))
        return r

    async def _start_when_due(self, st, pod, c, r) -> float | None:
        """Start C now, or say how long its crash-loop backoff still holds it."""
        now = time.time()
        key = f"{st.record.uid}/{c['name']}"
        ran = r.finished_at is not None
        if ran:
            wait = self.backoff.remaining(key, r.finished_at, now)
            if r.state == TERMINATED:
                r.last_terminated = r.terminated_state()
            if wait > 0:
                meta = pod["metadata"]
                r.state, r.reason = WAITING, "CrashLoopBackOff"
                r.message = (f"back-off {self.backoff.current(key):g}s restarting failed container={c['name']} "
                             f"pod={meta['name']}_{meta['namespace']}({meta['uid']})")
                return wait
        try:
            await self._start(st, pod, c, r, restart=ran)
        except envmod.ConfigError as e:
            r.state, r.reason, r.message = WAITING, "CreateContainerConfigError", str(e)
            return CONFIG_RETRY_SECONDS
        except images.SpecError as e:
            r.state, r.reason, r.message = WAITING, "CreateContainerError", str(e)
            return CONFIG_RETRY_SECONDS
        except (OSError, resident.ContainerStartError, ValueError) as e:
            # As containerd reports a command it cannot run: terminated, exit code 128.
            r.restart_count += ran
            r.state, r.reason, r.exit_code, r.message = TERMINATED, "StartError", 128, str(e)
            r.started_at = r.finished_at = time.time()
            self.backoff.restarted(key, time.time())
            self._save(st, extra={c["name"]: {"spawning": False}})
            return self.backoff.current(key)
        st.liveness_killed.discard(c["name"])
        if ran:
            self.backoff.restarted(key, now)
        return None

    async def _objects(self, pod, refs) -> dict:
        ns = pod["metadata"]["namespace"]
        out = {}
        for kind, name in refs:
            try:
                out[(kind, name)] = await self.client.get(lookup("", "v1", kind), name, ns)
            except APIError as e:
                if e.code != 404:
                    raise
                out[(kind, name)] = None
        return out

    async def _start(self, st: PodState, pod: dict, c: dict, r: ContainerRecord, restart: bool) -> None:
        record = st.record
        refs = envmod.references(c) | (volumesmod.references(pod) if st.volume_dirs is None else set())
        objects = await self._objects(pod, refs)
        if st.volume_dirs is None:
            st.volume_dirs = await self._blocking(volumesmod.prepare, pod, record.dir, objects)
        env = envmod.environment(pod, c, record.ips, self.node.host_ips, objects, self.node.allocatable)
        env.setdefault("HOSTNAME", record.name[:63])
        literal = [{"name": k, "value": v} for k, v in env.items()]
        builtin = images.resolve({**c, "env": literal})
        cpu, memory = cgroupsmod.limits_of(c)
        restart_count = r.restart_count + (1 if restart else 0)
        log_dir = os.path.join(record.log_dir, c["name"])
        os.makedirs(log_dir, exist_ok=True)
        # The instance's log is <restartCount>.log; <name>.log points at the current one.
        current = os.path.join(log_dir, f"{c['name']}.log")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(current)
        os.symlink(f"{restart_count}.log", current)
        if builtin is not None:
            ctx = resident.PodContext(namespace=record.namespace, name=record.name,
                                      node=self.config.node_name, ip=record.ips[0] if record.ips else "",
                                      netns=record.netns_path, uts=record.uts, log_dir=log_dir, env={})
            await self.runtime.start_builtins(record.uid, ctx, [(c["name"], builtin)])
            st.builtins.add(c["name"])
            pid = start = None
        else:
            plan = volumesmod.mount_plan(c, st.volume_dirs, os.path.join(record.dir, "scratch", c["name"]))
            limited = cpu is not None or memory is not None
            if limited:
                st.cgroup_names.add(c["name"])
                record.cgroups = self.cgroups.pod_dirs(record.uid, sorted(st.cgroup_names))
            # Saved before the cgroups and the process exist: a kubelet killed before it saves
            # the PID finds them on restart (the process by its namespace, see _adopt).
            self._save(st, extra={c["name"]: {"spawning": True}})
            procs = []
            if limited:
                procs = await self._blocking(self.cgroups.container, record.uid, c["name"], cpu, memory)
            handle = self.runtime.spawn(record.uid, c["name"], envmod.argv(c, env),
                                        netns_path=record.netns_path, uts=record.uts, env=env,
                                        log_path=os.path.join(log_dir, f"{restart_count}.log"),
                                        cwd=c.get("workingDir") or "/", mount_plan=plan,
                                        cgroup_procs=procs)
            st.handles[c["name"]] = handle
            pid, start = handle.pid, handle.start
            self.ledger.record_process(pid, role=f"container {record.key}/{c['name']}")
        r.restart_count = restart_count
        r.state, r.reason, r.message, r.exit_code, r.signal = RUNNING, "", "", None, None
        r.started_at, r.finished_at = time.time(), None
        r.container_id = _container_id(record.uid, c["name"], restart_count)
        r.ready = not c.get("readinessProbe")
        r.started = not c.get("startupProbe")
        self._save(st, extra={c["name"]: {"pid": pid, "start": start, "builtin": builtin is not None,
                                          "spawning": False}})
        self._ensure_probes(st, pod, c, r)

    def _save(self, st: PodState, extra: dict | None = None) -> None:
        for name, r in st.containers.items():
            saved = st.record.containers.get(name, {})
            saved.update(dataclasses.asdict(r))
            saved.update((extra or {}).get(name, {}))
            st.record.containers[name] = saved
        st.record.save()

    def _container_exited(self, uid, name, handle, code, sig) -> None:
        st = self.states.get(uid)
        if st is None:
            return
        if handle is not None:
            if st.handles.get(name) is not handle:
                return
            del st.handles[name]
        else:
            if name not in st.builtins:
                return
            st.builtins.discard(name)
        r = st.containers.get(name)
        if r is None or r.state != RUNNING:
            return
        self._stop_probes(st, name)
        r.state, r.finished_at, r.ready, r.started = TERMINATED, time.time(), False, False
        if code is None:
            r.exit_code, r.reason = 137, "ContainerStatusUnknown"
            r.message = "The container could not be located when it ended"
        else:
            r.exit_code, r.signal = code, sig
            r.reason = "Completed" if code == 0 else "Error"
            if code and name in st.cgroup_names and self.cgroups.oom_killed(st.record.uid, name):
                r.reason = "OOMKilled"
        if st.record.dir and os.path.isdir(st.record.dir):
            self._save(st)
        self.controller.enqueue(st.record.key)

    # -- probes ----------------------------------------------------------------------------

    def _ensure_probes(self, st: PodState, pod: dict, c: dict, r: ContainerRecord) -> None:
        name = c["name"]
        if name in st.probes:
            return
        kinds = [(probesmod.STARTUP, c.get("startupProbe")), (probesmod.LIVENESS, c.get("livenessProbe")),
                 (probesmod.READINESS, c.get("readinessProbe"))]
        kinds = [(k, p) for k, p in kinds if p]
        if not kinds:
            return
        gate = asyncio.Event()
        if not c.get("startupProbe") or r.started:
            gate.set()
        st.gates[name] = gate
        workers = {}
        for kind, probe in kinds:
            def on_change(kind, ok, message, name=name):
                self._probe_changed(st, name, kind, ok, message)

            worker = probesmod.ProbeWorker(kind, probe, lambda p, c=c, st=st: self._probe(st, c, p), on_change,
                                           gate=None if kind == probesmod.STARTUP else gate)
            task = asyncio.get_running_loop().create_task(worker.loop(), name=f"probe {st.record.key}/{name} {kind}")
            workers[kind] = (worker, task)
        st.probes[name] = workers

    def _stop_probes(self, st: PodState, name: str | None = None) -> None:
        for cname in [name] if name else list(st.probes):
            for _, task in (st.probes.pop(cname, None) or {}).values():
                task.cancel()
            st.gates.pop(cname, None)

    async def _probe(self, st: PodState, c: dict, probe: dict):
        ip = st.record.ips[0] if st.record.ips else ""
        if probe.get("exec"):
            argv = [str(a) for a in probe["exec"].get("command") or []]
            timeout = max(1, int(probe.get("timeoutSeconds", 1)))
            plan = volumesmod.mount_plan(c, st.volume_dirs or {}, os.path.join(st.record.dir, "scratch", c["name"]))
            code, out = await self._blocking(runtimemod.in_pod, st.record.netns_path, st.record.uts, argv,
                                             {}, timeout, plan)
            return code == 0, out.decode(errors="replace")[-200:]
        if probe.get("tcpSocket"):
            t = probe["tcpSocket"]
            return await probesmod.tcp_probe(self.config.node_netns, t.get("host") or ip,
                                             probesmod.resolve_port(t.get("port"), c))
        h = probe.get("httpGet") or {}
        return await probesmod.http_probe(self.config.node_netns, h.get("host") or ip,
                                          probesmod.resolve_port(h.get("port"), c), h.get("path") or "/",
                                          h.get("httpHeaders") or [])

    def _probe_changed(self, st: PodState, name: str, kind: str, ok: bool, message: str) -> None:
        r = st.containers.get(name)
        if r is None or r.state != RUNNING:
            return
        if kind == probesmod.READINESS:
            r.ready = ok
        elif kind == probesmod.STARTUP:
            r.started = ok
            if ok and name in st.gates:
                st.gates[name].set()
        elif not ok:
            log.info("%s: container %s failed liveness probe (%s), will be restarted", st.record.key, name, message)
            self._stop_probes(st, name)
            st.liveness_killed.add(name)
            grace = _liveness_grace(st.pod or {}, name)
            if name in st.builtins:
                self.runtime.kill_builtin(st.record.namespace, st.record.name, name, grace)
            elif name in st.handles:
                asyncio.get_running_loop().create_task(self.runtime.stop([st.handles[name]], grace))
        self.controller.enqueue(st.record.key)
