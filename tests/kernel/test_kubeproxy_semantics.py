"""Service semantics of the live kube-proxy agent, packet by packet: hairpin traffic,
internalTrafficPolicy Local, terminating endpoints, externalIPs, loadBalancerSourceRanges and
NodePorts on 127.0.0.1.

The node, pods, external client, API server and agent come from
`tests.kernel.kubeproxy_fixtures` (one agent per module). There "node-b" is only a name in
EndpointSlices: its pods live on this node, so a rule that wrongly sent traffic to them would
get an answer, and a test that expects only local endpoints would see the wrong pod.
Expectations follow upstream's iptables proxier (pkg/proxy/iptables/proxier.go): REJECT when a
Service has no usable endpoint at all, DROP when a Local policy finds none on this node.
"""
# ruff: noqa: F811 (test arguments name the fixtures imported below)

import subprocess

import pytest

from netsim import netns
from tests.kernel.kubeproxy_fixtures import (  # noqa: F401 (cluster and svc are fixtures)
    BRIDGE_IP,
    EXTERNAL_IP,
    NODE,
    NODE_IP,
    NS,
    PODS,
    SERVICES,
    cluster,
    svc,
)

# In the range the external client routes to the node (EXTERNAL_RANGE).
LB_IP, EXTERNAL_SERVICE_IP = "192.0.2.10", "192.0.2.20"
TERMINATING = {"ready": False, "serving": True, "terminating": True}
GONE = {"ready": False, "serving": False, "terminating": True}
DROP_WAIT = 1.0  # a dropped SYN: connect() times out after this long


def answering(cluster, role, addr, port, tries=20):
    """{(pod, client address it saw)} over TRIES TCP connections from ROLE to ADDR:PORT."""
    return {cluster.lab.tcp(role, addr, port) for _ in range(tries)}


def node_port(s):
    return s["spec"]["ports"][0]["nodePort"]


def firewall_drops(cluster, ip):
    """Packets the filter table's KUBE-PROXY-FIREWALL has dropped for destination IP."""
    with netns.enter(cluster.lab.path("node")):
        out = subprocess.run(["iptables-legacy-save", "-c", "-t", "filter"], capture_output=True, text=True,
                             check=True).stdout
    counts = [int(line[1:].split(":")[0]) for line in out.splitlines()
              if "-A KUBE-PROXY-FIREWALL " in line and f"-d {ip}/32 " in line and line.endswith("-j DROP")]
    assert counts, f"no KUBE-PROXY-FIREWALL rule for {ip}:\n{out}"
    return sum(counts)


def test_a_pod_reaches_itself_through_its_service(cluster, svc):
    ip = cluster.service(svc)["spec"]["clusterIP"]
    cluster.endpoint_slice(svc, [("pod1", NODE)])
    # DNAT sends the SYN back out of the bridge port it came in on (hairpin). KUBE-SEP's
    # "-s <podIP> -j KUBE-MARK-MASQ" masquerades it, so the pod sees the bridge's address, not
    # its own, and its reply returns through conntrack to be un-NATed.
    assert cluster.lab.tcp("pod1", ip, 80) == ("pod1", BRIDGE_IP)


def test_internal_traffic_policy_local_keeps_internal_traffic_on_the_node(cluster, svc):
    s = cluster.service(svc, type="NodePort", internalTrafficPolicy="Local")
    ip = s["spec"]["clusterIP"]
    es = cluster.endpoint_slice(svc, [("pod1", NODE), ("pod2", "node-b")])
    assert answering(cluster, "client", ip, 80) == {("pod1", PODS["client"])}
    assert {pod for pod, _ in answering(cluster, "node", ip, 80)} == {"pod1"}
    # The policy is for internal traffic only: the NodePort still spreads over the cluster.
    assert {pod for pod, _ in answering(cluster, "ext", NODE_IP, node_port(s))} == {"pod1", "pod2"}

    cluster.endpoint_slice(svc, [("pod2", "node-b")], update=es)
    # Endpoints exist, none here: the ClusterIP drops (a timeout), it does not reject.
    with pytest.raises(TimeoutError):
        cluster.lab.tcp("client", ip, 80, timeout=DROP_WAIT)
    assert cluster.lab.tcp("ext", NODE_IP, node_port(s))[0] == "pod2"


def test_terminating_endpoints_carry_traffic_only_while_nothing_is_ready(cluster, svc):
    s = cluster.service(svc, type="NodePort", externalTrafficPolicy="Local")
    ip, port = s["spec"]["clusterIP"], node_port(s)
    es = cluster.endpoint_slice(svc, [("pod1", NODE, TERMINATING), ("pod2", "node-b", TERMINATING)])
    # Nothing ready: serving terminating endpoints take the traffic (KEP-1669), the local one
    # for the Local external policy (client address kept), all of them for the ClusterIP.
    assert answering(cluster, "ext", NODE_IP, port) == {("pod1", EXTERNAL_IP)}
    assert {pod for pod, _ in answering(cluster, "client", ip, 80)} == {"pod1", "pod2"}

    # A ready endpoint elsewhere takes the ClusterIP's traffic; the external Local policy still
    # has no ready local endpoint, so it keeps using the local terminating one.
    es = cluster.endpoint_slice(svc, [("pod1", NODE, TERMINATING), ("pod2", "node-b")], update=es)
    assert {pod for pod, _ in answering(cluster, "client", ip, 80)} == {"pod2"}
    assert answering(cluster, "ext", NODE_IP, port) == {("pod1", EXTERNAL_IP)}

    # Terminating and no longer serving: no endpoint at all, so both are rejected at once.
    cluster.endpoint_slice(svc, [("pod1", NODE, GONE), ("pod2", "node-b", GONE)], update=es)
    with pytest.raises(ConnectionRefusedError):
        cluster.lab.tcp("ext", NODE_IP, port)
    with pytest.raises(ConnectionRefusedError):
        cluster.lab.tcp("client", ip, 80)


@pytest.mark.parametrize("policy, seen", [("Cluster", BRIDGE_IP), ("Local", EXTERNAL_IP)])
def test_external_ip_answers_from_outside_and_from_pods(cluster, svc, policy, seen):
    cluster.service(svc, externalIPs=[EXTERNAL_SERVICE_IP], externalTrafficPolicy=policy)
    cluster.endpoint_slice(svc, [("pod3", NODE)])
    # Cluster masquerades the outside client; Local keeps its address.
    assert cluster.lab.tcp("ext", EXTERNAL_SERVICE_IP, 80) == ("pod3", seen)
    assert cluster.lab.tcp("client", EXTERNAL_SERVICE_IP, 80)[0] == "pod3"


def test_load_balancer_source_ranges_admit_only_listed_clients(cluster, svc):
    s = cluster.service(svc, type="LoadBalancer", loadBalancerSourceRanges=["198.51.100.0/24"])
    cluster.endpoint_slice(svc, [("pod2", NODE)])
    # No controllers run here: publish the load balancer's address as one would.
    s["status"] = {"loadBalancer": {"ingress": [{"ip": LB_IP}]}}
    s = cluster.rewritten(lambda: cluster.call(cluster.client.update_status(SERVICES, s)),
                          f'"{NS}/{svc}:http loadbalancer IP"')
    # The external client (172.18.0.100) is outside the range: KUBE-FW- lets it fall through
    # and KUBE-PROXY-FIREWALL drops it.
    before = firewall_drops(cluster, LB_IP)
    with pytest.raises(TimeoutError):
        cluster.lab.tcp("ext", LB_IP, 80, timeout=DROP_WAIT)
    assert firewall_drops(cluster, LB_IP) > before

    s["spec"]["loadBalancerSourceRanges"] = ["198.51.100.0/24", "172.18.0.0/24"]
    cluster.rewritten(lambda: cluster.call(cluster.client.update(SERVICES, s)), "-s 172.18.0.0/24")
    assert cluster.lab.tcp("ext", LB_IP, 80) == ("pod2", BRIDGE_IP)


def test_node_port_answers_on_localhost_from_the_node(cluster, svc):
    s = cluster.service(svc, type="NodePort")
    cluster.endpoint_slice(svc, [("pod2", NODE)])
    # As upstream, kube-proxy turned route_localnet on so 127.0.0.1 can be DNATed to a pod;
    # the source is masqueraded to the bridge's address, or the pod could not answer it.
    with netns.enter(cluster.lab.path("node")), open("/proc/sys/net/ipv4/conf/all/route_localnet") as f:
        assert f.read().strip() == "1"
    assert cluster.lab.tcp("node", "127.0.0.1", node_port(s)) == ("pod2", BRIDGE_IP)
