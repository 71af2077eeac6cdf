"""Pods and nodes as the CLI shows them: the API server's objects joined with the kernel names
the kubelets recorded (a pod's network namespace and UTS path, found by the pod's UID in its
node's sandbox records), and each kubelet's liveness."""

from cluster.api.errors import APIError
from cluster.kubelet.sandboxes import load_records

from . import controlplane as cp
from . import kube
from .errors import UserError


class PodView:
    """One pod: API fields plus where it lives in the kernel (netns, uts) when it has a sandbox."""

    def __init__(self, pod, record, kubelet_running):
        meta, spec, status = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
        self.namespace, self.name, self.uid = meta["namespace"], meta["name"], meta["uid"]
        self.node = spec.get("nodeName")
        self.ip = status.get("podIP")
        self.phase = status.get("phase", "Pending")
        # A pod whose kubelet is gone has nobody serving it: say so rather than "Running".
        if self.phase == "Running" and self.node and not kubelet_running:
            self.phase = "Unknown"
        self.message = status.get("message") or _container_message(status)
        self.containers = [c["name"] for c in (spec.get("initContainers") or []) + (spec.get("containers") or [])]
        self.netns = record.netns if record else None
        self.uts = record.uts if record else None
        self.log_dir = record.log_dir if record else None

    @property
    def ref(self):
        return f"{self.namespace}/{self.name}"

    def to_json(self):
        return {"namespace": self.namespace, "name": self.name, "node": self.node, "netns": self.netns,
                "ip": self.ip, "phase": self.phase, "message": self.message}


def _container_message(status):
    for c in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        for state in ("waiting", "terminated"):
            s = (c.get("state") or {}).get(state)
            if s and s.get("reason") not in (None, "Completed", "ContainerCreating", "PodInitializing"):
                return f"{c['name']}: {s['reason']}" + (f": {s['message']}" if s.get("message") else "")
    return None


def _records(plan, node_names):
    out = {}
    for node in plan["nodes"]:
        if node["name"] in node_names:
            out.update({r.uid: r for r in load_records(node["kubeletDir"])})
    return out


def unreachable(st, e):
    return UserError(f"Cannot reach the API server of cluster {st.name!r} ({e.message}); if it stopped, "
                     f"`netsim up` with the cluster's lab starts it again (log: {cp.log_path(st, cp.APISERVER)}).")


def read(st, plan):
    """(nodes from the API as {name: Node}, [PodView] sorted by namespace/name)."""
    async def fetch():
        async with kube.connect(plan["controlPlane"]["kubeconfig"]) as client:
            nodes = (await client.list(kube.NODES)).get("items") or []
            pods, _ = await client.list_all(kube.PODS)
            return nodes, pods

    try:
        nodes, pods = kube.run(fetch())
    except APIError as e:
        if e.code == 503:
            raise unreachable(st, e)
        raise
    records = _records(plan, {p["spec"].get("nodeName") for p in pods})
    alive = cp.running(st)
    views = [PodView(p, records.get(p["metadata"]["uid"]), cp.kubelet_role(p["spec"].get("nodeName")) in alive)
             for p in pods]
    views.sort(key=lambda v: (v.namespace, v.name))
    return {n["metadata"]["name"]: n for n in nodes}, views


def one(st, plan, ref):
    """The PodView of NAMESPACE/NAME, or UserError naming a few pods that exist."""
    namespace, _, name = ref.partition("/")

    async def fetch():
        async with kube.connect(plan["controlPlane"]["kubeconfig"]) as client:
            try:
                return await client.get(kube.PODS, name, namespace), None
            except APIError as e:
                if e.code != 404:
                    raise
            return None, (await client.list(kube.PODS, limit=8)).get("items") or []

    try:
        pod, others = kube.run(fetch())
    except APIError as e:
        if e.code == 503:
            raise unreachable(st, e)
        raise
    if pod is None:
        names = ", ".join(f"{p['metadata']['namespace']}/{p['metadata']['name']}" for p in others) or "none"
        raise UserError(f"No pod {ref} in cluster {plan['cluster']!r}; pods: {names}.")
    node = pod["spec"].get("nodeName")
    record = _records(plan, {node}).get(pod["metadata"]["uid"])
    return PodView(pod, record, cp.kubelet_role(node) in cp.running(st))
