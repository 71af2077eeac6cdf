#!/usr/bin/env python3
"""Time to bring up and tear down N pods on M nodes through `netsim up`/`netsim down`.

Prints one JSON document. Each pod runs agnhost netexec (a built-in held by its node's
kubelet) and `up` returns only once every pod, created through the API server, placed by the
scheduler and started by its kubelet, is Running and ready with its IP.
Runs each size in a throwaway state directory and removes everything it made.

    bench/bringup.py                    # 200 pods on 4 nodes, 3 runs
    bench/bringup.py --pods 1000 --nodes 10 --runs 1

After each `up`, one pod connects to every pod's netexec port (same node and across nodes):
`reachable` counts the answers, which is how a neighbour-table overflow would show.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import yaml

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from netsim.probe import probe_many  # noqa: E402


def lab(name, pods, nodes, cni):
    return {"name": name, "nodes": nodes, "cni": cni, "manifests": [
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"p{i}"},
         "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/e2e-test-images/agnhost:2.53",
                                  "args": ["netexec", "--http-port=8080"]}]}}
        for i in range(pods)]}


def netsim(args, env):
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "netsim.cli.main", *args], env=env,
                          capture_output=True, text=True)
    elapsed = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"netsim {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return elapsed, proc


def one_run(pods, nodes, cni, tmp, i):
    name = f"bench{i}"
    path = os.path.join(tmp, f"{name}.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(lab(name, pods, nodes, cni), f)
    env = {**os.environ, "NETSIM_STATE_DIR": os.path.join(tmp, "state")}
    up, _ = netsim(["up", "-f", path], env)
    _, st = netsim(["status", "--name", name, "-o", "json"], env)
    doc = json.loads(st.stdout)
    running = sum(1 for p in doc["pods"] if p["phase"] == "Running")
    src = "/run/netns/" + doc["pods"][0]["netns"]
    results = probe_many([{"src_netns": src, "dst": p["ip"], "port": 8080, "timeout": 2.0} for p in doc["pods"]])
    reachable = sum(1 for r in results if r.reachable)
    down, _ = netsim(["down", "--name", name], env)
    return {"up_s": up, "down_s": down, "running": running, "reachable": reachable}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pods", type=int, default=200)
    ap.add_argument("--nodes", type=int, default=4)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--cni", choices=["netsim", "reference"], default="netsim")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="netsim-bench-") as tmp:
        runs = [one_run(args.pods, args.nodes, args.cni, tmp, i) for i in range(args.runs)]
    ups = [r["up_s"] for r in runs]
    downs = [r["down_s"] for r in runs]
    print(json.dumps({
        "benchmark": "bringup",
        "pods": args.pods, "nodes": args.nodes, "cni": args.cni, "runs": args.runs,
        "up_s": {"median": round(statistics.median(ups), 3), "min": round(min(ups), 3), "max": round(max(ups), 3)},
        "down_s": {"median": round(statistics.median(downs), 3), "min": round(min(downs), 3),
                   "max": round(max(downs), 3)},
        "up_ms_per_pod": round(1000 * statistics.median(ups) / args.pods, 2),
        "pods_running": [r["running"] for r in runs],
        "pods_reachable": [r["reachable"] for r in runs],
    }, indent=2))


if __name__ == "__main__":
    main()
