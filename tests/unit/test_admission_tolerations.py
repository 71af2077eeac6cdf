"""DefaultTolerationSeconds as a pod's author sees it: 5 minutes' grace on a failing node."""
import asyncio

from cluster.admission import CREATE, UPDATE, AdmissionRequest, default_chain
from cluster.admission.defaulttolerationseconds import DefaultTolerationSeconds
from cluster.api.resources import by_kind
from tests.support.apiserver import sqlite_apiserver  # noqa: F401  (fixture)
from tests.unit.test_admission import Context, namespace

POD, CM = by_kind("v1", "Pod"), by_kind("v1", "ConfigMap")
NOT_READY = {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
             "tolerationSeconds": 300}
UNREACHABLE = {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
               "tolerationSeconds": 300}


def pod(*tolerations):
    spec = {"containers": [{"name": "web", "image": "nginx"}]}
    if tolerations:
        spec["tolerations"] = list(tolerations)
    return {"metadata": {"name": "web", "namespace": "dev"}, "spec": spec}


def admitted(obj, operation=CREATE, subresource="", plugin=None, resource=POD):
    req = AdmissionRequest(operation, resource, subresource, "dev", "web", obj, None, None)
    ctx = Context()
    ctx.put(by_kind("v1", "Namespace"), namespace("dev"))
    chain = default_chain()
    if plugin is not None:
        chain.plugins = [plugin]

    async def run():
        await chain.admit(req, ctx)
        await chain.validate(req, ctx)
    asyncio.run(run())
    return obj


def test_a_pod_without_tolerations_gets_both_with_300_seconds():
    assert admitted(pod())["spec"]["tolerations"] == [NOT_READY, UNREACHABLE]


def test_tolerations_of_the_author_are_kept_first():
    gpu = {"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}
    assert admitted(pod(gpu))["spec"]["tolerations"] == [gpu, NOT_READY, UNREACHABLE]


def test_a_pod_that_already_tolerates_a_taint_keeps_its_own_seconds():
    mine = dict(NOT_READY, tolerationSeconds=5)
    assert admitted(pod(mine))["spec"]["tolerations"] == [mine, UNREACHABLE]
    forever = {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"}
    assert admitted(pod(forever))["spec"]["tolerations"] == [forever, NOT_READY]


def test_an_empty_key_or_an_empty_effect_already_tolerates():
    everything = {"operator": "Exists"}
    assert admitted(pod(everything))["spec"]["tolerations"] == [everything]
    every_effect = {"key": "node.kubernetes.io/not-ready", "operator": "Exists"}
    assert admitted(pod(every_effect))["spec"]["tolerations"] == [every_effect, UNREACHABLE]
    # a NoSchedule toleration does not keep the pod on a NoExecute-tainted node
    no_schedule = dict(NOT_READY, effect="NoSchedule")
    del no_schedule["tolerationSeconds"]
    assert admitted(pod(no_schedule))["spec"]["tolerations"] == [no_schedule, NOT_READY, UNREACHABLE]


def test_updates_get_them_back_but_subresources_and_other_kinds_are_untouched():
    # `kubectl replace -f` of the original manifest: pod updates may not drop tolerations
    assert admitted(pod(), UPDATE)["spec"]["tolerations"] == [NOT_READY, UNREACHABLE]
    assert "tolerations" not in admitted(pod(), UPDATE, subresource="status")["spec"]
    cm = {"metadata": {"name": "web", "namespace": "dev"}, "data": {}}
    assert admitted(cm, resource=CM) == {"metadata": {"name": "web", "namespace": "dev"}, "data": {}}


def test_the_seconds_are_configurable_as_upstreams_flags():
    plugin = DefaultTolerationSeconds(not_ready_seconds=60, unreachable_seconds=30)
    got = admitted(pod(), plugin=plugin)["spec"]["tolerations"]
    assert [t["tolerationSeconds"] for t in got] == [60, 30]


def test_the_default_chain_runs_it_after_pod_security_as_kube_apiserver_does():
    names = [type(p).__name__ for p in default_chain().plugins]
    assert names == ["NamespaceLifecycle", "LimitRanger", "PodSecurity", "DefaultTolerationSeconds",
                     "ResourceQuota"]


def test_through_the_api_server_and_kubectl_replace(sqlite_apiserver):  # noqa: F811
    from kubernetes import client, config
    core = client.CoreV1Api(config.new_client_from_config(config_file=sqlite_apiserver.kubeconfig))
    manifest = {"metadata": {"name": "web"}, "spec": {"containers": [{"name": "web", "image": "nginx"}]}}
    created = core.create_namespaced_pod("default", manifest)
    seconds = {t.key: (t.operator, t.effect, t.toleration_seconds) for t in created.spec.tolerations}
    assert seconds == {"node.kubernetes.io/not-ready": ("Exists", "NoExecute", 300),
                       "node.kubernetes.io/unreachable": ("Exists", "NoExecute", 300)}
    # the manifest again, as `kubectl replace -f` sends it: not refused for dropping tolerations
    replaced = core.replace_namespaced_pod("web", "default", manifest)
    assert len(replaced.spec.tolerations) == 2
    core.delete_namespaced_pod("web", "default", grace_period_seconds=0)
