"""The API server through the official Python `kubernetes` client and raw HTTP, on SQLite and
on a private etcd: CRUD with server-set metadata, Status errors, preconditions, subresources,
deletion, watch semantics, and concurrent writers that never lose an update."""

import concurrent.futures
import http.client
import json
import secrets
import ssl
import threading
import urllib.parse

import pytest
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from tests.support.apiserver import running_apiserver
from tests.support.etcd import etcd_url  # noqa: F401  (the session fixture)


@pytest.fixture(scope="module", params=["sqlite", "etcd"])
def api(request, tmp_path_factory):
    directory = tmp_path_factory.mktemp(f"apiserver-{request.param}")
    url = f"sqlite://{directory}/state.db" if request.param == "sqlite" \
        else request.getfixturevalue("etcd_url")
    with running_apiserver(url, str(directory)) as running:
        yield running


@pytest.fixture(scope="module")
def kube(api):
    return config.new_client_from_config(config_file=api.kubeconfig)


@pytest.fixture
def ns(kube):
    name = f"t{secrets.token_hex(4)}"
    client.CoreV1Api(kube).create_namespace({"metadata": {"name": name}})
    return name


class Raw:
    """Plain HTTPS requests with the admin token, for what the typed client hides."""

    def __init__(self, api):
        self.api = api
        parsed = urllib.parse.urlparse(api.url)
        self.host, self.port = parsed.hostname, parsed.port
        self.ctx = ssl.create_default_context(cafile=api.server.cert)

    def conn(self, timeout=10):
        return http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=timeout)

    def request(self, method, path, body=None, headers=None, token=True):
        conn = self.conn()
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        if token:
            hdrs["Authorization"] = f"Bearer {self.api.token}"
        data = body if isinstance(body, (bytes, str)) or body is None else json.dumps(body)
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        raw = resp.read()
        conn.close()
        ctype = resp.getheader("Content-Type", "")
        doc = json.loads(raw) if raw and "json" in ctype else raw
        return resp.status, doc, resp

    def watch_lines(self, path, count, timeout=5):
        """The first `count` events of a watch (or fewer if the server ends it)."""
        conn = self.conn(timeout)
        conn.request("GET", path, headers={"Authorization": f"Bearer {self.api.token}"})
        resp = conn.getresponse()
        events = []
        while len(events) < count:
            line = resp.fp.readline()
            if not line:
                break
            if line.strip() and not line.strip().isalnum():
                events.append(json.loads(line))
        conn.close()
        return resp.status, events


@pytest.fixture(scope="module")
def raw(api):
    return Raw(api)


def test_discovery_and_version(kube, raw):
    assert client.VersionApi(kube).get_code().git_version.startswith("v1.")
    groups = {g.name for g in client.ApisApi(kube).get_api_versions().groups}
    assert {"apps", "rbac.authorization.k8s.io", "networking.k8s.io", "discovery.k8s.io"} <= groups
    status, doc, _ = raw.request("GET", "/api/v1")
    pods = next(r for r in doc["resources"] if r["name"] == "pods")
    assert pods["shortNames"] == ["po"] and "watch" in pods["verbs"]
    assert any(r["name"] == "pods/binding" for r in doc["resources"])
    status, doc, resp = raw.request("GET", "/apis", headers={
        "Accept": "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"})
    assert doc["kind"] == "APIGroupDiscoveryList"
    assert "as=APIGroupDiscoveryList" in resp.getheader("Content-Type")
    status, doc, _ = raw.request("GET", "/openapi/v3")
    assert "apis/apps/v1" in doc["paths"]


def test_requests_without_a_valid_token_get_401(raw):
    status, doc, _ = raw.request("GET", "/api/v1/namespaces", token=False)
    assert status == 401 and doc["reason"] == "Unauthorized"


def test_create_sets_server_metadata_and_list_reads_it_back(kube, ns):
    core = client.CoreV1Api(kube)
    cm = core.create_namespaced_config_map(ns, {"metadata": {"name": "cfg", "labels": {"a": "1"},
                                                             "resourceVersion": "999"},
                                                "data": {"k": "v"}})
    assert cm.metadata.uid and cm.metadata.creation_timestamp and cm.metadata.resource_version != "999"
    assert cm.metadata.managed_fields is None
    got = core.read_namespaced_config_map("cfg", ns)
    assert got.metadata.resource_version == cm.metadata.resource_version and got.data == {"k": "v"}
    listed = core.list_namespaced_config_map(ns)
    assert [i.metadata.name for i in listed.items] == ["cfg"]
    assert int(listed.metadata.resource_version) >= int(cm.metadata.resource_version)


def test_generate_name_and_dry_run(kube, ns):
    core = client.CoreV1Api(kube)
    made = core.create_namespaced_config_map(ns, {"metadata": {"generateName": "gen-"}})
    assert made.metadata.name.startswith("gen-") and len(made.metadata.name) == 9
    dry = core.create_namespaced_config_map(ns, {"metadata": {"name": "dry"}}, dry_run="All")
    assert dry.metadata.name == "dry"
    with pytest.raises(ApiException) as e:
        core.read_namespaced_config_map("dry", ns)
    assert e.value.status == 404


def test_not_found_and_invalid_are_status_objects_with_causes(kube, ns):
    core = client.CoreV1Api(kube)
    with pytest.raises(ApiException) as e:
        core.read_namespaced_config_map("missing", ns)
    status = json.loads(e.value.body)
    assert (e.value.status, status["kind"], status["reason"]) == (404, "Status", "NotFound")
    assert status["message"] == 'configmaps "missing" not found'
    with pytest.raises(ApiException) as e:
        core.create_namespaced_config_map(ns, {"metadata": {"name": "Bad_Name"}})
    status = json.loads(e.value.body)
    assert (e.value.status, status["reason"]) == (422, "Invalid")
    assert status["details"]["causes"][0]["field"] == "metadata.name"
    with pytest.raises(ApiException) as e:
        core.create_namespaced_config_map(ns, {"metadata": {"name": "cfg"}})
        core.create_namespaced_config_map(ns, {"metadata": {"name": "cfg"}})
    assert e.value.status == 409 and json.loads(e.value.body)["reason"] == "AlreadyExists"


def test_field_validation_strict_refuses_and_warn_warns(raw, ns):
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "spec": {"foo": 1}}
    status, doc, _ = raw.request("POST", f"/api/v1/namespaces/{ns}/configmaps?fieldValidation=Strict", body)
    assert status == 400 and 'unknown field "spec"' in doc["message"]
    status, doc, resp = raw.request("POST", f"/api/v1/namespaces/{ns}/configmaps?fieldValidation=Warn", body)
    assert status == 201 and 'unknown field' in resp.getheader("Warning")


def test_protobuf_and_apply_patch_get_415_naming_json(raw, ns):
    status, doc, _ = raw.request("POST", f"/api/v1/namespaces/{ns}/configmaps", b"\x6b\x38\x73\x00",
                                 headers={"Content-Type": "application/vnd.kubernetes.protobuf"})
    assert status == 415 and "application/json" in doc["message"]
    status, doc, _ = raw.request("PATCH", f"/api/v1/namespaces/{ns}/configmaps/x?fieldManager=kubectl",
                                 "{}", headers={"Content-Type": "application/apply-patch+yaml"})
    assert status == 415 and "server-side apply" in doc["message"]


def test_stale_resource_version_conflicts(kube, ns):
    core = client.CoreV1Api(kube)
    cm = core.create_namespaced_config_map(ns, {"metadata": {"name": "c"}, "data": {"n": "0"}})
    cm.data = {"n": "1"}
    updated = core.replace_namespaced_config_map("c", ns, cm)
    assert int(updated.metadata.resource_version) > int(cm.metadata.resource_version)
    cm.data = {"n": "2"}  # still carries the old resourceVersion
    with pytest.raises(ApiException) as e:
        core.replace_namespaced_config_map("c", ns, cm)
    assert e.value.status == 409 and json.loads(e.value.body)["reason"] == "Conflict"
    # An update that changes nothing writes nothing: the resourceVersion stays.
    same = core.replace_namespaced_config_map("c", ns, updated)
    assert same.metadata.resource_version == updated.metadata.resource_version


def test_patch_merge_and_json(kube, raw, ns):
    core = client.CoreV1Api(kube)
    core.create_namespaced_config_map(ns, {"metadata": {"name": "p"}, "data": {"a": "1", "b": "2"}})
    patched = core.patch_namespaced_config_map("p", ns, {"data": {"b": None, "c": "3"}})
    assert patched.data == {"a": "1", "c": "3"}
    status, doc, _ = raw.request("PATCH", f"/api/v1/namespaces/{ns}/configmaps/p",
                                 [{"op": "replace", "path": "/data/a", "value": "9"}],
                                 headers={"Content-Type": "application/json-patch+json"})
    assert status == 200 and doc["data"]["a"] == "9"


def test_status_and_spec_are_written_through_their_own_endpoints(kube, ns):
    apps = client.AppsV1Api(kube)
    dep = {"metadata": {"name": "d"}, "spec": {"selector": {"matchLabels": {"app": "d"}},
           "template": {"metadata": {"labels": {"app": "d"}},
                        "spec": {"containers": [{"name": "c", "image": "agnhost"}]}}},
           "status": {"replicas": 5}}
    made = apps.create_namespaced_deployment(ns, dep)
    assert made.status is None or not made.status.replicas  # status is not the client's to set
    assert made.metadata.generation == 1
    s = apps.patch_namespaced_deployment_status("d", ns, {"status": {"replicas": 3},
                                                          "spec": {"replicas": 7}})
    assert s.status.replicas == 3 and s.spec.replicas == 1 and s.metadata.generation == 1
    m = apps.patch_namespaced_deployment("d", ns, {"spec": {"replicas": 2}, "status": {"replicas": 0}})
    assert m.spec.replicas == 2 and m.status.replicas == 3 and m.metadata.generation == 2
    scale = apps.read_namespaced_deployment_scale("d", ns)
    assert scale.spec.replicas == 2
    scaled = apps.patch_namespaced_deployment_scale("d", ns, {"spec": {"replicas": 4}})
    assert scaled.spec.replicas == 4
    assert apps.read_namespaced_deployment("d", ns).spec.replicas == 4


def test_binding_assigns_a_node_once(kube, raw, ns):
    core = client.CoreV1Api(kube)
    core.create_namespaced_pod(ns, {"metadata": {"name": "p"},
                                    "spec": {"containers": [{"name": "c", "image": "agnhost"}]}})
    binding = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"},
               "target": {"kind": "Node", "name": "node-1"}}
    status, _, _ = raw.request("POST", f"/api/v1/namespaces/{ns}/pods/p/binding", binding)
    assert status == 201
    assert core.read_namespaced_pod("p", ns).spec.node_name == "node-1"
    status, doc, _ = raw.request("POST", f"/api/v1/namespaces/{ns}/pods/p/binding", binding)
    assert status == 409 and "already assigned" in doc["message"]


def test_graceful_pod_deletion_and_finalizers(kube, ns):
    core = client.CoreV1Api(kube)
    spec = {"containers": [{"name": "c", "image": "agnhost"}]}
    core.create_namespaced_pod(ns, {"metadata": {"name": "bound"}, "spec": dict(spec, nodeName="n1")})
    core.delete_namespaced_pod("bound", ns)
    pod = core.read_namespaced_pod("bound", ns)  # the kubelet finishes the deletion
    assert pod.metadata.deletion_timestamp and pod.metadata.deletion_grace_period_seconds == 30
    core.delete_namespaced_pod("bound", ns, grace_period_seconds=0)
    with pytest.raises(ApiException):
        core.read_namespaced_pod("bound", ns)
    core.create_namespaced_config_map(ns, {"metadata": {"name": "f", "finalizers": ["example.com/x"]}})
    core.delete_namespaced_config_map("f", ns)
    cm = core.read_namespaced_config_map("f", ns)
    assert cm.metadata.deletion_timestamp
    core.patch_namespaced_config_map("f", ns, {"metadata": {"finalizers": None}})
    with pytest.raises(ApiException) as e:
        core.read_namespaced_config_map("f", ns)
    assert e.value.status == 404


def test_delete_preconditions_and_collection(kube, ns):
    core = client.CoreV1Api(kube)
    for i in range(3):
        core.create_namespaced_config_map(ns, {"metadata": {"name": f"c{i}"}})
    with pytest.raises(ApiException) as e:
        core.delete_namespaced_config_map("c0", ns, body={"preconditions": {"uid": "not-it"}})
    assert e.value.status == 409
    core.delete_collection_namespaced_config_map(ns)
    assert core.list_namespaced_config_map(ns).items == []


def test_list_pages_with_limit_and_continue(kube, ns):
    core = client.CoreV1Api(kube)
    for i in range(5):
        core.create_namespaced_config_map(ns, {"metadata": {"name": f"c{i}"}})
    first = core.list_namespaced_config_map(ns, limit=2)
    assert [i.metadata.name for i in first.items] == ["c0", "c1"] and first.metadata._continue
    core.create_namespaced_config_map(ns, {"metadata": {"name": "c9"}})  # not in the snapshot
    names = [i.metadata.name for i in first.items]
    token = first.metadata._continue
    while token:
        page = core.list_namespaced_config_map(ns, limit=2, _continue=token)
        names += [i.metadata.name for i in page.items]
        token = page.metadata._continue
    assert names == ["c0", "c1", "c2", "c3", "c4"]


def test_watch_resumes_from_a_resource_version(kube, ns):
    core = client.CoreV1Api(kube)
    rv = core.list_namespaced_config_map(ns).metadata.resource_version
    core.create_namespaced_config_map(ns, {"metadata": {"name": "w"}})
    core.patch_namespaced_config_map("w", ns, {"data": {"x": "1"}})
    core.delete_namespaced_config_map("w", ns)
    seen = []
    for event in watch.Watch().stream(core.list_namespaced_config_map, ns, resource_version=rv,
                                      timeout_seconds=2):
        seen.append((event["type"], event["object"].metadata.name))
        if len(seen) == 3:
            break
    assert seen == [("ADDED", "w"), ("MODIFIED", "w"), ("DELETED", "w")]


def test_watch_sends_initial_events_then_the_end_bookmark(kube, raw, ns):
    core = client.CoreV1Api(kube)
    core.create_namespaced_config_map(ns, {"metadata": {"name": "a"}})
    path = (f"/api/v1/namespaces/{ns}/configmaps?watch=true&sendInitialEvents=true"
            "&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan&resourceVersion=")
    status, events = raw.watch_lines(path, 2)
    assert status == 200
    assert [e["type"] for e in events] == ["ADDED", "BOOKMARK"]
    assert events[1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
    status, doc, _ = raw.request("GET", f"/api/v1/namespaces/{ns}/configmaps?watch=true&sendInitialEvents=true")
    assert status == 422 and doc["reason"] == "Invalid"


def test_filtered_watch_delivers_at_once_and_in_order_under_a_burst(kube, raw, ns):
    core = client.CoreV1Api(kube)
    rv = core.list_namespaced_config_map(ns).metadata.resource_version
    conn = raw.conn(20)
    conn.request("GET", f"/api/v1/namespaces/{ns}/configmaps?watch=true&labelSelector=tier%3Dfront"
                        f"&resourceVersion={rv}&timeoutSeconds=20",
                 headers={"Authorization": f"Bearer {raw.api.token}"})
    resp = conn.getresponse()
    got, first, everything = [], threading.Event(), threading.Event()

    def watcher():
        while len(got) < 31:
            line = resp.fp.readline()
            if not line:
                break
            if line.strip() and not line.strip().isalnum():  # not chunk framing
                got.append(json.loads(line))
                first.set()
        everything.set()

    threading.Thread(target=watcher, daemon=True).start()
    try:
        core.create_namespaced_config_map(ns, {"metadata": {"name": "in", "labels": {"tier": "front"}}})
        # Events this watch filters out right behind the one it keeps must not hold that one back.
        for i in range(3):
            core.create_namespaced_config_map(ns, {"metadata": {"name": f"out{i}", "labels": {"tier": "back"}}})
        assert first.wait(2), "the matching event waited behind the filtered ones"
        bodies = [{"metadata": {"name": f"b{i}", "labels": {"tier": "front"}}} for i in range(30)]
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda b: core.create_namespaced_config_map(ns, b), bodies))
        assert everything.wait(5), f"only {len(got)} of 31 events arrived within 5 s"
    finally:
        conn.close()
    names = [e["object"]["metadata"]["name"] for e in got]
    assert names[0] == "in" and sorted(names[1:]) == sorted(f"b{i}" for i in range(30))
    revisions = [int(e["object"]["metadata"]["resourceVersion"]) for e in got]
    assert revisions == sorted(revisions)  # in the store's order


def test_watch_from_a_compacted_revision_is_410_expired(kube, api, ns):
    core = client.CoreV1Api(kube)
    old = core.create_namespaced_config_map(ns, {"metadata": {"name": "x"}}).metadata.resource_version
    for i in range(3):
        core.patch_namespaced_config_map("x", ns, {"data": {"i": str(i)}})
    current = int(core.read_namespaced_config_map("x", ns).metadata.resource_version)
    api.call(api.server.store.compact(current))
    with pytest.raises(ApiException) as e:
        for _ in watch.Watch().stream(core.list_namespaced_config_map, ns, resource_version=old,
                                      timeout_seconds=2):
            pass
    assert e.value.status == 410


def test_concurrent_writers_never_lose_an_update(kube, api, ns):
    core = client.CoreV1Api(kube)
    core.create_namespaced_config_map(ns, {"metadata": {"name": "counter"}, "data": {"n": "0"}})
    writers, increments = 4, 15
    conflicts = []

    def writer():
        mine = config.new_client_from_config(config_file=api.kubeconfig)
        c = client.CoreV1Api(mine)
        for _ in range(increments):
            while True:
                cm = c.read_namespaced_config_map("counter", ns)
                cm.data["n"] = str(int(cm.data["n"]) + 1)
                try:
                    c.replace_namespaced_config_map("counter", ns, cm)
                    break
                except ApiException as e:
                    assert e.status == 409
                    conflicts.append(1)

    threads = [threading.Thread(target=writer) for _ in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert core.read_namespaced_config_map("counter", ns).data["n"] == str(writers * increments)


def test_label_and_field_selectors_filter_lists_and_watches(kube, ns):
    core = client.CoreV1Api(kube)
    for name, tier in (("a", "front"), ("b", "back"), ("c", "front")):
        core.create_namespaced_config_map(ns, {"metadata": {"name": name, "labels": {"tier": tier}}})
    names = lambda items: [i.metadata.name for i in items]  # noqa: E731
    assert names(core.list_namespaced_config_map(ns, label_selector="tier=front").items) == ["a", "c"]
    assert names(core.list_namespaced_config_map(ns, label_selector="tier notin (front)").items) == ["b"]
    assert names(core.list_namespaced_config_map(ns, field_selector="metadata.name=b").items) == ["b"]
    page = core.list_namespaced_config_map(ns, label_selector="tier=front", limit=1)
    assert names(page.items) == ["a"] and page.metadata._continue
    rv = core.list_namespaced_config_map(ns).metadata.resource_version
    core.patch_namespaced_config_map("b", ns, {"metadata": {"labels": {"tier": "front"}}})
    core.patch_namespaced_config_map("a", ns, {"metadata": {"labels": {"tier": "back"}}})
    seen = []
    for event in watch.Watch().stream(core.list_namespaced_config_map, ns, label_selector="tier=front",
                                      resource_version=rv, timeout_seconds=2):
        seen.append((event["type"], event["object"].metadata.name))
        if len(seen) == 2:
            break
    # Entering the selection is ADDED, leaving it DELETED, as upstream's watch cache reports.
    assert seen == [("ADDED", "b"), ("DELETED", "a")]
    with pytest.raises(ApiException) as e:
        core.list_namespaced_config_map(ns, field_selector="data.x=1")
    assert e.value.status == 400
