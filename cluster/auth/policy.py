"""The default ClusterRoles and ClusterRoleBindings a new cluster starts with (upstream's bootstrap policy).

`admin`, `edit` and `view` are aggregated upstream from `system:aggregate-to-*`; here their rules
are flattened to the resources this API server serves, with upstream's verbs: `view` reads
everything but Secrets, `edit` writes workloads, Services, ConfigMaps and Secrets but not
Endpoints or EndpointSlices (CVE-2021-25740) nor quota and limits, and `admin` adds Roles and
RoleBindings. The aggregation labels are kept so user ClusterRoles can aggregate the same way.
"""
from __future__ import annotations

RBAC_GROUP = "rbac.authorization.k8s.io"
READ = ["get", "list", "watch"]
WRITE = ["create", "update", "patch", "delete", "deletecollection"]
READ_WRITE = READ + WRITE

_LABELS = {"kubernetes.io/bootstrapping": "rbac-defaults"}
_ANNOTATIONS = {"rbac.authorization.kubernetes.io/autoupdate": "true"}


def _rule(verbs, groups=None, resources=None, urls=None) -> dict:
    rule = {"verbs": list(verbs)}
    if groups is not None:
        rule["apiGroups"] = list(groups)
        rule["resources"] = list(resources)
    if urls is not None:
        rule["nonResourceURLs"] = list(urls)
    return rule


def _view_rules() -> list[dict]:
    return [
        _rule(READ, [""], ["pods", "services", "services/status", "endpoints", "configmaps",
                           "serviceaccounts"]),
        _rule(READ, [""], ["limitranges", "resourcequotas", "bindings", "events", "pods/status",
                           "resourcequotas/status", "namespaces/status", "pods/log"]),
        # reading namespaces at namespace scope means reading *this* namespace
        _rule(READ, [""], ["namespaces"]),
        _rule(READ, ["discovery.k8s.io"], ["endpointslices"]),
        _rule(READ, ["apps"], ["deployments", "deployments/status", "deployments/scale",
                               "replicasets", "replicasets/status", "replicasets/scale"]),
        _rule(READ, ["networking.k8s.io"], ["networkpolicies", "ingresses", "ingresses/status"]),
    ]


def _edit_rules() -> list[dict]:
    return _view_rules() + [
        _rule(READ, [""], ["pods/attach", "pods/proxy", "pods/exec", "pods/portforward", "secrets",
                           "services/proxy"]),
        _rule(["impersonate"], [""], ["serviceaccounts"]),
        _rule(WRITE, [""], ["pods", "pods/attach", "pods/proxy", "pods/exec", "pods/portforward"]),
        _rule(["create"], [""], ["pods/eviction"]),
        _rule(WRITE, [""], ["serviceaccounts", "services", "services/proxy", "configmaps", "secrets"]),
        _rule(["create"], [""], ["serviceaccounts/token"]),
        _rule(WRITE, ["apps"], ["deployments", "deployments/scale", "deployments/rollback",
                                "replicasets", "replicasets/scale"]),
        _rule(WRITE, ["networking.k8s.io"], ["networkpolicies", "ingresses"]),
    ]


def _admin_rules() -> list[dict]:
    return _edit_rules() + [
        _rule(["create"], ["authorization.k8s.io"], ["localsubjectaccessreviews"]),
        _rule(READ_WRITE, [RBAC_GROUP], ["roles", "rolebindings"]),
    ]


def _meta(name: str, labels: dict | None = None) -> dict:
    return {"name": name, "labels": {**_LABELS, **(labels or {})}, "annotations": dict(_ANNOTATIONS)}


def _cluster_role(name: str, rules: list[dict], labels: dict | None = None) -> dict:
    return {"apiVersion": f"{RBAC_GROUP}/v1", "kind": "ClusterRole", "metadata": _meta(name, labels),
            "rules": rules}


def _binding(role: str, groups: list[str]) -> dict:
    return {"apiVersion": f"{RBAC_GROUP}/v1", "kind": "ClusterRoleBinding", "metadata": _meta(role),
            "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": role},
            "subjects": [{"apiGroup": RBAC_GROUP, "kind": "Group", "name": g} for g in groups]}


def bootstrap_policy() -> list[dict]:
    """ClusterRoles then ClusterRoleBindings, as objects ready to store."""
    health = ["/livez", "/readyz", "/healthz", "/version", "/version/"]
    return [
        _cluster_role("cluster-admin", [_rule(["*"], ["*"], ["*"]), _rule(["*"], urls=["*"])]),
        _cluster_role("system:discovery", [_rule(["get"], urls=health + [
            "/openapi", "/openapi/*", "/api", "/api/*", "/apis", "/apis/*"])]),
        _cluster_role("system:basic-user", [_rule(["create"], ["authorization.k8s.io"], [
            "selfsubjectaccessreviews", "selfsubjectrulesreviews"])]),
        _cluster_role("system:public-info-viewer", [_rule(["get"], urls=health)]),
        _cluster_role("admin", _admin_rules()),
        _cluster_role("edit", _edit_rules(), {f"{RBAC_GROUP}/aggregate-to-admin": "true"}),
        _cluster_role("view", _view_rules(), {f"{RBAC_GROUP}/aggregate-to-edit": "true"}),
        _binding("cluster-admin", ["system:masters"]),
        _binding("system:discovery", ["system:authenticated"]),
        _binding("system:basic-user", ["system:authenticated"]),
        _binding("system:public-info-viewer", ["system:authenticated", "system:unauthenticated"]),
    ]
