"""The controller pattern end to end: a toy controller that mirrors each ConfigMap's data into
an annotation converges, retries failures with backoff, and recovers after the API server
restarts."""

import asyncio
import json

import pytest

from cluster.api.errors import APIError
from cluster.client import (Backoff, Client, Controller, Informer, SharedInformerFactory, owner_key,
                            split_key)
from cluster.client.workqueue import ExponentialRateLimiter
from tests.support.apiserver import sqlite_apiserver  # noqa: F401  (fixture)
from tests.unit.test_client_informer import restart, restartable, until  # noqa: F401  (fixtures)
from tests.unit.test_client_rest import CONFIGMAPS, NAMESPACES, api, ns, run_with_client  # noqa: F401

MIRROR = "example.com/data"


def mirror_controller(client, factory, namespace, failures=None):
    """Reconcile: the annotation MIRROR of each ConfigMap holds its data as sorted JSON."""
    configmaps = factory.informer(CONFIGMAPS, namespace)
    calls = []

    async def reconcile(key):
        calls.append(key)
        if failures and failures.get(key, 0) > 0:
            failures[key] -= 1
            raise APIError(500, "InternalError", "injected failure")
        cm = configmaps.indexer.get_by_key(key)
        if cm is None:
            return  # deleted: the annotation went with it
        want = json.dumps(cm.get("data") or {}, sort_keys=True)
        if (cm["metadata"].get("annotations") or {}).get(MIRROR) == want:
            return  # already as desired: idempotent, no write
        ns, name = split_key(key)
        await client.patch(CONFIGMAPS, name, {"metadata": {
            "annotations": {MIRROR: want}, "resourceVersion": cm["metadata"]["resourceVersion"]}}, ns)

    controller = Controller("mirror", reconcile, workers=3,
                            rate_limiter=ExponentialRateLimiter(base=0.01, maximum=0.5))
    controller.watch(configmaps)
    return controller, configmaps, calls


def mirrored(informer, count):
    def done(cm):
        want = json.dumps(cm.get("data") or {}, sort_keys=True)
        return (cm["metadata"].get("annotations") or {}).get(MIRROR) == want
    cms = informer.indexer.list()
    return len(cms) == count and all(done(cm) for cm in cms)


def test_a_toy_controller_converges_and_retries_failures_with_backoff(api, ns):
    async def body(c):
        for i in range(20):
            await c.create(CONFIGMAPS, {"metadata": {"name": f"cm{i}"}, "data": {"i": str(i)}}, ns)
        factory = SharedInformerFactory(c)
        failures = {f"{ns}/cm3": 3}
        controller, configmaps, calls = mirror_controller(c, factory, ns, failures)
        task = asyncio.create_task(controller.run(sync_timeout=5))
        try:
            await until(lambda: mirrored(configmaps, 20), what="all 20 mirrored")
            assert calls.count(f"{ns}/cm3") >= 4 and failures[f"{ns}/cm3"] == 0
            assert controller.queue.num_requeues(f"{ns}/cm3") == 0  # forgotten after success
            await c.patch(CONFIGMAPS, "cm5", {"data": {"i": "changed"}}, ns)
            await c.create(CONFIGMAPS, {"metadata": {"name": "late"}, "data": {"x": "y"}}, ns)
            await until(lambda: mirrored(configmaps, 21), what="the change and the new one mirrored")
            settled = len(calls)
            await asyncio.sleep(0.2)
            # Its own writes come back as events once each, and then it is quiet: no write loop.
            assert len(calls) - settled <= 2
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await factory.shutdown()
    run_with_client(api, body)


def test_the_controller_recovers_after_the_api_server_restarts(restartable):  # noqa: F811
    api = restartable

    async def body(c):
        ns = (await c.create(NAMESPACES, {"metadata": {"name": "t"}}))["metadata"]["name"]
        for i in range(5):
            await c.create(CONFIGMAPS, {"metadata": {"name": f"cm{i}"}, "data": {"i": str(i)}}, ns)
        factory = SharedInformerFactory(c, backoff=Backoff(initial=0.1, maximum=0.5))
        controller, configmaps, _ = mirror_controller(c, factory, ns)
        task = asyncio.create_task(controller.run(sync_timeout=5))
        try:
            await until(lambda: mirrored(configmaps, 5), what="the first convergence")
            await restart(api)
            await c.patch(CONFIGMAPS, "cm1", {"data": {"i": "after restart"}}, ns)
            await c.delete(CONFIGMAPS, "cm2", ns)
            await c.create(CONFIGMAPS, {"metadata": {"name": "new"}, "data": {"n": "1"}}, ns)
            await until(lambda: mirrored(configmaps, 5) and "new" in
                        {cm["metadata"]["name"] for cm in configmaps.indexer.list()},
                        what="convergence after the restart")
            stored = await c.get(CONFIGMAPS, "cm1", ns)
            assert stored["metadata"]["annotations"][MIRROR] == '{"i": "after restart"}'
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await factory.shutdown()
    run_with_client(api, body)


def test_owner_key_maps_a_child_to_its_owners_of_one_kind():
    rs = {"metadata": {"name": "web-5d8f", "namespace": "shop", "ownerReferences": [
        {"kind": "Deployment", "name": "web"}, {"kind": "Other", "name": "x"}]}}
    assert owner_key("Deployment")(rs) == ["shop/web"]
    assert owner_key("Deployment")({"metadata": {"name": "orphan", "namespace": "shop"}}) == []


def test_a_controller_whose_informers_cannot_sync_says_which_and_why():
    async def body():
        async with Client("https://127.0.0.1:1", "token") as c:
            informer = Informer(c, CONFIGMAPS, "default", backoff=Backoff(initial=0.05))
            controller = Controller("stuck", lambda key: None)
            controller.watch(informer)
            with pytest.raises(TimeoutError, match=r"controller stuck: Informer\(Reflector\(configmaps "
                                                   r"in default\)\) did not sync within 0.3s"):
                await controller.run(sync_timeout=0.3)
            await informer.stop()
    asyncio.run(body())
