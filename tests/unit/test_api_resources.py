"""The resource registry: what discovery, store keys and kubectl's short names rely on."""
from cluster.api import resources
from cluster.api.resources import RESOURCES, by_kind, by_name, lookup


def test_every_kind_of_the_issue_is_served():
    kinds = {(r.api_version, r.kind) for r in RESOURCES}
    for expected in [("v1", "Namespace"), ("v1", "Node"), ("v1", "Pod"), ("v1", "Service"),
                     ("v1", "Endpoints"), ("v1", "ConfigMap"), ("v1", "Secret"),
                     ("v1", "ServiceAccount"), ("v1", "LimitRange"), ("v1", "ResourceQuota"),
                     ("apps/v1", "Deployment"), ("apps/v1", "ReplicaSet"),
                     ("discovery.k8s.io/v1", "EndpointSlice"), ("networking.k8s.io/v1", "Ingress"),
                     ("networking.k8s.io/v1", "IngressClass"),
                     ("networking.k8s.io/v1", "NetworkPolicy"),
                     ("rbac.authorization.k8s.io/v1", "Role"),
                     ("rbac.authorization.k8s.io/v1", "ClusterRole"),
                     ("rbac.authorization.k8s.io/v1", "RoleBinding"),
                     ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
                     ("coordination.k8s.io/v1", "Lease")]:
        assert expected in kinds


def test_kubectl_short_names_resolve():
    for short, plural in [("po", "pods"), ("svc", "services"), ("ns", "namespaces"), ("no", "nodes"),
                          ("ep", "endpoints"), ("cm", "configmaps"), ("sa", "serviceaccounts"),
                          ("deploy", "deployments"), ("rs", "replicasets"), ("ing", "ingresses"),
                          ("netpol", "networkpolicies"), ("limits", "limitranges"),
                          ("quota", "resourcequotas"), ("deployments.apps", "deployments")]:
        assert by_name(short).plural == plural


def test_all_category_holds_what_kubectl_get_all_shows():
    in_all = {r.plural for r in RESOURCES if "all" in r.categories}
    assert in_all == {"pods", "services", "deployments", "replicasets"}


def test_store_keys():
    pods = lookup("", "v1", "pods")
    assert pods.key("default", "web") == "/registry/core/pods/default/web"
    assert pods.prefix("default") == "/registry/core/pods/default/"
    assert pods.prefix() == "/registry/core/pods/"
    nodes = lookup("", "v1", "nodes")
    assert nodes.key(None, "n1") == "/registry/core/nodes/n1"
    deploy = by_kind("apps/v1", "Deployment")
    assert deploy.key("ns", "d") == "/registry/apps/deployments/ns/d"
    assert str(deploy.group_resource) == "deployments.apps"
    assert deploy.list_kind == "DeploymentList" and deploy.api_version == "apps/v1"
    assert "scale" in deploy.subresources


def test_groups_and_binding():
    groups = resources.groups()
    assert groups[""] == ["v1"] and groups["apps"] == ["v1"]
    assert set(groups) == {"", "apps", "discovery.k8s.io", "networking.k8s.io",
                           "rbac.authorization.k8s.io", "coordination.k8s.io"}
    assert lookup("", "v1", "bindings").verbs == ("create",)
    assert lookup("apps", "v1", "pods") is None
