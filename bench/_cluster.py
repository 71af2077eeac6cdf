"""A throwaway cluster for a benchmark: `netsim up` in a private state directory, `netsim down`
after, whatever happens in between. Benchmarks run netsim as a user does, through its command."""

import contextlib
import dataclasses
import os
import subprocess
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def netsim(args, env):
    proc = subprocess.run([sys.executable, "-m", "netsim.cli.main", *args], env=env, capture_output=True,
                          text=True, cwd=ROOT, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"netsim {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


@dataclasses.dataclass
class RunningCluster:
    name: str
    root: str  # the cluster's state directory (plan.json, ledger.jsonl, kubeconfig, nodes/)

    @property
    def kubeconfig(self):
        return os.path.join(self.root, "kubeconfig")


@contextlib.contextmanager
def running_cluster(name, nodes, tmp):
    """A cluster NAME of NODES nodes and no pods, its state under TMP/state; taken down after."""
    path = os.path.join(tmp, f"{name}.yaml")
    with open(path, "w") as f:
        yaml.safe_dump({"name": name, "nodes": nodes}, f)
    state = os.path.join(tmp, "state")
    env = {**os.environ, "NETSIM_STATE_DIR": state}
    netsim(["up", "-f", path], env)
    try:
        yield RunningCluster(name, os.path.join(state, name))
    finally:
        netsim(["down", "--name", name], env)
