"""Admission as a user meets it: defaults filled in, and refusals that say what to change."""
import asyncio
import copy

import pytest

from cluster.admission import CREATE, DELETE, UPDATE, AdmissionRequest, default_chain
from cluster.admission.quota import ResourceQuota
from cluster.api.errors import APIError
from cluster.api.resources import by_kind
from cluster.auth.user import UserInfo

NS, POD, SVC, CM = (by_kind("v1", k) for k in ("Namespace", "Pod", "Service", "ConfigMap"))
LIMITS, QUOTA = by_kind("v1", "LimitRange"), by_kind("v1", "ResourceQuota")
DEPLOY = by_kind("apps/v1", "Deployment")
USER = UserInfo("alice", groups=("system:authenticated",))


class Context:
    """An in-memory AdmissionContext: objects by (plural, namespace, name)."""

    def __init__(self):
        self.objects = {}
        self.status_writes = 0

    def put(self, resource, obj):
        meta = obj["metadata"]
        self.objects[(resource.plural, meta.get("namespace"), meta["name"])] = obj

    async def get(self, resource, namespace, name):
        return self.objects.get((resource.plural, namespace, name))

    async def list(self, resource, namespace):
        return [o for (plural, ns, _), o in self.objects.items() if plural == resource.plural and ns == namespace]

    async def update_status(self, resource, obj):
        self.status_writes += 1
        stored = self.objects[(resource.plural, obj["metadata"]["namespace"], obj["metadata"]["name"])]
        stored["status"] = copy.deepcopy(obj["status"])
        return stored


def namespace(name, labels=None, phase="Active"):
    return {"metadata": {"name": name, "labels": labels or {}}, "status": {"phase": phase}}


def pod(name, *containers, ns="dev", **spec):
    containers = containers or ({"name": "web", "image": "nginx"},)
    return {"metadata": {"name": name, "namespace": ns}, "spec": {"containers": list(containers), **spec}}


def container(name="web", requests=None, limits=None, **extra):
    c = {"name": name, "image": "nginx", **extra}
    if requests or limits:
        c["resources"] = {k: v for k, v in (("requests", requests), ("limits", limits)) if v}
    return c


def request(resource, obj, operation=CREATE, old=None, ns="dev", subresource="", dry_run=False):
    name = (obj or old)["metadata"]["name"]
    return AdmissionRequest(operation, resource, subresource, ns if resource.namespaced else "",
                            name, obj, old, USER, dry_run)


async def admit(ctx, req, chain=None):
    chain = chain or default_chain()
    await chain.admit(req, ctx)
    await chain.validate(req, ctx)
    return req


def run(coro):
    return asyncio.run(coro)


@pytest.fixture
def ctx():
    c = Context()
    c.put(NS, namespace("dev"))
    return c


def refused(ctx, req, chain=None) -> APIError:
    with pytest.raises(APIError) as info:
        run(admit(ctx, req, chain))
    return info.value


# NamespaceLifecycle

def test_create_in_missing_namespace_is_not_found(ctx):
    error = refused(ctx, request(CM, {"metadata": {"name": "c", "namespace": "nope"}}, ns="nope"))
    assert (error.code, error.reason, error.message) == (404, "NotFound", 'namespaces "nope" not found')


def test_create_in_terminating_namespace(ctx):
    ctx.put(NS, namespace("old", phase="Terminating"))
    error = refused(ctx, request(CM, {"metadata": {"name": "c", "namespace": "old"}}, ns="old"))
    assert error.code == 403
    assert error.message == ('configmaps "c" is forbidden: unable to create new content in namespace old'
                             ' because it is being terminated')
    assert error.details["causes"][0]["reason"] == "NamespaceTerminating"
    cm = {"metadata": {"name": "c", "namespace": "old"}}
    run(admit(ctx, request(CM, cm, UPDATE, old=cm, ns="old")))  # finalizers can still be removed


def test_default_namespace_cannot_be_deleted(ctx):
    error = refused(ctx, request(NS, None, DELETE, old=namespace("default")))
    assert error.message == 'namespaces "default" is forbidden: this namespace may not be deleted'
    run(admit(ctx, request(NS, None, DELETE, old=namespace("dev"))))


# LimitRanger

def limit_range(*items, name="limits", ns="dev"):
    return {"metadata": {"name": name, "namespace": ns}, "spec": {"limits": list(items)}}


def test_defaults_fill_missing_requests_and_limits(ctx):
    ctx.put(LIMITS, limit_range({"type": "Container", "default": {"cpu": "500m", "memory": "256Mi"},
                                 "defaultRequest": {"cpu": "100m"}}))
    req = run(admit(ctx, request(POD, pod("p", container(limits={"memory": "1Gi"})))))
    resources = req.obj["spec"]["containers"][0]["resources"]
    assert resources == {"limits": {"memory": "1Gi", "cpu": "500m"},
                         "requests": {"cpu": "100m", "memory": "256Mi"}}
    assert req.obj["metadata"]["annotations"]["kubernetes.io/limit-ranger"] == (
        "LimitRanger plugin set: cpu, memory request for container web; cpu limit for container web")


def test_max_limit_refused_with_upstream_message(ctx):
    ctx.put(LIMITS, limit_range({"type": "Container", "max": {"cpu": "1"}}))
    error = refused(ctx, request(POD, pod("p", container(limits={"cpu": "2"}))))
    assert error.code == 403 and error.reason == "Forbidden"
    assert error.message == 'pods "p" is forbidden: maximum cpu usage per Container is 1, but limit is 2'


def test_max_also_becomes_the_default_limit(ctx):
    ctx.put(LIMITS, limit_range({"type": "Container", "max": {"cpu": "1"}}))
    req = run(admit(ctx, request(POD, pod("p"))))
    assert req.obj["spec"]["containers"][0]["resources"] == {"limits": {"cpu": "1"}, "requests": {"cpu": "1"}}


def test_min_and_ratio_bounds(ctx):
    ctx.put(LIMITS, limit_range({"type": "Container", "min": {"memory": "64Mi"},
                                 "maxLimitRequestRatio": {"cpu": "2"}}))
    error = refused(ctx, request(POD, pod("p", container(requests={"memory": "32Mi", "cpu": "100m"},
                                                         limits={"cpu": "1"}))))
    assert error.message == ('pods "p" is forbidden: [minimum memory usage per Container is 64Mi, but request'
                             ' is 32Mi, cpu max limit to request ratio per Container is 2, but provided ratio'
                             ' is 10.000000]')


def test_pod_type_bounds_the_sum_of_containers(ctx):
    ctx.put(LIMITS, limit_range({"type": "Pod", "max": {"memory": "1Gi"}}))
    two = [container(n, limits={"memory": "768Mi"}) for n in ("a", "b")]
    error = refused(ctx, request(POD, pod("p", *two)))
    assert error.message == 'pods "p" is forbidden: maximum memory usage per Pod is 1Gi, but limit is 1536Mi'


# ResourceQuota

def quota(hard, name="q", ns="dev", **spec):
    return {"metadata": {"name": name, "namespace": ns}, "spec": {"hard": hard, **spec}}


def test_pod_count_quota_exceeded_and_freed(ctx):
    ctx.put(QUOTA, quota({"pods": "2"}))
    chain = default_chain()
    for name in ("a", "b"):
        req = run(admit(ctx, request(POD, pod(name)), chain))
        ctx.put(POD, req.obj)
    error = refused(ctx, request(POD, pod("c")), chain)
    assert error.code == 403
    assert error.message == ('pods "c" is forbidden: exceeded quota: q, requested: pods=1, used: pods=2,'
                             ' limited: pods=2')
    assert ctx.objects[("resourcequotas", "dev", "q")]["status"] == {"hard": {"pods": "2"}, "used": {"pods": "2"}}
    gone = ctx.objects.pop(("pods", "dev", "a"))
    run(admit(ctx, request(POD, None, DELETE, old=gone), chain))
    assert ctx.objects[("resourcequotas", "dev", "q")]["status"]["used"] == {"pods": "1"}
    run(admit(ctx, request(POD, pod("c")), chain))


def test_quota_on_cpu_requires_requests_and_sums_them(ctx):
    ctx.put(QUOTA, quota({"requests.cpu": "1", "limits.memory": "1Gi"}))
    chain = default_chain()
    error = refused(ctx, request(POD, pod("p")), chain)
    assert error.message == ('pods "p" is forbidden: failed quota: q: must specify limits.memory for: web;'
                             ' requests.cpu for: web')
    ok = run(admit(ctx, request(POD, pod("p", container(requests={"cpu": "600m"}, limits={"memory": "512Mi"}))), chain))
    ctx.put(POD, ok.obj)
    error = refused(ctx, request(POD, pod("p2", container(requests={"cpu": "600m"}, limits={"memory": "512Mi"}))), chain)
    assert error.message == ('pods "p2" is forbidden: exceeded quota: q, requested: requests.cpu=600m,'
                             ' used: requests.cpu=600m, limited: requests.cpu=1')


def test_limitrange_defaults_count_toward_quota(ctx):
    ctx.put(LIMITS, limit_range({"type": "Container", "default": {"memory": "512Mi"}}))
    ctx.put(QUOTA, quota({"limits.memory": "1Gi"}))
    chain = default_chain()
    for name in ("a", "b"):
        ctx.put(POD, run(admit(ctx, request(POD, pod(name)), chain)).obj)
    error = refused(ctx, request(POD, pod("c")), chain)
    assert "requested: limits.memory=512Mi, used: limits.memory=1Gi, limited: limits.memory=1Gi" in error.message


def test_object_counts_and_terminal_pods(ctx):
    ctx.put(QUOTA, quota({"count/configmaps": "1", "pods": "1"}))
    done = pod("done")
    done["status"] = {"phase": "Succeeded"}
    ctx.put(POD, done)
    chain = default_chain()
    run(admit(ctx, request(POD, pod("p")), chain))  # a finished pod no longer holds "pods"
    ctx.put(CM, {"metadata": {"name": "one", "namespace": "dev"}})
    error = refused(ctx, request(CM, {"metadata": {"name": "two", "namespace": "dev"}}), chain)
    assert "exceeded quota: q, requested: count/configmaps=1, used: count/configmaps=1" in error.message


def test_nodeport_services(ctx):
    ctx.put(QUOTA, quota({"services.nodeports": "1"}))
    svc = {"metadata": {"name": "s", "namespace": "dev"},
           "spec": {"type": "NodePort", "ports": [{"port": 80}, {"port": 443}]}}
    error = refused(ctx, request(SVC, svc))
    assert "requested: services.nodeports=2, used: services.nodeports=0, limited: services.nodeports=1" in error.message


def test_scoped_quota_counts_only_matching_pods(ctx):
    ctx.put(QUOTA, quota({"pods": "0"}, scopes=["BestEffort"]))
    run(admit(ctx, request(POD, pod("p", container(requests={"cpu": "1"})))))
    error = refused(ctx, request(POD, pod("q")))
    assert "exceeded quota: q, requested: pods=1, used: pods=0, limited: pods=0" in error.message


def test_concurrent_creates_cannot_overshoot(ctx):
    ctx.put(QUOTA, quota({"pods": "3"}))
    chain = default_chain()

    async def create(name):
        req = request(POD, pod(name))
        await chain.admit(req, ctx)
        await chain.validate(req, ctx)
        await asyncio.sleep(0.01)  # the store write comes later
        ctx.put(POD, req.obj)

    async def burst():
        return await asyncio.gather(*(create(f"p{i}") for i in range(6)), return_exceptions=True)

    results = run(burst())
    assert sum(r is None for r in results) == 3
    assert all("exceeded quota" in r.message for r in results if r is not None)


def test_dry_run_does_not_touch_quota_status(ctx):
    ctx.put(QUOTA, quota({"pods": "5"}))
    plugin = ResourceQuota()
    req = request(POD, pod("p"), dry_run=True)
    run(plugin.validate(req, ctx))
    assert ctx.status_writes == 0


def test_quota_status_filled_when_created(ctx):
    ctx.put(POD, pod("p"))
    req = run(admit(ctx, request(QUOTA, quota({"pods": "10", "count/configmaps": "3"}))))
    assert req.obj["status"] == {"hard": {"pods": "10", "count/configmaps": "3"},
                                 "used": {"count/configmaps": "0", "pods": "1"}}


# PodSecurity

def restricted_ok(name="web"):
    return container(name, securityContext={"allowPrivilegeEscalation": False, "runAsNonRoot": True,
                                            "capabilities": {"drop": ["ALL"]},
                                            "seccompProfile": {"type": "RuntimeDefault"}})


def test_restricted_namespace_refuses_a_default_pod(ctx):
    ctx.put(NS, namespace("dev", {"pod-security.kubernetes.io/enforce": "restricted"}))
    error = refused(ctx, request(POD, pod("p")))
    assert error.code == 403
    assert error.message == (
        'pods "p" is forbidden: violates PodSecurity "restricted:latest": allowPrivilegeEscalation != false'
        ' (container "web" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities'
        ' (container "web" must set securityContext.capabilities.drop=["ALL"]), runAsNonRoot != true'
        ' (pod or container "web" must set securityContext.runAsNonRoot=true), seccompProfile (pod or container'
        ' "web" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")')
    run(admit(ctx, request(POD, pod("ok", restricted_ok()))))


def test_baseline_refuses_privileged_and_host_access(ctx):
    ctx.put(NS, namespace("dev", {"pod-security.kubernetes.io/enforce": "baseline"}))
    bad = pod("p", container("a", securityContext={"privileged": True},
                             ports=[{"containerPort": 80, "hostPort": 8080}]),
              hostNetwork=True, volumes=[{"name": "root", "hostPath": {"path": "/"}}])
    error = refused(ctx, request(POD, bad))
    assert error.message == (
        'pods "p" is forbidden: violates PodSecurity "baseline:latest": host namespaces (hostNetwork=true),'
        ' hostPort (container "a" uses hostPort 8080), privileged (container "a" must not set'
        ' securityContext.privileged=true), hostPath volumes (volume "root")')


def test_privileged_or_unlabelled_namespace_allows_anything(ctx):
    run(admit(ctx, request(POD, pod("p", container(securityContext={"privileged": True})))))


def test_version_label_pins_older_checks(ctx):
    ctx.put(NS, namespace("dev", {"pod-security.kubernetes.io/enforce": "restricted",
                                  "pod-security.kubernetes.io/enforce-version": "v1.21"}))
    legacy = container(securityContext={"allowPrivilegeEscalation": False, "runAsNonRoot": True,
                                        "seccompProfile": {"type": "RuntimeDefault"}})
    run(admit(ctx, request(POD, pod("p", legacy))))  # capabilities were only restricted from v1.22


def test_warn_label_warns_without_refusing(ctx):
    ctx.put(NS, namespace("dev", {"pod-security.kubernetes.io/warn": "baseline"}))
    req = run(admit(ctx, request(POD, pod("p", hostPID=True))))
    assert req.warnings == ['would violate PodSecurity "baseline:latest": host namespaces (hostPID=true)']


def test_deployment_template_is_warned_not_refused(ctx):
    ctx.put(NS, namespace("dev", {"pod-security.kubernetes.io/enforce": "baseline"}))
    deploy = {"metadata": {"name": "d", "namespace": "dev"},
              "spec": {"template": {"metadata": {}, "spec": {"hostIPC": True, "containers": [container()]}}}}
    req = run(admit(ctx, request(DEPLOY, deploy)))
    assert req.warnings == ['would violate PodSecurity "baseline:latest": host namespaces (hostIPC=true)']


def test_invalid_namespace_label_is_refused():
    ctx = Context()
    bad = namespace("typo", {"pod-security.kubernetes.io/enforce": "strict"})
    error = refused(ctx, request(NS, bad))
    assert error.code == 422
    assert error.message == ('Namespace "typo" is invalid: metadata.labels[pod-security.kubernetes.io/enforce]:'
                             ' Invalid value: "strict": must be one of privileged, baseline, restricted')


def test_tightening_enforce_warns_about_existing_pods(ctx):
    for name in ("a", "b"):
        ctx.put(POD, pod(name, hostNetwork=True))
    ctx.put(POD, pod("fine"))
    old = namespace("dev")
    new = namespace("dev", {"pod-security.kubernetes.io/enforce": "baseline"})
    req = run(admit(ctx, request(NS, new, UPDATE, old=old)))
    assert req.warnings == ['existing pods in namespace "dev" violate the new PodSecurity enforce level'
                            ' "baseline:latest"', "a (and 1 other pod): host namespaces"]


def test_metadata_only_pod_update_is_not_rechecked(ctx):
    existing = pod("p", hostNetwork=True)
    ctx.put(NS, namespace("dev", {"pod-security.kubernetes.io/enforce": "baseline"}))
    labelled = copy.deepcopy(existing)
    labelled["metadata"]["labels"] = {"tier": "web"}
    run(admit(ctx, request(POD, labelled, UPDATE, old=existing)))
