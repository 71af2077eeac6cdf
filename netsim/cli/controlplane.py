"""The processes of a cluster: API server, controller manager, scheduler, and one kubelet and
one kube-proxy per node.

Each is started from the plan with its upstream-style flags, in its own session, its output in
`<state>/logs/<role>.log`, and recorded in the cluster's ledger at spawn with its argv and a
stop wave (kubelets and kube-proxies 0, controllers 1, API server 2), so that `netsim down` stops the kubelets
before anything could be recreated, also after the CLI was killed, and so that `netsim up` on
a cluster that is already there restarts exactly the processes that are missing, with the
same flags. The API server keeps its port across restarts (the kubeconfig every other process
read names it).
"""

import os
import subprocess
import sys
import time
from urllib.parse import urlparse

import yaml

from netsim import ledger as ledgermod

from .errors import UserError

APISERVER = "apiserver"
CONTROLLER_MANAGER = "controller-manager"
SCHEDULER = "scheduler"
KUBELET = "kubelet"
KUBE_PROXY = "kube-proxy"
WAVES = {KUBELET: 0, KUBE_PROXY: 0, CONTROLLER_MANAGER: 1, SCHEDULER: 1, APISERVER: 2}
APISERVER_START_S = 30.0
# The kubelet's defaults are upstream's (10 s lease, 10 s crash-loop backoff); these are the
# same for every node of a netsim cluster.
KUBELET_WORKERS = 8


def kubelet_role(node):
    return f"{KUBELET} {node}"


def kube_proxy_role(node):
    return f"{KUBE_PROXY} {node}"


def log_path(st, role):
    return st.path("logs", role.replace(" ", "-") + ".log")


def roles(plan):
    """Every process the cluster runs, in start order."""
    return ([APISERVER, CONTROLLER_MANAGER, SCHEDULER] + [kubelet_role(n["name"]) for n in plan["nodes"]]
            + [kube_proxy_role(n["name"]) for n in plan["nodes"]])


def argv(st, plan, role, port=0):
    cp = plan["controlPlane"]
    py = sys.executable
    if role == APISERVER:
        return [py, "-m", "netsim.cli.main", "apiserver", "--name", plan["cluster"], "--store", cp["store"],
                "--listen", f"127.0.0.1:{port}", "--kubeconfig", cp["kubeconfig"],
                "--service-cidr", cp["serviceCIDR"], "--service-node-port-range", cp["nodePortRange"]]
    if role == CONTROLLER_MANAGER:
        return [py, "-m", "cluster.controllermanager", "--kubeconfig", cp["kubeconfig"],
                "--lb-pool", ",".join(cp["loadBalancerPool"])]
    if role == SCHEDULER:
        return [py, "-m", "cluster.scheduler", "--kubeconfig", cp["kubeconfig"]]
    if role.split()[0] == KUBE_PROXY:
        node = next(n for n in plan["nodes"] if kube_proxy_role(n["name"]) == role)
        metrics = os.path.join(os.path.dirname(node["kubeletSocket"]), "kube-proxy.sock")
        return [py, "-m", "proxy.kubeproxy", "--kubeconfig", cp["kubeconfig"], "--hostname-override", node["name"],
                "--netns", node["netns"], "--cluster-cidr", plan["clusterCIDR"],
                "--metrics-bind-address", f"unix:{metrics}"]
    node = next(n for n in plan["nodes"] if kubelet_role(n["name"]) == role)
    args = [py, "-m", "cluster.kubelet", "--kubeconfig", cp["kubeconfig"], "--hostname-override", node["name"],
            "--root-dir", node["kubeletDir"], "--netns", node["netns"],
            "--pod-netns-prefix", cp["podNetnsPrefix"], "--cni-conf", node["conflistPath"],
            "--cni-bin-dir", ":".join(plan["cni"]["path"]), "--cni-cache-dir", plan["cni"]["cacheDir"],
            "--ledger", st.ledger, "--pod-cidr", node["podCIDR"], "--node-ip", node["ip"],
            "--cgroup-root", cp["cgroupRoot"], "--logs-socket", node["kubeletSocket"],
            "--max-pods", str(cp.get("maxPods", 110)), "--workers", str(KUBELET_WORKERS)]
    if plan["cni"]["plugins"] == "netsim":
        # netsim's plugin executables in the node answer from the kubelet (cni.agent).
        args += ["--cni-agent-socket", node["cniAgentSocket"]]
    return args


def make_socket_dirs(st, ledger, plan):
    """Create the nodes' socket directories; one outside the state dir is recorded for teardown."""
    for node in plan["nodes"]:
        d = os.path.dirname(node["kubeletSocket"])
        if not os.path.abspath(d).startswith(st.root + os.sep):
            ledger.record("dir", path=d)
        os.makedirs(d, exist_ok=True)


def spawn(st, ledger, role, args):
    """Start ROLE with ARGS, recorded in the ledger; returns the Popen."""
    path = log_path(st, role)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "ab") as log:
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True, close_fds=True)
    # SIGKILL on teardown: their state is in the store, the ledger and the kubelets' records.
    ledger.record_process(proc.pid, role=role, wave=WAVES[role.split()[0]], argv=args, log=path, stop="kill")
    return proc


def running(st):
    """{role: ledger entry} of the cluster's processes that run as recorded (the newest per role)."""
    out = {}
    for e in ledgermod.Ledger(st.ledger).entries():
        if e["kind"] == "process" and e.get("role", "").split(" ")[0] in WAVES:
            out[e["role"]] = e
    return {role: e for role, e in out.items() if ledgermod.alive_as_recorded(e)}


def apiserver_port(plan):
    """The port the API server listened on (its kubeconfig says), or 0 before its first start."""
    try:
        with open(plan["controlPlane"]["kubeconfig"]) as f:
            doc = yaml.safe_load(f)
        return urlparse(doc["clusters"][0]["cluster"]["server"]).port or 0
    except (OSError, KeyError, IndexError, TypeError, yaml.YAMLError):
        return 0


def start_apiserver(st, ledger, plan):
    """Start the API server and wait until it serves (its pid file is written once it listens)."""
    pid_file = st.path("apiserver.pid")
    if os.path.exists(pid_file):
        os.unlink(pid_file)
    proc = spawn(st, ledger, APISERVER, argv(st, plan, APISERVER, apiserver_port(plan)))
    deadline = time.monotonic() + APISERVER_START_S
    while not os.path.exists(pid_file):
        if proc.poll() is not None:
            raise UserError(f"The API server exited at start (code {proc.returncode}): "
                            f"{_tail(log_path(st, APISERVER))} (see {log_path(st, APISERVER)}).")
        if time.monotonic() > deadline:
            raise UserError(f"The API server did not listen within {APISERVER_START_S:.0f}s; "
                            f"see {log_path(st, APISERVER)}.")
        time.sleep(0.02)
    return proc


def _tail(path, lines=3):
    try:
        with open(path, errors="replace") as f:
            text = [line.strip() for line in f.read().splitlines() if line.strip()]
    except OSError:
        return ""
    return " / ".join(text[-lines:])


def check_alive(st, procs):
    """UserError naming the first of PROCS ({role: Popen}) that exited, with its log's last lines."""
    for role, proc in procs.items():
        if proc.poll() is not None:
            raise UserError(f"The {role} exited (code {proc.returncode}): {_tail(log_path(st, role))}; "
                            f"see {log_path(st, role)}.")
