"""EndpointSlices and the legacy Endpoints object for a Service, as kubectl would show them."""
from cluster.controllers import endpoints, endpointslices as eps


def service(name="web", selector=None, ports=None, **spec):
    return {"metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}",
                         "labels": {"team": "a"}},
            "spec": {"selector": selector if selector is not None else {"app": "web"},
                     "ports": ports or [{"name": "http", "port": 80, "targetPort": "http",
                                         "protocol": "TCP"}],
                     "clusterIP": "10.96.0.10", **spec}}


def pod(name, ip, ready=True, node="n1", port=8080, deleting=False, phase="Running", labels=None):
    p = {"metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}",
                      "labels": labels or {"app": "web"}},
         "spec": {"nodeName": node, "containers": [
             {"name": "c", "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}]}]},
         "status": {"phase": phase, "podIP": ip, "podIPs": [{"ip": ip}] if ip else [],
                    "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}
    if deleting:
        p["metadata"]["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    return p


NODES = {"n1": {"metadata": {"name": "n1", "labels": {"topology.kubernetes.io/zone": "z1"}}},
         "n2": {"metadata": {"name": "n2"}}}


def created(svc, pods, existing=(), **kw):
    return eps.reconcile(svc, pods, NODES, list(existing), **kw)


def test_one_slice_with_conditions_node_zone_and_named_port():
    pods = [pod("a", "10.244.1.2"), pod("b", "10.244.2.3", ready=False, node="n2"),
            pod("c", "10.244.1.4", deleting=True), pod("done", "10.244.1.5", phase="Succeeded"),
            pod("noip", None), pod("other", "10.244.1.6", labels={"app": "db"})]
    changes = created(service(), pods, trigger_time="2024-01-01T00:00:00Z")
    assert not changes.update and not changes.delete
    [s] = changes.create
    assert s["metadata"]["generateName"] == "web-"
    assert s["metadata"]["labels"] == {"team": "a", "kubernetes.io/service-name": "web",
                                       "endpointslice.kubernetes.io/managed-by":
                                       "endpointslice-controller.k8s.io"}
    assert s["metadata"]["ownerReferences"][0]["kind"] == "Service"
    assert s["metadata"]["annotations"] == {
        "endpoints.kubernetes.io/last-change-trigger-time": "2024-01-01T00:00:00Z"}
    assert s["addressType"] == "IPv4"
    assert s["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    by_pod = {e["targetRef"]["name"]: e for e in s["endpoints"]}
    assert set(by_pod) == {"a", "b", "c"}
    assert by_pod["a"]["conditions"] == {"ready": True, "serving": True, "terminating": False}
    assert by_pod["a"]["zone"] == "z1" and by_pod["a"]["nodeName"] == "n1"
    assert by_pod["b"]["conditions"] == {"ready": False, "serving": False, "terminating": False}
    assert "zone" not in by_pod["b"]
    assert by_pod["c"]["conditions"] == {"ready": False, "serving": True, "terminating": True}


def test_pods_that_disagree_on_a_named_port_get_separate_slices():
    changes = created(service(), [pod("a", "10.0.0.1", port=8080), pod("b", "10.0.0.2", port=9090)])
    assert sorted(s["ports"][0]["port"] for s in changes.create) == [8080, 9090]


def test_at_most_100_endpoints_per_slice():
    pods = [pod(f"p{i}", f"10.0.{i // 200}.{i % 200 + 1}") for i in range(250)]
    sizes = sorted(len(s["endpoints"]) for s in created(service(), pods).create)
    assert sizes == [50, 100, 100]


def named(slices, prefix="web-"):
    for i, s in enumerate(slices):
        s["metadata"]["name"] = f"{prefix}{i}"
        s["metadata"]["resourceVersion"] = "1"
    return slices


def test_no_change_means_no_writes_and_one_new_pod_updates_in_place():
    pods = [pod("a", "10.0.0.1"), pod("b", "10.0.0.2")]
    existing = named(created(service(), pods).create)
    assert created(service(), pods, existing).empty()
    changes = created(service(), pods + [pod("c", "10.0.0.3")], existing)
    assert not changes.create and not changes.delete
    [s] = changes.update
    assert s["metadata"]["name"] == "web-0" and s["metadata"]["resourceVersion"] == "1"
    assert len(s["endpoints"]) == 3


def test_readiness_change_updates_the_endpoint_and_removal_drops_it():
    pods = [pod("a", "10.0.0.1"), pod("b", "10.0.0.2")]
    existing = named(created(service(), pods).create)
    changes = created(service(), [pod("a", "10.0.0.1", ready=False)], existing)
    [s] = changes.update
    assert [e["conditions"]["ready"] for e in s["endpoints"]] == [False]


def test_a_service_without_endpoints_keeps_one_placeholder_slice():
    [placeholder] = created(service(), []).create
    assert placeholder["endpoints"] == [] and placeholder["ports"] == []
    existing = named([placeholder])
    assert created(service(), [], existing).empty()
    # pods arriving reuse the placeholder instead of a create and a delete
    changes = created(service(), [pod("a", "10.0.0.1")], existing)
    assert not changes.create and not changes.delete
    assert changes.update[0]["metadata"]["name"] == "web-0"
    assert changes.update[0]["ports"][0]["port"] == 8080


def test_services_without_selector_and_foreign_slices_are_left_alone():
    no_selector = service()
    del no_selector["spec"]["selector"]
    assert created(no_selector, [pod("a", "10.0.0.1")]).empty()
    foreign = {"metadata": {"name": "web-x", "namespace": "default",
                            "labels": {"kubernetes.io/service-name": "web",
                                       "endpointslice.kubernetes.io/managed-by": "someone-else"}},
               "addressType": "IPv4", "endpoints": [], "ports": []}
    existing = named(created(service(), [pod("a", "10.0.0.1")]).create)
    assert created(service(), [pod("a", "10.0.0.1")], existing + [foreign]).empty()


def test_headless_label_publish_not_ready_and_hostname():
    svc = service(clusterIP="None", publishNotReadyAddresses=True)
    p = pod("a", "10.0.0.1", ready=False)
    p["spec"].update(hostname="a", subdomain="web")
    [s] = created(svc, [p]).create
    assert s["metadata"]["labels"]["service.kubernetes.io/headless"] == ""
    assert s["endpoints"][0]["conditions"]["ready"] is True
    assert s["endpoints"][0]["hostname"] == "a"


def test_numeric_target_port_and_unresolvable_name():
    svc = service(ports=[{"name": "a", "port": 80, "targetPort": 9376, "protocol": "TCP"},
                         {"name": "b", "port": 81, "targetPort": "missing", "protocol": "TCP"}])
    [s] = created(svc, [pod("a", "10.0.0.1")]).create
    assert s["ports"] == [{"name": "a", "port": 9376, "protocol": "TCP"}]


# --- legacy Endpoints ------------------------------------------------------------------------

def test_endpoints_ready_and_not_ready_addresses_packed_by_ports():
    pods = [pod("b", "10.0.0.2"), pod("a", "10.0.0.10"), pod("c", "10.0.0.3", ready=False),
            pod("t", "10.0.0.4", deleting=True)]
    ep = endpoints.desired(service(), pods, trigger_time="2024-01-01T00:00:00Z")
    assert ep["metadata"]["name"] == "web"
    assert ep["metadata"]["labels"] == {"team": "a",
                                        "endpointslice.kubernetes.io/skip-mirror": "true"}
    [subset] = ep["subsets"]
    assert [a["ip"] for a in subset["addresses"]] == ["10.0.0.2", "10.0.0.10"]
    assert [a["ip"] for a in subset["notReadyAddresses"]] == ["10.0.0.3"]
    assert subset["addresses"][0]["targetRef"]["name"] == "b"
    assert subset["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    again = endpoints.desired(service(), pods, existing=ep, trigger_time="2024-02-02T00:00:00Z")
    assert not endpoints.needs_update(ep, again)


def test_endpoints_over_1000_addresses_truncated_ready_first():
    pods = [pod(f"p{i}", f"10.1.{i // 250}.{i % 250 + 1}", ready=i < 900) for i in range(1200)]
    ep = endpoints.desired(service(), pods)
    [subset] = ep["subsets"]
    assert len(subset["addresses"]) == 900 and len(subset["notReadyAddresses"]) == 100
    assert ep["metadata"]["annotations"] == {"endpoints.kubernetes.io/over-capacity": "truncated"}


def test_no_endpoints_object_for_a_service_without_selector():
    svc = service()
    del svc["spec"]["selector"]
    assert endpoints.desired(svc, [pod("a", "10.0.0.1")]) is None
