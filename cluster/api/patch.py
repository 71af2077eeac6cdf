"""The three PATCH flavours of the Kubernetes API: JSON merge, JSON patch, strategic merge.

Strategic merge follows apimachinery's `strategicpatch`: lists tagged `patchStrategy: merge`
merge their items by the `patchMergeKey` (containers by name, ports by containerPort ...) or, for
lists of scalars, by value; untagged lists are replaced; the directives `$patch`
(replace/merge/delete), `$setElementOrder/<list>`, `$retainKeys` and
`$deleteFromPrimitiveList/<list>` are honoured, and a null deletes a field. The merge keys come
from `schema.py`, so they are the same ones kubectl reads from /openapi.
"""
from __future__ import annotations

import copy
import json

from cluster.api import schema
from cluster.api.errors import bad_request, unprocessable
from cluster.api.resources import Resource

PATCH = "$patch"
RETAIN_KEYS = "$retainKeys"
SET_ELEMENT_ORDER = "$setElementOrder/"
DELETE_FROM_PRIMITIVE_LIST = "$deleteFromPrimitiveList/"


# --- RFC 7386 -------------------------------------------------------------------------------

def merge_patch(original, patch):
    """JSON merge patch: objects merge recursively, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(original) if isinstance(original, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# --- RFC 6902 -------------------------------------------------------------------------------

def _pointer(path: str, index: int) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise bad_request(f"json patch operation {index}: path {path!r} must start with '/'")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _parent(doc, parts: list[str], index: int, op: str):
    target = doc
    for part in parts[:-1]:
        if isinstance(target, dict) and part in target:
            target = target[part]
        elif isinstance(target, list) and part.isdigit() and int(part) < len(target):
            target = target[int(part)]
        else:
            raise unprocessable(f"json patch operation {index} ({op}): doc is missing path"
                                f" \"/{'/'.join(parts)}\"")
    return target


def _list_index(container: list, token: str, index: int, op: str, for_add: bool) -> int:
    if for_add and token == "-":
        return len(container)
    if not token.isdigit() or (token != "0" and token.startswith("0")):
        raise unprocessable(f"json patch operation {index} ({op}): invalid array index {token!r}")
    position = int(token)
    limit = len(container) if for_add else len(container) - 1
    if position > limit:
        raise unprocessable(f"json patch operation {index} ({op}): array index {position} out of"
                            f" bounds (length {len(container)})")
    return position


def _get(doc, parts, index, op):
    if not parts:
        return doc
    parent = _parent(doc, parts, index, op)
    last = parts[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise unprocessable(f"json patch operation {index} ({op}): doc is missing path"
                                f" \"/{'/'.join(parts)}\"")
        return parent[last]
    if isinstance(parent, list):
        return parent[_list_index(parent, last, index, op, False)]
    raise unprocessable(f"json patch operation {index} ({op}): doc is missing path \"/{'/'.join(parts)}\"")


def _remove(doc, parts, index, op):
    if not parts:
        raise unprocessable(f"json patch operation {index} ({op}): cannot remove the whole document")
    value = _get(doc, parts, index, op)
    parent = _parent(doc, parts, index, op)
    if isinstance(parent, dict):
        del parent[parts[-1]]
    else:
        del parent[_list_index(parent, parts[-1], index, op, False)]
    return value


def _add(doc, parts, value, index, op):
    if not parts:
        return value
    parent = _parent(doc, parts, index, op)
    if isinstance(parent, dict):
        parent[parts[-1]] = value
    elif isinstance(parent, list):
        parent.insert(_list_index(parent, parts[-1], index, op, True), value)
    else:
        raise unprocessable(f"json patch operation {index} ({op}): doc is missing path"
                            f" \"/{'/'.join(parts)}\"")
    return doc


def json_patch(original, ops) -> dict:
    """Apply an RFC 6902 operation list; 400 for a malformed patch, 422 when an op cannot apply."""
    if not isinstance(ops, list):
        raise bad_request("json patch must be a list of operations")
    doc = copy.deepcopy(original)
    for index, operation in enumerate(ops):
        if not isinstance(operation, dict) or "op" not in operation or "path" not in operation:
            raise bad_request(f"json patch operation {index}: must be an object with 'op' and 'path'")
        op = operation["op"]
        parts = _pointer(operation["path"], index)
        if op in ("add", "replace", "test") and "value" not in operation:
            raise bad_request(f"json patch operation {index} ({op}): missing 'value'")
        if op == "add":
            doc = _add(doc, parts, copy.deepcopy(operation["value"]), index, op)
        elif op == "remove":
            _remove(doc, parts, index, op)
        elif op == "replace":
            _get(doc, parts, index, op)
            if parts:
                parent = _parent(doc, parts, index, op)
                if isinstance(parent, dict):
                    parent[parts[-1]] = copy.deepcopy(operation["value"])
                else:
                    parent[_list_index(parent, parts[-1], index, op, False)] = copy.deepcopy(
                        operation["value"])
            else:
                doc = copy.deepcopy(operation["value"])
        elif op in ("move", "copy"):
            if "from" not in operation:
                raise bad_request(f"json patch operation {index} ({op}): missing 'from'")
            source = _pointer(operation["from"], index)
            if op == "move":
                if parts[:len(source)] == source and len(parts) > len(source):
                    raise unprocessable(f"json patch operation {index} (move): cannot move a value"
                                        " into one of its children")
                value = _remove(doc, source, index, op)
            else:
                value = copy.deepcopy(_get(doc, source, index, op))
            doc = _add(doc, parts, value, index, op)
        elif op == "test":
            if _get(doc, parts, index, op) != operation["value"]:
                raise unprocessable(f"json patch operation {index} (test): testing value"
                                    f" {operation['path']} failed")
        else:
            raise bad_request(f"json patch operation {index}: unexpected kind of operation {op!r}")
    if not isinstance(doc, dict):
        raise unprocessable("json patch result must be a JSON object")
    return doc


# --- strategic merge patch ------------------------------------------------------------------

def strategic_merge_patch(original: dict, patch: dict, resource: Resource) -> dict:
    """Apply a strategic merge patch to `original` using the kind's patch tags."""
    if not isinstance(patch, dict):
        raise bad_request("strategic merge patch must be a JSON object")
    node = {"$ref": schema.definition_name(resource)}
    result = _merge_map(copy.deepcopy(original) if isinstance(original, dict) else {},
                        patch, node)
    return result if result is not None else {}


def _directive_error(message: str):
    return bad_request(f"strategic merge patch: {message}")


def _merge_map(original: dict, patch: dict, node) -> dict | None:
    """Merge `patch` into `original` (a copy the caller owns); None when the map is deleted."""
    directive = patch.get(PATCH)
    if directive == "delete":
        return None
    if directive == "replace":
        return _strip(patch, node)
    if directive not in (None, "merge"):
        raise _directive_error(f"unknown patch type {directive!r} in map")
    retain = patch.get(RETAIN_KEYS)
    if retain is not None:
        if not isinstance(retain, list):
            raise _directive_error("$retainKeys must be a list of field names")
        for key in list(original):
            if key not in retain:
                del original[key]
    for key, value in patch.items():
        if key.startswith(DELETE_FROM_PRIMITIVE_LIST):
            name = key[len(DELETE_FROM_PRIMITIVE_LIST):]
            if isinstance(original.get(name), list) and isinstance(value, list):
                original[name] = [v for v in original[name] if v not in value]
    for key, value in patch.items():
        if key in (PATCH, RETAIN_KEYS) or key.startswith(("$setElementOrder/",
                                                          DELETE_FROM_PRIMITIVE_LIST)):
            continue
        child = _child(node, key)
        if value is None:
            original.pop(key, None)
        elif isinstance(value, dict):
            if isinstance(original.get(key), dict):
                merged = _merge_map(original[key], value, child)
            else:
                merged = _merge_map({}, value, child)
            if merged is None:
                original.pop(key, None)
            else:
                original[key] = merged
        elif isinstance(value, list):
            order = patch.get(SET_ELEMENT_ORDER + key)
            original[key] = _merge_list(original.get(key), value, child, order)
        else:
            original[key] = value
    for key, order in patch.items():
        if key.startswith(SET_ELEMENT_ORDER) and key[len(SET_ELEMENT_ORDER):] not in patch:
            name = key[len(SET_ELEMENT_ORDER):]
            if isinstance(original.get(name), list):
                original[name] = _merge_list(original[name], [], _child(node, name), order)
    return original


def _child(node, key: str):
    """The schema of a field, or of a map's values when the node is a string-keyed map."""
    resolved = schema.resolve(node)
    if not resolved:
        return None
    if "properties" in resolved:
        return resolved["properties"].get(key)
    return resolved.get("additionalProperties")


def _strip(value, node=None):
    """A patch value with its directives removed, as it lands where nothing merges with it."""
    if isinstance(value, dict):
        if value.get(PATCH) == "delete":
            return None
        out = {}
        for k, v in value.items():
            if k in (PATCH, RETAIN_KEYS) or k.startswith((SET_ELEMENT_ORDER,
                                                          DELETE_FROM_PRIMITIVE_LIST)):
                continue
            if v is None:
                continue
            stripped = _strip(v, _child(node, k))
            if stripped is not None:
                out[k] = stripped
        return out
    if isinstance(value, list):
        items = schema.items(node) if node else None
        out = []
        for item in value:
            if isinstance(item, dict) and item.get(PATCH) in ("delete", "replace"):
                continue
            out.append(_strip(item, items))
        return out
    return value


def _merge_list(original, patch: list, node, order) -> list:
    strategies, merge_key = schema.patch_strategy(node)
    item_node = schema.items(node) if node else None
    if "merge" not in strategies:
        return _strip(patch, node)
    if not isinstance(original, list):
        original = []
    if any(isinstance(item, dict) and item.get(PATCH) == "replace" for item in patch):
        return _strip([i for i in patch if not (isinstance(i, dict) and PATCH in i)], node)
    if merge_key:
        merged = _merge_keyed(original, patch, merge_key, item_node)
    else:
        merged = list(original)
        for item in patch:
            if item not in merged:
                merged.append(item)
    if isinstance(order, list):
        merged = _apply_order(merged, order, merge_key)
    return merged


def _merge_keyed(original: list, patch: list, key: str, item_node) -> list:
    merged = [copy.deepcopy(i) for i in original]
    for item in patch:
        if not isinstance(item, dict):
            raise _directive_error(f"list items merged by {key!r} must be objects, got {item!r}")
        if key not in item:
            raise _directive_error(f"map: {json.dumps(item)} does not contain declared merge key:"
                                   f" {key}")
        position = next((i for i, o in enumerate(merged)
                         if isinstance(o, dict) and o.get(key) == item[key]), None)
        if item.get(PATCH) == "delete":
            if position is not None:
                del merged[position]
            continue
        if position is None:
            merged.append(_strip(item, item_node))
        else:
            result = _merge_map(merged[position], item, item_node)
            if result is None:
                del merged[position]
            else:
                merged[position] = result
    return merged


def _apply_order(items: list, order: list, merge_key: str) -> list:
    """Items in `$setElementOrder` order; items it does not name keep their place after them."""
    def identity(item):
        return item.get(merge_key) if merge_key and isinstance(item, dict) else item

    wanted = [identity(o) if merge_key else o for o in order]
    ranked = {json.dumps(w, sort_keys=True): i for i, w in enumerate(wanted)}
    named = [i for i in items if json.dumps(identity(i), sort_keys=True) in ranked]
    named.sort(key=lambda i: ranked[json.dumps(identity(i), sort_keys=True)])
    others = [i for i in items if json.dumps(identity(i), sort_keys=True) not in ranked]
    return named + others
