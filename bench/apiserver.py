"""API server throughput and latency, SQLite and etcd side by side.

The server runs in its own process (as `netsim apiserver` does) and the client, an aiohttp
session over keep-alive HTTPS connections, in this one, so on a 2-core machine each gets about
a core. Figures: creates/s and updates/s with `--concurrency` requests in flight (with p50/p99
of those mutating calls), GET and LIST latency one request at a time, and watch event latency:
from sending a create to receiving its watch event on an open watch (an upper bound of the
server's own delay, as it includes the create). Prints one JSON document.

    .venv/bin/python bench/apiserver.py [--objects 2000] [--concurrency 4] [--stores sqlite,etcd]
"""

import argparse
import asyncio
import json
import os
import ssl
import subprocess
import sys
import tempfile
import time

import aiohttp

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.support.etcd import running_etcd  # noqa: E402

SERVER = """
import sys
from cluster.apiserver.serve import serve
serve(sys.argv[1], "127.0.0.1:0", sys.argv[2] + "/kubeconfig", sys.argv[2] + "/tokens.csv",
      ready=lambda s: print(s.url, s.cert, flush=True))
"""


def pct(values, q):
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))] * 1000, 2) if values else None


def summary(latencies):
    return {"p50_ms": pct(latencies, 0.5), "p99_ms": pct(latencies, 0.99)}


async def measure(url, token, cafile, objects, concurrency):
    ctx = ssl.create_default_context(cafile=cafile)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(ssl=ctx, limit=concurrency + 2)
    ns = f"bench{int(time.time())}"
    base = f"{url}/api/v1/namespaces/{ns}/configmaps"
    async with aiohttp.ClientSession(connector=connector, headers=headers) as http:
        async with http.post(f"{url}/api/v1/namespaces", json={"metadata": {"name": ns}}) as r:
            assert r.status == 201, await r.text()

        async def run_all(make_request):
            latencies, queue = [], list(range(objects))

            async def worker():
                while queue:
                    i = queue.pop()
                    t0 = time.perf_counter()
                    await make_request(i)
                    latencies.append(time.perf_counter() - t0)

            t0 = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return objects / (time.perf_counter() - t0), latencies

        rvs = {}

        async def create(i):
            body = {"metadata": {"name": f"cm-{i:06d}", "labels": {"bench": "yes"}}, "data": {"i": str(i)}}
            async with http.post(base, json=body) as r:
                assert r.status == 201, await r.text()
                rvs[i] = (await r.json())["metadata"]["resourceVersion"]

        async def update(i):
            body = {"metadata": {"name": f"cm-{i:06d}", "resourceVersion": rvs[i]}, "data": {"i": f"{i}+"}}
            async with http.put(f"{base}/cm-{i:06d}", json=body) as r:
                assert r.status == 200, await r.text()

        creates, create_lat = await run_all(create)
        updates, update_lat = await run_all(update)

        get_lat = []
        for i in range(min(objects, 500)):
            t0 = time.perf_counter()
            async with http.get(f"{base}/cm-{i:06d}") as r:
                await r.read()
            get_lat.append(time.perf_counter() - t0)
        list_lat = []
        for _ in range(20):
            t0 = time.perf_counter()
            async with http.get(base) as r:
                await r.read()
            list_lat.append(time.perf_counter() - t0)
        small_lat = []
        for _ in range(50):
            t0 = time.perf_counter()
            async with http.get(base, params={"limit": "100"}) as r:
                await r.read()
            small_lat.append(time.perf_counter() - t0)

        # Watch latency: one open watch, then one create at a time.
        rv = (await (await http.get(base, params={"limit": "1"})).json())["metadata"]["resourceVersion"]
        watch_lat, sent = [], {}
        async with http.get(base, params={"watch": "true", "resourceVersion": rv},
                            timeout=aiohttp.ClientTimeout(total=None, sock_read=30)) as stream:
            async def reader():
                async for line in stream.content:
                    event = json.loads(line)
                    name = event["object"]["metadata"]["name"]
                    if event["type"] == "ADDED" and name in sent:
                        watch_lat.append(time.perf_counter() - sent.pop(name))
                        if len(watch_lat) == 300:
                            return

            task = asyncio.create_task(reader())
            for i in range(300):
                name = f"w-{i:04d}"
                sent[name] = time.perf_counter()
                async with http.post(base, json={"metadata": {"name": name}}) as r:
                    await r.read()
                while name in sent and not task.done():
                    await asyncio.sleep(0)
                    if time.perf_counter() - sent.get(name, time.perf_counter()) > 0.001:
                        await asyncio.sleep(0.0005)
            await asyncio.wait_for(task, 30)
    return {"creates_per_s": round(creates), "create": summary(create_lat),
            "updates_per_s": round(updates), "update": summary(update_lat),
            "get": summary(get_lat), f"list_{objects}": summary(list_lat),
            "list_limit_100": summary(small_lat), "watch_event": summary(watch_lat),
            "concurrency": concurrency, "objects": objects}


def run_store(store_url, objects, concurrency):
    with tempfile.TemporaryDirectory(prefix="bench-apiserver-") as tmp:
        proc = subprocess.Popen([sys.executable, "-c", SERVER, store_url.replace("TMP", tmp), tmp],
                                stdout=subprocess.PIPE, text=True,
                                cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        try:
            url, cafile = proc.stdout.readline().split()
            token = open(f"{tmp}/tokens.csv").read().split(",", 1)[0]
            return asyncio.run(measure(url, token, cafile, objects, concurrency))
        finally:
            proc.terminate()
            proc.wait(10)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--objects", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--stores", default="sqlite,etcd")
    args = ap.parse_args()
    results = {}
    for store in args.stores.split(","):
        if store == "sqlite":
            results["sqlite"] = run_store("sqlite://TMP/state.db", args.objects, args.concurrency)
        elif store == "etcd":
            with running_etcd() as url:
                results["etcd"] = run_store(url, args.objects, args.concurrency)
    print(json.dumps({"cpus": os.cpu_count(), **results}, indent=2))


if __name__ == "__main__":
    main()
