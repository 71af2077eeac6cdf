"""RBAC authorization with upstream's semantics, over Roles and bindings the server keeps cached.

A request is allowed when any rule reachable from the user is a match: ClusterRoleBindings grant
their ClusterRole everywhere; RoleBindings grant a Role or a ClusterRole inside their own
namespace. Rules match on verbs, API groups, resources (`*`, `pods/log`, `*/scale`),
resourceNames and nonResourceURLs (`/apis/*`). Members of `system:masters` are always allowed,
as kube-apiserver's privileged-group authorizer does. A ClusterRole with an `aggregationRule`
gets the rules of the ClusterRoles its selectors pick, as the aggregation controller would
write them. Denials carry upstream's reason text; `forbidden` words the 403 as kube-apiserver does.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from cluster.api import errors
from cluster.auth.policy import bootstrap_policy  # noqa: F401 - part of this module's contract
from cluster.auth.user import SYSTEM_MASTERS, UserInfo, service_account_username


@dataclass(frozen=True)
class Attributes:
    """What a request wants to do, in RBAC's terms (upstream's authorizer.Attributes)."""

    user: UserInfo
    verb: str
    namespace: str = ""
    api_group: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""
    path: str = ""
    resource_request: bool = True


class RBACLister(Protocol):
    """Synchronous reads of RBAC objects by kind ("Role", "ClusterRole", "RoleBinding",
    "ClusterRoleBinding"); namespace None for the cluster-scoped kinds."""

    def list(self, kind: str, namespace: str | None) -> list[dict]: ...


def _verb_matches(rule: dict, verb: str) -> bool:
    return any(v in ("*", verb) for v in rule.get("verbs") or ())


def _group_matches(rule: dict, group: str) -> bool:
    return any(g in ("*", group) for g in rule.get("apiGroups") or ())


def _resource_matches(rule: dict, combined: str, subresource: str) -> bool:
    for r in rule.get("resources") or ():
        if r in ("*", combined):
            return True
        if subresource and r == "*/" + subresource:
            return True
    return False


def _name_matches(rule: dict, name: str) -> bool:
    names = rule.get("resourceNames") or ()
    return not names or name in names


def _url_matches(rule: dict, path: str) -> bool:
    for url in rule.get("nonResourceURLs") or ():
        if url in ("*", path):
            return True
        if url.endswith("*") and path.startswith(url.rstrip("*")):
            return True
    return False


def rule_allows(attrs: Attributes, rule: dict) -> bool:
    if not attrs.resource_request:
        return _verb_matches(rule, attrs.verb) and _url_matches(rule, attrs.path)
    combined = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
    return (_verb_matches(rule, attrs.verb) and _group_matches(rule, attrs.api_group)
            and _resource_matches(rule, combined, attrs.subresource)
            and _name_matches(rule, attrs.name))


def _applies(user: UserInfo, subject: dict, namespace: str) -> bool:
    kind = subject.get("kind")
    if kind == "User":
        return user.name == subject.get("name")
    if kind == "Group":
        return subject.get("name") in user.groups
    if kind == "ServiceAccount":
        sa_namespace = subject.get("namespace") or namespace
        return bool(sa_namespace) and user.name == service_account_username(
            sa_namespace, subject.get("name", ""))
    return False


def _selector_matches(selector: dict, labels: dict) -> bool:
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or ():
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or ()
        present = key in labels
        if op == "In" and not (present and labels[key] in values):
            return False
        if op == "NotIn" and present and labels[key] in values:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
    return True


class RBACAuthorizer:
    def __init__(self, lister: RBACLister):
        self.lister = lister

    def _named(self, kind: str, namespace: str | None, name: str) -> dict | None:
        for obj in self.lister.list(kind, namespace):
            if obj.get("metadata", {}).get("name") == name:
                return obj
        return None

    def _cluster_role_rules(self, role: dict) -> list[dict]:
        aggregation = role.get("aggregationRule")
        if not aggregation:
            return role.get("rules") or []
        rules: list[dict] = []
        own = role.get("metadata", {}).get("name")
        for other in self.lister.list("ClusterRole", None):
            labels = other.get("metadata", {}).get("labels") or {}
            if other.get("metadata", {}).get("name") == own:
                continue
            if any(_selector_matches(s, labels) for s in aggregation.get("clusterRoleSelectors") or ()):
                rules.extend(r for r in other.get("rules") or [] if r not in rules)
        return rules

    def _role_ref_rules(self, ref: dict, namespace: str) -> tuple[list[dict], str]:
        kind, name = ref.get("kind"), ref.get("name", "")
        if kind == "Role":
            role = self._named("Role", namespace, name)
            if role is None:
                return [], f'role.rbac.authorization.k8s.io "{name}" not found'
            return role.get("rules") or [], ""
        if kind == "ClusterRole":
            role = self._named("ClusterRole", None, name)
            if role is None:
                return [], f'clusterrole.rbac.authorization.k8s.io "{name}" not found'
            return self._cluster_role_rules(role), ""
        return [], f'unsupported role reference kind: "{kind}"'

    def _bindings(self, namespace: str):
        """(binding kind, binding, namespace the binding grants in), cluster-wide first."""
        for binding in self.lister.list("ClusterRoleBinding", None):
            yield "ClusterRoleBinding", binding, ""
        if namespace:
            for binding in self.lister.list("RoleBinding", namespace):
                yield "RoleBinding", binding, namespace

    def authorize(self, attrs: Attributes) -> tuple[bool, str]:
        """(allowed, reason): the binding that allowed it, or why resolution failed, or ""."""
        if SYSTEM_MASTERS in attrs.user.groups:
            return True, ""
        resolution_errors: list[str] = []
        for kind, binding, namespace in self._bindings(attrs.namespace):
            subject = next((s for s in binding.get("subjects") or ()
                            if _applies(attrs.user, s, namespace)), None)
            if subject is None:
                continue
            ref = binding.get("roleRef") or {}
            rules, error = self._role_ref_rules(ref, namespace)
            if error:
                resolution_errors.append(error)
                continue
            if any(rule_allows(attrs, rule) for rule in rules):
                return True, "RBAC: allowed by " + _describe(kind, binding, ref, subject, namespace)
        if not resolution_errors:
            return False, ""
        if len(resolution_errors) == 1:
            return False, "RBAC: " + resolution_errors[0]
        return False, "RBAC: [" + ", ".join(resolution_errors) + "]"


def _describe(kind: str, binding: dict, ref: dict, subject: dict, namespace: str) -> str:
    name = binding.get("metadata", {}).get("name", "")
    if kind == "RoleBinding":
        name = f"{name}/{namespace}"
    who = subject.get("name", "")
    if subject.get("kind") == "ServiceAccount":
        who = f"{who}/{subject.get('namespace') or namespace}"
    return f'{kind} "{name}" of {ref.get("kind")} "{ref.get("name")}" to {subject.get("kind")} "{who}"'


def forbidden_message(attrs: Attributes) -> str:
    """kube-apiserver's wording of what the user may not do."""
    user = f'User "{attrs.user.name}"'
    if not attrs.resource_request:
        return f'{user} cannot {attrs.verb} path "{attrs.path}"'
    resource = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
    scope = (f'in the namespace "{attrs.namespace}"' if attrs.namespace else "at the cluster scope")
    return f'{user} cannot {attrs.verb} resource "{resource}" in API group "{attrs.api_group}" {scope}'


def forbidden(attrs: Attributes, reason: str = "") -> errors.APIError:
    """The 403 Status kube-apiserver answers a denied request with."""
    message = forbidden_message(attrs)
    if reason:
        message = f"{message}: {reason}"
    gr = (attrs.api_group, attrs.resource) if attrs.resource_request else ("", "")
    return errors.forbidden(gr, attrs.name, message)
