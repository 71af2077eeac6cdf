#!/usr/bin/env python3
"""Pod startup latency: from a pod's creation through the API to its Running, as a watch sees it.

Prints one JSON document. For each size it brings a cluster up with `netsim up` (no pods, in a
throwaway state directory), watches pods, creates the pods through the API server (no
nodeName: the scheduler places them, the kubelets start them) and takes, per pod, the time from
sending its create request to the first watch event that shows it Running (the Kubernetes pod
startup SLI, which excludes image pulls; netsim pulls none). Then `netsim down`.

Two ways to create, both reported:
- `paced` (first, on the idle cluster): at --rate pods per second, as upstream's density test
  measures its latency pods while the cluster is not saturated.
- `burst` (then, beside those pods): every pod at once (8 requests in flight): latency includes
  the queue behind the other pods, so p99 is close to the time the whole batch takes.

    bench/startup.py                          # 100 pods on 2 nodes and 500 pods on 5 nodes
    bench/startup.py --sizes 500x5 --rate 100
"""

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench._cluster import running_cluster  # noqa: E402
from cluster.api.resources import lookup  # noqa: E402
from cluster.client import Client  # noqa: E402

PODS = lookup("", "v1", "pods")
AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.53"
IN_FLIGHT = 8
TIMEOUT_S = 120


def pod(name):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"bench": "startup"}},
            "spec": {"terminationGracePeriodSeconds": 0,
                     "containers": [{"name": "c", "image": AGNHOST, "args": ["netexec", "--http-port=8080"]}]}}


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


async def measure(kubeconfig, prefix, count, rate):
    """{name: seconds from create sent to Running seen} for COUNT pods created at RATE/s (0: burst)."""
    async with Client.from_kubeconfig(kubeconfig) as client:
        sent, running = {}, {}
        rv = (await client.list(PODS, "default", limit=1))["metadata"]["resourceVersion"]
        done = asyncio.Event()

        async def watch():
            async with client.watch(PODS, "default", resource_version=rv) as events:
                async for type_, obj in events:
                    name = obj.get("metadata", {}).get("name", "")
                    if type_ in ("ADDED", "MODIFIED") and name.startswith(prefix) and name not in running \
                            and (obj.get("status") or {}).get("phase") == "Running":
                        running[name] = time.perf_counter()
                        if len(running) == count:
                            done.set()
                            return

        watcher = asyncio.create_task(watch())
        sem = asyncio.Semaphore(IN_FLIGHT)
        start = time.perf_counter()

        async def create(i):
            if rate:
                await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
            async with sem:
                name = f"{prefix}{i}"
                sent[name] = time.perf_counter()
                await client.create(PODS, pod(name), "default")

        await asyncio.gather(*(create(i) for i in range(count)))
        created = time.perf_counter() - start
        try:
            await asyncio.wait_for(done.wait(), TIMEOUT_S)
        finally:
            watcher.cancel()
        total = time.perf_counter() - start
        latencies = [running[n] - sent[n] for n in sent]
        return {"pods": count, "rate_per_s": rate or None, "created_in_s": round(created, 3),
                "all_running_in_s": round(total, 3),
                "latency_ms": {"p50": round(1000 * statistics.median(latencies), 1),
                               "p90": round(1000 * percentile(latencies, 90), 1),
                               "p99": round(1000 * percentile(latencies, 99), 1),
                               "max": round(1000 * max(latencies), 1)}}


async def delete_all(kubeconfig):
    """Delete the benchmark's pods and wait until the API server has none left."""
    async with Client.from_kubeconfig(kubeconfig) as client:
        items, _ = await client.list_all(PODS, "default", label_selector="bench=startup")
        sem = asyncio.Semaphore(IN_FLIGHT)

        async def delete(p):
            async with sem:
                await client.delete(PODS, p["metadata"]["name"], "default")

        await asyncio.gather(*(delete(p) for p in items))
        deadline = time.monotonic() + TIMEOUT_S
        while (await client.list(PODS, "default", label_selector="bench=startup", limit=1)).get("items"):
            if time.monotonic() > deadline:
                raise SystemExit("the paced run's pods were not deleted in time")
            await asyncio.sleep(0.2)


def one_size(pods, nodes, rate, tmp):
    with running_cluster(f"start{pods}", nodes, tmp) as cluster:
        # Paced first, on an idle cluster; its pods are deleted (a node holds 110 pods, as
        # upstream's default --max-pods) before the burst.
        paced = asyncio.run(measure(cluster.kubeconfig, "s", pods, rate))
        asyncio.run(delete_all(cluster.kubeconfig))
        return {"nodes": nodes, "paced": paced, "burst": asyncio.run(measure(cluster.kubeconfig, "b", pods, 0))}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100x2,500x5", help="PODSxNODES, comma-separated (default 100x2,500x5)")
    ap.add_argument("--rate", type=float, default=50.0, help="pods per second in the paced run (default 50)")
    args = ap.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="netsim-bench-") as tmp:
        for size in args.sizes.split(","):
            pods, nodes = (int(x) for x in size.split("x"))
            results.append(one_size(pods, nodes, args.rate, tmp))
    print(json.dumps({"benchmark": "startup", "target": "p99 <= 1 s with 500 pods on 5 nodes",
                      "results": results}, indent=2))


if __name__ == "__main__":
    main()
