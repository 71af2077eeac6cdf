"""kube-proxy's Prometheus metrics: sync durations and network programming latency.

Names and buckets follow upstream's pkg/proxy/metrics, so dashboards built for kube-proxy
read them. `Metrics.exposition()` is the text a `/metrics` endpoint serves; the agent owns
the HTTP server. Network programming latency is measured, as upstream does, from the
EndpointSlice's `endpoints.kubernetes.io/last-change-trigger-time` annotation to the end of
the sync that programmed it.
"""

import datetime
import threading

TRIGGER_TIME_ANNOTATION = "endpoints.kubernetes.io/last-change-trigger-time"

SYNC_BUCKETS = tuple(0.001 * 2 ** i for i in range(15))
PROGRAMMING_BUCKETS = (tuple(0.25 * i for i in range(1, 4)) + tuple(float(i) for i in range(1, 60))
                       + tuple(float(i) for i in range(60, 300, 5)) + tuple(float(i) for i in range(300, 3601, 30)))


class Histogram:
    def __init__(self, name, help_text, buckets):
        self.name, self.help, self.buckets = name, help_text, buckets
        self.counts = [0] * len(buckets)
        self.sum = 0.0
        self.count = 0

    def observe(self, value):
        self.sum += value
        self.count += 1
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1

    def lines(self):
        out = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        out += [f'{self.name}_bucket{{le="{_fmt(b)}"}} {c}' for b, c in zip(self.buckets, self.counts)]
        out += [f'{self.name}_bucket{{le="+Inf"}} {self.count}', f"{self.name}_sum {_fmt(self.sum)}",
                f"{self.name}_count {self.count}"]
        return out


def _fmt(value):
    return repr(float(value)) if value != int(value) else str(int(value))


def trigger_time(endpoint_slice):
    """The slice's last-change-trigger-time as a Unix timestamp, or None without a valid one."""
    text = ((endpoint_slice.get("metadata") or {}).get("annotations") or {}).get(TRIGGER_TIME_ANNOTATION)
    if not text:
        return None
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class Metrics:
    """The figures of one kube-proxy; safe to update from the sync thread and read from HTTP."""

    def __init__(self):
        self._lock = threading.Lock()
        self.sync = Histogram("kubeproxy_sync_proxy_rules_duration_seconds",
                              "SyncProxyRules latency in seconds", SYNC_BUCKETS)
        self.full = Histogram("kubeproxy_sync_full_proxy_rules_duration_seconds",
                              "SyncProxyRules latency in seconds for full resyncs", SYNC_BUCKETS)
        self.partial = Histogram("kubeproxy_sync_partial_proxy_rules_duration_seconds",
                                 "SyncProxyRules latency in seconds for partial resyncs", SYNC_BUCKETS)
        self.programming = Histogram("kubeproxy_network_programming_duration_seconds",
                                     "In Cluster Network Programming Latency in seconds", PROGRAMMING_BUCKETS)
        self.restore_failures = 0
        self.last_sync = None
        self.rules = {}

    def observe_sync(self, result, rendering, now):
        """Record a successful Syncer.sync RESULT of RENDERING, finished at Unix time NOW."""
        with self._lock:
            self.sync.observe(result.seconds)
            (self.full if result.kind == "full" else self.partial).observe(result.seconds)
            self.last_sync = now
            self.rules = {t: sum(len(r) for r in chains.values()) for t, chains in rendering.tables.items()}

    def observe_programmed(self, endpoint_slices, now):
        """Record the programming latency of each changed EndpointSlice a sync finished at NOW."""
        with self._lock:
            for es in endpoint_slices:
                t = trigger_time(es)
                if t is not None:
                    self.programming.observe(max(0.0, now - t))

    def observe_failure(self):
        with self._lock:
            self.restore_failures += 1

    def exposition(self):
        """The Prometheus text format (version 0.0.4) of every metric."""
        with self._lock:
            out = []
            for h in (self.sync, self.full, self.partial, self.programming):
                out += h.lines()
            out += ["# HELP kubeproxy_sync_proxy_rules_iptables_restore_failures_total "
                    "Cumulative proxy iptables restore failures",
                    "# TYPE kubeproxy_sync_proxy_rules_iptables_restore_failures_total counter",
                    f"kubeproxy_sync_proxy_rules_iptables_restore_failures_total {self.restore_failures}",
                    "# HELP kubeproxy_sync_proxy_rules_iptables_total Total number of iptables rules owned by kube-proxy",
                    "# TYPE kubeproxy_sync_proxy_rules_iptables_total gauge"]
            out += [f'kubeproxy_sync_proxy_rules_iptables_total{{table="{t}"}} {n}' for t, n in sorted(self.rules.items())]
            if self.last_sync is not None:
                out += ["# HELP kubeproxy_sync_proxy_rules_last_timestamp_seconds "
                        "The last time proxy rules were successfully synced",
                        "# TYPE kubeproxy_sync_proxy_rules_last_timestamp_seconds gauge",
                        f"kubeproxy_sync_proxy_rules_last_timestamp_seconds {_fmt(self.last_sync)}"]
            return "\n".join(out) + "\n"
