"""Kernel-test fixtures: clusters brought up through the real CLI and always taken down."""

import json
import os
import secrets
import subprocess
import sys

import pytest
import yaml

NETSIM = [sys.executable, "-m", "netsim.cli.main"]


class Cluster:
    """A running cluster driven through the `netsim` command, as a user drives it."""

    def __init__(self, name, state_dir, lab_path):
        self.name, self.state_dir, self.lab_path = name, state_dir, lab_path
        self.env = {**os.environ, "NETSIM_STATE_DIR": state_dir}

    def run(self, *args, check=True, timeout=120):
        proc = subprocess.run(NETSIM + list(args), env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"netsim {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def up(self):
        return self.run("up", "-f", self.lab_path, timeout=300)

    def down(self):
        return self.run("down", "--name", self.name, check=False)

    def status(self):
        return json.loads(self.run("status", "--name", self.name, "-o", "json").stdout)

    def pod(self, ref):
        ns, name = ref.split("/")
        return next(p for p in self.status()["pods"] if p["namespace"] == ns and p["name"] == name)

    def exec(self, target, *cmd, check=True):
        return self.run("exec", "--name", self.name, target, "--", *cmd, check=check)

    def probe(self, src, dst, *extra):
        return self.run("probe", "--name", self.name, src, dst, *extra, "-o", "json", check=False)


def pod(name, node=None, namespace=None, args=("netexec", "--http-port=8080", "--udp-port=8081"), **extra):
    spec = {"containers": [{"name": "c", "image": "registry.k8s.io/e2e-test-images/agnhost:2.53", "args": list(args)}]}
    if node:
        spec["nodeName"] = node
    spec.update(extra)
    meta = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


@pytest.fixture
def make_cluster(tmp_path):
    """make_cluster(lab_dict) -> a Cluster that is up; every one is taken down after the test."""
    made = []

    def make(lab, up=True):
        name = lab.get("name") or f"t{secrets.token_hex(3)}"
        lab = {**lab, "name": name}
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(lab))
        c = Cluster(name, str(tmp_path / "state"), str(path))
        made.append(c)
        if up:
            c.up()
        return c

    yield make
    for c in made:
        c.down()
