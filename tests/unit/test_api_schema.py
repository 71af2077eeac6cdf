"""Field schemas agree with the official client's models; OpenAPI documents are what kubectl reads."""
import importlib
import re

import pytest

from cluster.api import schema
from cluster.api.resources import RESOURCES, by_kind

_CLIENT_PREFIX = {"io.k8s.api.core.v1": ["V1", "CoreV1"], "io.k8s.api.discovery.v1": ["DiscoveryV1", "V1"],
                  "io.k8s.api.rbac.v1": ["RbacV1", "V1"]}


def _client_model(definition: str):
    models = importlib.import_module("kubernetes.client.models")
    package, name = definition.rsplit(".", 1)
    for prefix in _CLIENT_PREFIX.get(package, ["V1"]):
        model = getattr(models, prefix + name, None)
        if model is not None:
            return model
    return None


def test_every_definition_has_the_client_models_field_names():
    checked = 0
    for name, definition in schema.definitions().items():
        model = _client_model(name)
        if model is None or "properties" not in definition:
            continue
        assert set(definition["properties"]) == set(model.attribute_map.values()), name
        checked += 1
    assert checked > 200


def test_every_kind_has_a_definition_with_metadata():
    for r in RESOURCES:
        assert "metadata" in schema.kind_schema(r)["properties"], r.kind


def test_merge_keys_as_upstream_tags_them():
    pod_spec = schema.definitions()["io.k8s.api.core.v1.PodSpec"]["properties"]
    assert schema.patch_strategy(pod_spec["containers"]) == ({"merge"}, "name")
    assert schema.patch_strategy(pod_spec["volumes"]) == ({"merge", "retainKeys"}, "name")
    assert schema.patch_strategy(pod_spec["tolerations"]) == (set(), "")
    container = schema.definitions()["io.k8s.api.core.v1.Container"]["properties"]
    assert schema.patch_strategy(container["ports"]) == ({"merge"}, "containerPort")
    assert schema.patch_strategy(container["env"]) == ({"merge"}, "name")
    svc = schema.definitions()["io.k8s.api.core.v1.ServiceSpec"]["properties"]
    assert schema.patch_strategy(svc["ports"]) == ({"merge"}, "port")
    deploy = schema.definitions()["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]
    assert schema.patch_strategy(deploy["strategy"]) == ({"retainKeys"}, "")


def test_unknown_fields_are_named_by_path():
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"a": "b"}},
           "spec": {"containers": [{"name": "c", "image": "i", "imagePullPolice": "Always",
                                    "ports": [{"containerPort": 80, "hostPorts": 1}]}],
                    "restartPolicy": "Never", "nodeSelector": {"x": "y"}}, "extra": 1}
    assert schema.unknown_fields(by_kind("v1", "Pod"), pod) == [
        "spec.containers[0].imagePullPolice", "spec.containers[0].ports[0].hostPorts", "extra"]


def _refs(node):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref":
                yield v
            else:
                yield from _refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from _refs(v)


@pytest.mark.parametrize("gv", ["api/v1", "apis/apps/v1", "apis/networking.k8s.io/v1"])
def test_openapi_v3_is_self_contained_and_carries_gvk_and_field_validation(gv):
    doc = schema.openapi_v3(gv)
    components = doc["components"]["schemas"]
    for ref in _refs(doc):
        assert ref.startswith("#/components/schemas/") and ref.split("/")[-1] in components
    group, version = schema._split_group_version(gv)
    for r in (r for r in RESOURCES if (r.group, r.version) == (group, version)):
        kind_schema = components[schema.definition_name(r)]
        assert {"group": group, "version": version, "kind": r.kind} in (
            kind_schema["x-kubernetes-group-version-kind"])
        if r.verbs == ("create",):
            continue
        # kubectl's QueryParamVerifierV3 looks for fieldValidation on the PATCH of the GVK.
        patches = [p["patch"] for p in doc["paths"].values()
                   if "patch" in p and p["patch"]["x-kubernetes-group-version-kind"]["kind"] == r.kind]
        assert any(q["name"] == "fieldValidation" for q in patches[0]["parameters"])


def test_openapi_v3_index_points_at_every_group_version():
    index = schema.openapi_v3_index()
    assert set(index["paths"]) >= {"api/v1", "apis/apps/v1", "apis/discovery.k8s.io/v1"}
    assert re.fullmatch(r"/openapi/v3/api/v1\?hash=[0-9A-F]{128}",
                        index["paths"]["api/v1"]["serverRelativeURL"])


def test_openapi_v2_refs_resolve():
    doc = schema.openapi_v2()
    assert doc["swagger"] == "2.0"
    for ref in _refs(doc):
        assert ref.split("/")[-1] in doc["definitions"]
    pod = doc["definitions"]["io.k8s.api.core.v1.Pod"]
    assert pod["x-kubernetes-group-version-kind"] == [{"group": "", "kind": "Pod", "version": "v1"}]
