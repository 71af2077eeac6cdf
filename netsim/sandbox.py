"""Pod sandboxes: the namespaces a pod's containers share, before and after CNI wires them.

A sandbox is a network namespace with `lo` up (the container runtime's job, as containerd
does it, so conflists need no loopback plugin) and a UTS namespace whose hostname is the pod
name, as in Kubernetes. Both are recorded in the ledger before they exist.
"""

import os

from . import netns

HOSTNAME_MAX = 63  # Kubernetes truncates a pod's hostname to 63 characters


def uts_path(pod_dir):
    return os.path.join(pod_dir, "uts")


def create(ledger, pod, pod_dir):
    """Make POD's namespaces (POD is a plan entry); returns (netns path, uts path)."""
    who = f"{pod['namespace']}/{pod['name']}"
    os.makedirs(pod_dir, exist_ok=True)
    uts = uts_path(pod_dir)
    ledger.record("netns", name=pod["netns"], role="pod", pod=who)
    ledger.record("uts", path=uts, pod=who)
    path = netns.create_sandbox(pod["netns"], uts, pod["name"][:HOSTNAME_MAX].rstrip("-."))
    return path, uts
