"""The kubelet's Node object and its heartbeat Lease.

`register()` creates the Node (or, when it exists, updates its labels, podCIDR(s) and
status): addresses (InternalIP, Hostname), capacity and allocatable (cpu, memory, pods),
nodeInfo, the conditions MemoryPressure, DiskPressure, PIDPressure (False) and Ready (True,
KubeletReady), and the kubelet endpoint. `heartbeat()` renews the Lease in kube-node-lease every
`lease_seconds` (what the node lifecycle controller watches) and posts the node status again
every `status_report_seconds`, as upstream's nodeStatusReportFrequency.
"""
from __future__ import annotations

import asyncio
import contextlib
import copy
import datetime
import logging
import os
import platform
import subprocess

from cluster.api.errors import APIError
from cluster.api.resources import lookup
from cluster.controllers.nodelifecycle import LEASE_NAMESPACE, node_lease
from netsim import netns

from .status import rfc3339

log = logging.getLogger(__name__)

NODES = lookup("", "v1", "nodes")
LEASES = lookup("coordination.k8s.io", "v1", "leases")
KUBELET_VERSION = "v1.37.0-netsim"
LOGS_SOCKET_ANNOTATION = "netsim.dev/kubelet-socket"
_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}


def _read(path, default=""):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return default


def _memory_ki():
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1])
    return 0


def discover_ips(node_netns: str | None) -> list[str]:
    """The node's global IPv4 addresses (in its network namespace), first one first."""
    with netns.enter(node_netns) if node_netns else contextlib.nullcontext():
        out = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"],
                             capture_output=True, text=True).stdout
    return [line.split()[3].split("/")[0] for line in out.splitlines() if len(line.split()) > 3]


def _os_image():
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return "Linux"


class NodeReporter:
    def __init__(self, client, config):
        self.client = client
        self.config = config
        self.host_ips = list(config.node_ips) or discover_ips(config.node_netns)
        cpus = os.cpu_count() or 1
        self.capacity = {"cpu": str(cpus), "memory": f"{_memory_ki()}Ki", "pods": str(config.max_pods),
                         "ephemeral-storage": "0"}
        self.allocatable = dict(self.capacity)
        self.node_uid = ""
        self._transitions = {}

    def desired(self) -> dict:
        cfg = self.config
        labels = {"kubernetes.io/hostname": cfg.node_name, "kubernetes.io/os": "linux",
                  "kubernetes.io/arch": _ARCH.get(platform.machine(), platform.machine()),
                  **cfg.node_labels}
        spec = {}
        if cfg.pod_cidrs:
            spec = {"podCIDR": cfg.pod_cidrs[0], "podCIDRs": list(cfg.pod_cidrs)}
        meta = {"name": cfg.node_name, "labels": labels}
        if cfg.logs_socket:
            meta["annotations"] = {LOGS_SOCKET_ANNOTATION: os.path.abspath(cfg.logs_socket)}
        return {"apiVersion": "v1", "kind": "Node", "metadata": meta, "spec": spec,
                "status": self.status()}

    def status(self) -> dict:
        now = rfc3339(datetime.datetime.now(datetime.timezone.utc).timestamp())
        conditions = []
        for type_, status, reason, message in (
                ("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                ("Ready", "True", "KubeletReady", "kubelet is posting ready status")):
            since = self._transitions.setdefault(type_, now)
            conditions.append({"type": type_, "status": status, "reason": reason, "message": message,
                               "lastHeartbeatTime": now, "lastTransitionTime": since})
        addresses = [{"type": "InternalIP", "address": ip} for ip in self.host_ips]
        addresses.append({"type": "Hostname", "address": self.config.node_name})
        machine_id = _read("/etc/machine-id")
        return {
            "addresses": addresses, "capacity": self.capacity, "allocatable": self.allocatable,
            "conditions": conditions,
            "nodeInfo": {"machineID": machine_id, "systemUUID": machine_id,
                         "bootID": _read("/proc/sys/kernel/random/boot_id"),
                         "kernelVersion": platform.release(), "osImage": _os_image(),
                         "containerRuntimeVersion": "netsim://0.1", "kubeletVersion": KUBELET_VERSION,
                         "kubeProxyVersion": "", "operatingSystem": "linux",
                         "architecture": _ARCH.get(platform.machine(), platform.machine())},
        }

    async def register(self) -> dict:
        want = self.desired()
        try:
            node = await self.client.create(NODES, want)
        except APIError as e:
            if e.code != 409:
                raise
            node = await self.client.get(NODES, self.config.node_name)
            merged = copy.deepcopy(node)
            merged["metadata"].setdefault("labels", {}).update(want["metadata"]["labels"])
            if want["metadata"].get("annotations"):
                merged["metadata"].setdefault("annotations", {}).update(want["metadata"]["annotations"])
            for k, v in want["spec"].items():
                merged.setdefault("spec", {}).setdefault(k, v)
            if merged != node:
                node = await self.client.update(NODES, merged)
            node = await self.client.update_status(NODES, {**node, "status": self.status()})
        self.node_uid = node["metadata"].get("uid", "")
        return node

    async def renew_lease(self) -> None:
        node = {"metadata": {"name": self.config.node_name, "uid": self.node_uid}}
        lease = node_lease(node, datetime.datetime.now(datetime.timezone.utc))
        try:
            current = await self.client.get(LEASES, self.config.node_name, LEASE_NAMESPACE)
        except APIError as e:
            if e.code != 404:
                raise
            await self.client.create(LEASES, lease, LEASE_NAMESPACE)
            return
        current["spec"] = {**(current.get("spec") or {}), **lease["spec"]}
        await self.client.update(LEASES, current, LEASE_NAMESPACE)

    async def post_status(self) -> None:
        node = await self.client.get(NODES, self.config.node_name)
        await self.client.update_status(NODES, {**node, "status": self.status()})

    async def heartbeat(self) -> None:
        """Renew the Lease every lease_seconds and post status every status_report_seconds."""
        loop = asyncio.get_running_loop()
        next_report = loop.time() + self.config.status_report_seconds
        while True:
            try:
                await self.renew_lease()
                if loop.time() >= next_report:
                    await self.post_status()
                    next_report = loop.time() + self.config.status_report_seconds
            except APIError as e:
                log.warning("node %s: heartbeat failed: %s", self.config.node_name, e)
                if e.code == 404 and "nodes" in str(e.details or {}):
                    await self.register()
            await asyncio.sleep(self.config.lease_seconds)
