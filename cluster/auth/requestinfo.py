"""What a request asks for, read from its method, path and query as kube-apiserver's
RequestInfoFactory reads them, and the RBAC attributes that follow from it.

GET on a collection is `list` (or `watch` with `?watch=true` or a deprecated `/watch/` path),
DELETE on a collection is `deletecollection`, `/namespaces/NAME` and its `status`/`finalize`
subresources are the Namespace NAME (with NAME as the namespace too, as upstream, so a
RoleBinding inside a namespace can grant access to the Namespace object itself), a list
narrowed by `fieldSelector=metadata.name=X` is authorized as a request for object X, and
anything outside `/api` and `/apis/<group>/<version>` is a non-resource request whose verb is
the lowercase method. The API server routes by the same RequestInfo it authorizes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping
from urllib.parse import unquote

from cluster.auth.rbac import Attributes
from cluster.auth.user import UserInfo

_METHOD_VERBS = {"POST": "create", "GET": "get", "HEAD": "get", "PUT": "update",
                 "PATCH": "patch", "DELETE": "delete"}
_NAMESPACE_SUBRESOURCES = {"status", "finalize"}
_TRUE = {"1", "t", "T", "true", "TRUE", "True"}


@dataclass
class RequestInfo:
    path: str
    verb: str                  # get list watch create update patch delete deletecollection proxy, or an HTTP verb
    resource_request: bool = False
    api_prefix: str = ""       # "api" or "apis"
    group: str = ""
    version: str = ""
    namespace: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""
    parts: tuple = ()          # path segments past the subresource (or the group, for /apis/G): not served


def parse(method: str, path: str, query: Mapping[str, str] | None = None) -> RequestInfo:
    query = query or {}
    info = RequestInfo(path=path, verb=method.lower())
    segs = [unquote(s) for s in path.strip("/").split("/") if s]
    if not segs or segs[0] not in ("api", "apis"):
        return info
    info.api_prefix, rest = segs[0], segs[1:]
    if info.api_prefix == "apis":
        if len(rest) < 2:
            info.parts = tuple(rest)
            return info
        info.group, info.version, rest = rest[0], rest[1], rest[2:]
    else:
        if not rest:
            return info
        info.version, rest = rest[0], rest[1:]
    if not rest:
        return info
    info.resource_request = True
    special = ""
    if rest[0] in ("watch", "proxy"):
        special, rest = rest[0], rest[1:]
        if not rest:
            info.resource_request = False
            return info
    if rest[0] == "namespaces" and len(rest) > 1:
        info.namespace = rest[1]
        if len(rest) > 2 and rest[2] not in _NAMESPACE_SUBRESOURCES:
            rest = rest[2:]
    info.resource = rest[0]
    info.name = rest[1] if len(rest) > 1 else ""
    if special != "proxy":
        info.subresource = rest[2] if len(rest) > 2 else ""
        info.parts = tuple(rest[3:])
    info.verb = special or _METHOD_VERBS.get(method.upper(), method.lower())
    if not info.name and info.verb == "get":
        info.verb = "watch" if query.get("watch", "") in _TRUE else "list"
    elif info.verb == "get" and query.get("watch", "") in _TRUE:
        info.verb = "watch"
    if not info.name and info.verb == "delete":
        info.verb = "deletecollection"
    return info


def _name_from_field_selector(selector: str) -> str:
    for term in selector.split(","):
        for op in ("==", "="):
            field, sep, value = term.partition(op)
            if sep and field.strip() == "metadata.name" and not value.startswith("="):
                value = value.strip()
                return value if value and value not in (".", "..") and "/" not in value else ""
    return ""


def attributes(user: UserInfo, info: RequestInfo, query: Mapping[str, str] | None = None) -> Attributes:
    """The RBAC attributes of a parsed request."""
    if not info.resource_request:
        return Attributes(user, info.verb, path=info.path, resource_request=False)
    name = info.name
    if not name and info.verb in ("list", "watch"):
        name = _name_from_field_selector((query or {}).get("fieldSelector", ""))
    return Attributes(user, info.verb, namespace=info.namespace, api_group=info.group,
                      resource=info.resource, subresource=info.subresource, name=name, path=info.path)


def attributes_for(user: UserInfo, method: str, path: str,
                   query: Mapping[str, str] | None = None) -> Attributes:
    return attributes(user, parse(method, path, query), query)
