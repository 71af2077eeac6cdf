"""The registry of API resources the server serves: group, version, kind, names, scope.

Short names, categories and subresources are upstream's, so `kubectl get po`, `kubectl get all`
and discovery look as they do against a real cluster.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

STANDARD_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


class GroupResource(NamedTuple):
    group: str
    resource: str

    def __str__(self) -> str:
        return f"{self.resource}.{self.group}" if self.group else self.resource


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    kind: str
    plural: str
    singular: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    list_kind: str = ""
    verbs: tuple[str, ...] = STANDARD_VERBS

    def __post_init__(self):
        if not self.list_kind:
            object.__setattr__(self, "list_kind", self.kind + "List")

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_resource(self) -> GroupResource:
        return GroupResource(self.group, self.plural)

    @property
    def store_group(self) -> str:
        return self.group or "core"

    def prefix(self, namespace: str | None = None) -> str:
        """Store key prefix of every object of this resource, or of those in one namespace."""
        base = f"/registry/{self.store_group}/{self.plural}/"
        if namespace and self.namespaced:
            return f"{base}{namespace}/"
        return base

    def key(self, namespace: str | None, name: str) -> str:
        if self.namespaced:
            return f"/registry/{self.store_group}/{self.plural}/{namespace}/{name}"
        return f"/registry/{self.store_group}/{self.plural}/{name}"


def _r(group, version, kind, plural, namespaced, short=(), categories=(), sub=(), **kw) -> Resource:
    return Resource(group, version, kind, plural, kind.lower(), namespaced, tuple(short),
                    tuple(categories), tuple(sub), **kw)


ALL = ("all",)

RESOURCES: list[Resource] = [
    _r("", "v1", "Namespace", "namespaces", False, ["ns"], sub=["status", "finalize"]),
    _r("", "v1", "Node", "nodes", False, ["no"], sub=["status"]),
    _r("", "v1", "Pod", "pods", True, ["po"], ALL, ["status", "binding", "log", "eviction"]),
    _r("", "v1", "Binding", "bindings", True, verbs=("create",)),
    _r("", "v1", "Service", "services", True, ["svc"], ALL, ["status"]),
    _r("", "v1", "Endpoints", "endpoints", True, ["ep"], list_kind="EndpointsList"),
    _r("", "v1", "ConfigMap", "configmaps", True, ["cm"]),
    _r("", "v1", "Secret", "secrets", True),
    _r("", "v1", "ServiceAccount", "serviceaccounts", True, ["sa"]),
    _r("", "v1", "LimitRange", "limitranges", True, ["limits"]),
    _r("", "v1", "ResourceQuota", "resourcequotas", True, ["quota"], sub=["status"]),
    _r("", "v1", "Event", "events", True, ["ev"]),
    _r("apps", "v1", "Deployment", "deployments", True, ["deploy"], ALL, ["status", "scale"]),
    _r("apps", "v1", "ReplicaSet", "replicasets", True, ["rs"], ALL, ["status", "scale"]),
    _r("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", True),
    _r("networking.k8s.io", "v1", "Ingress", "ingresses", True, ["ing"], sub=["status"]),
    _r("networking.k8s.io", "v1", "IngressClass", "ingressclasses", False),
    _r("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", True, ["netpol"]),
    _r("rbac.authorization.k8s.io", "v1", "Role", "roles", True),
    _r("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", False),
    _r("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", True),
    _r("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", False),
    _r("coordination.k8s.io", "v1", "Lease", "leases", True),
]

_BY_PATH = {(r.group, r.version, r.plural): r for r in RESOURCES}
_BY_KIND = {(r.api_version, r.kind): r for r in RESOURCES}


def lookup(group: str, version: str, plural: str) -> Resource | None:
    """The resource served at /api(s)/GROUP/VERSION/.../PLURAL, or None."""
    return _BY_PATH.get((group, version, plural))


def by_kind(api_version: str, kind: str) -> Resource | None:
    return _BY_KIND.get((api_version, kind))


def by_name(name: str) -> Resource | None:
    """A resource by plural, singular, short name or `plural.group`, as kubectl resolves them."""
    name = name.lower()
    for r in RESOURCES:
        if name in (r.plural, r.singular, *r.short_names) or name == f"{r.plural}.{r.group}":
            return r
    return None


def groups() -> dict[str, list[str]]:
    """Served groups and their versions, in registration order ("" is the legacy core group)."""
    served: dict[str, list[str]] = {}
    for r in RESOURCES:
        versions = served.setdefault(r.group, [])
        if r.version not in versions:
            versions.append(r.version)
    return served


def in_group_version(group: str, version: str) -> list[Resource]:
    return [r for r in RESOURCES if r.group == group and r.version == version]
