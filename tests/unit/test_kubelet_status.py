"""The kubelet's pure decisions: pod phase and conditions from container records, crash-loop
backoff timing, and a container's environment and argv."""

import base64

import pytest

from cluster.kubelet.backoff import CrashLoopBackoff
from cluster.kubelet.env import ConfigError, argv, environment
from cluster.kubelet.status import (INIT, RUNNING, SIDECAR, TERMINATED, WAITING, ContainerRecord,
                                    pod_phase, pod_status)


def pod(policy="Always", containers=("c",), inits=(), sidecars=(), phase="Pending"):
    init_specs = [{"name": n} for n in inits] + [{"name": n, "restartPolicy": "Always"} for n in sidecars]
    return {"metadata": {"name": "p", "namespace": "default", "uid": "u1", "labels": {"app": "web"}},
            "spec": {"restartPolicy": policy, "nodeName": "n1", "containers": [{"name": n} for n in containers],
                     "initContainers": init_specs},
            "status": {"phase": phase}}


def rec(name, state, code=None, kind="regular", **kw):
    return ContainerRecord(name, kind, state=state, exit_code=code, **kw)


@pytest.mark.parametrize("policy,code,phase", [
    ("Never", 0, "Succeeded"), ("Never", 1, "Failed"), ("OnFailure", 0, "Succeeded"),
    ("OnFailure", 1, "Running"), ("Always", 0, "Running")])
def test_phase_once_every_container_stopped(policy, code, phase):
    assert pod_phase(pod(policy), {"c": rec("c", TERMINATED, code)}) == phase


def test_phase_pending_until_init_containers_succeed_and_failed_init_fails_never_pods():
    p = pod("Never", inits=("i",))
    assert pod_phase(p, {"i": rec("i", RUNNING, kind=INIT)}) == "Pending"
    assert pod_phase(p, {"i": rec("i", TERMINATED, 1, kind=INIT)}) == "Failed"
    assert pod_phase(p, {"i": rec("i", TERMINATED, 0, kind=INIT), "c": rec("c", RUNNING)}) == "Running"


def test_terminal_phase_never_changes():
    assert pod_phase(pod(phase="Succeeded"), {"c": rec("c", RUNNING)}) == "Succeeded"


def test_conditions_name_unready_containers_and_keep_transition_times():
    p = pod(containers=("a", "b"), sidecars=("s",))
    records = {"s": rec("s", RUNNING, kind=SIDECAR, ready=True, started=True),
               "a": rec("a", RUNNING, ready=True, started=True), "b": rec("b", RUNNING, started=True)}
    st = pod_status(p, ["10.0.0.5"], ["192.168.0.2"], records, now=1000.0)
    cond = {c["type"]: c for c in st["conditions"]}
    assert cond["Initialized"]["status"] == "True"
    assert cond["Ready"]["status"] == "False" and cond["Ready"]["message"] == "containers with unready status: [b]"
    assert st["podIP"] == "10.0.0.5" and st["hostIPs"] == [{"ip": "192.168.0.2"}]
    assert [c["name"] for c in st["initContainerStatuses"]] == ["s"]
    p["status"] = st
    records["b"].ready = True
    later = {c["type"]: c for c in pod_status(p, ["10.0.0.5"], [], records, now=2000.0)["conditions"]}
    assert later["Ready"]["status"] == "True" and later["Ready"]["lastTransitionTime"] == "1970-01-01T00:33:20Z"
    assert later["PodScheduled"]["lastTransitionTime"] == cond["PodScheduled"]["lastTransitionTime"]


def test_waiting_containers_report_why():
    p = pod(inits=("i",))
    st = pod_status(p, [], [], {"i": rec("i", RUNNING, kind=INIT)}, now=0.0)
    assert st["containerStatuses"][0]["state"] == {"waiting": {"reason": "PodInitializing"}}
    crash = rec("c", WAITING, reason="CrashLoopBackOff", message="back-off 10s", restart_count=2,
                last_terminated={"exitCode": 1})
    cs = pod_status(pod(), [], [], {"c": crash}, now=0.0)["containerStatuses"][0]
    assert cs["state"]["waiting"]["reason"] == "CrashLoopBackOff" and cs["lastState"] == {"terminated": {"exitCode": 1}}
    assert cs["restartCount"] == 2 and cs["ready"] is False


def test_backoff_restarts_at_once_then_doubles_to_the_maximum_and_resets():
    b = CrashLoopBackoff(10, 40)
    assert b.remaining("u/c", finished_at=0, now=0) == 0
    b.restarted("u/c", 0)
    assert b.remaining("u/c", finished_at=1, now=2) == 9
    delays = []
    for t in (20, 40, 60, 80):
        b.restarted("u/c", t)
        delays.append(b.current("u/c"))
    assert delays == [20, 40, 40, 40]
    assert b.remaining("u/c", finished_at=200, now=200) == 0  # not touched for 2 x max: forgotten
    b.forget("u/")
    assert b.current("u/c") == 10


def test_environment_precedence_downward_api_and_expansion():
    p = pod()
    objects = {("configmaps", "cm"): {"data": {"A": "from-cm", "B": "b", "bad-key!": "x"}},
               ("secrets", "s"): {"data": {"TOKEN": base64.b64encode(b"t0k").decode()}}}
    container = {"name": "c", "envFrom": [{"configMapRef": {"name": "cm"}}, {"secretRef": {"name": "s"}, "prefix": "S_"}],
                 "env": [{"name": "A", "value": "literal-$(B)"},
                         {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                         {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                         {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}}],
                 "resources": {"limits": {"memory": "64Mi"}},
                 "command": ["echo", "$(A)", "$$(A)", "$(UNKNOWN)"]}
    env = environment(p, container, ["10.1.2.3"], [], objects)
    assert env == {"A": "literal-b", "B": "b", "S_TOKEN": "t0k", "APP": "web", "IP": "10.1.2.3", "MEM": "64"}
    assert argv(container, env) == ["echo", "literal-b", "$(A)", "$(UNKNOWN)"]


def test_missing_references_are_config_errors_unless_optional():
    p = pod()
    with pytest.raises(ConfigError, match='secret "s" not found'):
        environment(p, {"name": "c", "envFrom": [{"secretRef": {"name": "s"}}]}, [], [], {("secrets", "s"): None})
    assert environment(p, {"name": "c", "envFrom": [{"secretRef": {"name": "s", "optional": True}}]}, [], [],
                       {("secrets", "s"): None}) == {}
    with pytest.raises(ConfigError, match="couldn't find key K in ConfigMap default/cm"):
        environment(p, {"name": "c", "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "K"}}}]},
                    [], [], {("configmaps", "cm"): {"data": {}}})
