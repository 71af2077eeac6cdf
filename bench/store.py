"""The store layer alone, SQLite and etcd side by side: what the API server can get from it.

For each store: creates/s (sequential, and 64 in flight), updates/s (sequential CAS), get and
list latency p50/p99 (a 100-key namespace and the whole 2000-key resource), and watch latency
(from issuing an update to its event reaching a watcher, one update at a time). Values are
~1 KB, a typical Pod. Both stores keep their data on disk in a temp dir (etcd's tests use
/dev/shm, here it gets the same disk as SQLite). Prints one JSON document.

    .venv/bin/python bench/store.py [--objects 2000]
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

from cluster.store import open_store  # noqa: E402
from tests.support.etcd import running_etcd  # noqa: E402

VALUE = json.dumps({"kind": "Pod", "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "image": "x" * 800}]}}).encode()
IN_FLIGHT = 64


def percentiles(samples):
    ms = sorted(s * 1000 for s in samples)
    return {"p50_ms": round(statistics.median(ms), 3),
            "p99_ms": round(ms[min(len(ms) - 1, int(len(ms) * 0.99))], 3)}


async def timed(samples, call):
    start = time.perf_counter()
    result = await call
    samples.append(time.perf_counter() - start)
    return result


async def measure(url: str, objects: int) -> dict:
    store = await open_store(url)
    report = {}
    try:
        keys = [f"/registry/pods/ns{i // 100}/pod{i:05}" for i in range(objects)]
        half = objects // 2
        create_latency = []
        start = time.perf_counter()
        revisions = [await timed(create_latency, store.create(k, VALUE)) for k in keys[:half]]
        report["creates_per_s_sequential"] = round(half / (time.perf_counter() - start))
        report["create_latency"] = percentiles(create_latency)
        start = time.perf_counter()
        for batch in range(half, objects, IN_FLIGHT):
            revisions += await asyncio.gather(
                *(store.create(k, VALUE) for k in keys[batch:batch + IN_FLIGHT]))
        report[f"creates_per_s_{IN_FLIGHT}_in_flight"] = round(
            (objects - half) / (time.perf_counter() - start))

        update_latency = []
        start = time.perf_counter()
        for i, key in enumerate(keys):
            revisions[i] = await timed(update_latency, store.update(key, VALUE, revisions[i]))
        report["updates_per_s_sequential"] = round(objects / (time.perf_counter() - start))
        report["update_latency"] = percentiles(update_latency)

        get_latency = []
        for key in keys[:1000]:
            await timed(get_latency, store.get(key))
        report["get_latency"] = percentiles(get_latency)
        list_latency = []
        for i in range(50):
            await timed(list_latency, store.list(f"/registry/pods/ns{i % (objects // 100)}/"))
        report["list_100_keys_latency"] = percentiles(list_latency)
        list_all_latency = []
        for _ in range(10):
            await timed(list_all_latency, store.list("/registry/pods/"))
        report[f"list_{objects}_keys_latency"] = percentiles(list_all_latency)

        report["watch_latency"] = await watch_latency(store, keys[:500], revisions)
    finally:
        await store.close()
    return report


async def watch_latency(store, keys, revisions) -> dict:
    watch = store.watch("/registry/pods/", await store.current_revision())
    samples = []
    for i, key in enumerate(keys):
        start = time.perf_counter()
        revisions[i] = await store.update(key, VALUE, revisions[i])
        event = await asyncio.wait_for(anext(watch), 5)
        samples.append(time.perf_counter() - start)
        assert event.revision == revisions[i]
    await watch.aclose()
    return percentiles(samples)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=2000)
    args = parser.parse_args()
    report = {"objects": args.objects, "value_bytes": len(VALUE)}
    with tempfile.TemporaryDirectory(prefix="netsim-bench-store-") as work:
        report["sqlite"] = asyncio.run(measure(f"sqlite://{work}/state.db", args.objects))
        with running_etcd(parent_dir=work) as url:
            report["etcd"] = asyncio.run(measure(url, args.objects))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
