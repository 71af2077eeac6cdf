"""The kube-proxy agent without a kernel: flags, health, HTTP endpoints and the sync loop's
decisions (what is rendered against what, when it syncs fully, what latency it reports), with a
Syncer stand-in that records what it was asked to write."""

import asyncio
import datetime
import json
import logging
import socket

import pytest

from proxy.kubeproxy import __main__ as cli
from proxy.kubeproxy.agent import Agent, AgentConfig, node_eligible, node_ip
from proxy.kubeproxy.render import ProxierConfig
from proxy.kubeproxy.server import BindAddressError, HTTPEndpoints, ProxierHealth, parse_bind_address
from proxy.kubeproxy.sync import SyncError, SyncResult


def iso(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).isoformat().replace("+00:00", "Z")


def service(name="web", rv="1", **spec):
    return {"metadata": {"namespace": "default", "name": name, "resourceVersion": rv},
            "spec": {"clusterIP": "10.96.0.10", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}], **spec}}


def endpoint_slice(name="web", ips=("10.244.1.2",), rv="1", trigger=None):
    meta = {"namespace": "default", "name": f"{name}-abc", "resourceVersion": rv,
            "labels": {"kubernetes.io/service-name": name}}
    if trigger is not None:
        meta["annotations"] = {"endpoints.kubernetes.io/last-change-trigger-time": iso(trigger)}
    return {"metadata": meta, "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": [ip], "conditions": {"ready": True}, "nodeName": "node-a"} for ip in ips]}


class FakeSyncer:
    def __init__(self):
        self.applied = None
        self.calls = []
        self.fail = False
        self.canary = True
        self.canary_checks = 0

    def canary_present(self):
        self.canary_checks += 1
        return self.canary

    def sync(self, rendering, full=False):
        self.calls.append((rendering, full))
        if self.fail:
            raise SyncError("iptables-legacy-restore -w 5 --noflush exited 1: line 3 failed")
        kind = "full" if full or rendering.basis is None or rendering.basis != self.applied else "partial"
        self.applied = rendering.token
        return SyncResult(kind, 0.002, 0.001, len(rendering.changed), len(rendering.stale), 0)


class Clock:
    def __init__(self, t=1000.0):
        self.t = t

    def __call__(self):
        return self.t


def make_agent(sync_period=30.0, min_sync_period=0.0):
    clock, wall = Clock(), Clock(1_700_000_000.0)
    config = AgentConfig("node-a", "/proc/self/ns/net", ProxierConfig(cluster_cidr="10.244.0.0/16"),
                         sync_period=sync_period, min_sync_period=min_sync_period)
    return Agent(config, syncer=FakeSyncer(), clock=clock, wallclock=wall), clock, wall


def count(agent, name):
    for line in agent.metrics.exposition().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


# -- flags ----------------------------------------------------------------------------------


@pytest.mark.parametrize("text,seconds", [("30s", 30), ("0", 0), ("0s", 0), ("500ms", 0.5), ("1m30s", 90),
                                          ("1h", 3600), ("1.5s", 1.5)])
def test_durations_read_as_go_writes_them(text, seconds):
    assert cli.duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["30", "3x", "s", "1m 30s", ""])
def test_a_bad_duration_says_what_is_expected(text):
    with pytest.raises(Exception, match="expected a duration such as 30s"):
        cli.duration(text)


def test_a_bad_sync_period_names_the_flag(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--kubeconfig", "k", "--sync-period", "soon"])
    assert "--sync-period" in capsys.readouterr().err


def test_bad_cluster_cidr_and_missing_kubeconfig_are_named(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--kubeconfig", "k", "--cluster-cidr", "10.244.0.0/33"])
    assert "--cluster-cidr 10.244.0.0/33: expected an IPv4 CIDR" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main([])
    assert "--kubeconfig: required" in capsys.readouterr().err


def test_a_missing_namespace_is_named(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--kubeconfig", "k", "--netns", "no-such-node-netns"])
    assert "--netns no-such-node-netns: no network namespace at /run/netns/no-such-node-netns" in \
        capsys.readouterr().err


def test_bind_addresses():
    assert parse_bind_address("unix:/run/kp.sock", "--metrics-bind-address", 10249) == ("unix", "/run/kp.sock")
    assert parse_bind_address("0.0.0.0:10256", "--healthz-bind-address", 10256) == ("tcp", "0.0.0.0", 10256)
    assert parse_bind_address("172.18.0.2", "--metrics-bind-address", 10249) == ("tcp", "172.18.0.2", 10249)
    for bad in ("unix:", "localhost:10249", "1.2.3.4:99999", "1.2.3.4:x"):
        with pytest.raises(BindAddressError, match="--metrics-bind-address: .*expected HOST:PORT|unix:PATH"):
            parse_bind_address(bad, "--metrics-bind-address", 10249)


# -- the Node -------------------------------------------------------------------------------


def test_node_ip_prefers_internal_ip_and_eligibility_follows_deletion():
    node = {"metadata": {"name": "n"}, "status": {"addresses": [
        {"type": "Hostname", "address": "n"}, {"type": "ExternalIP", "address": "203.0.113.5"},
        {"type": "InternalIP", "address": "172.18.0.2"}]}}
    assert node_ip(node) == "172.18.0.2"
    assert node_ip({"status": {"addresses": [{"type": "ExternalIP", "address": "203.0.113.5"}]}}) == "203.0.113.5"
    assert node_ip({"metadata": {}}) == ""
    assert node_eligible(node)
    assert not node_eligible({"metadata": {"deletionTimestamp": "2024-01-01T00:00:00Z"}})
    assert not node_eligible({"metadata": {}, "spec": {"taints": [{"key": "ToBeDeletedByClusterAutoscaler"}]}})


# -- health ---------------------------------------------------------------------------------


def test_health_fails_only_when_a_change_waits_longer_than_the_timeout():
    clock = Clock(100.0)
    health = ProxierHealth(60.0, clock=clock)
    assert health.status()[0]  # starting up
    health.queued_update()
    clock.t = 159.0
    assert health.status()[0]
    clock.t = 161.0
    healthy, doc = health.status()
    assert not healthy and doc["lastUpdated"] == ""
    health.updated()
    healthy, doc = health.status()
    assert healthy and doc["lastUpdated"] == doc["currentTime"]
    health.node_eligible = False
    assert not health.status()[0] and health.status(check_node=False)[0]


def test_http_endpoints_on_a_unix_socket(tmp_path):
    agent, _, _ = make_agent()
    path = str(tmp_path / "kp.sock")

    def get(route):
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(path)
            s.sendall(f"GET {route} HTTP/1.0\r\n\r\n".encode())
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        head, _, body = data.decode().partition("\r\n\r\n")
        return int(head.split()[1]), head, body

    async def main():
        endpoints = HTTPEndpoints(agent.metrics, agent.health)
        await endpoints.start([("unix", path)])
        try:
            return [await asyncio.to_thread(get, r) for r in ("/metrics", "/healthz", "/livez", "/proxyMode")]
        finally:
            await endpoints.stop()

    agent.health.node_eligible = False
    metrics, healthz, livez, mode = asyncio.run(main())
    assert metrics[0] == 200 and "text/plain; version=0.0.4" in metrics[1]
    assert "kubeproxy_sync_proxy_rules_duration_seconds_count 0" in metrics[2]
    assert healthz[0] == 503 and json.loads(healthz[2])["nodeEligible"] is False
    assert livez[0] == 200
    assert mode[2] == "iptables"
    assert not (tmp_path / "kp.sock").exists()  # removed when stopped


# -- the sync loop ----------------------------------------------------------------------------


def test_changes_render_against_the_previous_rendering():
    agent, _, _ = make_agent()
    agent.service_changed(service())
    agent.slice_changed(endpoint_slice())
    first = asyncio.run(agent.sync_once())
    assert first.kind == "full"
    agent.slice_changed(endpoint_slice(ips=("10.244.1.3",), rv="2"))
    second = asyncio.run(agent.sync_once())
    (r1, _), (r2, full) = agent.syncer.calls
    assert second.kind == "partial" and not full
    assert r2.basis == r1.token
    assert any(chain.startswith("KUBE-SEP-") for _, chain in r2.changed)
    assert count(agent, "kubeproxy_sync_proxy_rules_duration_seconds_count") == 2


def test_deleting_a_service_removes_it_from_the_next_rendering():
    agent, _, _ = make_agent()
    agent.service_changed(service())
    agent.slice_changed(endpoint_slice())
    asyncio.run(agent.sync_once())
    agent.service_deleted(service())
    asyncio.run(agent.sync_once())
    rendering, _ = agent.syncer.calls[-1]
    assert not any("default/web" in " ".join(rules) for rules in rendering.tables["nat"].values())
    assert rendering.stale


def test_programming_latency_counts_changes_made_after_start_once():
    agent, _, wall = make_agent()
    agent.slice_changed(endpoint_slice(trigger=wall.t - 60))  # before we started: not ours to count
    agent.service_changed(service())
    asyncio.run(agent.sync_once())
    assert count(agent, "kubeproxy_network_programming_duration_seconds_count") == 0
    agent.slice_changed(endpoint_slice(ips=("10.244.1.3",), rv="2", trigger=wall.t + 1))
    wall.t += 1.5
    asyncio.run(agent.sync_once())
    assert count(agent, "kubeproxy_network_programming_duration_seconds_count") == 1
    assert count(agent, "kubeproxy_network_programming_duration_seconds_sum") == pytest.approx(0.5)
    asyncio.run(agent.sync_once())  # nothing new
    assert count(agent, "kubeproxy_network_programming_duration_seconds_count") == 1


def test_a_failed_sync_is_counted_retried_and_its_changes_still_measured(caplog):
    agent, clock, wall = make_agent(sync_period=30.0)
    agent.service_changed(service())
    agent.slice_changed(endpoint_slice(trigger=wall.t + 1))
    agent.syncer.fail = True
    with caplog.at_level(logging.ERROR):
        assert asyncio.run(agent.sync_once()) is None
    assert "sync failed, retrying in 1s" in caplog.text and "line 3 failed" in caplog.text
    assert count(agent, "kubeproxy_sync_proxy_rules_iptables_restore_failures_total") == 1
    assert agent._retry_at == clock.t + 1.0
    agent.syncer.fail = False
    wall.t += 2
    assert asyncio.run(agent.sync_once()).kind == "full"  # the failed rendering was never applied
    assert count(agent, "kubeproxy_network_programming_duration_seconds_count") == 1
    assert agent._retry_at is None


def test_unusable_objects_are_logged_once_and_skipped(caplog):
    agent, _, _ = make_agent()
    agent.service_changed(service(sessionAffinity="Sometimes"))
    agent.service_changed(service(name="ok"))
    with caplog.at_level(logging.ERROR):
        asyncio.run(agent.sync_once())
        asyncio.run(agent.sync_once())
    assert caplog.text.count("spec.sessionAffinity: expected None or ClientIP, got 'Sometimes'") == 1
    rendering, _ = agent.syncer.calls[-1]
    assert any("default/ok:http" in r for r in rendering.tables["filter"]["KUBE-SERVICES"])


def test_the_periodic_sync_checks_the_canary_and_syncs_fully_without_it():
    agent, clock, _ = make_agent(sync_period=30.0)
    agent.service_changed(service())
    asyncio.run(agent.sync_once())
    clock.t += 5
    asyncio.run(agent.sync_once())  # a change, not the period: no canary check
    assert agent.syncer.canary_checks == 0
    clock.t += 31
    asyncio.run(agent.sync_once())
    assert agent.syncer.canary_checks == 1 and agent.syncer.calls[-1][1] is False
    agent.syncer.canary = False
    clock.t += 31
    asyncio.run(agent.sync_once())
    assert agent.syncer.calls[-1][1] is True


def test_node_ip_changes_resync_and_deletion_fails_healthz():
    agent, _, _ = make_agent()
    node = {"metadata": {"name": "node-a"}, "status": {"addresses": [{"type": "InternalIP", "address": "172.18.0.2"}]}}
    agent.node_changed(node)
    assert agent.node_ip == "172.18.0.2" and agent._dirty.is_set()
    asyncio.run(agent.sync_once())
    assert agent.syncer.calls[-1][0]._state["node"].ip == "172.18.0.2"
    agent.node_changed(node)
    assert not agent._dirty.is_set()  # nothing kube-proxy uses changed
    agent.node_deleted(node)
    assert not agent.health.status()[0]


def test_changes_during_the_min_sync_period_are_coalesced_into_one_sync():
    config = AgentConfig("node-a", "/proc/self/ns/net", ProxierConfig(), sync_period=3600, min_sync_period=0.3)
    agent = Agent(config, syncer=FakeSyncer())

    async def main():
        loop_task = asyncio.create_task(agent.sync_loop())
        agent.service_changed(service())
        while not agent.syncer.calls:
            await asyncio.sleep(0.005)
        started = asyncio.get_running_loop().time()
        for i in range(10):  # ten changes in 50 ms, right after a sync
            agent.slice_changed(endpoint_slice(ips=(f"10.244.1.{i + 2}",), rv=str(i + 2)))
            await asyncio.sleep(0.005)
        while len(agent.syncer.calls) < 2:
            await asyncio.sleep(0.005)
        waited = asyncio.get_running_loop().time() - started
        await asyncio.sleep(0.35)
        loop_task.cancel()
        return waited

    waited = asyncio.run(main())
    assert len(agent.syncer.calls) == 2, "the ten changes should make one sync"
    assert waited >= 0.25
    last, _ = agent.syncer.calls[-1]
    assert any("10.244.1.11:8080" in r for rules in last.tables["nat"].values() for r in rules)


def test_frequent_changes_do_not_postpone_the_canary_check():
    agent, clock, _ = make_agent(sync_period=30.0)
    agent.service_changed(service())
    for _ in range(10):  # a change every 10 s: never 30 s without a sync
        asyncio.run(agent.sync_once())
        clock.t += 10
    assert agent.syncer.canary_checks == 3
