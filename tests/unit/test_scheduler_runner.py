"""The scheduler against an in-process API server: pods are bound through the binding
subresource, counted on their node from the moment they are placed (not when the watch shows
them), and a pod that fits nowhere says why and is bound once a node changes."""

import asyncio

from tests.unit.test_controllermanager import (EVENTS, NODES, PODS, add_nodes, api,  # noqa: F401
                                               cluster, node, run, until)


def pod(name, **spec):
    return {"metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "agnhost"}], **spec}}


def test_pods_placed_in_one_burst_never_overcommit_a_node(api):  # noqa: F811
    async def body(c):
        for name in ("n1", "n2", "n3"):
            small = node(name)
            small["status"]["allocatable"]["pods"] = small["status"]["capacity"]["pods"] = "4"
            await c.create(NODES, small)
        async with cluster(c, manager=False, kubelet=False):
            await asyncio.gather(*(c.create(PODS, pod(f"p{i}"), "default") for i in range(15)))

            async def placed():
                pods = (await c.list(PODS, "default"))["items"]
                bound = [p["spec"]["nodeName"] for p in pods if p["spec"].get("nodeName")]
                waiting = [x["message"] for p in pods for x in p["status"].get("conditions") or []
                           if x["type"] == "PodScheduled" and x["status"] == "False"]
                return len(bound) == 12 and len(waiting) == 3 and (bound, waiting)
            bound, waiting = await until(placed, what="12 pods bound and 3 unschedulable")
            assert sorted(bound.count(n) for n in ("n1", "n2", "n3")) == [4, 4, 4]
            assert set(waiting) == {"0/3 nodes are available: 3 Too many pods."}
            pods = (await c.list(PODS, "default"))["items"]
            first = next(p["metadata"]["name"] for p in pods if p["spec"].get("nodeName"))
            await c.delete(PODS, first, "default", grace_period_seconds=0)

            async def one_more():
                pods = (await c.list(PODS, "default"))["items"]
                return sum(1 for p in pods if p["spec"].get("nodeName")) == 12
            await until(one_more, what="a waiting pod to take the freed place")
    run(api, body)


def test_an_unschedulable_pod_says_why_and_is_bound_once_a_node_fits(api):
    async def body(c):
        await add_nodes(c, "n1", "n2", "n3")
        async with cluster(c, manager=False, kubelet=False):
            await c.create(PODS, {"metadata": {"name": "picky"}, "spec": {
                "nodeSelector": {"disk": "ssd"},
                "containers": [{"name": "c", "image": "agnhost"}]}}, "default")

            async def condition():
                pod = await c.get(PODS, "picky", "default")
                return next((x for x in pod["status"].get("conditions") or []
                             if x["type"] == "PodScheduled"), None)
            cond = await until(condition, what="PodScheduled=False")
            assert (cond["status"], cond["reason"]) == ("False", "Unschedulable")
            assert cond["message"] == ("0/3 nodes are available: 3 node(s) didn't match Pod's "
                                       "node affinity/selector.")

            async def events():
                items = (await c.list(EVENTS, "default"))["items"]
                return [e for e in items if e["reason"] == "FailedScheduling"]
            event = (await until(events, what="a FailedScheduling event"))[0]
            assert event["type"] == "Warning" and event["message"] == cond["message"]
            await c.patch(NODES, "n2", {"metadata": {"labels": {"disk": "ssd"}}})

            async def bound():
                return (await c.get(PODS, "picky", "default"))["spec"].get("nodeName")
            assert await until(bound, what="the pod bound") == "n2"
    run(api, body)

