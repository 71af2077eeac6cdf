"""Field schemas of every served kind, and the OpenAPI v2/v3 documents built from them.

The field data (`schema_data.json`) holds the OpenAPI definitions of the kinds in `resources.py`
and every type they reach: field names, types, required fields, and upstream's patch tags
(`x-kubernetes-patch-merge-key`, `x-kubernetes-patch-strategy`). It was generated from the
models of the official `kubernetes` Python client (release 1.37; `tests/unit/test_api_schema.py`
checks the two agree), with the patch tags added from upstream's `k8s.io/api` struct tags.

Strict decoding (`unknown_fields`) and strategic merge patch (`patch.py`) walk these
definitions; `/openapi/v3` and `/openapi/v2` serve them so kubectl finds the kinds, their merge
keys and the `fieldValidation` parameter it needs to hand validation to the server.
"""
from __future__ import annotations

import copy
import hashlib
import json
from functools import lru_cache
from pathlib import Path

from cluster.api.resources import RESOURCES, Resource, in_group_version

PACKAGES = {
    "": "io.k8s.api.core.v1",
    "apps": "io.k8s.api.apps.v1",
    "discovery.k8s.io": "io.k8s.api.discovery.v1",
    "networking.k8s.io": "io.k8s.api.networking.v1",
    "rbac.authorization.k8s.io": "io.k8s.api.rbac.v1",
    "coordination.k8s.io": "io.k8s.api.coordination.v1",
    "autoscaling": "io.k8s.api.autoscaling.v1",
}
META = "io.k8s.apimachinery.pkg.apis.meta.v1"
INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
SCALE = "io.k8s.api.autoscaling.v1.Scale"
KUBERNETES_VERSION = "v1.37.0"


@lru_cache(maxsize=1)
def definitions() -> dict[str, dict]:
    with open(Path(__file__).with_name("schema_data.json"), encoding="utf-8") as f:
        return json.load(f)


def definition_name(resource: Resource) -> str:
    return f"{PACKAGES[resource.group]}.{resource.kind}"


def kind_schema(resource: Resource) -> dict:
    return definitions()[definition_name(resource)]


def resolve(node: dict | None) -> dict | None:
    """A schema node with its `$ref` followed (refs name definitions directly)."""
    while node is not None and "$ref" in node:
        node = definitions()[node["$ref"]]
    return node


def field(node: dict | None, name: str) -> dict | None:
    """The schema of field `name` of an object node, or None when the field is unknown."""
    node = resolve(node)
    if node is None:
        return None
    return node.get("properties", {}).get(name)


def items(node: dict | None) -> dict | None:
    node = resolve(node)
    return node.get("items") if node else None


def patch_strategy(node: dict | None) -> tuple[set[str], str]:
    """(strategies, merge key) of a field schema, as upstream's `patchStrategy`/`patchMergeKey`."""
    if not node:
        return set(), ""
    strategies = node.get("x-kubernetes-patch-strategy", "")
    return set(filter(None, strategies.split(","))), node.get("x-kubernetes-patch-merge-key", "")


def is_free_form(node: dict | None) -> bool:
    """A field that holds arbitrary JSON (RawExtension-like): nothing below it is checked."""
    node = resolve(node)
    return bool(node and node.get("x-kubernetes-preserve-unknown-fields"))


def unknown_fields(resource: Resource, obj: dict) -> list[str]:
    """Paths of fields the kind does not define, as strict decoding names them (`spec.foo`)."""
    found: list[str] = []
    _walk_unknown({"$ref": definition_name(resource)}, obj, "", found)
    return found


def _walk_unknown(node, value, path: str, found: list[str]) -> None:
    node = resolve(node)
    if node is None or is_free_form(node):
        return
    if isinstance(value, dict) and "properties" in node:
        props = node["properties"]
        for key, child in value.items():
            child_path = f"{path}.{key}" if path else key
            if key not in props:
                found.append(child_path)
            else:
                _walk_unknown(props[key], child, child_path, found)
    elif isinstance(value, dict) and "additionalProperties" in node:
        for key, child in value.items():
            _walk_unknown(node["additionalProperties"], child, f"{path}[{key}]", found)
    elif isinstance(value, list) and "items" in node:
        for i, child in enumerate(value):
            _walk_unknown(node["items"], child, f"{path}[{i}]", found)


_JSON_TYPES = {"string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,),
               "object": (dict,), "array": (list,)}
_TYPE_WORDS = {"string": "string", "integer": "integer", "number": "number", "boolean": "boolean",
               "object": "object", "array": "list"}


def type_errors(resource: Resource, obj: dict) -> list[tuple[str, object, str]]:
    """(path, value, expected type) for every value whose JSON type the schema does not allow.

    Null is allowed where a field is optional (Go decodes it as the zero value), but not as an
    item of a list of objects, which the validators below would have to guess at.
    """
    found: list[tuple[str, object, str]] = []
    _walk_types({"$ref": definition_name(resource)}, obj, "", found)
    return found


def _expected(node: dict) -> str:
    if node.get("format") == "int-or-string" or node.get("x-kubernetes-int-or-string"):
        return "int-or-string"
    if node.get("type") == "string" and node is definitions().get(QUANTITY):
        return "quantity"
    if "properties" in node or "additionalProperties" in node:
        return "object"
    return node.get("type", "")


def _walk_types(node, value, path: str, found: list) -> None:
    node = resolve(node)
    if node is None or is_free_form(node) or value is None:
        return
    expected = _expected(node)
    if expected == "int-or-string":
        ok = isinstance(value, (int, str)) and not isinstance(value, bool)
        words = "integer or string"
    elif expected == "quantity":
        ok = isinstance(value, (int, float, str)) and not isinstance(value, bool)
        words = "quantity"
    elif expected in _JSON_TYPES:
        ok = isinstance(value, _JSON_TYPES[expected])
        if expected in ("integer", "number") and isinstance(value, bool):
            ok = False
        words = _TYPE_WORDS[expected]
    else:
        return
    if not ok:
        found.append((path or ".", value, words))
        return
    if isinstance(value, dict):
        props = node.get("properties")
        if props is not None:
            for key, child in value.items():
                if key in props:
                    _walk_types(props[key], child, f"{path}.{key}" if path else key, found)
        elif "additionalProperties" in node:
            for key, child in value.items():
                _walk_types(node["additionalProperties"], child, f"{path}[{key}]", found)
    elif isinstance(value, list) and "items" in node:
        item_node = resolve(node["items"])
        for i, child in enumerate(value):
            if child is None and item_node is not None and "properties" in item_node:
                found.append((f"{path}[{i}]", None, "object"))
            else:
                _walk_types(node["items"], child, f"{path}[{i}]", found)


# --- OpenAPI documents -----------------------------------------------------------------------

def _gvk(resource: Resource) -> dict:
    return {"group": resource.group, "kind": resource.kind, "version": resource.version}


def _gvks() -> dict[str, list[dict]]:
    """x-kubernetes-group-version-kind of every top-level definition."""
    gvks = {definition_name(r): [_gvk(r)] for r in RESOURCES}
    gvks[SCALE] = [{"group": "autoscaling", "kind": "Scale", "version": "v1"}]
    for kind in ("Status", "DeleteOptions"):
        gvks[f"{META}.{kind}"] = [{"group": g, "kind": kind, "version": "v1"} for g in PACKAGES
                                  if g != "autoscaling"]
    return gvks


def _referenced(roots: list[str]) -> list[str]:
    """Every definition reachable from `roots`, roots first."""
    seen: dict[str, None] = {}
    stack = list(reversed(roots))
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen[name] = None
        stack.extend(sorted(_refs(definitions()[name]) - seen.keys(), reverse=True))
    return list(seen)


def _refs(node) -> set[str]:
    if isinstance(node, dict):
        refs = {node["$ref"]} if "$ref" in node else set()
        for v in node.values():
            refs |= _refs(v)
        return refs
    if isinstance(node, list):
        return set().union(*map(_refs, node)) if node else set()
    return set()


def _convert(node, ref_prefix: str, v3: bool):
    """A definition as OpenAPI v2 or v3 writes it: prefixed refs, v3 refs wrapped in allOf."""
    if isinstance(node, list):
        return [_convert(n, ref_prefix, v3) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _convert(v, ref_prefix, v3) for k, v in node.items() if k != "$ref"}
    if "$ref" in node:
        ref = {"$ref": ref_prefix + node["$ref"]}
        if v3 and out:
            # OpenAPI 3.0 ignores siblings of $ref; upstream wraps the ref in allOf.
            out["allOf"] = [ref]
        else:
            out.update(ref)
    return out


def _special(name: str, v3: bool) -> dict | None:
    if name in (INT_OR_STRING, QUANTITY) and v3:
        return {"description": definitions()[name]["description"],
                "x-kubernetes-int-or-string": True,
                "anyOf": [{"type": "integer"}, {"type": "string"}]}
    return None


def _components(roots: list[str], ref_prefix: str, v3: bool) -> dict[str, dict]:
    gvks = _gvks()
    out = {}
    for name in _referenced(roots):
        schema = _special(name, v3) or _convert(definitions()[name], ref_prefix, v3)
        if name in gvks:
            schema["x-kubernetes-group-version-kind"] = gvks[name]
        out[name] = schema
    return out


def _query(name: str, description: str, type_: str = "string", v3: bool = True) -> dict:
    if v3:
        return {"name": name, "in": "query", "description": description,
                "schema": {"type": type_, "uniqueItems": True}}
    return {"name": name, "in": "query", "description": description, "type": type_,
            "uniqueItems": True}


def _path_param(name: str, v3: bool) -> dict:
    if v3:
        return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
    return {"name": name, "in": "path", "required": True, "type": "string"}


_WRITE_PARAMS = (
    ("dryRun", "When present, indicates that modifications should not be persisted."),
    ("fieldManager", "fieldManager is a name associated with the actor or entity making these changes."),
    ("fieldValidation", "fieldValidation instructs the server on how to handle objects in the request"
                        " containing unknown or duplicate fields: Ignore, Warn or Strict."),
)
_PATCH_TYPES = ("application/json-patch+json", "application/merge-patch+json",
                "application/strategic-merge-patch+json")


def _operation(op_id: str, resource: Resource, action: str, ref: str, v3: bool,
               writes: bool, body_types=("application/json",)) -> dict:
    op = {
        "description": f"{action} {resource.kind}",
        "operationId": op_id,
        "tags": [resource.api_version.replace("/", "_").replace(".", "")],
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": _gvk(resource),
        "parameters": [_query(n, d, v3=v3) for n, d in _WRITE_PARAMS] if writes else [],
    }
    if v3:
        op["responses"] = {"200": {"description": "OK", "content": {
            "application/json": {"schema": {"$ref": ref}}}}}
        if writes:
            op["requestBody"] = {"required": True, "content": {
                t: {"schema": {"$ref": ref} if t == "application/json" else {"type": "object"}}
                for t in body_types}}
    else:
        op["responses"] = {"200": {"description": "OK", "schema": {"$ref": ref}}}
        op["consumes"] = list(body_types)
        op["produces"] = ["application/json"]
        if writes:
            op["parameters"].insert(0, {"name": "body", "in": "body", "required": True,
                                        "schema": {"$ref": ref}})
    return op


def _paths(resource: Resource, ref_prefix: str, v3: bool) -> dict:
    base = "/api/v1" if not resource.group else f"/apis/{resource.api_version}"
    ns = "/namespaces/{namespace}" if resource.namespaced else ""
    ref = ref_prefix + definition_name(resource)
    name_id = resource.kind + ("Namespaced" if resource.namespaced else "")
    params = [_path_param("namespace", v3)] if resource.namespaced else []
    if resource.verbs == ("create",):
        return {f"{base}{ns}/{resource.plural}": {
            "parameters": params,
            "post": _operation(f"create{name_id}", resource, "post", ref, v3, True)}}
    collection = {
        "parameters": params,
        "get": _operation(f"list{name_id}", resource, "list", ref, v3, False),
        "post": _operation(f"create{name_id}", resource, "post", ref, v3, True),
    }
    item = {
        "parameters": params + [_path_param("name", v3)],
        "get": _operation(f"read{name_id}", resource, "get", ref, v3, False),
        "put": _operation(f"replace{name_id}", resource, "put", ref, v3, True),
        "patch": _operation(f"patch{name_id}", resource, "patch", ref, v3, True, _PATCH_TYPES),
        "delete": _operation(f"delete{name_id}", resource, "delete", ref, v3, False),
    }
    paths = {f"{base}{ns}/{resource.plural}": collection,
             f"{base}{ns}/{resource.plural}/{{name}}": item}
    for sub in resource.subresources:
        if sub not in ("status", "scale"):
            continue
        sub_ref = ref_prefix + SCALE if sub == "scale" else ref
        suffix = sub.capitalize()
        paths[f"{base}{ns}/{resource.plural}/{{name}}/{sub}"] = {
            "parameters": params + [_path_param("name", v3)],
            "get": _operation(f"read{name_id}{suffix}", resource, "get", sub_ref, v3, False),
            "put": _operation(f"replace{name_id}{suffix}", resource, "put", sub_ref, v3, True),
            "patch": _operation(f"patch{name_id}{suffix}", resource, "patch", sub_ref, v3, True,
                                _PATCH_TYPES),
        }
    return paths


def _split_group_version(group_version: str) -> tuple[str, str]:
    """("", "v1") from "api/v1" or "v1"; ("apps", "v1") from "apis/apps/v1" or "apps/v1"."""
    parts = group_version.strip("/").split("/")
    if parts[0] == "api":
        parts = parts[1:]
    elif parts[0] == "apis":
        parts = parts[1:]
    if len(parts) == 1:
        return "", parts[0]
    return parts[0], parts[1]


@lru_cache(maxsize=None)
def _openapi_v3(group: str, version: str) -> dict:
    served = in_group_version(group, version)
    if not served:
        raise KeyError(f"{group}/{version}")
    prefix = "#/components/schemas/"
    paths: dict[str, dict] = {}
    for r in served:
        paths.update(_paths(r, prefix, v3=True))
    roots = [definition_name(r) for r in served] + [f"{META}.Status", f"{META}.DeleteOptions"]
    if any("scale" in r.subresources for r in served):
        roots.append(SCALE)
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": KUBERNETES_VERSION},
        "paths": paths,
        "components": {"schemas": _components(roots, prefix, v3=True)},
    }


def openapi_v3(resource_group_version: str) -> dict:
    """The /openapi/v3/<api/v1 | apis/G/V> document (a fresh copy: callers may mutate it)."""
    return copy.deepcopy(_openapi_v3(*_split_group_version(resource_group_version)))


def openapi_v3_path(group: str, version: str) -> str:
    return f"api/{version}" if not group else f"apis/{group}/{version}"


@lru_cache(maxsize=None)
def openapi_v3_bytes(resource_group_version: str) -> bytes:
    return json.dumps(_openapi_v3(*_split_group_version(resource_group_version)),
                      separators=(",", ":")).encode()


def openapi_v3_index() -> dict:
    """The /openapi/v3 discovery document; the hash lets clients cache each group-version."""
    paths = {}
    for group, version in sorted({(r.group, r.version) for r in RESOURCES}):
        path = openapi_v3_path(group, version)
        digest = hashlib.sha512(openapi_v3_bytes(path)).hexdigest().upper()
        paths[path] = {"serverRelativeURL": f"/openapi/v3/{path}?hash={digest}"}
    return {"paths": paths}


@lru_cache(maxsize=1)
def _openapi_v2() -> dict:
    prefix = "#/definitions/"
    paths: dict[str, dict] = {}
    for r in RESOURCES:
        paths.update(_paths(r, prefix, v3=False))
    roots = [definition_name(r) for r in RESOURCES] + [SCALE, f"{META}.Status",
                                                       f"{META}.DeleteOptions"]
    return {
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": KUBERNETES_VERSION},
        "paths": paths,
        "definitions": _components(roots, prefix, v3=False),
    }


def openapi_v2() -> dict:
    return copy.deepcopy(_openapi_v2())
