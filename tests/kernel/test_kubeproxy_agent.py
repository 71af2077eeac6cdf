"""The kube-proxy agent, live: objects written to a real API server become traffic in a node.

The node, its pods, the external client, the API server and the agent come from
`tests.kernel.kubeproxy_fixtures` (one of each per module). Here: ClusterIP from pods and the
node, UDP, rejects without endpoints, NodePort with both external policies, session affinity,
changes and spread, the agent's metrics and health, resyncs and cleanup. The remaining
Service semantics (hairpin, internalTrafficPolicy, terminating endpoints, externalIPs, load
balancer source ranges, localhost NodePorts) are in test_kubeproxy_semantics.py.
"""
# ruff: noqa: F811 (test arguments name the fixtures imported below)

import json
import os
import socket
import subprocess
import sys

import pytest

from netsim import netns
from tests.kernel.kubeproxy_fixtures import (  # noqa: F401 (cluster and svc are fixtures)
    BRIDGE_IP,
    EXTERNAL_IP,
    NODE,
    NODE_IP,
    NS,
    PODS,
    SERVERS,
    cluster,
    eventually,
    http_get,
    metric,
    svc,
)


def test_cluster_ip_reaches_endpoints_from_a_pod_and_from_the_node(cluster, svc):
    s = cluster.service(svc)
    ip = s["spec"]["clusterIP"]
    assert ip.startswith("10.")  # allocated by the API server
    cluster.endpoint_slice(svc, [("pod1", NODE)])
    assert cluster.lab.tcp("client", ip, 80) == ("pod1", PODS["client"])
    pod, _ = cluster.lab.tcp("node", ip, 80)
    assert pod == "pod1"


def test_udp_cluster_ip(cluster, svc):
    s = cluster.service(svc, ports=(("dns", 53, 8081, "UDP"),))
    cluster.endpoint_slice(svc, [("pod2", NODE)], port=8081, protocol="UDP", port_name="dns")
    assert cluster.lab.udp("client", s["spec"]["clusterIP"], 53) == "pod2"


def test_no_endpoints_is_refused_at_once(cluster, svc):
    s = cluster.service(svc)
    # Refused (the REJECT rule's ICMP), not a timeout: the 5 s timeout would raise TimeoutError.
    with pytest.raises(ConnectionRefusedError):
        cluster.lab.tcp("client", s["spec"]["clusterIP"], 80, timeout=5.0)


def test_node_port_from_outside_snats_with_cluster_policy(cluster, svc):
    s = cluster.service(svc, type="NodePort")
    node_port = s["spec"]["ports"][0]["nodePort"]
    assert 30000 <= node_port <= 32767
    cluster.endpoint_slice(svc, [("pod1", NODE), ("pod2", "node-b")])
    answers = {cluster.lab.tcp("ext", NODE_IP, node_port) for _ in range(20)}
    # Both endpoints, wherever they run; the pod sees the node (masqueraded), not the client.
    assert {pod for pod, _ in answers} == {"pod1", "pod2"}
    assert {client for _, client in answers} == {BRIDGE_IP}


def test_local_policy_keeps_the_client_ip_and_uses_local_endpoints_only(cluster, svc):
    s = cluster.service(svc, type="NodePort", externalTrafficPolicy="Local")
    node_port = s["spec"]["ports"][0]["nodePort"]
    cluster.endpoint_slice(svc, [("pod1", NODE), ("pod2", "node-b")])
    answers = {cluster.lab.tcp("ext", NODE_IP, node_port) for _ in range(20)}
    assert answers == {("pod1", EXTERNAL_IP)}


def test_session_affinity_sticks_to_one_endpoint(cluster, svc):
    s = cluster.service(svc, sessionAffinity="ClientIP")
    cluster.endpoint_slice(svc, [(p, NODE) for p in SERVERS])
    answers = {cluster.lab.tcp("client", s["spec"]["clusterIP"], 80)[0] for _ in range(30)}
    assert len(answers) == 1, answers


def test_traffic_follows_an_endpoint_change_within_one_sync(cluster, svc):
    s = cluster.service(svc)
    ip = s["spec"]["clusterIP"]
    es = cluster.endpoint_slice(svc, [("pod1", NODE), ("pod2", NODE)])
    assert {cluster.lab.tcp("client", ip, 80)[0] for _ in range(30)} == {"pod1", "pod2"}
    # endpoint_slice returns as soon as the sync that programmed the change has finished.
    cluster.endpoint_slice(svc, [("pod3", NODE)], update=es)
    assert {cluster.lab.tcp("client", ip, 80)[0] for _ in range(20)} == {"pod3"}


def test_300_connections_spread_uniformly_over_3_endpoints(cluster, svc):
    s = cluster.service(svc)
    cluster.endpoint_slice(svc, [(p, NODE) for p in SERVERS])
    answers = [cluster.lab.tcp("client", s["spec"]["clusterIP"], 80)[0] for _ in range(300)]
    counts = [answers.count(p) for p in SERVERS]
    chi2 = sum((c - 100) ** 2 / 100 for c in counts)
    assert chi2 < 13.8, counts  # chi-square, 2 degrees of freedom: fails by chance 1 time in 1000


def test_metrics_and_health(cluster, svc):
    text = cluster.metrics()
    assert metric(text, "kubeproxy_sync_proxy_rules_duration_seconds_count") >= 1
    assert metric(text, "kubeproxy_network_programming_duration_seconds_count") >= 1
    status, body = http_get(cluster.metrics_socket, "/healthz")
    assert status == 200 and json.loads(body)["nodeEligible"] is True
    # The healthz address is a TCP port on the node IP, reachable from outside the node.
    with cluster.lab._socket("ext", socket.SOCK_STREAM) as sock:
        sock.settimeout(3)
        sock.connect((NODE_IP, 10256))
        sock.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
        assert sock.recv(4096).split(b"\r\n")[0].endswith(b" 200 OK")


def test_flushed_tables_are_rewritten_by_the_periodic_sync(cluster, svc):
    s = cluster.service(svc)
    cluster.endpoint_slice(svc, [("pod1", NODE)])
    with netns.enter(cluster.lab.path("node")):
        for table in ("mangle", "nat", "filter"):
            subprocess.run(["iptables-legacy", "-t", table, "-F"], check=True)
            subprocess.run(["iptables-legacy", "-t", table, "-X"], check=True)
    # The canary went with them: the next periodic sync (every 2 s here) writes everything again.
    # It is back first (mangle is committed before nat), so wait for the Service's own rule: a
    # SYN sent in between would leave an un-DNATed conntrack entry its retries follow.
    eventually(lambda: "KUBE-PROXY-CANARY" in (rules := cluster.lab.rules())
               and f'"{NS}/{svc}:http cluster IP"' in rules, timeout=10, what="a full resync")
    assert cluster.lab.tcp("client", s["spec"]["clusterIP"], 80)[0] == "pod1"


def test_sigterm_leaves_the_rules_and_cleanup_removes_them(cluster, svc):
    s = cluster.service(svc)
    cluster.endpoint_slice(svc, [("pod2", NODE)])
    cluster.stop_agent()
    assert cluster.agent.returncode == 0, cluster.agent_log()
    assert not os.path.exists(cluster.metrics_socket)
    # Traffic keeps flowing while kube-proxy is away.
    assert cluster.lab.tcp("client", s["spec"]["clusterIP"], 80)[0] == "pod2"
    subprocess.run([sys.executable, "-m", "proxy.kubeproxy", "--cleanup", "--netns", cluster.lab.name("node")],
                   check=True, capture_output=True)
    assert "KUBE-" not in cluster.lab.rules()
