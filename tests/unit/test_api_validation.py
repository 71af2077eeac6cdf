"""Defaulting and validation: what a user sees from `kubectl apply` of a bad or partial manifest."""
import copy

import pytest

from cluster.api.resources import by_kind
from cluster.api.validation import default, unknown_fields, validate

POD = by_kind("v1", "Pod")
SVC = by_kind("v1", "Service")
DEPLOY = by_kind("apps/v1", "Deployment")


def _messages(resource, obj, old=None):
    return [str(c) for c in validate(resource, obj, old)]


def _pod(**spec):
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "default"},
           "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}], **spec}}
    default(POD, pod)
    return pod


def _deployment(selector=None, labels=None):
    d = {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": "web", "namespace": "default"},
         "spec": {"selector": selector if selector is not None else {"matchLabels": {"app": "web"}},
                  "template": {"metadata": {"labels": labels or {"app": "web"}},
                               "spec": {"containers": [{"name": "app", "image": "nginx"}]}}}}
    default(DEPLOY, d)
    return d


def test_pod_defaults_as_the_api_sets_them():
    pod = _pod(containers=[{"name": "a", "image": "nginx", "ports": [{"containerPort": 80}],
                            "readinessProbe": {"httpGet": {"port": 80}},
                            "resources": {"limits": {"cpu": "1"}}},
                           {"name": "b", "image": "busybox:1.36"}])
    spec = pod["spec"]
    assert spec["restartPolicy"] == "Always" and spec["dnsPolicy"] == "ClusterFirst"
    assert spec["terminationGracePeriodSeconds"] == 30
    assert spec["schedulerName"] == "default-scheduler"
    a, b = spec["containers"]
    assert a["imagePullPolicy"] == "Always" and b["imagePullPolicy"] == "IfNotPresent"
    assert a["terminationMessagePath"] == "/dev/termination-log"
    assert a["ports"][0]["protocol"] == "TCP"
    assert a["readinessProbe"]["periodSeconds"] == 10 and a["readinessProbe"]["httpGet"]["path"] == "/"
    assert a["resources"]["requests"] == {"cpu": "1"}
    assert validate(POD, pod) == []


def test_pod_name_and_image_errors_read_as_upstream():
    pod = _pod()
    pod["metadata"]["name"] = "Foo"
    del pod["spec"]["containers"][0]["image"]
    messages = _messages(POD, pod)
    assert messages[0].startswith('metadata.name: Invalid value: "Foo": a lowercase RFC 1123 '
                                  "subdomain must consist of lower case alphanumeric characters,"
                                  " '-' or '.', and must start and end with an alphanumeric character"
                                  " (e.g. 'example.com', regex used for validation is")
    assert "spec.containers[0].image: Required value" in messages


def test_name_or_generate_name_required():
    pod = _pod()
    del pod["metadata"]["name"]
    assert _messages(POD, pod) == ["metadata.name: Required value: name or generateName is required"]
    pod["metadata"]["generateName"] = "web-"
    assert validate(POD, pod) == []


def test_labels_syntax():
    pod = _pod()
    pod["metadata"]["labels"] = {"app": "web server", "-bad": "x"}
    messages = _messages(POD, pod)
    assert any(m.startswith('metadata.labels: Invalid value: "-bad": name part must consist of')
               for m in messages)
    assert any(m.startswith('metadata.labels: Invalid value: "web server": a valid label must be an'
                            " empty string") for m in messages)


def test_container_ports_probes_and_env():
    pod = _pod(containers=[{"name": "app", "image": "i", "ports": [
        {"containerPort": 70000, "name": "http"}, {"containerPort": 81, "name": "http",
                                                   "protocol": "ICMP"}],
        "livenessProbe": {"periodSeconds": 5},
        "env": [{"name": "A=B", "value": "1"},
                {"name": "B", "value": "x", "valueFrom": {"fieldRef": {"fieldPath": "spec.foo"}}}]}])
    messages = _messages(POD, pod)
    assert "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and" \
           " 65535, inclusive" in messages
    assert 'spec.containers[0].ports[1].name: Duplicate value: "http"' in messages
    assert ('spec.containers[0].ports[1].protocol: Unsupported value: "ICMP": supported values:'
            ' "SCTP", "TCP", "UDP"') in messages
    assert "spec.containers[0].livenessProbe: Required value: must specify a handler type" in messages
    assert any(m.startswith('spec.containers[0].env[0].name: Invalid value: "A=B"') for m in messages)
    assert any(m.startswith("spec.containers[0].env[1].valueFrom: Invalid value: \"\": may not be"
                            " specified when `value` is not empty") for m in messages)
    assert any(m.startswith('spec.containers[0].env[1].valueFrom.fieldRef.fieldPath: Unsupported'
                            ' value: "spec.foo"') for m in messages)


def test_requests_may_not_exceed_limits():
    pod = _pod(containers=[{"name": "a", "image": "i", "resources": {
        "limits": {"memory": "64Mi"}, "requests": {"memory": "128Mi"}}}])
    assert _messages(POD, pod) == ['spec.containers[0].resources.requests: Invalid value: "128Mi":'
                                   " must be less than or equal to memory limit of 64Mi"]


def test_sidecar_init_containers_take_probes_plain_ones_do_not():
    sidecar = {"name": "proxy", "image": "envoy", "restartPolicy": "Always",
               "readinessProbe": {"tcpSocket": {"port": 9901}}}
    plain = {"name": "init", "image": "busybox", "readinessProbe": {"tcpSocket": {"port": 1}}}
    pod = _pod(initContainers=[sidecar, plain])
    assert _messages(POD, pod) == ["spec.initContainers[1].readinessProbe: Forbidden: may not be set"
                                   " for init containers without restartPolicy=Always"]
    pod = _pod(initContainers=[dict(sidecar, restartPolicy="Never")])
    assert ('spec.initContainers[0].restartPolicy: Unsupported value: "Never": supported values:'
            ' "Always"') in _messages(POD, pod)


def test_volumes_and_mounts():
    pod = _pod(volumes=[{"name": "cfg", "configMap": {"name": "c"}}, {"name": "cfg", "secret": {}},
                        {"name": "scratch"}],
               containers=[{"name": "a", "image": "i", "volumeMounts": [
                   {"name": "cfg", "mountPath": "/etc/c"}, {"name": "missing", "mountPath": "/x"}]}])
    assert pod["spec"]["volumes"][2] == {"name": "scratch", "emptyDir": {}}
    assert pod["spec"]["volumes"][0]["configMap"]["defaultMode"] == 0o644
    messages = _messages(POD, pod)
    assert 'spec.volumes[1].name: Duplicate value: "cfg"' in messages
    assert "spec.volumes[1].secret.secretName: Required value" in messages
    assert 'spec.containers[0].volumeMounts[1].name: Not found: "missing"' in messages


def test_scheduling_fields():
    pod = _pod(nodeSelector={"disk": "ssd"}, tolerations=[
        {"key": "k", "operator": "Exists", "value": "v"}, {"operator": "Equal", "value": "v"},
        {"key": "k", "effect": "NoSchedule", "tolerationSeconds": 5}],
        affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In"}]}]}}})
    messages = _messages(POD, pod)
    assert any("value must be empty when `operator` is 'Exists'" in m for m in messages)
    assert any(m.startswith("spec.tolerations[1].operator") and "match all values" in m
               for m in messages)
    assert any(m.startswith("spec.tolerations[2].effect") for m in messages)
    assert ("spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution."
            "nodeSelectorTerms[0].matchExpressions[0].values: Required value: must be specified when"
            " `operator` is 'In' or 'NotIn'") in messages


def test_pod_update_may_change_only_images_and_tolerations():
    old = _pod()
    new = copy.deepcopy(old)
    new["spec"]["containers"][0]["image"] = "nginx:1.28"
    assert validate(POD, new, old) == []
    new["spec"]["restartPolicy"] = "Never"
    messages = _messages(POD, new, old)
    assert messages[0].startswith("spec: Forbidden: pod updates may not change fields other than")
    renamed = copy.deepcopy(old)
    renamed["metadata"]["name"] = "other"
    assert 'metadata.name: Invalid value: "other": field is immutable' in _messages(POD, renamed, old)


def test_service_defaults_and_errors():
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
           "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}
    default(SVC, svc)
    spec = svc["spec"]
    assert spec["type"] == "ClusterIP" and spec["sessionAffinity"] == "None"
    assert spec["ports"][0] == {"port": 80, "protocol": "TCP", "targetPort": 80}
    assert spec["internalTrafficPolicy"] == "Cluster" and "externalTrafficPolicy" not in spec
    assert validate(SVC, svc) == []
    spec["ports"].append({"port": 80, "protocol": "TCP", "targetPort": "http-alt-too-long-name"})
    spec["externalTrafficPolicy"] = "Local"
    spec["loadBalancerSourceRanges"] = ["10.0.0.0/8"]
    spec["type"] = "Bogus"
    messages = _messages(SVC, svc)
    assert 'spec.type: Unsupported value: "Bogus": supported values: "ClusterIP", "ExternalName",' \
           ' "LoadBalancer", "NodePort"' in messages
    assert "spec.ports[0].name: Required value" in messages
    assert any(m.startswith("spec.ports[1]: Duplicate value") for m in messages)
    assert any(m.startswith('spec.ports[1].targetPort: Invalid value: "http-alt-too-long-name": must be'
                            " no more than 15 characters") for m in messages)
    assert any("may only be set for externally-accessible services" in m for m in messages)
    assert any(m.startswith("spec.loadBalancerSourceRanges: Forbidden") for m in messages)


def test_service_name_is_a_dns1035_label_and_cluster_ip_is_immutable():
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "1web", "namespace": "d"},
           "spec": {"ports": [{"port": 80}], "clusterIP": "10.96.0.10"}}
    default(SVC, svc)
    assert _messages(SVC, svc)[0].startswith('metadata.name: Invalid value: "1web": a DNS-1035 label')
    svc["metadata"]["name"] = "web"
    new = copy.deepcopy(svc)
    new["spec"]["clusterIP"] = "10.96.0.11"
    assert _messages(SVC, new, svc) == ['spec.clusterIPs[0]: Invalid value: "10.96.0.11": may not'
                                        " change once set"]


def test_deployment_defaults_and_selector_rules():
    d = _deployment()
    spec = d["spec"]
    assert spec["replicas"] == 1 and spec["revisionHistoryLimit"] == 10
    assert spec["strategy"] == {"type": "RollingUpdate",
                                "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}
    assert spec["progressDeadlineSeconds"] == 600
    assert spec["template"]["spec"]["restartPolicy"] == "Always"
    assert validate(DEPLOY, d) == []
    mismatched = _deployment(labels={"app": "api"})
    assert _messages(DEPLOY, mismatched) == [
        'spec.template.metadata.labels: Invalid value: "map[string]string{\\"app\\":\\"api\\"}":'
        " `selector` does not match template `labels`"]
    changed = copy.deepcopy(d)
    changed["spec"]["selector"] = {"matchLabels": {"app": "web", "v": "2"}}
    changed["spec"]["template"]["metadata"]["labels"]["v"] = "2"
    assert any(m.startswith("spec.selector: Invalid value") and m.endswith("field is immutable")
               for m in _messages(DEPLOY, changed, d))
    d["spec"]["replicas"] = -1
    d["spec"]["template"]["spec"]["restartPolicy"] = "Never"
    messages = _messages(DEPLOY, d)
    assert "spec.replicas: Invalid value: -1: must be greater than or equal to 0" in messages
    assert 'spec.template.spec.restartPolicy: Unsupported value: "Never": supported values:' \
           ' "Always"' in messages


def test_type_errors_are_reported_before_anything_else():
    pod = _pod()
    pod["spec"]["containers"] = {"name": "app"}
    assert _messages(POD, pod) == ['spec.containers: Invalid value: {"name":"app"}: must be of type'
                                   " list"]


def test_endpoint_slice_ingress_and_network_policy():
    slice_ = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
              "metadata": {"name": "web-abc", "namespace": "d"},
              "endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["fd00::1"]}, {"addresses": []}],
              "ports": [{"port": 80}]}
    es = by_kind("discovery.k8s.io/v1", "EndpointSlice")
    default(es, slice_)
    assert slice_["ports"][0]["protocol"] == "TCP"
    assert _messages(es, slice_) == [
        'endpoints[1].addresses[0]: Invalid value: "fd00::1": must be a valid IPv4 address',
        "endpoints[2].addresses: Required value: must contain at least 1 address"]
    ingress = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
               "metadata": {"name": "i", "namespace": "d"},
               "spec": {"rules": [{"host": "10.0.0.1", "http": {"paths": [
                   {"path": "api", "pathType": "Prefix",
                    "backend": {"service": {"name": "web", "port": {"number": 80}}}},
                   {"path": "/", "backend": {"service": {"name": "web"}}}]}}]}}
    messages = _messages(by_kind("networking.k8s.io/v1", "Ingress"), ingress)
    assert messages == [
        'spec.rules[0].host: Invalid value: "10.0.0.1": must be a DNS name, not an IP address',
        'spec.rules[0].http.paths[0].path: Invalid value: "api": must be an absolute path',
        "spec.rules[0].http.paths[1].pathType: Required value: pathType must be specified",
        "spec.rules[0].http.paths[1].backend.service.port: Required value: port name or number is"
        " required"]
    netpol_kind = by_kind("networking.k8s.io/v1", "NetworkPolicy")
    netpol = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
              "metadata": {"name": "n", "namespace": "d"},
              "spec": {"podSelector": {}, "egress": [{"to": [
                  {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["192.168.0.0/16"]},
                   "podSelector": {}}], "ports": [{"port": 80, "endPort": 70}]}]}}
    default(netpol_kind, netpol)
    assert netpol["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert _messages(netpol_kind, netpol) == [
        "spec.egress[0].ports[0].endPort: Invalid value: 70: must be greater than or equal to `port`",
        "spec.egress[0].to[0]: Forbidden: may not specify both ipBlock and another peer",
        'spec.egress[0].to[0].ipBlock.except[0]: Invalid value: "192.168.0.0/16": must be a strict'
        " subset of `cidr`"]


def test_config_maps_secrets_and_namespaces():
    cm = by_kind("v1", "ConfigMap")
    messages = _messages(cm, {"metadata": {"name": "c", "namespace": "d"}, "data": {"a b": "x"}})
    assert messages[0].startswith('data: Invalid value: "a b": a valid config key must consist of'
                                  " alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or"
                                  " 'KEY_NAME',  or 'key-name', regex used for validation is"
                                  " '[-._a-zA-Z0-9]+')")
    secret = by_kind("v1", "Secret")
    s = {"metadata": {"name": "s", "namespace": "d"}, "stringData": {"password": "hunter2"},
         "data": {"bad": "!!!"}}
    default(secret, s)
    assert s["type"] == "Opaque" and s["data"]["password"] == "aHVudGVyMg=="
    assert "stringData" not in s
    assert _messages(secret, s)[0].startswith("data[bad]: Invalid value")
    tls = {"metadata": {"name": "t", "namespace": "d"}, "type": "kubernetes.io/tls", "data": {}}
    assert _messages(secret, tls) == ["data[tls.crt]: Required value", "data[tls.key]: Required value"]
    ns = by_kind("v1", "Namespace")
    assert _messages(ns, {"metadata": {"name": "a.b"}})[0].startswith(
        'metadata.name: Invalid value: "a.b": a lowercase RFC 1123 label must consist of')
    assert _messages(ns, {"metadata": {"name": "a", "namespace": "x"}}) == [
        "metadata.namespace: Forbidden: not allowed on this type"]


def test_rbac_and_lease_and_limits():
    role = by_kind("rbac.authorization.k8s.io/v1", "Role")
    assert _messages(role, {"metadata": {"name": "r", "namespace": "d"},
                            "rules": [{"resources": ["pods"]}, {"verbs": ["get"],
                                                                "nonResourceURLs": ["/x"]}]}) == [
        "rules[0].verbs: Required value: verbs must contain at least one value",
        "rules[0].apiGroups: Required value: resource rules must supply at least one api group",
        'rules[1].nonResourceURLs: Invalid value: ["/x"]: namespaced rules cannot apply to'
        " non-resource URLs"]
    binding = by_kind("rbac.authorization.k8s.io/v1", "ClusterRoleBinding")
    b = {"metadata": {"name": "b"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io",
                                                "kind": "Role", "name": "r"},
         "subjects": [{"kind": "ServiceAccount", "name": "sa"}, {"kind": "User", "name": "bob"}]}
    default(binding, b)
    assert b["subjects"][1]["apiGroup"] == "rbac.authorization.k8s.io"
    assert _messages(binding, b) == [
        'roleRef.kind: Unsupported value: "Role": supported values: "ClusterRole"',
        "subjects[0].namespace: Required value"]
    lease = by_kind("coordination.k8s.io/v1", "Lease")
    assert _messages(lease, {"metadata": {"name": "l", "namespace": "d"},
                             "spec": {"leaseDurationSeconds": 0}}) == [
        "spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0"]
    limits = by_kind("v1", "LimitRange")
    lr = {"metadata": {"name": "l", "namespace": "d"}, "spec": {"limits": [
        {"type": "Container", "max": {"cpu": "500m"}, "min": {"cpu": "1"}}]}}
    default(limits, lr)
    assert lr["spec"]["limits"][0]["default"] == {"cpu": "500m"}
    assert 'spec.limits[0].min[cpu]: Invalid value: "1": min value 1 is greater than max value 500m' \
        in _messages(limits, lr)


@pytest.mark.parametrize("kind", ["Pod", "Service", "Deployment"])
def test_unknown_fields_for_strict_decoding(kind):
    obj = {"metadata": {"name": "x", "nmae": "typo"}, "spec": {"bogus": True}}
    resource = {"Pod": POD, "Service": SVC, "Deployment": DEPLOY}[kind]
    assert unknown_fields(resource, obj) == ["metadata.nmae", "spec.bogus"]
