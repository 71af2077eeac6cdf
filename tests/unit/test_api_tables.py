"""Tables as `kubectl get` prints them: upstream's columns, cell formats and AGE."""
from datetime import datetime, timedelta, timezone

import pytest

from cluster.api.resources import RESOURCES, by_kind
from cluster.api.tables import human_duration, table

NOW = datetime(2025, 1, 2, 12, 0, 0, tzinfo=timezone.utc)


def _ts(seconds_ago: int) -> str:
    return (NOW - timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize("seconds, shown", [(-5, "<invalid>"), (-1, "0s"), (45, "45s"),
                                            (119, "119s"), (303, "5m3s"), (300, "5m"),
                                            (1800, "30m"), (3 * 3600 + 720, "3h12m"),
                                            (20 * 3600, "20h"), (3 * 86400 + 3600, "3d1h"),
                                            (9 * 86400, "9d"), (800 * 86400, "2y70d")])
def test_age_reads_as_kubectl_shows_it(seconds, shown):
    assert human_duration(seconds) == shown


def _cells(kind, obj, wide=False):
    t = table(by_kind(*kind), [obj], now=NOW)
    names = [c["name"] for c in t["columnDefinitions"] if wide or c["priority"] == 0]
    cells = [cell for cell, c in zip(t["rows"][0]["cells"], t["columnDefinitions"])
             if wide or c["priority"] == 0]
    return dict(zip(names, cells))


def test_running_pod_row_and_wide_columns():
    pod = {"metadata": {"name": "web", "creationTimestamp": _ts(303)},
           "spec": {"nodeName": "node-1", "containers": [{"name": "a"}, {"name": "b"}]},
           "status": {"phase": "Running", "podIP": "10.244.1.5", "containerStatuses": [
               {"name": "a", "ready": True, "restartCount": 2, "state": {"running": {}},
                "lastState": {"terminated": {"finishedAt": _ts(60)}}},
               {"name": "b", "ready": False, "restartCount": 0, "state": {"running": {}}}]}}
    assert _cells(("v1", "Pod"), pod, wide=True) == {
        "Name": "web", "Ready": "1/2", "Status": "Running", "Restarts": "2 (60s ago)",
        "Age": "5m3s", "IP": "10.244.1.5", "Node": "node-1", "Nominated Node": "<none>",
        "Readiness Gates": "<none>"}


def test_pod_status_reasons():
    waiting = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}]},
               "status": {"phase": "Pending", "containerStatuses": [
                   {"name": "a", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}}
    assert _cells(("v1", "Pod"), waiting)["Status"] == "CrashLoopBackOff"
    init = {"metadata": {"name": "p"},
            "spec": {"initContainers": [{"name": "i"}], "containers": [{"name": "a"}]},
            "status": {"phase": "Pending", "initContainerStatuses": [
                {"name": "i", "state": {"waiting": {"reason": "PodInitializing"}}}]}}
    assert _cells(("v1", "Pod"), init)["Status"] == "Init:0/1"
    sidecar = {"metadata": {"name": "p"},
               "spec": {"initContainers": [{"name": "s", "restartPolicy": "Always"}],
                        "containers": [{"name": "a"}]},
               "status": {"phase": "Running", "initContainerStatuses": [
                   {"name": "s", "started": True, "ready": True, "state": {"running": {}}}],
                   "containerStatuses": [{"name": "a", "ready": True, "state": {"running": {}}}]}}
    assert _cells(("v1", "Pod"), sidecar)["Ready"] == "2/2"
    deleting = {"metadata": {"name": "p", "deletionTimestamp": _ts(0)},
                "spec": {"containers": [{"name": "a"}]}, "status": {"phase": "Running"}}
    assert _cells(("v1", "Pod"), deleting)["Status"] == "Terminating"
    failed = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}]},
              "status": {"phase": "Failed", "containerStatuses": [
                  {"name": "a", "state": {"terminated": {"exitCode": 3}}}]}}
    assert _cells(("v1", "Pod"), failed)["Status"] == "ExitCode:3"


def test_service_rows():
    svc = {"metadata": {"name": "web", "creationTimestamp": _ts(10)},
           "spec": {"type": "NodePort", "clusterIP": "10.96.0.20", "selector": {"app": "web"},
                    "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"},
                              {"port": 53, "protocol": "UDP"}]}}
    assert _cells(("v1", "Service"), svc, wide=True) == {
        "Name": "web", "Type": "NodePort", "Cluster-IP": "10.96.0.20", "External-IP": "<none>",
        "Port(s)": "80:30080/TCP,53/UDP", "Age": "10s", "Selector": "app=web"}
    lb = {"metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.21",
                                               "ports": [{"port": 80, "protocol": "TCP"}]}}
    assert _cells(("v1", "Service"), lb)["External-IP"] == "<pending>"
    lb["status"] = {"loadBalancer": {"ingress": [{"ip": "172.18.0.200"}]}}
    assert _cells(("v1", "Service"), lb)["External-IP"] == "172.18.0.200"


def test_deployment_and_endpoint_slice_rows():
    deploy = {"metadata": {"name": "web", "creationTimestamp": _ts(3600)},
              "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                       "template": {"spec": {"containers": [{"name": "app", "image": "nginx"}]}}},
              "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}}
    assert _cells(("apps/v1", "Deployment"), deploy, wide=True) == {
        "Name": "web", "Ready": "2/3", "Up-to-date": 3, "Available": 2, "Age": "60m",
        "Containers": "app", "Images": "nginx", "Selector": "app=web"}
    es = {"metadata": {"name": "web-x"}, "addressType": "IPv4", "ports": [{"port": 80}],
          "endpoints": [{"addresses": [f"10.0.0.{i}"]} for i in range(5)]}
    cells = _cells(("discovery.k8s.io/v1", "EndpointSlice"), es)
    assert cells["Endpoints"] == "10.0.0.0,10.0.0.1,10.0.0.2 + 2 more..." and cells["Ports"] == "80"


def test_include_object_forms_and_resource_version():
    pods = by_kind("v1", "Pod")
    pod = {"metadata": {"name": "p"}, "spec": {}}
    assert table(pods, [pod], include_object="None")["rows"][0].keys() == {"cells"}
    partial = table(pods, [pod], include_object="Metadata")["rows"][0]["object"]
    assert partial == {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                       "metadata": {"name": "p"}}
    t = table(pods, [pod], list_rv="42")
    assert t["rows"][0]["object"] is pod and t["metadata"] == {"resourceVersion": "42"}
    assert t["kind"] == "Table" and t["apiVersion"] == "meta.k8s.io/v1"


def test_every_kind_has_one_cell_per_column():
    for r in RESOURCES:
        t = table(r, [{"metadata": {"name": "x", "creationTimestamp": _ts(5)}}], now=NOW)
        assert len(t["rows"][0]["cells"]) == len(t["columnDefinitions"]), r.kind
        assert t["columnDefinitions"][0]["name"] in ("Name", "Last Seen")
