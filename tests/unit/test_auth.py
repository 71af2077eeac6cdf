"""Authentication by token file and RBAC decisions, with kube-apiserver's 403 wording."""
import os

import pytest

from cluster.auth.authn import (AnonymousAuthenticator, TokenFileAuthenticator, UnionAuthenticator,
                                build_authenticator, ensure_admin_token, read_token_file)
from cluster.auth.rbac import Attributes, RBACAuthorizer, bootstrap_policy, forbidden
from cluster.auth.requestinfo import attributes_for
from cluster.auth.user import UserInfo

ALICE = UserInfo("alice", groups=("dev", "system:authenticated"))


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def token_file(tmp_path):
    path = tmp_path / "tokens.csv"
    path.write_text('t-alice,alice,1001,"dev,ops"\nt-bob,bob,1002\n,ghost,1003\n')
    return str(path)


def test_token_file_users_and_groups(token_file):
    authn = TokenFileAuthenticator(token_file)
    alice = authn.authenticate(bearer("t-alice"))
    assert (alice.name, alice.uid, alice.groups) == ("alice", "1001", ("dev", "ops", "system:authenticated"))
    assert authn.authenticate(bearer("t-bob")).groups == ("system:authenticated",)
    assert authn.authenticate(bearer("wrong")) is None
    assert authn.authenticate({"authorization": "bearer t-bob"}).name == "bob"
    assert authn.authenticate({}) is None


def test_short_token_file_line_names_the_columns(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("only,two\n")
    with pytest.raises(ValueError, match=r"must have at least 3 columns \(token, user name, user uid\), found 2"):
        TokenFileAuthenticator(str(path))


def test_anonymous_only_without_credentials(token_file):
    authn = build_authenticator(token_file, anonymous=True)
    assert authn.authenticate({}).name == "system:anonymous"
    assert authn.authenticate({}).groups == ("system:unauthenticated",)
    assert authn.authenticate(bearer("wrong")) is None
    assert UnionAuthenticator([TokenFileAuthenticator(token_file)]).authenticate({}) is None
    assert AnonymousAuthenticator().authenticate(bearer("x")) is None


def test_admin_token_created_once_and_kept(tmp_path):
    path = str(tmp_path / "state" / "tokens.csv")
    token = ensure_admin_token(path)
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert ensure_admin_token(path) == token
    admin = TokenFileAuthenticator(path).authenticate(bearer(token))
    assert admin.name == "admin" and "system:masters" in admin.groups


def test_admin_line_appended_to_a_file_without_one(token_file):
    token = ensure_admin_token(token_file)
    assert [user.name for _, user in read_token_file(token_file)] == ["alice", "bob", "admin"]
    assert TokenFileAuthenticator(token_file).authenticate(bearer(token)).name == "admin"


class Lister:
    def __init__(self, objects):
        self.objects = objects

    def list(self, kind, namespace):
        return [o for o in self.objects if o["kind"] == kind
                and o["metadata"].get("namespace") in (namespace, None)]


def binding(kind, name, role_kind, role, subjects, namespace=None):
    meta = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    return {"kind": kind, "metadata": meta, "roleRef": {"kind": role_kind, "name": role},
            "subjects": subjects}


def role(kind, name, rules, namespace=None, **extra):
    meta = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"kind": kind, "metadata": meta, "rules": rules, **extra}


def authorizer(*objects):
    return RBACAuthorizer(Lister(bootstrap_policy() + list(objects)))


def can(authz, user, verb, resource, namespace="", group="", name="", subresource=""):
    return authz.authorize(Attributes(user, verb, namespace, group, resource, subresource, name))[0]


def test_denied_list_reads_as_kube_apiserver():
    authz = authorizer()
    attrs = attributes_for(ALICE, "GET", "/api/v1/namespaces/default/pods", {})
    allowed, reason = authz.authorize(attrs)
    assert not allowed
    error = forbidden(attrs, reason)
    assert error.code == 403 and error.reason == "Forbidden"
    assert error.message == ('pods is forbidden: User "alice" cannot list resource "pods" in API group ""'
                             ' in the namespace "default"')


def test_denied_cluster_scoped_get_of_a_named_object():
    attrs = attributes_for(ALICE, "GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles/admin")
    assert forbidden(attrs).message == (
        'clusterroles.rbac.authorization.k8s.io "admin" is forbidden: User "alice" cannot get resource'
        ' "clusterroles" in API group "rbac.authorization.k8s.io" at the cluster scope')


def test_view_rolebinding_grants_reads_in_its_namespace_only():
    authz = authorizer(binding("RoleBinding", "alice-view", "ClusterRole", "view",
                               [{"kind": "User", "name": "alice"}], "dev"))
    assert can(authz, ALICE, "list", "pods", "dev")
    assert can(authz, ALICE, "get", "pods", "dev", subresource="log")
    assert can(authz, ALICE, "watch", "deployments", "dev", group="apps")
    assert not can(authz, ALICE, "list", "pods", "prod")
    assert not can(authz, ALICE, "get", "secrets", "dev")
    assert not can(authz, ALICE, "create", "pods", "dev")
    allowed, reason = authz.authorize(Attributes(ALICE, "get", "dev", "", "pods"))
    assert reason == 'RBAC: allowed by RoleBinding "alice-view/dev" of ClusterRole "view" to User "alice"'


def test_edit_writes_workloads_but_not_endpoints_or_quota():
    authz = authorizer(binding("ClusterRoleBinding", "devs-edit", "ClusterRole", "edit",
                               [{"kind": "Group", "name": "dev"}]))
    assert can(authz, ALICE, "create", "deployments", "x", group="apps")
    assert can(authz, ALICE, "patch", "deployments", "x", group="apps", subresource="scale")
    assert can(authz, ALICE, "get", "secrets", "x")
    assert not can(authz, ALICE, "create", "endpoints", "x")
    assert not can(authz, ALICE, "update", "resourcequotas", "x")
    assert not can(authz, ALICE, "create", "roles", "x", group="rbac.authorization.k8s.io")


def test_admin_adds_roles_and_bindings():
    authz = authorizer(binding("RoleBinding", "a", "ClusterRole", "admin",
                               [{"kind": "User", "name": "alice"}], "x"))
    assert can(authz, ALICE, "create", "rolebindings", "x", group="rbac.authorization.k8s.io")


def test_role_rules_names_wildcards_and_subresources():
    authz = authorizer(
        role("Role", "cm-reader", [
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"], "resourceNames": ["app"]},
            {"apiGroups": ["*"], "resources": ["*/scale"], "verbs": ["*"]}], "x"),
        binding("RoleBinding", "b", "Role", "cm-reader", [{"kind": "User", "name": "alice"}], "x"))
    assert can(authz, ALICE, "get", "configmaps", "x", name="app")
    assert not can(authz, ALICE, "get", "configmaps", "x", name="other")
    assert can(authz, ALICE, "update", "replicasets", "x", group="apps", subresource="scale")
    assert not can(authz, ALICE, "update", "replicasets", "x", group="apps")


def test_service_account_subject_defaults_to_the_binding_namespace():
    robot = UserInfo("system:serviceaccount:x:robot", groups=("system:serviceaccounts",))
    authz = authorizer(binding("RoleBinding", "b", "ClusterRole", "view",
                               [{"kind": "ServiceAccount", "name": "robot"}], "x"))
    assert can(authz, robot, "list", "services", "x")
    assert not can(authz, UserInfo("system:serviceaccount:y:robot"), "list", "services", "x")


def test_missing_role_is_the_denial_reason():
    authz = authorizer(binding("ClusterRoleBinding", "b", "ClusterRole", "nope",
                               [{"kind": "User", "name": "alice"}]))
    attrs = Attributes(ALICE, "list", "x", "", "pods")
    allowed, reason = authz.authorize(attrs)
    assert not allowed and reason == 'RBAC: clusterrole.rbac.authorization.k8s.io "nope" not found'
    assert forbidden(attrs, reason).message.endswith(
        'in the namespace "x": RBAC: clusterrole.rbac.authorization.k8s.io "nope" not found')


def test_masters_and_discovery():
    authz = authorizer()
    root = UserInfo("admin", groups=("system:masters", "system:authenticated"))
    assert can(authz, root, "delete", "nodes")
    assert authz.authorize(attributes_for(ALICE, "GET", "/apis/apps/v1"))[0]
    assert authz.authorize(attributes_for(ALICE, "GET", "/version"))[0]
    anonymous = UserInfo("system:anonymous", groups=("system:unauthenticated",))
    assert authz.authorize(attributes_for(anonymous, "GET", "/healthz"))[0]
    assert not authz.authorize(attributes_for(anonymous, "GET", "/api"))[0]
    assert forbidden(attributes_for(anonymous, "GET", "/api")).message == (
        'forbidden: User "system:anonymous" cannot get path "/api"')


def test_aggregated_cluster_role_collects_labelled_roles():
    authz = authorizer(
        role("ClusterRole", "monitoring", [], aggregationRule={"clusterRoleSelectors": [
            {"matchLabels": {"example.com/aggregate-to-monitoring": "true"}}]}),
        {**role("ClusterRole", "leases-read", [{"apiGroups": ["coordination.k8s.io"],
                                                "resources": ["leases"], "verbs": ["get"]}]),
         "metadata": {"name": "leases-read", "labels": {"example.com/aggregate-to-monitoring": "true"}}},
        binding("ClusterRoleBinding", "m", "ClusterRole", "monitoring", [{"kind": "User", "name": "alice"}]))
    assert can(authz, ALICE, "get", "leases", "x", group="coordination.k8s.io")


@pytest.mark.parametrize("method,path,query,expected", [
    ("GET", "/api/v1/namespaces/d/pods", {"watch": "true"}, ("watch", "d", "", "pods", "", "")),
    ("GET", "/api/v1/watch/namespaces/d/pods", {}, ("watch", "d", "", "pods", "", "")),
    ("GET", "/api/v1/namespaces/d/pods", {"fieldSelector": "metadata.name=web"},
     ("list", "d", "", "pods", "", "web")),
    ("DELETE", "/apis/apps/v1/namespaces/d/deployments", {}, ("deletecollection", "d", "apps", "deployments", "", "")),
    ("PATCH", "/apis/apps/v1/namespaces/d/deployments/web/scale", {}, ("patch", "d", "apps", "deployments", "scale", "web")),
    ("GET", "/api/v1/namespaces/d", {}, ("get", "d", "", "namespaces", "", "d")),
    ("PUT", "/api/v1/namespaces/d/finalize", {}, ("update", "d", "", "namespaces", "finalize", "d")),
    ("POST", "/api/v1/namespaces/d/pods/web/binding", {}, ("create", "d", "", "pods", "binding", "web")),
    ("GET", "/api/v1/nodes", {}, ("list", "", "", "nodes", "", "")),
])
def test_request_attributes(method, path, query, expected):
    a = attributes_for(ALICE, method, path, query)
    assert a.resource_request
    assert (a.verb, a.namespace, a.api_group, a.resource, a.subresource, a.name) == expected


def test_non_resource_requests():
    for path in ("/version", "/api", "/apis/apps", "/openapi/v3"):
        a = attributes_for(ALICE, "GET", path)
        assert not a.resource_request and a.verb == "get" and a.path == path
