"""Fixtures for the bridge plugin's kernel tests: a throwaway host namespace, pod namespaces,
the installed shim and a resident agent; each removes exactly what it created."""

import contextlib
import json
import os
import secrets
import subprocess

import pytest

from cni.agent import CNIAgent
from cni.install import install_plugin
from netsim import netns


class CNIHost:
    """A "node": a host-side namespace, its pods, and a way to call the plugin from inside it."""

    def __init__(self, tmp_path, prefix):
        self.prefix = prefix
        self.name = f"{prefix}h"
        self.path = netns.create(self.name)
        self.pods = []
        self.bin_dir = str(tmp_path / "bin")
        self.shim = install_plugin(self.bin_dir)
        self.data_dir = str(tmp_path / "data")
        self.agent_socket = None

    def pod(self):
        name = f"{self.prefix}p{len(self.pods)}"
        self.pods.append(name)
        return netns.create(name)

    def conf(self, **extra):
        doc = {"cniVersion": "1.0.0", "name": f"{self.prefix}net", "type": "bridge", "bridge": "cni0",
               "isGateway": True, "isDefaultGateway": True, "ipMasq": True,
               "ipam": {"type": "host-local", "dataDir": self.data_dir,
                        "ranges": [[{"subnet": "10.77.0.0/24"}]], "routes": [{"dst": "10.99.0.0/16"}]}}
        doc.update(extra)
        return doc

    def call(self, command, container_id="", netns_path="", ifname="eth0", conf=None, stdin=None,
             agent=True, env=None):
        """Run the installed plugin executable inside the host namespace; (exit code, parsed stdout)."""
        full_env = {"PATH": os.environ["PATH"], "CNI_COMMAND": command, "CNI_PATH": self.bin_dir}
        for key, value in (("CNI_CONTAINERID", container_id), ("CNI_NETNS", netns_path), ("CNI_IFNAME", ifname)):
            if value:
                full_env[key] = value
        if agent and self.agent_socket:
            full_env["NETSIM_CNI_AGENT"] = self.agent_socket
        full_env.update(env or {})
        data = stdin if stdin is not None else json.dumps(conf or self.conf()).encode()
        # A child forked from a thread inside the namespace starts there: no `ip netns exec`.
        with netns.enter(self.path):
            proc = subprocess.run([self.shim], input=data, env=full_env, capture_output=True, timeout=60)
        out = json.loads(proc.stdout) if proc.stdout.strip() else None
        return proc.returncode, out

    def run(self, *cmd, where=None):
        with netns.enter(where or self.path):
            return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout

    def nat_rules(self):
        return [line for line in self.run("iptables-legacy-save", "-t", "nat").splitlines() if "CNI-" in line]

    def ipam_files(self):
        net = os.path.join(self.data_dir, f"{self.prefix}net")
        return sorted(f for f in os.listdir(net) if f[0].isdigit()) if os.path.isdir(net) else []

    def close(self):
        for name in self.pods:
            netns.delete(name)
        netns.delete(self.name)


@pytest.fixture
def cni_host(tmp_path):
    host = CNIHost(tmp_path, f"t{secrets.token_hex(3)}")
    try:
        yield host
    finally:
        host.close()


@pytest.fixture(params=["agent", "in-process"])
def cni_node(request, cni_host, tmp_path):
    """The host, called through the resident agent and through the shim's in-process fallback."""
    if request.param == "agent":
        agent = CNIAgent(str(tmp_path / "agent.sock"))
        agent.start()
        cni_host.agent_socket = agent.socket_path
        try:
            yield cni_host
        finally:
            agent.stop()
    else:
        yield cni_host


def tcp_connects(server_ns, client_ns, address, port=8080):
    """True when a TCP connection from CLIENT_NS reaches a listener in SERVER_NS at ADDRESS."""
    import socket

    with netns.enter(server_ns):
        server = socket.socket()
    try:
        server.bind((address, port))
        server.listen(1)
        with netns.enter(client_ns):
            client = socket.socket()
        with contextlib.closing(client):
            client.settimeout(3)
            try:
                client.connect((address, port))
            except OSError:
                return False
            conn, _ = server.accept()
            conn.close()
            return True
    finally:
        server.close()


__all__ = ["cni_host", "cni_node", "tcp_connects", "CNIHost"]
