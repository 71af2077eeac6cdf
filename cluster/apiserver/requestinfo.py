"""What a request asks for, read from its method, path and query as kube-apiserver's
RequestInfoFactory reads them: verb, API group and version, namespace, resource, subresource, name."""

from dataclasses import dataclass

# `namespaces/NAME/status` and `namespaces/NAME/finalize` are subresources of the Namespace,
# not a resource inside it.
_NAMESPACE_SUBRESOURCES = frozenset(("status", "finalize"))


@dataclass
class RequestInfo:
    path: str
    verb: str                  # get list watch create update patch delete deletecollection, or an HTTP verb
    resource_request: bool = False
    api_prefix: str = ""       # "api" or "apis"
    group: str = ""
    version: str = ""
    namespace: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""
    parts: tuple = ()          # path segments after the group version, for discovery requests


def _truthy(value):
    return value in ("true", "1", "True")


def parse(method, path, query):
    """RequestInfo for METHOD PATH?QUERY; non-resource requests carry the lower-case HTTP method."""
    info = RequestInfo(path=path, verb=method.lower())
    segs = [s for s in path.strip("/").split("/") if s]
    if not segs or segs[0] not in ("api", "apis"):
        return info
    info.api_prefix = segs[0]
    rest = segs[1:]
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
    # /watch/... paths are deprecated upstream but still served by it.
    watch_path = False
    if rest[0] == "watch":
        watch_path, rest = True, rest[1:]
        if not rest:
            info.resource_request = False
            return info
    if rest[0] == "namespaces" and len(rest) > 1:
        info.namespace = rest[1]
        if len(rest) > 2 and rest[2] not in _NAMESPACE_SUBRESOURCES:
            rest = rest[2:]
        else:
            info.resource, info.name = "namespaces", rest[1]
            info.subresource = rest[2] if len(rest) > 2 else ""
            info.namespace = ""
            rest = []
    if rest:
        info.resource = rest[0]
        info.name = rest[1] if len(rest) > 1 else ""
        info.subresource = rest[2] if len(rest) > 2 else ""
        if len(rest) > 3:
            info.parts = tuple(rest[3:])
    if method == "GET":
        if watch_path or _truthy(query.get("watch", "")):
            info.verb = "watch"
        else:
            info.verb = "get" if info.name else "list"
    elif method == "POST":
        info.verb = "create"
    elif method == "PUT":
        info.verb = "update"
    elif method == "PATCH":
        info.verb = "patch"
    elif method == "DELETE":
        info.verb = "delete" if info.name else "deletecollection"
    return info
