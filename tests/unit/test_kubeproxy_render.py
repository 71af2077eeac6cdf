"""kube-proxy rendering: reference inputs give the rules upstream's own tests expect.

Golden files hold whole rulesets; `overall.txt` is upstream's TestOverallIPTablesRules
expectation verbatim, the others were checked rule by rule against the matching upstream
tests (TestNoEndpointsReject, TestLoadBalancer, TestNodePorts, TestExternalTrafficPolicy*,
TestInternalTrafficPolicy, TestTerminatingEndpoints*, ...). Inputs are Service and
EndpointSlice objects shaped as the API serves them. Regenerate with
NETSIM_UPDATE_GOLDEN=1 (and review the diff rule by rule).
"""

import os
import random

import pytest

from proxy.kubeproxy import hashing
from proxy.kubeproxy.model import ModelError, Node, endpoints_map, service_ports
from proxy.kubeproxy.render import ProxierConfig, render

GOLDEN = os.path.join(os.path.dirname(__file__), "golden", "kubeproxy")
NODE = Node("test-node", "192.168.0.2")
# Upstream's fake proxier: cluster-CIDR local detector 10.0.0.0/8, nfacct counters present,
# no --random-fully.
UPSTREAM_TEST_CONFIG = ProxierConfig(cluster_cidr="10.0.0.0/8", nfacct=True, random_fully=False)


def service(ns, name, cluster_ip, ports, type="ClusterIP", status=None, **spec):
    obj = {"apiVersion": "v1", "kind": "Service", "metadata": {"namespace": ns, "name": name},
           "spec": {"type": type, "clusterIP": cluster_ip, "clusterIPs": [cluster_ip], "ports": ports, **spec}}
    if status:
        obj["status"] = {"loadBalancer": {"ingress": [{"ip": ip} for ip in status]}}
    return obj


def port(name="p80", port=80, protocol="TCP", **extra):
    return {"name": name, "port": port, "protocol": protocol, **extra}


def endpoint(ip, node=None, ready=True, serving=None, terminating=None):
    conditions = {"ready": ready}
    if serving is not None:
        conditions["serving"] = serving
    if terminating is not None:
        conditions["terminating"] = terminating
    ep = {"addresses": [ip], "conditions": conditions}
    if node:
        ep["nodeName"] = node
    return ep


def eps(ns, service_name, endpoints, ports=None, suffix="abcde"):
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"namespace": ns, "name": f"{service_name}-{suffix}",
                         "labels": {"kubernetes.io/service-name": service_name}},
            "addressType": "IPv4", "endpoints": endpoints, "ports": ports or [port()]}


CASES = {
    "overall": (
        [service("ns1", "svc1", "172.30.0.41", [port()]),
         service("ns2", "svc2", "172.30.0.42", [port(nodePort=3001)], type="LoadBalancer", status=["1.2.3.4"],
                 externalTrafficPolicy="Local", externalIPs=["192.168.99.22"], healthCheckNodePort=30000),
         service("ns3", "svc3", "172.30.0.43", [port(nodePort=3003)], type="NodePort"),
         service("ns4", "svc4", "172.30.0.44", [port(targetPort=80)], type="NodePort",
                 externalIPs=["192.168.99.33"]),
         service("ns5", "svc5", "172.30.0.45", [port(nodePort=3002)], type="LoadBalancer", status=["5.6.7.8"],
                 externalTrafficPolicy="Cluster", healthCheckNodePort=30000,
                 loadBalancerSourceRanges=[" 203.0.113.0/25"], sessionAffinity="ClientIP",
                 sessionAffinityConfig={"clientIP": {"timeoutSeconds": 10800}}),
         service("ns6", "svc6", "172.30.0.46", [port(targetPort=80)])],
        [eps("ns1", "svc1", [endpoint("10.180.0.1")]),
         eps("ns2", "svc2", [endpoint("10.180.0.2")]),
         eps("ns3", "svc3", [endpoint("10.180.0.3")]),
         eps("ns4", "svc4", [endpoint("10.180.0.4"), endpoint("10.180.0.5", node="test-node")]),
         eps("ns5", "svc5", [endpoint("10.180.0.3")])],
    ),
    "clusterip-one-endpoint": (
        [service("ns1", "svc1", "172.30.0.41", [port()])],
        [eps("ns1", "svc1", [endpoint("10.180.0.1")])],
    ),
    "clusterip-three-endpoints": (
        [service("ns1", "svc1", "172.30.0.41", [port()])],
        [eps("ns1", "svc1", [endpoint("10.180.0.3"), endpoint("10.180.0.1"), endpoint("10.180.0.2")])],
    ),
    "no-endpoints-reject": (
        [service("ns1", "svc1", "172.30.0.41", [port(nodePort=3001)], type="LoadBalancer", status=["1.2.3.4"],
                 externalIPs=["192.168.99.11"])],
        [],
    ),
    "nodeport": (
        [service("ns1", "svc1", "172.30.0.41", [port(nodePort=3001)], type="NodePort")],
        [eps("ns1", "svc1", [endpoint("10.180.0.1"), endpoint("10.180.2.1", node="host2")])],
    ),
    "loadbalancer-source-ranges": (
        # The second range holds the node's own IP, so the VIP is allowed as a source too.
        [service("ns1", "svc1", "172.30.0.41", [port(nodePort=3001)], type="LoadBalancer",
                 status=["1.2.3.4"], loadBalancerSourceRanges=["203.0.113.0/25", "192.168.0.0/24"])],
        [eps("ns1", "svc1", [endpoint("10.180.0.1")])],
    ),
    "external-ips": (
        [service("ns1", "svc1", "172.30.0.41", [port()], externalIPs=["192.168.99.11", "192.168.99.12"])],
        [eps("ns1", "svc1", [endpoint("10.180.0.1")])],
    ),
    "external-ips-etp-local": (
        # A ClusterIP Service with externalIPs is externally accessible, so Local holds for its
        # external IPs: the nat table is upstream's TestOnlyLocalExternalIPs expectation.
        [service("ns1", "svc1", "172.30.0.41", [port()], externalIPs=["192.168.99.11"],
                 externalTrafficPolicy="Local")],
        [eps("ns1", "svc1", [endpoint("10.180.0.1"), endpoint("10.180.2.1", node="test-node")])],
    ),
    "etp-local-with-local-endpoints": (
        [service("ns1", "svc1", "172.30.0.41", [port(nodePort=3001)], type="LoadBalancer", status=["1.2.3.4"],
                 externalTrafficPolicy="Local", healthCheckNodePort=30000)],
        [eps("ns1", "svc1", [endpoint("10.180.0.1", node="test-node"), endpoint("10.180.2.1", node="host2")])],
    ),
    "etp-local-without-local-endpoints": (
        [service("ns1", "svc1", "172.30.0.41", [port(nodePort=3001)], type="LoadBalancer", status=["1.2.3.4"],
                 externalTrafficPolicy="Local", healthCheckNodePort=30000)],
        [eps("ns1", "svc1", [endpoint("10.180.2.1", node="host2")])],
    ),
    "itp-local": (
        [service("ns1", "svc1", "172.30.0.41", [port()], internalTrafficPolicy="Local"),
         service("ns2", "svc2", "172.30.0.42", [port()], internalTrafficPolicy="Local")],
        [eps("ns1", "svc1", [endpoint("10.180.0.1", node="test-node"), endpoint("10.180.2.1", node="host2")]),
         eps("ns2", "svc2", [endpoint("10.180.2.2", node="host2")])],
    ),
    "session-affinity": (
        [service("ns1", "svc1", "172.30.0.41", [port()], sessionAffinity="ClientIP",
                 sessionAffinityConfig={"clientIP": {"timeoutSeconds": 300}})],
        [eps("ns1", "svc1", [endpoint("10.180.0.1"), endpoint("10.180.0.2")])],
    ),
    "target-ports": (
        # The EndpointSlice controller resolves named targetPorts: kube-proxy DNATs to the slice's port.
        [service("ns1", "svc1", "172.30.0.41", [port("http", 80, targetPort="web"),
                                                port("metrics", 9090, targetPort=9100)])],
        [eps("ns1", "svc1", [endpoint("10.180.0.1")], ports=[port("http", 8080), port("metrics", 9100)])],
    ),
    "terminating-fallback": (
        # No ready endpoint: serving terminating ones take the traffic; non-serving ones never do.
        [service("ns1", "svc1", "172.30.0.41", [port()])],
        [eps("ns1", "svc1", [endpoint("10.180.0.1", ready=False, serving=True, terminating=True),
                             endpoint("10.180.0.2", ready=False, serving=False, terminating=True),
                             endpoint("10.180.0.3", ready=False)])],
    ),
    "udp-and-sctp": (
        [service("ns1", "dns", "172.30.0.10", [port("dns", 53, "UDP"), port("dns-tcp", 53, "TCP")]),
         service("ns1", "sig", "172.30.0.11", [port("sctp", 3868, "SCTP")])],
        [eps("ns1", "dns", [endpoint("10.180.0.1")], ports=[port("dns", 53, "UDP"), port("dns-tcp", 53, "TCP")]),
         eps("ns1", "sig", [endpoint("10.180.0.2")], ports=[port("sctp", 3868, "SCTP")])],
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_rendering_matches_golden(case):
    services, slices = CASES[case]
    text = render(services, slices, NODE, UPSTREAM_TEST_CONFIG).text()
    path = os.path.join(GOLDEN, f"{case}.txt")
    if os.environ.get("NETSIM_UPDATE_GOLDEN") and case != "overall":
        with open(path, "w") as f:
            f.write(text)
    with open(path) as f:
        assert text == f.read()


def test_chain_names_are_upstreams_hashes():
    assert hashing.service_chains("ns1/svc1:p80", "tcp")[0] == "KUBE-SVC-XPGD46QRK7WJZT7O"
    assert hashing.endpoint_chain("ns1/svc1:p80", "tcp", "10.180.0.1:80") == "KUBE-SEP-SXIVWICOYRO3J4NJ"


def test_netsim_defaults_masquerade_random_fully_without_nfacct():
    services, slices = CASES["nodeport"]
    text = render(services, slices, NODE, ProxierConfig(cluster_cidr="10.244.0.0/16")).text()
    assert '-j MASQUERADE --random-fully' in text
    assert "nfacct" not in text
    assert "! -s 10.244.0.0/16 -j KUBE-MARK-MASQ" in text


def test_without_localhost_nodeports_loopback_is_excluded_and_no_localnet_firewall():
    services, slices = CASES["nodeport"]
    text = render(services, slices, NODE, ProxierConfig(localhost_nodeports=False)).text()
    assert "-m addrtype --dst-type LOCAL ! -d 127.0.0.0/8 -j KUBE-NODEPORTS" in text
    assert "KUBE-FIREWALL" not in text


def test_headless_and_external_name_services_get_no_rules():
    headless = service("ns1", "h", "None", [port()])
    external = {"metadata": {"namespace": "ns1", "name": "x"}, "spec": {"type": "ExternalName",
                                                                         "externalName": "example.com"}}
    assert service_ports(headless) == [] and service_ports(external) == []


def test_large_cluster_mode_drops_endpoint_comments():
    services = [service("ns1", f"s{i}", f"172.30.{i // 250}.{i % 250 + 1}", [port()]) for i in range(501)]
    slices = [eps("ns1", f"s{i}", [endpoint(f"10.180.{i // 250}.{i % 250 + 1}"),
                                   endpoint(f"10.181.{i // 250}.{i % 250 + 1}")]) for i in range(501)]
    text = render(services, slices, NODE, UPSTREAM_TEST_CONFIG).text()
    sep = [line for line in text.splitlines() if line.startswith("-A KUBE-SEP-")]
    assert sep and not any("--comment" in line for line in sep)
    assert '"ns1/s0:p80 cluster IP"' in text  # Service-level comments stay


def test_one_endpoint_change_rewrites_only_that_services_chains():
    services = [service("ns1", "a", "172.30.0.1", [port()]), service("ns1", "b", "172.30.0.2", [port()])]
    first = render(services, [eps("ns1", "a", [endpoint("10.180.0.1")]), eps("ns1", "b", [endpoint("10.180.0.2")])],
                   NODE, UPSTREAM_TEST_CONFIG)
    second = render(services, [eps("ns1", "a", [endpoint("10.180.0.1")]), eps("ns1", "b", [endpoint("10.180.0.3")])],
                    NODE, UPSTREAM_TEST_CONFIG, previous=first)
    old_sep = hashing.endpoint_chain("ns1/b:p80", "tcp", "10.180.0.2:80")
    new_sep = hashing.endpoint_chain("ns1/b:p80", "tcp", "10.180.0.3:80")
    svc_b = hashing.service_chains("ns1/b:p80", "tcp")[0]
    assert second.changed == {("nat", svc_b), ("nat", new_sep)}
    assert second.stale == {old_sep}
    batch = second.restore_input(second.changed, second.stale)
    assert batch.startswith("*nat\n") and "*filter" not in batch
    assert f"-X {old_sep}" in batch and "ns1/a" not in batch
    assert second.basis == first.token


def test_removed_service_leaves_its_chains_stale_and_rejects_nothing():
    services = [service("ns1", "a", "172.30.0.1", [port()])]
    first = render(services, [eps("ns1", "a", [endpoint("10.180.0.1")])], NODE, UPSTREAM_TEST_CONFIG)
    second = render([], [], NODE, UPSTREAM_TEST_CONFIG, previous=first)
    assert second.stale == set(first.tables["nat"]) - set(second.tables["nat"])
    assert ("nat", "KUBE-SERVICES") in second.changed


def test_udp_endpoint_change_asks_for_a_conntrack_flush():
    services = [service("ns1", "dns", "172.30.0.10", [port("dns", 53, "UDP", nodePort=30053)], type="NodePort")]
    ports = [port("dns", 53, "UDP")]
    first = render(services, [eps("ns1", "dns", [endpoint("10.180.0.1")], ports=ports)], NODE, UPSTREAM_TEST_CONFIG)
    same = render(services, [eps("ns1", "dns", [endpoint("10.180.0.1")], ports=ports)], NODE, UPSTREAM_TEST_CONFIG,
                  previous=first)
    moved = render(services, [eps("ns1", "dns", [endpoint("10.180.0.2")], ports=ports)], NODE, UPSTREAM_TEST_CONFIG,
                   previous=same)
    assert same.conntrack_flush == () and same.changed == frozenset()
    assert moved.conntrack_flush == (("--orig-dst", "172.30.0.10"), ("--orig-port-dst", "30053"))


def test_unchanged_resource_versions_are_not_converted_again():
    svc = service("ns1", "a", "172.30.0.1", [port()])
    svc["metadata"]["resourceVersion"] = "7"
    first = render([svc], [], NODE, UPSTREAM_TEST_CONFIG)
    svc["spec"]["clusterIP"] = "garbage that would fail conversion"
    second = render([svc], [], NODE, UPSTREAM_TEST_CONFIG, previous=first)
    assert second.errors == () and second.text() == first.text()


def test_bad_objects_are_skipped_with_a_message_naming_object_and_field():
    bad_port = service("ns1", "bad", "172.30.0.9", [port(port=70000)])
    bad_slice = eps("ns1", "svc1", [endpoint("10.180.0.1")])
    del bad_slice["metadata"]["labels"]
    good = service("ns1", "svc1", "172.30.0.41", [port()])
    r = render([bad_port, good], [bad_slice], NODE, UPSTREAM_TEST_CONFIG)
    assert r.errors == (
        "Service ns1/bad: spec.ports[0].port: expected a port number 1-65535, got 70000",
        "EndpointSlice ns1/svc1-abcde: metadata.labels[kubernetes.io/service-name]: "
        "expected the owning Service's name")
    assert '"ns1/svc1:p80 has no endpoints"' in r.text()


def test_endpoints_merge_across_slices_and_prefer_non_terminating_duplicates():
    slices = [eps("ns1", "svc1", [endpoint("10.180.0.2"), endpoint("10.180.0.1", ready=False, terminating=True)]),
              eps("ns1", "svc1", [endpoint("10.180.0.1")], suffix="fghij")]
    (key, endpoints), = endpoints_map(slices, "test-node").items()
    assert str(key) == "ns1/svc1:p80"
    assert [(str(e), e.ready) for e in endpoints] == [("10.180.0.1:80", True), ("10.180.0.2:80", True)]
    with pytest.raises(ModelError, match=r"endpoints\[0\].addresses\[0\]: expected an IPv4 address"):
        endpoints_map([eps("ns1", "svc1", [endpoint("fe80::x")])], "n")


def test_cluster_ip_service_with_external_ips_keeps_outside_clients_on_local_endpoints_unmasqueraded():
    services = [service("ns1", "svc1", "172.30.0.41", [port()], externalIPs=["192.168.99.11"],
                        externalTrafficPolicy="Local")]
    svc_chain, svl_chain, ext_chain, _ = hashing.service_chains("ns1/svc1:p80", "tcp")
    local_sep = hashing.endpoint_chain("ns1/svc1:p80", "tcp", "10.180.2.1:80")
    both = render(services, [eps("ns1", "svc1", [endpoint("10.180.0.1"), endpoint("10.180.2.1", node="test-node")])],
                  NODE, UPSTREAM_TEST_CONFIG)
    nat = both.tables["nat"]
    assert (f'-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 external IP" -m tcp -p tcp -d 192.168.99.11 '
            f"--dport 80 -j {ext_chain}") in nat["KUBE-SERVICES"]
    # Outside clients fall through to the local endpoints, with no KUBE-MARK-MASQ on the way.
    assert nat[ext_chain][-1] == f"-A {ext_chain} -j {svl_chain}"
    assert not any("masquerade traffic for" in rule for rule in nat[ext_chain])
    assert [rule.split(" -j ")[-1] for rule in nat[svl_chain]] == [local_sep]
    # The cluster IP still spreads over every endpoint.
    assert len([rule for rule in nat[svc_chain] if "KUBE-SEP-" in rule]) == 2

    remote_only = render(services, [eps("ns1", "svc1", [endpoint("10.180.0.1")])], NODE, UPSTREAM_TEST_CONFIG)
    assert ('-A KUBE-EXTERNAL-SERVICES -m comment --comment "ns1/svc1:p80 has no local endpoints" -m tcp -p tcp '
            "-d 192.168.99.11 --dport 80 -j DROP") in remote_only.tables["filter"]["KUBE-EXTERNAL-SERVICES"]
    assert svl_chain not in remote_only.tables["nat"]
    assert not any(rule.endswith(f"-j {svl_chain}") for rule in remote_only.tables["nat"][ext_chain])


def _changes(rng, services, slices):
    """One random change to the SERVICES and SLICES maps (keyed by name), as the API makes them."""
    version = str(rng.randrange(10**9))

    def svc(i):
        kind = rng.choice(["ClusterIP", "ClusterIP", "NodePort", "LoadBalancer"])
        extra = {"nodePort": 30000 + i} if kind != "ClusterIP" else {}
        obj = service("ns1", f"s{i}", f"172.30.0.{i + 1}", [port(**extra), port("dns", 53, "UDP")], type=kind,
                      status=["1.2.3.4"] if kind == "LoadBalancer" else None,
                      externalTrafficPolicy=rng.choice(["Cluster", "Local"]) if kind != "ClusterIP" else None,
                      sessionAffinity=rng.choice(["None", "ClientIP", "Sometimes"]))
        obj["metadata"]["resourceVersion"] = version
        return obj

    def es(i, suffix):
        ips = rng.sample(range(1, 30), rng.randrange(0, 4))
        obj = eps("ns1", f"s{i}", [endpoint(f"10.180.{i}.{ip}", node=rng.choice(["test-node", "host2"]),
                                            ready=rng.random() > 0.2, terminating=rng.random() < 0.2 or None)
                                   for ip in ips], ports=[port(), port("dns", 53, "UDP")], suffix=suffix)
        obj["metadata"]["resourceVersion"] = version
        return obj

    i, what = rng.randrange(12), rng.random()
    if what < 0.3:
        services[f"s{i}"] = svc(i)
    elif what < 0.4:
        services.pop(f"s{i}", None)
    elif what < 0.8:
        suffix = rng.choice(["a", "b"])
        slices[f"s{i}-{suffix}"] = es(i, suffix)
    elif what < 0.9:
        slices.pop(f"s{i}-{rng.choice(['a', 'b'])}", None)
    else:
        moved = es(i, "a")  # a slice relabelled to another Service keeps its name
        moved["metadata"]["labels"]["kubernetes.io/service-name"] = f"s{(i + 1) % 12}"
        slices[f"s{i}-a"] = moved


def test_incremental_renders_match_fresh_ones_and_their_diffs_rebuild_the_tables():
    rng = random.Random(6)
    services, slices = {}, {}
    previous = render([], [], NODE, UPSTREAM_TEST_CONFIG)
    for _ in range(300):
        _changes(rng, services, slices)
        current = render(list(services.values()), list(slices.values()), NODE, UPSTREAM_TEST_CONFIG, previous)
        fresh = render(list(services.values()), list(slices.values()), NODE, UPSTREAM_TEST_CONFIG)
        assert current.text() == fresh.text()
        assert sorted(current.errors) == sorted(fresh.errors)
        # What a partial sync writes (changed chains, stale ones deleted) turns the old tables into the new.
        for table in ("filter", "nat"):
            patched = {c: r for c, r in previous.tables[table].items() if c not in current.stale}
            patched.update({c: current.tables[table][c] for t, c in current.changed if t == table})
            assert patched == current.tables[table]
        previous = current
