"""kube-proxy metrics: what a Prometheus scrape of /metrics shows after syncs."""

from proxy.kubeproxy.metrics import Metrics, trigger_time
from proxy.kubeproxy.model import Node
from proxy.kubeproxy.render import ProxierConfig, render
from proxy.kubeproxy.sync import SyncResult


def test_sync_and_programming_latency_in_prometheus_text():
    m = Metrics()
    rendering = render([], [], Node("n", "192.168.0.2"), ProxierConfig())
    m.observe_sync(SyncResult("full", 0.003, 0.002, 9, 0, 0), rendering, now=1000.0)
    m.observe_sync(SyncResult("partial", 0.0015, 0.001, 1, 0, 0), rendering, now=1001.0)
    es = {"metadata": {"annotations": {"endpoints.kubernetes.io/last-change-trigger-time": "2024-01-01T00:00:00Z"}}}
    start = trigger_time(es)
    m.observe_programmed([es, {"metadata": {}}], now=start + 0.3)
    text = m.exposition()
    assert "kubeproxy_sync_proxy_rules_duration_seconds_count 2" in text
    assert 'kubeproxy_sync_full_proxy_rules_duration_seconds_bucket{le="0.004"} 1' in text
    assert 'kubeproxy_sync_partial_proxy_rules_duration_seconds_bucket{le="0.001"} 0' in text
    assert 'kubeproxy_network_programming_duration_seconds_bucket{le="0.25"} 0' in text
    assert 'kubeproxy_network_programming_duration_seconds_bucket{le="0.5"} 1' in text
    assert "kubeproxy_network_programming_duration_seconds_count 1" in text
    assert 'kubeproxy_sync_proxy_rules_iptables_total{table="nat"} 5' in text
    assert "kubeproxy_sync_proxy_rules_last_timestamp_seconds 1001" in text
