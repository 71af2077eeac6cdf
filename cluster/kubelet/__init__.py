"""The kubelet: one per node, it runs the pods the API server binds to its node.

`Kubelet(client, KubeletConfig(...)).run()` registers the Node, heartbeats its Lease, and
reconciles every pod with `spec.nodeName=<node>`: sandbox and CNI ADD, init containers,
sidecars, containers with restartPolicy and crash-loop backoff, probes, environment, volumes,
cgroup limits, logs, status; graceful deletion. `python -m cluster.kubelet --help` runs one.
"""

from .kubelet import Kubelet, KubeletConfig

__all__ = ["Kubelet", "KubeletConfig"]
