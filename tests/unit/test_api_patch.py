"""PATCH: JSON merge (RFC 7386), JSON patch (RFC 6902) and strategic merge as upstream documents it."""
import pytest

from cluster.api.errors import APIError
from cluster.api.patch import json_patch, merge_patch, strategic_merge_patch
from cluster.api.resources import by_kind

POD = by_kind("v1", "Pod")
DEPLOY = by_kind("apps/v1", "Deployment")
SVC = by_kind("v1", "Service")


def test_merge_patch_rfc7386_examples():
    original = {"a": "b", "c": {"d": "e", "f": "g"}}
    assert merge_patch(original, {"a": "z", "c": {"f": None}}) == {"a": "z", "c": {"d": "e"}}
    assert merge_patch({"a": ["b"]}, {"a": ["c"]}) == {"a": ["c"]}
    assert merge_patch({"a": "foo"}, {"b": {"c": None}}) == {"a": "foo", "b": {}}


def test_json_patch_ops_and_errors():
    doc = {"metadata": {"labels": {"a": "1"}}, "spec": {"items": [1, 2]}}
    out = json_patch(doc, [
        {"op": "add", "path": "/metadata/labels/b~1c", "value": "2"},
        {"op": "replace", "path": "/metadata/labels/a", "value": "9"},
        {"op": "add", "path": "/spec/items/-", "value": 3},
        {"op": "remove", "path": "/spec/items/0"},
        {"op": "copy", "from": "/metadata/labels/a", "path": "/spec/copied"},
        {"op": "move", "from": "/spec/copied", "path": "/spec/moved"},
        {"op": "test", "path": "/spec/moved", "value": "9"}])
    assert out == {"metadata": {"labels": {"a": "9", "b/c": "2"}}, "spec": {"items": [2, 3], "moved": "9"}}
    assert doc["spec"]["items"] == [1, 2]
    with pytest.raises(APIError) as e:
        json_patch(doc, [{"op": "test", "path": "/spec/items/0", "value": 5}])
    assert e.value.code == 422 and "operation 0" in e.value.message
    with pytest.raises(APIError) as e:
        json_patch(doc, [{"op": "add", "path": "/metadata/labels/x", "value": "1"},
                         {"op": "remove", "path": "/nope/x"}])
    assert e.value.code == 422 and "operation 1" in e.value.message
    with pytest.raises(APIError) as e:
        json_patch(doc, [{"op": "frobnicate", "path": "/a"}])
    assert e.value.code == 400


def _pod(containers, **spec):
    return {"metadata": {"name": "p"}, "spec": {"containers": containers, **spec}}


def test_containers_merge_by_name_and_ports_by_container_port():
    original = _pod([{"name": "a", "image": "a:1", "ports": [{"containerPort": 80}]},
                     {"name": "b", "image": "b:1"}])
    patched = strategic_merge_patch(original, {"spec": {"containers": [
        {"name": "a", "image": "a:2", "ports": [{"containerPort": 443}]},
        {"name": "c", "image": "c:1"}]}}, POD)
    assert patched["spec"]["containers"] == [
        {"name": "a", "image": "a:2", "ports": [{"containerPort": 80}, {"containerPort": 443}]},
        {"name": "b", "image": "b:1"}, {"name": "c", "image": "c:1"}]
    assert original["spec"]["containers"][0]["image"] == "a:1"


def test_patch_delete_directive_removes_a_list_item_and_a_map():
    original = _pod([{"name": "a", "image": "a"}, {"name": "b", "image": "b"}],
                    affinity={"nodeAffinity": {"x": 1}})
    patched = strategic_merge_patch(original, {"spec": {
        "containers": [{"name": "b", "$patch": "delete"}],
        "affinity": {"$patch": "delete"}}}, POD)
    assert patched["spec"] == {"containers": [{"name": "a", "image": "a"}]}


def test_patch_replace_directive_in_a_list_and_a_map():
    original = _pod([{"name": "a", "image": "a"}], nodeSelector={"x": "1", "y": "2"})
    patched = strategic_merge_patch(original, {"spec": {
        "containers": [{"name": "z", "image": "z"}, {"$patch": "replace"}],
        "nodeSelector": {"$patch": "replace", "only": "this"}}}, POD)
    assert patched["spec"]["containers"] == [{"name": "z", "image": "z"}]
    assert patched["spec"]["nodeSelector"] == {"only": "this"}


def test_untagged_lists_are_replaced_and_null_deletes():
    original = _pod([{"name": "a", "image": "a", "args": ["x", "y"]}],
                    tolerations=[{"key": "k1"}], hostname="h")
    patched = strategic_merge_patch(original, {"spec": {
        "containers": [{"name": "a", "args": ["z"]}], "tolerations": [{"key": "k2"}],
        "hostname": None}}, POD)
    assert patched["spec"]["containers"][0]["args"] == ["z"]
    assert patched["spec"]["tolerations"] == [{"key": "k2"}]
    assert "hostname" not in patched["spec"]


def test_set_element_order_reorders_the_merged_list():
    original = _pod([{"name": "a", "image": "a"}, {"name": "b", "image": "b"}])
    patched = strategic_merge_patch(original, {"spec": {
        "$setElementOrder/containers": [{"name": "c"}, {"name": "b"}, {"name": "a"}],
        "containers": [{"name": "c", "image": "c"}]}}, POD)
    assert [c["name"] for c in patched["spec"]["containers"]] == ["c", "b", "a"]


def test_primitive_merge_list_and_delete_from_primitive_list():
    original = {"metadata": {"name": "p", "finalizers": ["a", "b"]}}
    patched = strategic_merge_patch(original, {"metadata": {
        "finalizers": ["c"], "$deleteFromPrimitiveList/finalizers": ["a"]}}, POD)
    assert patched["metadata"]["finalizers"] == ["b", "c"]


def test_retain_keys_clears_the_other_strategy_fields():
    original = {"spec": {"strategy": {"type": "RollingUpdate",
                                      "rollingUpdate": {"maxSurge": "25%"}}}}
    patched = strategic_merge_patch(original, {"spec": {"strategy": {
        "$retainKeys": ["type"], "type": "Recreate"}}}, DEPLOY)
    assert patched["spec"]["strategy"] == {"type": "Recreate"}


def test_service_ports_merge_by_port_and_labels_merge():
    original = {"metadata": {"labels": {"a": "1"}},
                "spec": {"ports": [{"port": 80, "targetPort": 8080}]}}
    patched = strategic_merge_patch(original, {"metadata": {"labels": {"b": "2"}},
                                               "spec": {"ports": [{"port": 80, "name": "http"},
                                                                  {"port": 443}]}}, SVC)
    assert patched["metadata"]["labels"] == {"a": "1", "b": "2"}
    assert patched["spec"]["ports"] == [{"port": 80, "targetPort": 8080, "name": "http"},
                                        {"port": 443}]


def test_missing_merge_key_is_a_bad_request():
    with pytest.raises(APIError) as e:
        strategic_merge_patch(_pod([]), {"spec": {"containers": [{"image": "x"}]}}, POD)
    assert e.value.code == 400 and "does not contain declared merge key: name" in e.value.message
