"""The planner: a validated lab in, the full plan of a cluster out (pure, no kernel access).

The plan names every namespace and link, every address, route and pod CIDR, each node's CNI
conflist and kubelet directory, the control plane's options, and the order in which the lab's
manifests are applied (Namespaces first, as `kubectl apply` needs them), so that the realizer
and `netsim up` only execute it and `netsim status` and `netsim down` can read it back. Where
pods run is the scheduler's business, not the plan's. It is a plain JSON-able dict,
golden-file tested.
"""

import hashlib
import ipaddress

# Reference plugins live here on Debian (containernetworking-plugins).
REFERENCE_CNI_PATH = "/usr/lib/cni"
NETWORK_NAME = "netsim"
# The reference plugins stop at 1.0.0; ours speaks 1.1.0 (GC, STATUS).
CNI_VERSION = {"netsim": "1.1.0", "reference": "1.0.0"}
IFNAME_MAX = 15
# What the API server creates itself; a lab may put objects in them without a Namespace.
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
NODE_PORT_RANGE = "30000-32767"
# A unix socket's path holds at most 107 bytes (sun_path); deep state dirs (pytest's tmp_path)
# pass that, so a node's sockets then live under a short directory named after the state dir.
SOCKET_PATH_MAX = 107
SHORT_SOCKET_BASE = "/run/netsim"


def mac_for(ip):
    """A fixed, locally administered MAC derived from an IPv4 address (as Docker does).

    Fixed MACs let the realizer install permanent neighbour entries, which the kernel's
    shared neighbour-table limit (gc_thresh3) does not count.
    """
    octets = ipaddress.IPv4Address(ip).packed
    return "02:42:" + ":".join(f"{b:02x}" for b in octets)


def link_name(name, taken=()):
    """A link name within the kernel's 15 characters, unique among TAKEN."""
    if len(name) <= IFNAME_MAX and name not in taken:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()
    return f"{name[:IFNAME_MAX - 5]}-{digest[:4]}"


def fabric_netns(cluster):
    return f"{cluster}-fabric"


def external_netns(cluster):
    return f"{cluster}-external"


def node_netns(cluster, node):
    # '_' never occurs in Kubernetes or cluster names, so these cannot collide across clusters.
    return f"{cluster}_{node}"


def socket_dir(state_root, node):
    """Where NODE's unix sockets (kubelet API, CNI agent) live: beside its other files when the
    longest path fits in a socket address, else under /run/netsim/<hash of the state dir>."""
    d = f"{state_root}/nodes/{node}"
    if len(f"{d}/kubelet.sock") <= SOCKET_PATH_MAX:
        return d
    return f"{SHORT_SOCKET_BASE}/{hashlib.sha256(state_root.encode()).hexdigest()[:12]}/{node}"


def pod_netns_prefix(cluster):
    """What the kubelets put before `_<namespace>_<pod>_<uid>` in a pod's namespace name."""
    return cluster


def cgroup_root(cluster):
    """The cluster's own parent cgroup: pods' cgroups of two clusters never share a directory."""
    return f"netsim_{cluster}"


def conflist(lab, node_name, pod_cidr, gateway, state_root):
    """The node's CNI network configuration list (same content for both plugin sets)."""
    return {
        "cniVersion": CNI_VERSION[lab.cni],
        "name": NETWORK_NAME,
        "plugins": [{
            "type": "bridge",
            "bridge": "cni0",
            "isGateway": True,
            "isDefaultGateway": True,
            "ipMasq": False,
            "hairpinMode": True,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": pod_cidr, "gateway": gateway}]],
                "dataDir": f"{state_root}/nodes/{node_name}/ipam",
            },
        }],
    }


def plan(lab, state_root):
    """Turn LAB into a plan; STATE_ROOT is the cluster's state directory (for on-disk paths)."""
    cluster_net = ipaddress.ip_network(lab.cluster_cidr)
    node_net = ipaddress.ip_network(lab.node_network)
    hosts = node_net.hosts()
    fabric_ip = next(hosts)
    pod_cidrs = list(cluster_net.subnets(new_prefix=24))

    nodes = []
    external_link = f"x-{lab.name}"
    taken = {f"br-{lab.name}", external_link}
    for i, name in enumerate(lab.nodes):
        ip = next(hosts)
        cidr = pod_cidrs[i]
        gateway = next(cidr.hosts())
        fabric_link = link_name(name, taken)
        taken.add(fabric_link)
        nodes.append({
            "name": name,
            "netns": node_netns(lab.name, name),
            "ip": str(ip),
            "mac": mac_for(ip),
            "fabricLink": fabric_link,
            "podCIDR": str(cidr),
            "gateway": str(gateway),
            "conflist": conflist(lab, name, str(cidr), str(gateway), state_root),
            "conflistPath": f"{state_root}/nodes/{name}/cni/10-{NETWORK_NAME}.conflist",
            "kubeletDir": f"{state_root}/nodes/{name}/kubelet",
            "kubeletSocket": f"{socket_dir(state_root, name)}/kubelet.sock",
            "cniAgentSocket": f"{socket_dir(state_root, name)}/cni.sock",
        })
    for node in nodes:
        # host-gw, as kindnet does: every other node's pod CIDR via that node's IP; and a default
        # route to the fabric, as kind's nodes have one to Docker's bridge: a node's own traffic
        # to a ClusterIP needs a route before kube-proxy's DNAT rewrites it.
        node["routes"] = ([{"dst": o["podCIDR"], "via": o["ip"]} for o in nodes if o is not node]
                          + [{"dst": "0.0.0.0/0", "via": str(fabric_ip)}])
        node["neighbours"] = [{"ip": o["ip"], "mac": o["mac"]} for o in nodes if o is not node]

    # "The outside world": a client on the node network, as a machine next to kind's nodes
    # is; LoadBalancer IPs are routed to the nodes (every node a next hop, as MetalLB's BGP
    # mode or cloud-provider-kind would have it).
    external_ip = node_net.broadcast_address - 1
    external = {
        "netns": external_netns(lab.name),
        "ip": str(external_ip),
        "mac": mac_for(external_ip),
        "fabricLink": external_link,
        "routes": [{"dst": cidr, "via": [n["ip"] for n in nodes]} for cidr in lab.load_balancer_pool],
    }

    manifests = apply_order(lab, [n["name"] for n in nodes])
    return {
        "cluster": lab.name,
        "clusterCIDR": lab.cluster_cidr,
        "serviceCIDR": lab.service_cidr,
        "nodeNetwork": lab.node_network,
        "cni": {
            "plugins": lab.cni,
            "path": [f"{state_root}/cni/bin"] if lab.cni == "netsim" else [REFERENCE_CNI_PATH],
            "cacheDir": f"{state_root}/cni/cache",
        },
        "fabric": {
            "netns": fabric_netns(lab.name),
            "bridge": f"br-{lab.name}",
            "ip": str(fabric_ip),
            "prefixlen": node_net.prefixlen,
            "mac": mac_for(fabric_ip),
        },
        "nodes": nodes,
        "external": external,
        "loadBalancerPool": lab.load_balancer_pool,
        "controlPlane": {
            "store": f"sqlite://{state_root}/state.db",
            "kubeconfig": f"{state_root}/kubeconfig",
            "serviceCIDR": lab.service_cidr,
            "nodePortRange": NODE_PORT_RANGE,
            "loadBalancerPool": lab.load_balancer_pool,
            "podNetnsPrefix": pod_netns_prefix(lab.name),
            "cgroupRoot": cgroup_root(lab.name),
            "maxPods": lab.max_pods,
        },
        "manifests": manifests,
    }


def apply_order(lab, node_names):
    """The lab's manifests as `netsim up` applies them: Namespaces first, then the rest in lab
    order. Each entry names its index in lab.manifests, kind, namespace and name. Raises
    LabError for what would fail anyway and is cheaper to say before anything is made: a
    namespace nobody creates, a nodeName that is not a node, an object given twice."""
    from .lab import LabError

    namespaces = set(SYSTEM_NAMESPACES)
    for m in lab.manifests:
        if m["object"]["kind"] == "Namespace":
            namespaces.add(m["object"]["metadata"]["name"])
    seen = set()
    first, rest = [], []
    for i, m in enumerate(lab.manifests):
        obj = m["object"]
        meta = obj["metadata"]
        ns = meta.get("namespace")
        if ns is not None and ns not in namespaces:
            raise LabError(m["source"], f"{m['field']}.metadata.namespace",
                           f"namespace {ns!r} does not exist; add a Namespace manifest named {ns!r}")
        key = (obj["apiVersion"].split("/")[0] if "/" in obj["apiVersion"] else "", obj["kind"],
               ns or "default", meta["name"])
        if key in seen:
            where = f"{ns or 'default'}/{meta['name']}" if obj["kind"] != "Namespace" else meta["name"]
            raise LabError(m["source"], f"{m['field']}.metadata.name",
                           f"{obj['kind'].lower()} {where} is defined twice")
        seen.add(key)
        node = (obj.get("spec") or {}).get("nodeName") if obj["kind"] == "Pod" else None
        if node is not None and node not in node_names:
            raise LabError(m["source"], f"{m['field']}.spec.nodeName",
                           f"node {node!r} is not in the lab; expected one of {', '.join(node_names)}")
        entry = {"index": i, "apiVersion": obj["apiVersion"], "kind": obj["kind"],
                 "namespace": ns, "name": meta["name"]}
        (first if obj["kind"] == "Namespace" else rest).append(entry)
    return first + rest
