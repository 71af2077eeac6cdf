"""A pod's status as the kubelet reports it, computed from what its runtime knows: pure.

`ContainerRecord` is the kubelet's view of one container (state, exit code, restarts, probe
results); `pod_status(pod, sandbox_ips, host_ips, records, now)` turns the records into the
`status` object the API server stores: phase (upstream's getPhase), the conditions
PodReadyToStartContainers, Initialized, ContainersReady, Ready and PodScheduled (their
lastTransitionTime moves only when their status does), podIP(s), hostIP(s), startTime and
containerStatuses / initContainerStatuses with state, lastState, restartCount, ready, started,
containerID, image and imageID.
"""
from __future__ import annotations

import dataclasses
import datetime

WAITING, RUNNING, TERMINATED = "waiting", "running", "terminated"
INIT, SIDECAR, REGULAR = "init", "sidecar", "regular"
TERMINAL_PHASES = ("Succeeded", "Failed")
CONTAINER_ID_SCHEME = "netsim://"


def rfc3339(seconds: float | None) -> str | None:
    """Wall-clock SECONDS as metav1.Time serializes (second precision, UTC)."""
    if seconds is None:
        return None
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclasses.dataclass
class ContainerRecord:
    """One container of one pod: what the runtime did with it and what its probes said."""
    name: str
    kind: str = REGULAR          # INIT (runs to completion), SIDECAR (init, restartPolicy Always), REGULAR
    image: str = ""
    state: str = WAITING
    reason: str = "ContainerCreating"   # waiting or terminated reason
    message: str = ""
    exit_code: int | None = None
    signal: int | None = None
    started_at: float | None = None     # wall clock
    finished_at: float | None = None
    restart_count: int = 0
    container_id: str = ""              # of the current (or last) instance, without the scheme
    last_terminated: dict | None = None  # the previous instance's `terminated` state
    ready: bool = False                 # readiness probe (True without one, once running)
    started: bool = False               # startup probe passed (True without one, once running)

    @property
    def succeeded(self) -> bool:
        return self.state == TERMINATED and self.exit_code == 0

    def terminated_state(self) -> dict:
        doc = {"exitCode": self.exit_code if self.exit_code is not None else 137,
               "reason": self.reason, "startedAt": rfc3339(self.started_at),
               "finishedAt": rfc3339(self.finished_at)}
        if self.signal:
            doc["signal"] = self.signal
        if self.message:
            doc["message"] = self.message
        if self.container_id:
            doc["containerID"] = CONTAINER_ID_SCHEME + self.container_id
        return doc

    def status(self) -> dict:
        """The container's entry in containerStatuses / initContainerStatuses."""
        if self.state == RUNNING:
            state = {"running": {"startedAt": rfc3339(self.started_at)}}
        elif self.state == TERMINATED:
            state = {"terminated": self.terminated_state()}
        else:
            waiting = {"reason": self.reason}
            if self.message:
                waiting["message"] = self.message
            state = {"waiting": waiting}
        doc = {"name": self.name, "state": state,
               "lastState": {"terminated": self.last_terminated} if self.last_terminated else {},
               "ready": self.ready and self.state == RUNNING, "restartCount": self.restart_count,
               "image": self.image, "imageID": self.image,
               "started": self.started and self.state == RUNNING}
        if self.container_id:
            doc["containerID"] = CONTAINER_ID_SCHEME + self.container_id
        return doc


def pod_phase(pod: dict, records: dict[str, ContainerRecord]) -> str:
    """Upstream's getPhase: Pending until the init containers succeeded and every container
    started; Running while one runs or restarts; Succeeded/Failed when all stopped for good."""
    spec = pod.get("spec") or {}
    policy = spec.get("restartPolicy", "Always")
    previous = (pod.get("status") or {}).get("phase")
    if previous in TERMINAL_PHASES:
        return previous  # a terminal phase never changes
    initializing = False
    for c in spec.get("initContainers") or []:
        r = records.get(c["name"])
        if r is None:
            initializing = True
            continue
        if r.kind == SIDECAR:
            if not (r.state == RUNNING and r.started):
                initializing = initializing or r.restart_count == 0
            continue
        if r.succeeded:
            continue
        if r.state == TERMINATED and policy == "Never":
            return "Failed"
        initializing = True
    if initializing:
        return "Pending"
    running = waiting = stopped = succeeded = 0
    for c in spec.get("containers") or []:
        r = records.get(c["name"])
        if r is None or (r.state == WAITING and r.last_terminated is None):
            waiting += 1
        elif r.state == RUNNING:
            running += 1
        elif r.state == TERMINATED:
            stopped += 1
            succeeded += r.exit_code == 0
        else:  # waiting to restart after having run: it counts as stopped, as upstream
            stopped += 1
            succeeded += (r.last_terminated or {}).get("exitCode") == 0
    if waiting:
        return "Pending"
    if running:
        return "Running"
    if stopped:
        if policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        if policy == "Never":
            return "Failed"
        return "Running"
    return "Pending"


def _condition(previous: dict, type_: str, ok: bool, now: str, reason: str = "", message: str = "") -> dict:
    status = "True" if ok else "False"
    old = previous.get(type_)
    since = old["lastTransitionTime"] if old and old.get("status") == status and \
        old.get("lastTransitionTime") else now
    doc = {"type": type_, "status": status, "lastProbeTime": None, "lastTransitionTime": since}
    if reason:
        doc["reason"] = reason
    if message:
        doc["message"] = message
    return doc


def pod_status(pod: dict, pod_ips: list[str], host_ips: list[str],
               records: dict[str, ContainerRecord], now: float, started: float | None = None) -> dict:
    """The status to write for POD: a copy of what it holds, with everything the kubelet owns."""
    spec = pod.get("spec") or {}
    old = pod.get("status") or {}
    previous = {c.get("type"): c for c in old.get("conditions") or []}
    when = rfc3339(now)
    phase = pod_phase(pod, records)
    init_specs = spec.get("initContainers") or []
    main_specs = spec.get("containers") or []

    def record(c, kind):
        return records.get(c["name"]) or ContainerRecord(
            c["name"], kind, c.get("image", ""),
            reason="PodInitializing" if kind == REGULAR and init_specs else "ContainerCreating")

    inits = [record(c, SIDECAR if c.get("restartPolicy") == "Always" else INIT) for c in init_specs]
    mains = [record(c, REGULAR) for c in main_specs]
    incomplete = [r.name for r in inits if (r.kind == INIT and not r.succeeded)
                  or (r.kind == SIDECAR and not (r.started or r.restart_count))]
    terminal = phase in TERMINAL_PHASES
    completed = terminal and phase == "Succeeded"
    unready = [r.name for r in inits if r.kind == SIDECAR and not (r.ready and r.state == RUNNING)]
    unready += [r.name for r in mains if not (r.ready and r.state == RUNNING)]

    conditions = [_condition(previous, "PodReadyToStartContainers", bool(pod_ips) and not terminal, when)]
    if not incomplete or completed:
        conditions.append(_condition(previous, "Initialized", True, when,
                                     "PodCompleted" if completed and incomplete else ""))
    else:
        conditions.append(_condition(previous, "Initialized", False, when, "ContainersNotInitialized",
                                     f"containers with incomplete status: [{' '.join(incomplete)}]"))
    if unready:
        reason = "PodCompleted" if completed else "ContainersNotReady"
        message = "" if completed else f"containers with unready status: [{' '.join(unready)}]"
        conditions.append(_condition(previous, "ContainersReady", False, when, reason, message))
        conditions.append(_condition(previous, "Ready", False, when, reason, message))
    else:
        conditions.append(_condition(previous, "ContainersReady", True, when))
        conditions.append(_condition(previous, "Ready", True, when))
    conditions.append(_condition(previous, "PodScheduled", True, when))

    status = dict(old)
    status["phase"] = phase
    status["conditions"] = conditions
    if host_ips:
        status["hostIP"] = host_ips[0]
        status["hostIPs"] = [{"ip": ip} for ip in host_ips]
    if pod_ips:
        status["podIP"] = pod_ips[0]
        status["podIPs"] = [{"ip": ip} for ip in pod_ips]
    status["startTime"] = old.get("startTime") or rfc3339(started if started is not None else now)
    if inits:
        status["initContainerStatuses"] = [r.status() for r in inits]
    status["containerStatuses"] = [r.status() for r in mains]
    return status
