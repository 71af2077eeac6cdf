"""The REST client against the real API server (in-process, SQLite): calls by Resource, errors
rebuilt from Status, subresources, pagination, watch with bookmarks and 410, kubeconfig."""

import asyncio
import uuid

import pytest
import yaml

from cluster.api.errors import APIError
from cluster.api.resources import by_name
from cluster.client import Client, KubeconfigError, Unreachable, kubeconfig
from tests.support.apiserver import sqlite_apiserver  # noqa: F401  (fixture)

NAMESPACES, CONFIGMAPS, PODS, DEPLOYMENTS = (by_name(n) for n in
                                             ("namespaces", "configmaps", "pods", "deployments"))
CONTAINERS = {"containers": [{"name": "c", "image": "agnhost"}]}


def run_with_client(api, body, timeout=20):
    """Run `body(client)` on a fresh loop with a Client made from the server's kubeconfig."""
    async def main():
        async with Client.from_kubeconfig(api.kubeconfig) as client:
            return await asyncio.wait_for(body(client), timeout)
    return asyncio.run(main())


def new_namespace(api):
    name = f"t{uuid.uuid4().hex[:8]}"
    run_with_client(api, lambda c: c.create(NAMESPACES, {"metadata": {"name": name}}))
    return name


@pytest.fixture
def api(sqlite_apiserver):  # noqa: F811
    return sqlite_apiserver


@pytest.fixture
def ns(api):
    return new_namespace(api)


def test_create_get_update_and_list_by_resource(api, ns):
    async def body(c):
        made = await c.create(CONFIGMAPS, {"metadata": {"name": "a", "labels": {"app": "web"}},
                                           "data": {"k": "v"}}, ns)
        await c.create(CONFIGMAPS, {"metadata": {"name": "b", "namespace": ns, "labels": {"app": "db"}}})
        got = await c.get(CONFIGMAPS, "a", ns)
        assert got["data"] == {"k": "v"} and got["metadata"]["uid"] == made["metadata"]["uid"]
        got["data"]["k"] = "w"
        updated = await c.update(CONFIGMAPS, got)
        assert int(updated["metadata"]["resourceVersion"]) > int(made["metadata"]["resourceVersion"])
        listed = await c.list(CONFIGMAPS, ns, label_selector="app in (web,cache)")
        assert [i["metadata"]["name"] for i in listed["items"]] == ["a"]
        listed = await c.list(CONFIGMAPS, ns, field_selector="metadata.name!=a")
        assert [i["metadata"]["name"] for i in listed["items"]] == ["b"]
        everywhere = await c.list(CONFIGMAPS, label_selector="app=web")
        assert {i["metadata"]["namespace"] for i in everywhere["items"]} >= {ns}
    run_with_client(api, body)


def test_errors_are_api_errors_rebuilt_from_the_status(api, ns):
    async def body(c):
        with pytest.raises(APIError) as e:
            await c.get(CONFIGMAPS, "missing", ns)
        assert (e.value.code, e.value.reason) == (404, "NotFound")
        assert e.value.message == 'configmaps "missing" not found'
        made = await c.create(CONFIGMAPS, {"metadata": {"name": "x"}}, ns)
        with pytest.raises(APIError) as e:
            await c.create(CONFIGMAPS, {"metadata": {"name": "x"}}, ns)
        assert (e.value.code, e.value.reason) == (409, "AlreadyExists")
        await c.patch(CONFIGMAPS, "x", {"data": {"n": "1"}}, ns)
        with pytest.raises(APIError) as e:
            await c.update(CONFIGMAPS, made)  # stale resourceVersion
        assert (e.value.code, e.value.reason) == (409, "Conflict")
        with pytest.raises(APIError) as e:
            await c.create(CONFIGMAPS, {"metadata": {"name": "Bad_Name"}}, ns)
        assert (e.value.code, e.value.reason) == (422, "Invalid")
        assert [cause["field"] for cause in e.value.causes] == ["metadata.name"]
        with pytest.raises(APIError) as e:
            await c.create(CONFIGMAPS, {"metadata": {"name": "y"}, "dta": {}}, ns,
                           field_validation="Strict")
        assert e.value.code == 400 and 'unknown field "dta"' in e.value.message
    run_with_client(api, body)


def test_missing_namespace_patch_type_and_subresource_name_the_argument(api):
    async def body(c):
        with pytest.raises(ValueError, match="namespace is required for the namespaced resource configmaps"):
            await c.get(CONFIGMAPS, "x")
        with pytest.raises(ValueError, match="patch_type 'apply': expected one of merge, strategic, json"):
            await c.patch(CONFIGMAPS, "x", {}, "default", patch_type="apply")
        with pytest.raises(ValueError, match="subresource 'scale': configmaps serves none"):
            await c.get(CONFIGMAPS, "x", "default", subresource="scale")
    run_with_client(api, body)


def test_patch_types_and_delete_options(api, ns):
    async def body(c):
        await c.create(CONFIGMAPS, {"metadata": {"name": "p", "labels": {"a": "1"}}, "data": {"x": "1"}}, ns)
        merged = await c.patch(CONFIGMAPS, "p", {"data": {"y": "2", "x": None}}, ns)
        assert merged["data"] == {"y": "2"}
        strategic = await c.patch(CONFIGMAPS, "p", {"metadata": {"labels": {"b": "2"}}}, ns,
                                  patch_type="strategic")
        assert strategic["metadata"]["labels"] == {"a": "1", "b": "2"}
        jsonp = await c.patch(CONFIGMAPS, "p", [{"op": "replace", "path": "/data/y", "value": "3"}], ns,
                              patch_type="json")
        assert jsonp["data"] == {"y": "3"}
        with pytest.raises(APIError) as e:
            await c.delete(CONFIGMAPS, "p", ns, preconditions={"uid": "not-it"})
        assert e.value.code == 409 and "Precondition failed" in e.value.message
        await c.delete(CONFIGMAPS, "p", ns, dry_run=True)
        assert (await c.get(CONFIGMAPS, "p", ns))["data"] == {"y": "3"}
        status = await c.delete(CONFIGMAPS, "p", ns, preconditions={"uid": jsonp["metadata"]["uid"]})
        assert status["kind"] == "Status" and status["status"] == "Success"
    run_with_client(api, body)


def test_status_scale_and_binding_subresources(api, ns):
    async def body(c):
        dep = {"metadata": {"name": "d"}, "spec": {"selector": {"matchLabels": {"app": "d"}},
               "template": {"metadata": {"labels": {"app": "d"}}, "spec": CONTAINERS}}}
        made = await c.create(DEPLOYMENTS, dep, ns)
        made["status"] = {"replicas": 3}
        assert (await c.update_status(DEPLOYMENTS, made))["status"]["replicas"] == 3
        scale = await c.get(DEPLOYMENTS, "d", ns, subresource="scale")
        assert scale["kind"] == "Scale" and scale["spec"]["replicas"] == 1
        scale["spec"]["replicas"] = 4
        await c.update(DEPLOYMENTS, scale, ns, subresource="scale")
        assert (await c.get(DEPLOYMENTS, "d", ns))["spec"]["replicas"] == 4
        await c.create(PODS, {"metadata": {"name": "p"}, "spec": CONTAINERS}, ns)
        await c.create(PODS, {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"},
                              "target": {"kind": "Node", "name": "node-1"}}, ns, subresource="binding")
        assert (await c.get(PODS, "p", ns))["spec"]["nodeName"] == "node-1"
    run_with_client(api, body)


def test_list_all_reads_every_page_at_one_revision(api, ns):
    async def body(c):
        for i in range(7):
            await c.create(CONFIGMAPS, {"metadata": {"name": f"c{i}"}}, ns)
        page = await c.list(CONFIGMAPS, ns, limit=3)
        assert len(page["items"]) == 3 and page["metadata"]["continue"]
        items, rv = await c.list_all(CONFIGMAPS, ns, page_size=3)
        assert [i["metadata"]["name"] for i in items] == [f"c{i}" for i in range(7)]
        assert rv == page["metadata"]["resourceVersion"]  # nothing changed in between
    run_with_client(api, body)


def test_watch_resumes_from_a_resource_version_and_tracks_the_resume_point(api, ns):
    async def body(c):
        made = await c.create(CONFIGMAPS, {"metadata": {"name": "w"}}, ns)
        await c.patch(CONFIGMAPS, "w", {"data": {"a": "1"}}, ns)
        await c.delete(CONFIGMAPS, "w", ns)
        seen = []
        async with c.watch(CONFIGMAPS, ns, resource_version=made["metadata"]["resourceVersion"],
                           timeout_seconds=5) as events:
            async for type_, obj in events:
                seen.append((type_, obj["metadata"]["resourceVersion"]))
                if type_ == "DELETED":
                    break
        assert [t for t, _ in seen] == ["MODIFIED", "DELETED"]
        assert events.resource_version == seen[-1][1]
    run_with_client(api, body)


def test_watch_of_a_compacted_revision_raises_410_expired(api, ns):
    async def body(c):
        old = (await c.create(CONFIGMAPS, {"metadata": {"name": "old"}}, ns))["metadata"]["resourceVersion"]
        for i in range(3):
            patched = await c.patch(CONFIGMAPS, "old", {"data": {"i": str(i)}}, ns)
        current = patched["metadata"]["resourceVersion"]
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(
            api.server.store.compact(int(current)), api.loop))
        with pytest.raises(APIError) as e:
            async for _ in c.watch(CONFIGMAPS, ns, resource_version=old, timeout_seconds=5):
                pass
        assert (e.value.code, e.value.reason) == (410, "Expired")
    run_with_client(api, body)


def test_from_kubeconfig_reads_the_current_context_and_names_what_is_wrong(api, tmp_path):
    client = Client.from_kubeconfig(api.kubeconfig)
    assert client.url == api.url and client.namespace == "default"
    with open(api.kubeconfig) as f:
        doc = yaml.safe_load(f)
    doc["current-context"] = "elsewhere"
    bad = tmp_path / "kubeconfig"
    bad.write_text(yaml.safe_dump(doc))
    with pytest.raises(KubeconfigError, match=r"contexts: no entry named 'elsewhere' \(known: 'test'\)"):
        Client.from_kubeconfig(str(bad))
    with pytest.raises(KubeconfigError, match="cannot read it"):
        Client.from_kubeconfig(str(tmp_path / "missing"))


def test_a_server_that_cannot_be_reached_is_unreachable_503():
    async def body():
        async with Client("https://127.0.0.1:1", "token") as c:
            with pytest.raises(Unreachable) as e:
                await c.get(NAMESPACES, "default")
            assert e.value.code == 503 and "https://127.0.0.1:1" in e.value.message
    asyncio.run(body())


def test_requests_without_the_token_are_401(api):
    async def body():
        async with Client(api.url, "", kubeconfig.load(api.kubeconfig).ca_data) as c:
            with pytest.raises(APIError) as e:
                await c.get(NAMESPACES, "default")
            assert (e.value.code, e.value.reason) == (401, "Unauthorized")
    asyncio.run(body())
