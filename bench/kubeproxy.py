"""kube-proxy sync cost at scale: full sync and one-Service change, rendering apart from restore.

N Services x 3 endpoints (ClusterIP, TCP, as the API serves them, with resourceVersions) are
rendered and written into a throwaway network namespace by the real Syncer, exactly as a
node's kube-proxy does. A "one-Service change" replaces one endpoint of one Service's
EndpointSlice (new resourceVersion), re-renders against the previous rendering and syncs
(partial: only the changed chains, one iptables-legacy-restore). Prints one JSON document.

    .venv/bin/python bench/kubeproxy.py [--services 1000 10000] [--changes 7]
"""

import argparse
import json
import os
import secrets
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from netsim import netns  # noqa: E402
from proxy.kubeproxy.model import Node  # noqa: E402
from proxy.kubeproxy.render import ProxierConfig, render  # noqa: E402
from proxy.kubeproxy.sync import Syncer  # noqa: E402

NODE = Node("node-1", "172.18.0.2")
CONFIG = ProxierConfig(cluster_cidr="10.244.0.0/16")


def service(i):
    return {"metadata": {"namespace": f"ns{i % 50}", "name": f"svc{i}", "resourceVersion": "1"},
            "spec": {"type": "ClusterIP", "clusterIP": f"10.96.{i // 250}.{i % 250 + 1}",
                     "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}]}}


def endpoint_slice(i, version=1):
    base = 3 * i + version * 7
    addresses = [f"10.{244 + (base + k) // 65000 % 8}.{(base + k) // 250 % 256}.{(base + k) % 250 + 1}"
                 for k in range(3)]
    return {"metadata": {"namespace": f"ns{i % 50}", "name": f"svc{i}-abcde", "resourceVersion": str(version),
                         "labels": {"kubernetes.io/service-name": f"svc{i}"}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": [a], "conditions": {"ready": True}, "nodeName": f"node-{k}"}
                          for k, a in enumerate(addresses)]}


def ms(seconds):
    return round(seconds * 1e3, 1)


def run(n, changes):
    name = f"b{secrets.token_hex(3)}"
    path = netns.create(name)
    try:
        syncer = Syncer(path)
        services = [service(i) for i in range(n)]
        slices = [endpoint_slice(i) for i in range(n)]
        t0 = time.perf_counter()
        rendering = render(services, slices, NODE, CONFIG)
        render_full = time.perf_counter() - t0
        result = syncer.sync(rendering)
        full = {"render_ms": ms(render_full), "restore_ms": ms(result.restore_seconds),
                "sync_ms": ms(result.seconds), "total_ms": ms(render_full + result.seconds),
                "nat_rules": sum(len(r) for r in rendering.tables["nat"].values()),
                "nat_chains": len(rendering.tables["nat"])}
        one = []
        for k in range(changes):
            i = (k * 7919) % n
            slices[i] = endpoint_slice(i, version=k + 2)
            t0 = time.perf_counter()
            rendering = render(services, slices, NODE, CONFIG, previous=rendering)
            r = time.perf_counter() - t0
            result = syncer.sync(rendering)
            assert result.kind == "partial", result
            one.append((r, result.restore_seconds, result.seconds))
        # A periodic full resync of the same state, with the rules already in place.
        t0 = time.perf_counter()
        rendering = render(services, slices, NODE, CONFIG, previous=rendering)
        r = time.perf_counter() - t0
        resync = syncer.sync(rendering, full=True)
        syncer.flush()

        def med(j):
            return ms(statistics.median(x[j] for x in one))

        return {"services": n, "endpoints": 3 * n, "full_sync": full,
                "one_service_change": {"render_ms": med(0), "restore_ms": med(1), "sync_ms": med(2),
                                       "total_ms": ms(statistics.median(x[0] + x[2] for x in one)),
                                       "max_total_ms": ms(max(x[0] + x[2] for x in one)), "samples": len(one)},
                "full_resync": {"render_ms": ms(r), "restore_ms": ms(resync.restore_seconds),
                                "sync_ms": ms(resync.seconds), "total_ms": ms(r + resync.seconds)}}
    finally:
        netns.delete(name)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--services", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--changes", type=int, default=7)
    args = ap.parse_args()
    results = [run(n, args.changes) for n in args.services]
    print(json.dumps({"bench": "kubeproxy", "backend": "iptables-legacy-restore --noflush",
                      "targets": {"one_service_change_at_10k_ms": 50, "full_sync_at_10k_ms": 1000},
                      "results": results}, indent=2))


if __name__ == "__main__":
    main()
