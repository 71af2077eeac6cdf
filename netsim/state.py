"""Where a cluster keeps its state on disk: the ledger, the plan, per-node and per-pod files.

A cluster named C lives in `$NETSIM_STATE_DIR/C` (default base `/var/lib/netsim`), so two
clusters with different names never share a file.
"""

import os
import re

DEFAULT_BASE = "/var/lib/netsim"

# Names on disk and in kernel objects must round-trip through paths and link names.
_CLUSTER_NAME = re.compile(r"^[a-z]([a-z0-9-]{0,10}[a-z0-9])?$")


def base_dir():
    return os.environ.get("NETSIM_STATE_DIR") or DEFAULT_BASE


def check_cluster_name(name):
    """A cluster name is a DNS label of at most 12 characters: it prefixes kernel names."""
    if not isinstance(name, str) or not _CLUSTER_NAME.match(name):
        return (f"cluster name {name!r} is not valid: expected 1-12 lowercase letters, digits "
                "or '-', starting with a letter and not ending with '-'")
    return None


class ClusterState:
    """Paths of one cluster's state directory."""

    def __init__(self, name, base=None):
        self.name = name
        self.root = os.path.join(base or base_dir(), name)

    def path(self, *parts):
        return os.path.join(self.root, *parts)

    @property
    def ledger(self):
        return self.path("ledger.jsonl")

    @property
    def plan(self):
        return self.path("plan.json")

    def node_dir(self, node):
        return self.path("nodes", node)

    def pod_dir(self, namespace, name):
        return self.path("pods", f"{namespace}_{name}")

    def exists(self):
        return os.path.exists(self.ledger)


def list_clusters(base=None):
    """Names of the clusters that have a ledger under the base directory."""
    base = base or base_dir()
    try:
        entries = sorted(os.listdir(base))
    except FileNotFoundError:
        return []
    return [e for e in entries if os.path.exists(os.path.join(base, e, "ledger.jsonl"))]
