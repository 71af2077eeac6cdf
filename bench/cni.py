"""ADD and DEL latency of netsim's bridge plugin against the reference bridge + host-local.

Every call is what a runtime does: exec the plugin executable with the CNI environment from
inside the host-side namespace. Variants: ours through the resident agent, ours in-process
(the shim's fallback), ours answered inside the runtime's own process without an exec (what a
netsim node agent does, `cni.invoke`), and /usr/lib/cni/bridge with /usr/lib/cni/host-local, each with
ipMasq true and false, alternated within every iteration so machine noise hits all alike.
Each variant has its own host namespace; every pod namespace is fresh. Prints one JSON document.

    .venv/bin/python bench/cni.py [--iterations 30]
"""

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cni.agent import CNIAgent  # noqa: E402
from cni.install import install_plugin  # noqa: E402
from cni.invoke import InProcessExec  # noqa: E402
from netsim import netns  # noqa: E402

REFERENCE_DIR = "/usr/lib/cni"


def conf(name, data_dir, masq):
    return {"cniVersion": "1.0.0", "name": name, "type": "bridge", "bridge": "cni0", "isGateway": True,
            "isDefaultGateway": True, "ipMasq": masq,
            "ipam": {"type": "host-local", "dataDir": data_dir, "ranges": [[{"subnet": "10.88.0.0/16"}]]}}


def _exec(executable, stdin, env):
    return subprocess.run([executable], input=stdin, env=env, capture_output=True)


def call(host, executable, bin_dir, command, cid, pod, stdin, agent=None, invoke=_exec):
    env = {"PATH": os.environ["PATH"], "CNI_COMMAND": command, "CNI_CONTAINERID": cid, "CNI_NETNS": pod,
           "CNI_IFNAME": "eth0", "CNI_PATH": bin_dir}
    if agent:
        env["NETSIM_CNI_AGENT"] = agent
    with netns.enter(host):
        start = time.perf_counter()
        proc = invoke(executable, stdin, env)
        elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{executable} {command} {cid} failed: {proc.stdout.decode()} {proc.stderr.decode()}")
    return elapsed * 1e3


def summary(samples):
    ordered = sorted(samples)
    return {"median_ms": round(statistics.median(ordered), 2),
            "p90_ms": round(ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], 2), "n": len(ordered)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=30)
    opts = parser.parse_args()

    prefix = f"b{secrets.token_hex(3)}"
    work = tempfile.mkdtemp(prefix="netsim-bench-cni-")
    shim = install_plugin(os.path.join(work, "bin"))
    agent = CNIAgent(os.path.join(work, "agent.sock")).start()
    no_exec = InProcessExec(agent.plugins, fallback=_exec)
    variants = {
        "ours_agent": (shim, os.path.join(work, "bin"), agent.socket_path, _exec),
        "ours_in_process": (shim, os.path.join(work, "bin"), None, _exec),
        "ours_no_exec": (shim, os.path.join(work, "bin"), None, no_exec),
        "reference": (os.path.join(REFERENCE_DIR, "bridge"), REFERENCE_DIR, None, _exec),
    }
    hosts, pods = {}, []
    samples = {(v, m, c): [] for v in variants for m in (True, False) for c in ("ADD", "DEL")}
    try:
        for variant in variants:
            for masq in (True, False):
                hosts[variant, masq] = netns.create(f"{prefix}{variant[:6]}{int(masq)}")
        for i in range(opts.iterations):
            for variant, (executable, bin_dir, sock, invoke) in variants.items():
                for masq in (True, False):
                    host = hosts[variant, masq]
                    stdin = json.dumps(conf(f"bench{int(masq)}", os.path.join(work, variant), masq)).encode()
                    pod_name = f"{prefix}p{len(pods)}"
                    pods.append(pod_name)
                    pod = netns.create(pod_name)
                    cid = f"{prefix}-{i}"
                    args = (host, executable, bin_dir)
                    samples[variant, masq, "ADD"].append(call(*args, "ADD", cid, pod, stdin, sock, invoke))
                    samples[variant, masq, "DEL"].append(call(*args, "DEL", cid, pod, stdin, sock, invoke))
                    netns.delete(pod_name)
    finally:
        agent.stop()
        for name in pods:
            netns.delete(name)
        for path in hosts.values():
            netns.delete(os.path.basename(path))
        shutil.rmtree(work, ignore_errors=True)

    report = {"iterations": opts.iterations, "cpu_count": os.cpu_count(), "results": {}, "ratios_vs_reference": {}}
    for (variant, masq, command), values in samples.items():
        report["results"].setdefault(variant, {}).setdefault(f"ipMasq={str(masq).lower()}", {})[command] = summary(values)
    for variant in ("ours_agent", "ours_in_process", "ours_no_exec"):
        for masq in ("ipMasq=true", "ipMasq=false"):
            for command in ("ADD", "DEL"):
                ours = report["results"][variant][masq][command]["median_ms"]
                ref = report["results"]["reference"][masq][command]["median_ms"]
                report["ratios_vs_reference"].setdefault(variant, {}).setdefault(masq, {})[command] = round(ours / ref, 2)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
