"""Pod sandboxes: the namespaces a pod's containers share, before and after CNI wires them.

A sandbox is a network namespace with `lo` up (the container runtime's job, as containerd
does it, so conflists need no loopback plugin) and a UTS namespace whose hostname is the pod
name, as in Kubernetes. Both are recorded in the ledger before they exist.
"""

import os

from . import links, netns

HOSTNAME_MAX = 63  # Kubernetes truncates a pod's hostname to 63 characters


def uts_path(pod_dir):
    return os.path.join(pod_dir, "uts")


def create(ledger, pod, pod_dir):
    """Make POD's namespaces (POD is a plan entry); returns (netns path, uts path)."""
    who = f"{pod['namespace']}/{pod['name']}"
    os.makedirs(pod_dir, exist_ok=True)
    ledger.record("netns", name=pod["netns"], role="pod", pod=who)
    path = netns.create(pod["netns"])
    uts = uts_path(pod_dir)
    ledger.record("uts", path=uts, pod=who)
    netns.create_uts(uts, pod["name"][:HOSTNAME_MAX].rstrip("-."))
    with links.socket_in(pod["netns"]) as ipr:
        links.set_up(ipr, "lo")
    return path, uts


def delete(pod, pod_dir):
    """Remove POD's namespaces; its containers must be stopped first (idempotent)."""
    netns.delete(pod["netns"])
    netns.delete_bound(uts_path(pod_dir))
