"""A node for kubelet tests: an API server, a throwaway node namespace, a CNI conflist (netsim's
bridge + host-local in a temp dir) and `python -m cluster.kubelet` running for it; everything is
removed afterwards, also the pod namespaces a test left behind (found in the kubelet's ledger)."""

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time

import pytest

from cluster.api.resources import lookup
from cluster.client import Client
from cluster.kubelet.cgroups import Cgroups
from cluster.kubelet.sandboxes import load_records
from cni.install import install_plugin
from netsim import ledger as ledgermod
from netsim import netns
from tests.support.apiserver import running_apiserver

PODS = lookup("", "v1", "pods")
AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.53"


class Node:
    def __init__(self, api, tmp, prefix):
        self.api, self.prefix = api, prefix
        self.name = f"{prefix}-node"
        self.netns = f"{prefix}n"
        self.root = str(tmp / "kubelet")
        self.bin_dir = str(tmp / "bin")
        self.ipam_dir = str(tmp / "ipam")
        self.conflist = str(tmp / "10-net.conflist")
        self.log_path = str(tmp / "kubelet.log")
        self.client = Client.from_kubeconfig(api.kubeconfig)
        self.proc = None

    def setup(self):
        netns.create(self.netns)
        install_plugin(self.bin_dir)
        with open(self.conflist, "w") as f:
            json.dump({"cniVersion": "1.0.0", "name": f"{self.prefix}net", "plugins": [{
                "type": "bridge", "bridge": "cni0", "isGateway": True, "isDefaultGateway": True,
                "ipam": {"type": "host-local", "dataDir": self.ipam_dir,
                         "ranges": [[{"subnet": "10.244.7.0/24"}]]}}]}, f)

    def start(self):
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cluster.kubelet", "--kubeconfig", self.api.kubeconfig,
             "--node", self.name, "--root-dir", self.root, "--netns", self.netns,
             "--conflist", self.conflist, "--cni-bin-dir", self.bin_dir, "--node-ip", "192.168.77.2",
             "--pod-cidr", "10.244.7.0/24", "--crash-loop-backoff-initial", "0.5",
             "--crash-loop-backoff-max", "2", "--node-lease-renew-interval", "1"],
            stdout=log, stderr=log, start_new_session=True)
        log.close()

    def wait_registered(self, timeout=30):
        nodes = lookup("", "v1", "nodes")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                return self.call(self.client.get(nodes, self.name))
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError("the kubelet did not register its node:\n" + open(self.log_path).read()[-3000:])

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(20)
        self.proc = None

    def call(self, coro, timeout=30):
        return self.api.call(coro, timeout)

    def pod(self, name):
        try:
            return self.call(self.client.get(PODS, name, "default"))
        except Exception as e:
            if getattr(e, "code", None) == 404:
                return None
            raise

    def create(self, spec, name=None):
        name = name or f"p{secrets.token_hex(3)}"
        spec = {"nodeName": self.name, "terminationGracePeriodSeconds": 2, **spec}
        self.call(self.client.create(PODS, {"apiVersion": "v1", "kind": "Pod",
                                            "metadata": {"name": name, "namespace": "default"},
                                            "spec": spec}, "default"))
        return name

    def delete(self, name, **kw):
        self.call(self.client.delete(PODS, name, "default", **kw))

    def wait(self, name, predicate, timeout=20, what="condition"):
        deadline = time.monotonic() + timeout
        pod = None
        while time.monotonic() < deadline:
            pod = self.pod(name)
            if predicate(pod):
                return pod
            time.sleep(0.1)
        raise AssertionError(f"pod {name}: {what} not reached in {timeout}s; last: "
                             f"{json.dumps((pod or {}).get('status'), indent=1)}\n--- kubelet log:\n"
                             + open(self.log_path).read()[-3000:])

    def running(self, name, timeout=20):
        return self.wait(name, lambda p: p and p["status"].get("phase") == "Running"
                         and p["status"].get("podIP"), timeout, "phase Running with an IP")

    def gone(self, name, timeout=20):
        return self.wait(name, lambda p: p is None, timeout, "deletion")

    def run_in_node(self, *cmd):
        with netns.enter(self.netns):
            return subprocess.run(cmd, capture_output=True, text=True, timeout=20)

    def ipam_leases(self):
        d = os.path.join(self.ipam_dir, f"{self.prefix}net")
        return sorted(f for f in os.listdir(d) if f[0].isdigit()) if os.path.isdir(d) else []

    def pod_namespaces(self):
        return sorted(n for n in os.listdir(netns.NETNS_RUN_DIR) if n.startswith(self.netns + "_"))

    def teardown(self):
        self.stop(signal.SIGKILL)
        ledgermod.teardown(ledgermod.Ledger(os.path.join(self.root, "ledger.jsonl")), grace=0.5)
        # Process containers outlive a killed kubelet: stop what runs in the node's pods.
        netns.delete(self.netns)
        for record in load_records(self.root):
            for path in record.cgroups:
                with contextlib.suppress(OSError):
                    os.rmdir(path)
        Cgroups("netsim", self.name).remove_node()
        self.call(self.client.close())


@pytest.fixture(scope="module")
def kubelet_api(tmp_path_factory):
    directory = tmp_path_factory.mktemp("kubelet-api")
    with running_apiserver(f"sqlite://{directory}/state.db", str(directory)) as api:
        yield api


@pytest.fixture(scope="module")
def node(kubelet_api, tmp_path_factory):
    n = Node(kubelet_api, tmp_path_factory.mktemp("node"), f"t{secrets.token_hex(3)}")
    try:
        n.setup()
        n.start()
        n.wait_registered()
        yield n
    finally:
        with contextlib.suppress(Exception):
            n.teardown()


def http_get(node, ip, path, port=8080):
    out = node.run_in_node("python3", "-c", (
        "import sys,urllib.request;"
        f"print(urllib.request.urlopen('http://{ip}:{port}{path}', timeout=3).read().decode())"))
    return out.stdout.strip() if out.returncode == 0 else None
