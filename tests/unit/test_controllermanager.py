"""The controller manager and the scheduler against an in-process API server, as a user of the
cluster sees them: a Deployment's pods spread over the nodes, Services get endpoints, scaling
and rollouts, namespace deletion, LoadBalancer addresses, unschedulable pods, nodes that stop
heartbeating, and a controller manager killed and started again.

No kubelet runs here: `FakeKubelet` plays every node's part (a bound pod becomes Running and
Ready with an IP; a terminating pod is removed at once), and the tests renew nodes' Leases.
"""

import asyncio
import contextlib
import ipaddress
import itertools
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone

import pytest

from cluster.api.errors import APIError
from cluster.api.resources import by_name
from cluster.client import Client, Controller, Informer, split_key
from cluster.controllermanager.context import Options
from cluster.controllermanager.manager import ControllerManager
from cluster.controllers.objects import format_micro_time, format_time, is_deleting
from cluster.scheduler.runner import Scheduler
from tests.support.apiserver import running_apiserver

(PODS, NODES, SERVICES, DEPLOYMENTS, REPLICASETS, ENDPOINTSLICES, ENDPOINTS, NAMESPACES,
 SERVICEACCOUNTS, LEASES, EVENTS) = (by_name(n) for n in (
    "pods", "nodes", "services", "deployments", "replicasets", "endpointslices", "endpoints",
    "namespaces", "serviceaccounts", "leases", "events"))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def api(tmp_path):
    with running_apiserver(f"sqlite://{tmp_path}/state.db", str(tmp_path)) as server:
        yield server


def now():
    return datetime.now(timezone.utc)


def node(name, zone="zone-a"):
    t = format_time(now())
    return {"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name,
                                                  "topology.kubernetes.io/zone": zone}},
            "status": {"capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                       "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                       "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                       "lastHeartbeatTime": t, "lastTransitionTime": t}]}}


async def add_nodes(c, *names):
    for i, name in enumerate(names):
        made = await c.create(NODES, node(name, f"zone-{i % 2}"))
        await c.create(LEASES, {"metadata": {"name": name, "namespace": "kube-node-lease"},
                                "spec": {"holderIdentity": name, "leaseDurationSeconds": 40,
                                         "renewTime": format_micro_time(now())}})
        assert made["metadata"]["name"] == name


def deployment(name, replicas, image="agnhost", **template_spec):
    labels = {"app": name}
    return {"metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "web", "image": image,
                                                           "ports": [{"name": "http",
                                                                      "containerPort": 8080}]}],
                                           **template_spec}}}}


def service(name, type_="ClusterIP"):
    return {"metadata": {"name": name},
            "spec": {"type": type_, "selector": {"app": name},
                     "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}


class FakeKubelet:
    """Every node's kubelet, reduced to what the controllers read: bound pods get an IP and
    Running/Ready; pods being deleted are removed at once (their containers 'stopped')."""

    def __init__(self, client):
        self.client = client
        self.informer = Informer(client, PODS)
        self.ips = (str(ipaddress.ip_address("10.244.0.10") + i) for i in itertools.count())
        self.controller = Controller("fake-kubelet", self.reconcile, workers=4)
        self.controller.watch(self.informer)

    async def reconcile(self, key):
        pod = self.informer.indexer.get_by_key(key)
        if pod is None or not pod["spec"].get("nodeName"):
            return
        ns, name = split_key(key)
        if is_deleting(pod):
            with contextlib.suppress(APIError):
                await self.client.delete(PODS, name, ns, grace_period_seconds=0)
            return
        if pod["status"].get("phase") == "Running":
            return
        ip, t = next(self.ips), format_time(now())
        ready = [{"type": k, "status": "True", "lastTransitionTime": t}
                 for k in ("Initialized", "Ready", "ContainersReady")]
        status = dict(pod["status"], phase="Running", podIP=ip, podIPs=[{"ip": ip}],
                      hostIP="192.168.0.1", conditions=pod["status"].get("conditions", []) + ready)
        await self.client.update_status(PODS, dict(pod, status=status))


@contextlib.asynccontextmanager
async def cluster(c, manager=True, kubelet=True, **options):
    """Run the controller manager, the scheduler and the fake kubelet on this loop."""
    runners = []
    if manager:
        runners.append(ControllerManager(c, Options(**options)).run(sync_timeout=10))
    runners.append(Scheduler(c).run(sync_timeout=10))
    if kubelet:
        fake = FakeKubelet(c)
        runners.append(fake.controller.run(sync_timeout=10))
    tasks = [asyncio.create_task(r) for r in runners]
    try:
        yield
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t


def run(api, body, timeout=60):
    async def main():
        async with Client.from_kubeconfig(api.kubeconfig) as c:
            return await asyncio.wait_for(body(c), timeout)
    return asyncio.run(main())


async def until(check, timeout=15.0, what="the condition"):
    """Poll `await check()` until it returns something true; fail naming `what` otherwise."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.05)
    pytest.fail(f"{what} did not hold within {timeout}s (last: {last!r})")


async def active_pods(c, ns, app=None):
    items = (await c.list(PODS, ns, label_selector=f"app={app}" if app else ""))["items"]
    return [p for p in items if not is_deleting(p)]


def is_ready(pod):
    return any(x["type"] == "Ready" and x["status"] == "True"
               for x in pod.get("status", {}).get("conditions", []))


async def ready_pods(c, ns, app, count):
    pods = await active_pods(c, ns, app)
    all_pods = (await c.list(PODS, ns, label_selector=f"app={app}"))["items"]
    if len(pods) == count == len(all_pods) and all(is_ready(p) for p in pods):
        return pods
    return None


async def slice_ips(c, ns, svc):
    slices = (await c.list(ENDPOINTSLICES, ns,
                           label_selector=f"kubernetes.io/service-name={svc}"))["items"]
    return sorted(e["addresses"][0] for s in slices for e in s.get("endpoints") or []
                  if e["conditions"]["ready"])


def test_a_deployment_spreads_over_the_nodes_gets_endpoints_scales_and_rolls_out(api):
    async def body(c):
        await add_nodes(c, "n1", "n2", "n3")
        async with cluster(c):
            await c.create(SERVICES, service("web"), "default")
            await c.create(DEPLOYMENTS, deployment("web", 3), "default")
            pods = await until(lambda: ready_pods(c, "default", "web", 3), what="3 ready pods")
            assert sorted(p["spec"]["nodeName"] for p in pods) == ["n1", "n2", "n3"]
            ips = sorted(p["status"]["podIP"] for p in pods)
            assert await until(lambda: _equal(slice_ips(c, "default", "web"), ips),
                               what="an EndpointSlice with the 3 pod IPs")
            slices = (await c.list(ENDPOINTSLICES, "default",
                                   label_selector="kubernetes.io/service-name=web"))["items"]
            assert len(slices) == 1 and slices[0]["ports"] == [
                {"name": "http", "port": 8080, "protocol": "TCP"}]
            ep = slices[0]["endpoints"][0]
            assert ep["conditions"] == {"ready": True, "serving": True, "terminating": False}
            assert ep["nodeName"] in ("n1", "n2", "n3") and ep["zone"] in ("zone-0", "zone-1")
            assert "endpoints.kubernetes.io/last-change-trigger-time" in slices[0]["metadata"]["annotations"]

            async def legacy():
                try:
                    e = await c.get(ENDPOINTS, "web", "default")
                except APIError:
                    return None
                subsets = e.get("subsets") or []
                return sorted(a["ip"] for s in subsets for a in s.get("addresses") or []) == ips and e
            endpoints = await until(legacy, what="the legacy Endpoints with the 3 IPs")
            assert endpoints["subsets"][0]["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]

            async def status(replicas):
                d = await c.get(DEPLOYMENTS, "web", "default")
                s = d.get("status") or {}
                return (s.get("availableReplicas") == replicas == s.get("updatedReplicas")
                        and s.get("replicas") == replicas and d)
            d = await until(lambda: status(3), what="the Deployment's status")
            assert {x["type"]: x["status"] for x in d["status"]["conditions"]} == {
                "Available": "True", "Progressing": "True"}
            assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"

            for replicas in (5, 1):
                await c.patch(DEPLOYMENTS, "web", {"spec": {"replicas": replicas}}, "default")
                await until(lambda: ready_pods(c, "default", "web", replicas),
                            what=f"{replicas} ready pods")
                await until(lambda: status(replicas), what=f"status at {replicas}")
                await until(lambda: _count(slice_ips(c, "default", "web"), replicas),
                            what=f"{replicas} endpoints")

            old = (await active_pods(c, "default", "web"))[0]
            await c.patch(DEPLOYMENTS, "web", {"spec": {"template": {"metadata": {
                "annotations": {"rollout": "2"}}}}}, "default")

            async def rolled():
                pods = await ready_pods(c, "default", "web", 1)
                return pods and pods[0]["metadata"]["name"] != old["metadata"]["name"] and pods
            pods = await until(rolled, what="the template change to replace the pod")
            assert pods[0]["metadata"]["annotations"] == {"rollout": "2"}
            rss = (await c.list(REPLICASETS, "default"))["items"]
            assert sorted(rs["spec"]["replicas"] for rs in rss) == [0, 1]
            await until(lambda: status(1), what="status after the rollout")
            d = await c.get(DEPLOYMENTS, "web", "default")
            assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
    run(api, body)


async def _equal(coro, want):
    return await coro == want


async def _count(coro, n):
    return len(await coro) == n


def test_deleting_a_namespace_deletes_its_objects_and_then_itself(api):
    async def body(c):
        await add_nodes(c, "n1")
        async with cluster(c):
            await c.create(NAMESPACES, {"metadata": {"name": "shop"}})
            sa = await until(lambda: _get(c, SERVICEACCOUNTS, "default", "shop"),
                             what="the default ServiceAccount")
            assert sa["metadata"]["namespace"] == "shop"
            await c.create(SERVICES, service("cart"), "shop")
            await c.create(DEPLOYMENTS, deployment("cart", 2), "shop")
            await until(lambda: ready_pods(c, "shop", "cart", 2), what="2 ready pods")
            doomed = await c.delete(NAMESPACES, "shop")
            assert doomed["status"]["phase"] == "Terminating"

            async def gone():
                return await _get(c, NAMESPACES, "shop") is None
            await until(gone, what="the namespace to be deleted")
            for res in (PODS, DEPLOYMENTS, REPLICASETS, SERVICES, ENDPOINTSLICES):
                assert (await c.list(res, "shop"))["items"] == [], res.plural
    run(api, body)


async def _get(c, res, name, ns=None):
    try:
        return await c.get(res, name, ns)
    except APIError as e:
        if e.code == 404:
            return None
        raise


def test_load_balancer_addresses_come_from_the_pool(api):
    async def body(c):
        async with cluster(c, kubelet=False, lb_pool=["172.18.255.10-172.18.255.11"]):
            await c.create(SERVICES, service("a", "LoadBalancer"), "default")

            async def ingress(name):
                svc = await c.get(SERVICES, name, "default")
                return (svc["status"].get("loadBalancer") or {}).get("ingress")
            assert await until(lambda: ingress("a"), what="an address") == [
                {"ip": "172.18.255.10", "ipMode": "VIP"}]
            await c.create(SERVICES, service("b", "LoadBalancer"), "default")
            assert (await until(lambda: ingress("b"), what="an address"))[0]["ip"] == "172.18.255.11"
            await c.create(SERVICES, service("c", "LoadBalancer"), "default")

            async def failed():
                events = (await c.list(EVENTS, "default"))["items"]
                return [e["message"] for e in events if e["reason"] == "AllocationFailed"]
            assert await until(failed, what="an AllocationFailed event") == [
                'Failed to allocate IP for "default/c": no available IPs']
            await c.delete(SERVICES, "a", "default")
            assert (await until(lambda: ingress("c"), what="the freed address"))[0]["ip"] == \
                "172.18.255.10"
    run(api, body)


def test_without_a_pool_a_load_balancer_stays_pending(api):
    async def body(c):
        async with cluster(c, kubelet=False):
            await c.create(SERVICES, service("a", "LoadBalancer"), "default")
            await c.create(SERVICES, service("probe"), "default")
            # once another Service has its slice, the load-balancer controller has seen "a" too
            await until(lambda: _has_slice(c, "probe"), what="the controllers to be running")
            svc = await c.get(SERVICES, "a", "default")
            assert svc["status"] == {"loadBalancer": {}}
    run(api, body)


async def _has_slice(c, svc):
    return (await c.list(ENDPOINTSLICES, "default",
                         label_selector=f"kubernetes.io/service-name={svc}"))["items"]


def test_a_node_whose_lease_is_not_renewed_goes_not_ready_with_taints(api):
    async def body(c):
        await add_nodes(c, "alive", "silent")
        async with cluster(c, kubelet=False, node_monitor_grace=1.0):
            # DefaultTolerationSeconds admission would give it 300 s on an unreachable node
            await c.create(PODS, {"metadata": {"name": "victim"}, "spec": {
                "nodeName": "silent", "containers": [{"name": "c", "image": "agnhost"}],
                "tolerations": [{"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                                 "effect": "NoExecute", "tolerationSeconds": 1}]}},
                "default")

            async def renew():
                while True:
                    lease = await c.get(LEASES, "alive", "kube-node-lease")
                    lease["spec"]["renewTime"] = format_micro_time(now())
                    await c.update(LEASES, lease)
                    await asyncio.sleep(0.3)
            renewing = asyncio.create_task(renew())
            try:
                async def not_ready():
                    n = await c.get(NODES, "silent")
                    ready = next(x for x in n["status"]["conditions"] if x["type"] == "Ready")
                    return ready["status"] == "Unknown" and n
                silent = await until(not_ready, timeout=10, what="the silent node NotReady")
                ready = next(x for x in silent["status"]["conditions"] if x["type"] == "Ready")
                assert ready["message"] == "Kubelet stopped posting node status."

                async def tainted():
                    n = await c.get(NODES, "silent")
                    return sorted((t["key"], t["effect"]) for t in n["spec"].get("taints") or [])
                assert await until(tainted, what="the taints") == [
                    ("node.kubernetes.io/unreachable", "NoExecute"),
                    ("node.kubernetes.io/unreachable", "NoSchedule")]

                async def evicted():
                    pod = await _get(c, PODS, "victim", "default")
                    return pod is None or is_deleting(pod)
                await until(evicted, what="the pod evicted when its toleration runs out")
                alive = await c.get(NODES, "alive")
                assert not (alive.get("spec") or {}).get("taints")
                assert next(x for x in alive["status"]["conditions"]
                            if x["type"] == "Ready")["status"] == "True"
            finally:
                renewing.cancel()
    run(api, body, timeout=30)


def test_a_killed_controller_manager_restarts_into_the_same_state(api):
    """SIGKILL the real process mid-rollout; the next one converges without a duplicate pod."""
    def start():
        return subprocess.Popen([sys.executable, "-m", "cluster.controllermanager",
                                 "--kubeconfig", api.kubeconfig], cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    async def body(c):
        await add_nodes(c, "n1", "n2")
        async with cluster(c, manager=False):
            process = start()
            try:
                await c.create(DEPLOYMENTS, deployment("web", 6), "default")
                await until(lambda: _at_least(active_pods(c, "default", "web"), 1),
                            what="the first pods")
                process.send_signal(signal.SIGKILL)
                process.wait(5)
                await c.patch(DEPLOYMENTS, "web", {"spec": {"replicas": 8}}, "default")
                process = start()
                pods = await until(lambda: ready_pods(c, "default", "web", 8), what="8 ready pods")
                await asyncio.sleep(1.0)  # time enough for a duplicate to show
                again = await active_pods(c, "default", "web")
                assert sorted(p["metadata"]["name"] for p in again) == \
                    sorted(p["metadata"]["name"] for p in pods)
                assert len((await c.list(REPLICASETS, "default"))["items"]) == 1
            finally:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            assert process.returncode == 0, process.stderr.read().decode()[-2000:]
            process.stderr.close()
    run(api, body, timeout=90)


async def _at_least(coro, n):
    return len(await coro) >= n


def test_deleting_an_owner_deletes_or_orphans_its_dependents(api):
    async def body(c):
        await add_nodes(c, "n1")
        async with cluster(c):
            await c.create(DEPLOYMENTS, deployment("gone", 2), "default")
            await c.create(DEPLOYMENTS, deployment("kept", 2), "default")
            await until(lambda: ready_pods(c, "default", "gone", 2), what="2 ready pods")
            kept = await until(lambda: ready_pods(c, "default", "kept", 2), what="2 more")
            await c.delete(DEPLOYMENTS, "gone", "default")  # background, kubectl's default

            async def collected():
                rss = (await c.list(REPLICASETS, "default", label_selector="app=gone"))["items"]
                pods = (await c.list(PODS, "default", label_selector="app=gone"))["items"]
                return not rss and not pods
            await until(collected, what="the ReplicaSet and pods collected")
            await c.delete(DEPLOYMENTS, "kept", "default", propagation_policy="Orphan")
            rs = (await c.list(REPLICASETS, "default", label_selector="app=kept"))["items"][0]

            async def orphaned():
                try:
                    await c.get(DEPLOYMENTS, "kept", "default")
                    return False
                except APIError:
                    pass
                current = await c.get(REPLICASETS, rs["metadata"]["name"], "default")
                return not current["metadata"].get("ownerReferences")
            await until(orphaned, what="the ReplicaSet orphaned and the Deployment gone")
            assert sorted(p["metadata"]["name"] for p in await active_pods(c, "default", "kept")) \
                == sorted(p["metadata"]["name"] for p in kept)
    run(api, body)
