"""ClusterIPs and NodePorts as a user of the API server sees them: allocated on create, explicit
values honoured or refused with upstream's 422, kept across updates, freed on delete and on a
type change, never handed out twice, and still known after the server restarts."""

import asyncio
import ipaddress

import pytest

from cluster.api.errors import APIError
from cluster.api.resources import by_name
from tests.support.apiserver import sqlite_apiserver  # noqa: F401  (fixture)
from tests.unit.test_client_informer import restart, restartable  # noqa: F401  (fixtures)
from tests.unit.test_client_rest import api, ns, run_with_client  # noqa: F401  (fixtures)

SERVICES = by_name("services")
CIDR = ipaddress.ip_network("10.96.0.0/12")


def service(name, type_="ClusterIP", ip=None, node_port=None, **spec):
    port = {"port": 80, "targetPort": 8080}
    if node_port:
        port["nodePort"] = node_port
    svc = {"metadata": {"name": name},
           "spec": {"type": type_, "selector": {"app": name}, "ports": [port], **spec}}
    if ip:
        svc["spec"]["clusterIP"] = ip
    return svc


async def refused(coro) -> APIError:
    with pytest.raises(APIError) as e:
        await coro
    return e.value


def test_the_kubernetes_service_has_the_first_address_and_targets_the_server(api):
    async def body(c):
        svc = await c.get(SERVICES, "kubernetes", "default")
        assert svc["spec"]["clusterIP"] == "10.96.0.1"
        assert svc["spec"]["ports"][0]["port"] == 443
        assert svc["spec"]["ports"][0]["targetPort"] == int(api.url.rsplit(":", 1)[1])
    run_with_client(api, body)


def test_cluster_ips_come_from_the_service_cidr_and_explicit_ones_are_honoured(api, ns):
    async def body(c):
        svc = await c.create(SERVICES, service("web"), ns)
        ip = svc["spec"]["clusterIP"]
        assert ipaddress.ip_address(ip) in CIDR and svc["spec"]["clusterIPs"] == [ip]
        assert svc["spec"]["ipFamilies"] == ["IPv4"]
        mine = await c.create(SERVICES, service("dns", ip="10.96.0.10"), ns)
        assert mine["spec"]["clusterIP"] == "10.96.0.10"
        e = await refused(c.create(SERVICES, service("dns2", ip="10.96.0.10"), ns))
        assert e.code == 422 and e.reason == "Invalid"
        assert "failed to allocate IP 10.96.0.10: provided IP is already allocated" in e.message
        assert e.causes[0]["field"] == "spec.clusterIPs"
        e = await refused(c.create(SERVICES, service("far", ip="192.168.1.1"), ns))
        assert e.code == 422
        assert ("the provided IP (192.168.1.1) is not in the valid range. The range of valid IPs"
                " is 10.96.0.0/12") in e.message
        headless = await c.create(SERVICES, service("headless", ip="None"), ns)
        assert headless["spec"]["clusterIPs"] == ["None"]
    run_with_client(api, body)


def test_an_address_is_freed_on_delete_and_on_a_change_to_external_name(api, ns):
    async def body(c):
        await c.create(SERVICES, service("a", ip="10.96.1.1"), ns)
        await c.delete(SERVICES, "a", ns)
        again = await c.create(SERVICES, service("b", ip="10.96.1.1"), ns)
        assert again["spec"]["clusterIP"] == "10.96.1.1"
        changed = await c.patch(SERVICES, "b", {"spec": {"type": "ExternalName",
                                                         "externalName": "db.example.com"}}, ns)
        assert "clusterIP" not in changed["spec"]
        third = await c.create(SERVICES, service("c", ip="10.96.1.1"), ns)
        assert third["spec"]["clusterIP"] == "10.96.1.1"
        # a failed create keeps nothing
        await refused(c.create(SERVICES, service("c", ip="10.96.1.2"), ns))  # AlreadyExists
        fourth = await c.create(SERVICES, service("d", ip="10.96.1.2"), ns)
        assert fourth["spec"]["clusterIP"] == "10.96.1.2"
    run_with_client(api, body)


def test_an_update_keeps_the_address_and_ports_it_omits_and_may_not_change_them(api, ns):
    async def body(c):
        svc = await c.create(SERVICES, service("np", "NodePort"), ns)
        ip, port = svc["spec"]["clusterIP"], svc["spec"]["ports"][0]["nodePort"]
        del svc["spec"]["clusterIP"], svc["spec"]["clusterIPs"], svc["spec"]["ports"][0]["nodePort"]
        svc["metadata"]["labels"] = {"tier": "front"}
        updated = await c.update(SERVICES, svc)
        assert updated["spec"]["clusterIP"] == ip and updated["spec"]["ports"][0]["nodePort"] == port
        updated["spec"]["clusterIP"] = updated["spec"]["clusterIPs"][0] = "10.96.2.2"
        e = await refused(c.update(SERVICES, updated))
        assert e.code == 422 and "may not change once set" in e.message
    run_with_client(api, body)


def test_concurrent_creates_never_share_an_address_or_a_port(api, ns):
    async def body(c):
        made = await asyncio.gather(*(c.create(SERVICES, service(f"s{i}", "NodePort"), ns)
                                      for i in range(40)))
        ips = [s["spec"]["clusterIP"] for s in made]
        ports = [s["spec"]["ports"][0]["nodePort"] for s in made]
        assert len(set(ips)) == 40 and len(set(ports)) == 40
        racing = await asyncio.gather(*(c.create(SERVICES, service(f"r{i}", ip="10.96.3.3"), ns)
                                        for i in range(5)), return_exceptions=True)
        assert sum(isinstance(r, dict) for r in racing) == 1
        assert all(r.code == 422 for r in racing if isinstance(r, APIError))
    run_with_client(api, body)


def test_node_ports_are_allocated_in_range_and_explicit_ones_checked(api, ns):
    async def body(c):
        svc = await c.create(SERVICES, service("np1", "NodePort"), ns)
        assert 30000 <= svc["spec"]["ports"][0]["nodePort"] <= 32767
        lb = await c.create(SERVICES, service("lb", "LoadBalancer"), ns)
        assert 30000 <= lb["spec"]["ports"][0]["nodePort"] <= 32767
        mine = await c.create(SERVICES, service("np2", "NodePort", node_port=30080), ns)
        assert mine["spec"]["ports"][0]["nodePort"] == 30080
        e = await refused(c.create(SERVICES, service("np3", "NodePort", node_port=30080), ns))
        assert e.code == 422 and e.causes[0]["field"] == "spec.ports[0].nodePort"
        assert "provided port is already allocated" in e.message
        e = await refused(c.create(SERVICES, service("np4", "NodePort", node_port=8080), ns))
        assert e.code == 422
        assert "provided port is not in the valid range. The range of valid ports is 30000-32767" \
            in e.message
        # a change to ClusterIP frees the port
        await c.patch(SERVICES, "np2", {"spec": {"type": "ClusterIP"}}, ns)
        again = await c.create(SERVICES, service("np5", "NodePort", node_port=30080), ns)
        assert again["spec"]["ports"][0]["nodePort"] == 30080
        await c.delete(SERVICES, "np5", ns)
        await c.create(SERVICES, service("np6", "NodePort", node_port=30080), ns)
    run_with_client(api, body)


def test_a_restarted_server_still_knows_what_is_allocated(restartable):  # noqa: F811
    api = restartable

    async def body(c):
        await c.create(SERVICES, service("kept", "NodePort", ip="10.96.4.4", node_port=31000),
                       "default")
        await restart(api)
        e = await refused(c.create(SERVICES, service("dup", ip="10.96.4.4"), "default"))
        assert "provided IP is already allocated" in e.message
        e = await refused(c.create(SERVICES, service("dup", "NodePort", node_port=31000), "default"))
        assert "provided port is already allocated" in e.message
        kubernetes = await c.get(SERVICES, "kubernetes", "default")
        assert kubernetes["spec"]["clusterIP"] == "10.96.0.1"
    run_with_client(api, body)


def test_a_bad_service_cidr_is_named():
    from cluster.apiserver.services import ServiceAllocators
    with pytest.raises(ValueError, match="service_cidr 'ten': expected a CIDR"):
        ServiceAllocators("ten")
