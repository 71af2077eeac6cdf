"""The node agent: one resident process per node, the kubelet's forerunner.

It runs inside its node's network namespace (so CNI plugins it executes see the node as
their host side), serves netsim's CNI plugin calls from memory (cni.agent; its own runtime
calls skip the exec of netsim's shim, see cni.invoke; NETSIM_CNI_EXEC=always keeps the exec
for comparison), and brings up the
pods the plan puts on its node: sandbox, CNI ADD through the libcni-style runtime, containers
(built-in images on one resident asyncio server, other commands as processes). It reports
each pod's status to `nodes/<node>/pods.json`, which `netsim up` and `netsim status` read.
"""

import argparse
import asyncio
import concurrent.futures
import json
import os
import signal
import sys
import time
import traceback

from cni.runtime import CNIConfig, RuntimeConf, load_conflist
from cni.spec import CNIError
from netsim import sandbox
from netsim.containers import images, process, resident
from netsim.ledger import Ledger
from netsim.state import ClusterState

# Pods brought up at once: CNI ADD and sandbox work is short and mostly kernel time; a few in
# flight hide the plugin exec's latency without oversubscribing two cores.
PODS_IN_FLIGHT = 8


def conflist_path(state, node):
    return os.path.join(state.node_dir(node), "cni", "10-netsim.conflist")


def agent_socket(state, node):
    return os.path.join(state.node_dir(node), "cni.sock")


def status_path(state, node):
    return os.path.join(state.node_dir(node), "pods.json")


def _env_of(container, pod, ip):
    """A container's environment: `env` values and the downward API's common fieldRefs."""
    fields = {
        "metadata.name": pod["name"],
        "metadata.namespace": pod["namespace"],
        "spec.nodeName": pod["node"],
        "status.podIP": ip,
    }
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
           "HOSTNAME": pod["name"]}
    for e in container.get("env") or []:
        if "value" in e:
            env[e["name"]] = str(e["value"])
        elif "fieldRef" in (e.get("valueFrom") or {}):
            env[e["name"]] = fields.get(e["valueFrom"]["fieldRef"].get("fieldPath"), "")
    return env


class NodeAgent:
    def __init__(self, state, node_name):
        self.state = state
        with open(state.plan) as f:
            self.plan = json.load(f)
        self.node = next(n for n in self.plan["nodes"] if n["name"] == node_name)
        self.ledger = Ledger(state.ledger)
        self.pods = [p for p in self.plan["pods"] if p["node"] == node_name]
        self.status = {f"{p['namespace']}/{p['name']}": {"phase": "Pending"} for p in self.pods}
        self.server = resident.ResidentServer(on_exit=self._builtin_exited)
        self.processes = {}  # "ns/name" -> {container name: Popen}
        self.cni_agent = None
        env = {}
        if self.plan["cni"]["plugins"] == "netsim":
            from cni.agent import CNIAgent

            sock = agent_socket(state, node_name)
            self.cni_agent = CNIAgent(sock)
            self.cni_agent.start()
            env["NETSIM_CNI_AGENT"] = sock
        self.cni = CNIConfig(path=self.plan["cni"]["path"], cache_dir=self.plan["cni"]["cacheDir"], env=env)
        if self.cni_agent and os.environ.get("NETSIM_CNI_EXEC") != "always":
            from cni.invoke import InProcessExec

            self.cni.exec = InProcessExec(self.cni_agent.plugins, fallback=self.cni.run_executable)
        self.conflist = load_conflist(conflist_path(state, node_name))
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=PODS_IN_FLIGHT)

    def write_status(self):
        path = status_path(self.state, self.node["name"])
        tmp = f"{path}.tmp"
        with open(tmp, "w") as f:
            json.dump({"agentPid": os.getpid(), "pods": self.status}, f)
        os.replace(tmp, path)

    def _sandbox_and_network(self, pod):
        """Blocking part of a pod's start: namespaces and CNI ADD (runs on the pool)."""
        pod_dir = self.state.pod_dir(pod["namespace"], pod["name"])
        netns_path, uts = sandbox.create(self.ledger, pod, pod_dir)
        rt = RuntimeConf(container_id=pod["containerID"], netns=netns_path, ifname="eth0",
                         args=[("IgnoreUnknown", "1"), ("K8S_POD_NAMESPACE", pod["namespace"]),
                               ("K8S_POD_NAME", pod["name"]),
                               ("K8S_POD_INFRA_CONTAINER_ID", pod["containerID"])])
        result = self.cni.add_network_list(self.conflist, rt)
        # The plugin made these; recorded after the fact (the ledger cannot see inside a plugin).
        # They live in the node's and the pod's namespaces and go away with them.
        for iface in result.get("interfaces", []):
            self.ledger.record("link", name=iface.get("name"), type="cni",
                               netns=iface.get("sandbox") or self.node["netns"], pod=pod["netns"])
        ip = result["ips"][0]["address"].split("/")[0]
        return pod_dir, netns_path, uts, ip

    async def start_pod(self, pod):
        key = f"{pod['namespace']}/{pod['name']}"
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        try:
            pod_dir, netns_path, uts, ip = await loop.run_in_executor(self.pool, self._sandbox_and_network, pod)
            ctx = resident.PodContext(namespace=pod["namespace"], name=pod["name"], node=pod["node"], ip=ip,
                                      netns=netns_path, uts=uts, log_dir=pod_dir, env={})
            containers = pod["manifest"]["spec"]["containers"]
            # Containers recorded before they start, so that an exit reported while starting lands;
            # the pod turns Running only once every container runs (what `netsim up` waits for).
            self.status[key] = {
                "phase": "Pending", "ip": ip,
                "containers": {c["name"]: {"state": "running"} for c in containers},
            }
            builtins, procs = [], {}
            self.processes[key] = procs
            for c in containers:
                env = _env_of(c, pod, ip)
                # Built-ins read literal env only: hand them the downward API's values as literals.
                spec = images.resolve({**c, "env": [{"name": k, "value": v} for k, v in env.items()]})
                if spec is not None:
                    builtins.append((c["name"], spec))
                    continue
                argv = [str(a) for a in (c.get("command") or []) + (c.get("args") or [])]
                log = os.path.join(pod_dir, f"{c['name']}.log")
                proc = process.spawn(argv, netns=netns_path, uts=uts, env=env,
                                     log_path=log, cwd=c.get("workingDir") or "/")
                self.ledger.record_process(proc.pid, role=f"container {key}/{c['name']}")
                procs[c["name"]] = proc
            if builtins:
                await self.server.start_pod(ctx, builtins)
            self.status[key]["phase"] = "Running"
            self.status[key]["startedIn"] = round(time.monotonic() - started, 4)
            self._settle(self.status[key])
        except CNIError as e:
            self.status[key] = {"phase": "Failed", "reason": "NetworkSetupFailed",
                                "message": f"CNI ADD failed: {e}"}
        except Exception as e:
            self.status[key] = {"phase": "Failed", "reason": type(e).__name__, "message": str(e),
                                "trace": traceback.format_exc(limit=5)}

    def _builtin_exited(self, namespace, name, container, code):
        st = self.status.get(f"{namespace}/{name}")
        if st and "containers" in st:
            st["containers"][container] = {"state": "terminated", "exitCode": code}
            self._settle(st)
            self.write_status()

    @staticmethod
    def _settle(st):
        """A pod whose containers all ended has Succeeded (all 0) or Failed."""
        states = st["containers"].values()
        if st["phase"] == "Running" and all(s["state"] == "terminated" for s in states):
            st["phase"] = "Succeeded" if all(s["exitCode"] == 0 for s in states) else "Failed"

    def reap(self):
        """Record container processes that exited."""
        changed = False
        for key, procs in self.processes.items():
            st = self.status[key]
            for name, proc in procs.items():
                code = proc.poll()
                cs = st["containers"][name]
                if code is not None and cs["state"] == "running":
                    st["containers"][name] = {"state": "terminated", "exitCode": code}
                    changed = True
            if changed:
                self._settle(st)
        return changed

    async def run(self):
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        self.write_status()
        sem = asyncio.Semaphore(PODS_IN_FLIGHT)

        async def one(pod):
            async with sem:
                await self.start_pod(pod)

        tasks = [asyncio.create_task(one(p)) for p in self.pods]
        pending = set(tasks)
        while pending:
            _, pending = await asyncio.wait(pending, timeout=0.1)
            self.write_status()
        while not stop.is_set():
            if self.reap():
                self.write_status()
            try:
                await asyncio.wait_for(stop.wait(), timeout=0.5)
            except asyncio.TimeoutError:
                pass
        await self.shutdown()

    async def shutdown(self):
        await self.server.close()
        for procs in self.processes.values():
            for proc in procs.values():
                process.stop(proc, grace=1.0)
        if self.cni_agent:
            self.cni_agent.stop()


def main(argv=None):
    ap = argparse.ArgumentParser(prog="netsim-node-agent")
    ap.add_argument("--cluster", required=True)
    ap.add_argument("--node", required=True)
    args = ap.parse_args(argv)
    state = ClusterState(args.cluster)
    agent = NodeAgent(state, args.node)
    agent.ledger.record_process(os.getpid(), role=f"node-agent {args.node}")
    asyncio.run(agent.run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
