"""ClusterIP, NodePort and LoadBalancer address allocation, as a user of Services sees it."""
import random

import pytest

from cluster.api.errors import APIError
from cluster.controllers.ipalloc import ClusterIPAllocator, assign_cluster_ip, released_cluster_ips
from cluster.controllers.lbpool import LoadBalancerPool, parse_pool
from cluster.controllers.portalloc import (NodePortAllocator, assign_node_ports, parse_range,
                                           released_node_ports)


def svc(name, type_="ClusterIP", ip=None, ports=None, created="2024-01-01T00:00:00Z", **spec):
    s = {"metadata": {"name": name, "namespace": "default", "creationTimestamp": created},
         "spec": {"type": type_, "ports": ports or [{"port": 80, "protocol": "TCP"}], **spec}}
    if ip:
        s["spec"]["clusterIP"] = ip
    return s


# --- ClusterIP -------------------------------------------------------------------------------

def test_cluster_ips_are_unique_and_skip_network_broadcast_and_kubernetes_ip():
    a = ClusterIPAllocator("10.96.0.0/28", random.Random(1))
    got = [a.allocate() for _ in range(13)]
    assert len(set(got)) == 13
    assert not {"10.96.0.0", "10.96.0.1", "10.96.0.15"} & set(got)
    with pytest.raises(Exception, match="range is full"):
        a.allocate()
    assert a.kubernetes_service_ip == "10.96.0.1"
    assert a.allocate("10.96.0.1") == "10.96.0.1"  # explicitly, for the kubernetes Service


def test_random_cluster_ips_avoid_the_static_band_until_the_rest_is_full():
    a = ClusterIPAllocator("10.96.0.0/24", random.Random(2))  # offset 16
    got = [a.allocate() for _ in range(254 - 16)]
    assert all(int(ip.rsplit(".", 1)[1]) >= 17 for ip in got)
    assert a.allocate("10.96.0.10") == "10.96.0.10"


def test_explicit_cluster_ip_honoured_then_rejected_with_upstreams_message():
    a = ClusterIPAllocator("10.96.0.0/12", random.Random(3))
    first = svc("dns", ip="10.96.0.10")
    assert assign_cluster_ip(a, first) == ["10.96.0.10"]
    assert first["spec"]["clusterIPs"] == ["10.96.0.10"]
    assert first["spec"]["ipFamilies"] == ["IPv4"]
    with pytest.raises(APIError) as e:
        assign_cluster_ip(a, svc("other", ip="10.96.0.10"))
    assert e.value.code == 422
    assert e.value.message == ('Service "other" is invalid: spec.clusterIPs: Invalid value:'
                               ' ["10.96.0.10"]: failed to allocate IP 10.96.0.10: provided IP is'
                               ' already allocated')
    with pytest.raises(APIError, match=r"the provided IP \(192.168.0.1\) is not in the valid range"
                                       r". The range of valid IPs is 10.96.0.0/12"):
        assign_cluster_ip(a, svc("far", ip="192.168.0.1"))


def test_update_keeps_the_ip_headless_and_externalname_get_none():
    a = ClusterIPAllocator("10.96.0.0/16", random.Random(4))
    s = svc("web")
    assign_cluster_ip(a, s)
    ip = s["spec"]["clusterIP"]
    new = svc("web")
    assert assign_cluster_ip(a, new, old=s) == []
    assert new["spec"]["clusterIP"] == ip
    headless = svc("h", ip="None")
    assert assign_cluster_ip(a, headless) == [] and headless["spec"]["clusterIPs"] == ["None"]
    ext = svc("e", type_="ExternalName", externalName="example.com")
    assert assign_cluster_ip(a, ext, old=s) == [] and "clusterIP" not in ext["spec"]
    assert released_cluster_ips(s, ext) == [ip]
    assert released_cluster_ips(s) == [ip]


def test_release_makes_the_ip_available_again():
    a = ClusterIPAllocator("10.96.0.0/12")
    a.allocate("10.96.5.5")
    a.release("10.96.5.5")
    assert a.allocate("10.96.5.5") == "10.96.5.5"


def test_rebuild_after_restart_never_hands_out_a_stored_ip_and_reports_duplicates():
    stored = [svc("a", ip="10.96.0.20", created="2024-01-01T00:00:00Z"),
              svc("b", ip="10.96.0.20", created="2024-01-02T00:00:00Z"),
              svc("c", ip="192.168.1.1", created="2024-01-03T00:00:00Z"), svc("h", ip="None")]
    a, problems = ClusterIPAllocator.from_services("10.96.0.0/27", stored, random.Random(5))
    assert a.is_allocated("10.96.0.20")
    assert problems == [
        "Cluster IP [IPv4]: 10.96.0.20 was assigned to multiple services; please recreate"
        " service default/b",
        "Cluster IP [IPv4]: 192.168.1.1 is not within the configured Service CIDR 10.96.0.0/27;"
        " please recreate service default/c"]
    assert "10.96.0.20" not in [a.allocate() for _ in range(a.free())]


# --- NodePort ------------------------------------------------------------------------------

def test_node_ports_random_from_the_dynamic_band_explicit_honoured_conflict_rejected():
    a = NodePortAllocator(rng=random.Random(6))
    s = svc("web", "NodePort")
    assign_node_ports(a, s)
    assert 30086 <= s["spec"]["ports"][0]["nodePort"] <= 32767  # offset 2768/32 = 86
    pinned = svc("pinned", "NodePort", ports=[{"port": 80, "nodePort": 30080, "protocol": "TCP"}])
    assert assign_node_ports(a, pinned) == [30080]
    with pytest.raises(APIError) as e:
        assign_node_ports(a, svc("clash", "NodePort",
                                 ports=[{"port": 81, "nodePort": 30080, "protocol": "TCP"}]))
    assert e.value.message == ('Service "clash" is invalid: spec.ports[0].nodePort: Invalid'
                               ' value: 30080: provided port is already allocated')
    with pytest.raises(APIError, match="provided port is not in the valid range. The range of"
                                       " valid ports is 30000-32767"):
        assign_node_ports(a, svc("low", "NodePort",
                                 ports=[{"port": 81, "nodePort": 8080, "protocol": "TCP"}]))


def test_failed_node_port_assignment_leaves_nothing_allocated():
    a = NodePortAllocator("30000-30009", random.Random(7))
    a.allocate(30005)
    before = a.allocated()
    with pytest.raises(APIError):
        assign_node_ports(a, svc("two", "NodePort", ports=[
            {"name": "a", "port": 1, "protocol": "TCP"},
            {"name": "b", "port": 2, "nodePort": 30005, "protocol": "TCP"}]))
    assert a.allocated() == before


def test_tcp_and_udp_of_one_port_share_a_node_port():
    a = NodePortAllocator(rng=random.Random(8))
    s = svc("dns", "NodePort", ports=[{"name": "tcp", "port": 53, "protocol": "TCP"},
                                      {"name": "udp", "port": 53, "protocol": "UDP"}])
    assert len(assign_node_ports(a, s)) == 1
    assert s["spec"]["ports"][0]["nodePort"] == s["spec"]["ports"][1]["nodePort"]


def test_load_balancer_node_ports_and_health_check_port():
    a = NodePortAllocator(rng=random.Random(9))
    no_ports = svc("lb", "LoadBalancer", allocateLoadBalancerNodePorts=False)
    assert assign_node_ports(a, no_ports) == []
    local = svc("local", "LoadBalancer", externalTrafficPolicy="Local")
    assert len(assign_node_ports(a, local)) == 2
    assert local["spec"]["healthCheckNodePort"] != local["spec"]["ports"][0]["nodePort"]


def test_node_ports_kept_on_update_and_released_on_type_change():
    a = NodePortAllocator(rng=random.Random(10))
    old = svc("web", "NodePort")
    assign_node_ports(a, old)
    port = old["spec"]["ports"][0]["nodePort"]
    same = svc("web", "NodePort", ports=[{"port": 80, "nodePort": port, "protocol": "TCP"}])
    assert assign_node_ports(a, same, old=old) == []
    cluster_ip = svc("web", ports=[{"port": 80, "nodePort": port, "protocol": "TCP"}])
    assign_node_ports(a, cluster_ip, old=old)
    assert "nodePort" not in cluster_ip["spec"]["ports"][0]
    assert released_node_ports(old, cluster_ip) == [port]


def test_node_port_rebuild_reports_duplicates_and_bad_ranges():
    stored = [svc("a", "NodePort", ports=[{"port": 1, "nodePort": 30001}]),
              svc("b", "NodePort", ports=[{"port": 1, "nodePort": 30001}],
                  created="2024-02-01T00:00:00Z")]
    a, problems = NodePortAllocator.from_services(stored)
    assert a.allocated() == [30001]
    assert problems == ["Port 30001 was assigned to multiple services; please recreate service"
                        " default/b"]
    with pytest.raises(ValueError, match="expected FIRST-LAST"):
        parse_range("lots")


# --- LoadBalancer pool ----------------------------------------------------------------------

def test_no_pool_leaves_the_service_pending():
    pool = LoadBalancerPool([])
    assert pool.assign(svc("lb", "LoadBalancer")).load_balancer == {}


def test_pool_assigns_distinct_ips_honours_requests_and_releases():
    pool = LoadBalancerPool(["172.18.255.10-172.18.255.11"])
    a = pool.assign(svc("a", "LoadBalancer"))
    assert a.load_balancer == {"ingress": [{"ip": "172.18.255.10", "ipMode": "VIP"}]}
    b = pool.assign(svc("b", "LoadBalancer", loadBalancerIP="172.18.255.11"))
    assert b.load_balancer["ingress"][0]["ip"] == "172.18.255.11"
    full = pool.assign(svc("c", "LoadBalancer"))
    assert full.load_balancer == {} and "no available IPs" in full.event
    outside = pool.assign(svc("d", "LoadBalancer", loadBalancerIP="10.0.0.1"))
    assert '"10.0.0.1" is not allowed in config' in outside.event
    assert pool.release("default/a") == ["172.18.255.10"]
    assert pool.assign(svc("c", "LoadBalancer")).load_balancer["ingress"][0]["ip"] == "172.18.255.10"
    # a Service that stops being a LoadBalancer loses its address
    assert pool.assign(svc("b")).load_balancer == {}
    assert pool.owner_of("172.18.255.11") is None


def test_pool_keeps_an_assigned_ip_and_ignores_other_classes():
    pool = LoadBalancerPool(["172.18.255.0/30"])
    s = svc("a", "LoadBalancer")
    s["status"] = {"loadBalancer": pool.assign(s).load_balancer}
    assert pool.assign(s).load_balancer == s["status"]["loadBalancer"]
    assert pool.assign(svc("x", "LoadBalancer", loadBalancerClass="example.com/lb")) is None


def test_pool_rebuild_and_bad_entries():
    stored = svc("a", "LoadBalancer")
    stored["status"] = {"loadBalancer": {"ingress": [{"ip": "172.18.255.5"}]}}
    twin = svc("b", "LoadBalancer", created="2024-03-01T00:00:00Z")
    twin["status"] = stored["status"]
    pool, to_fix = LoadBalancerPool.from_services(["172.18.255.5"], [twin, stored])
    assert pool.owner_of("172.18.255.5") == "default/a"
    assert to_fix == [twin]
    with pytest.raises(ValueError, match="pool entry 'nope'"):
        parse_pool(["nope"])
