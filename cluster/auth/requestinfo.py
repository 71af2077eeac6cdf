"""RBAC attributes of an HTTP request: verb, API group, resource, subresource, namespace, name.

The mapping is upstream's RequestInfoFactory: GET on a collection is `list` (or `watch` with
`?watch=true` or a `/watch/` path), DELETE on a collection is `deletecollection`, a list narrowed
by `fieldSelector=metadata.name=X` is authorized as a request for object X, and anything outside
`/api` and `/apis/<group>/<version>` is a non-resource request whose verb is the lowercase method.
"""
from __future__ import annotations

from typing import Mapping
from urllib.parse import unquote

from cluster.auth.rbac import Attributes
from cluster.auth.user import UserInfo

_METHOD_VERBS = {"POST": "create", "GET": "get", "HEAD": "get", "PUT": "update",
                 "PATCH": "patch", "DELETE": "delete"}
_SPECIAL_VERBS = {"proxy", "watch"}
_NAMESPACE_SUBRESOURCES = {"status", "finalize"}
_TRUE = {"1", "t", "T", "true", "TRUE", "True"}


def _name_from_field_selector(selector: str) -> str:
    for term in selector.split(","):
        for op in ("==", "="):
            field, sep, value = term.partition(op)
            if sep and field.strip() == "metadata.name" and not value.startswith("="):
                value = value.strip()
                return value if value and value not in (".", "..") and "/" not in value else ""
    return ""


def attributes_for(user: UserInfo, method: str, path: str,
                   query: Mapping[str, str] | None = None) -> Attributes:
    query = query or {}
    parts = [unquote(p) for p in path.strip("/").split("/") if p]
    non_resource = Attributes(user, method.lower(), path=path, resource_request=False)
    if len(parts) < 3 or parts[0] not in ("api", "apis"):
        return non_resource
    group = ""
    rest = parts[1:]
    if parts[0] == "apis":
        if len(rest) < 3:
            return non_resource
        group, rest = rest[0], rest[1:]
    rest = rest[1:]  # the version
    if rest[0] in _SPECIAL_VERBS and len(rest) >= 2:
        verb, rest = rest[0], rest[1:]
    else:
        verb = _METHOD_VERBS.get(method.upper(), "")
    namespace = ""
    if rest[0] == "namespaces" and len(rest) > 1:
        namespace = rest[1]
        if len(rest) > 2 and rest[2] not in _NAMESPACE_SUBRESOURCES:
            rest = rest[2:]
    resource = rest[0]
    name = rest[1] if len(rest) >= 2 else ""
    subresource = rest[2] if len(rest) >= 3 and verb != "proxy" else ""
    if not name and verb == "get":
        verb = "watch" if query.get("watch", "") in _TRUE else "list"
        name = _name_from_field_selector(query.get("fieldSelector", ""))
    if not name and verb == "delete":
        verb = "deletecollection"
    return Attributes(user, verb, namespace=namespace, api_group=group, resource=resource,
                      subresource=subresource, name=name, path=path)
