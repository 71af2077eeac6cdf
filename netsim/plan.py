"""The planner: a validated lab in, the full plan of a cluster out (pure, no kernel access).

The plan names every namespace and link, every address, route and pod CIDR, each node's CNI
conflist and each pod's node, so that the realizer only executes it and `netsim status` and
`netsim down` can read it back. It is a plain JSON-able dict, golden-file tested.
"""

import hashlib
import ipaddress

# Reference plugins live here on Debian (containernetworking-plugins).
REFERENCE_CNI_PATH = "/usr/lib/cni"
NETWORK_NAME = "netsim"
# The reference plugins stop at 1.0.0; ours speaks 1.1.0 (GC, STATUS).
CNI_VERSION = {"netsim": "1.1.0", "reference": "1.0.0"}
IFNAME_MAX = 15


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


def pod_netns(cluster, namespace, pod):
    return f"{cluster}_{namespace}_{pod}"


def pod_container_id(cluster, namespace, pod):
    """The pod sandbox's ID as CNI sees it: 64 hex characters, like a containerd sandbox ID."""
    return hashlib.sha256(f"{cluster}/{namespace}/{pod}".encode()).hexdigest()


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
    from .lab import LabError

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
        })
    for node in nodes:
        # host-gw, as kindnet does: every other node's pod CIDR via that node's IP.
        node["routes"] = [{"dst": o["podCIDR"], "via": o["ip"]} for o in nodes if o is not node]
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

    namespaces = ["default", "kube-system"]
    pods = []
    load = {n["name"]: 0 for n in nodes}
    seen = set()
    for m in lab.manifests:
        obj = m["object"]
        if obj["kind"] == "Namespace" and obj["metadata"]["name"] not in namespaces:
            namespaces.append(obj["metadata"]["name"])
    for m in lab.manifests:
        obj = m["object"]
        if obj["kind"] != "Pod":
            continue
        meta = obj["metadata"]
        ns = meta.get("namespace") or "default"
        key = (ns, meta["name"])
        if ns not in namespaces:
            raise LabError(m["source"], f"{m['field']}.metadata.namespace",
                           f"namespace {ns!r} does not exist; add a Namespace manifest named {ns!r}")
        if key in seen:
            raise LabError(m["source"], f"{m['field']}.metadata.name", f"pod {ns}/{meta['name']} is defined twice")
        seen.add(key)
        node = obj["spec"].get("nodeName")
        if node is None:
            # Spread: the least loaded node, ties to the first in lab order.
            node = min(load, key=lambda n: load[n])
        elif node not in load:
            raise LabError(m["source"], f"{m['field']}.spec.nodeName",
                           f"node {node!r} is not in the lab; expected one of {', '.join(load)}")
        load[node] += 1
        pods.append({
            "namespace": ns,
            "name": meta["name"],
            "node": node,
            "netns": pod_netns(lab.name, ns, meta["name"]),
            "containerID": pod_container_id(lab.name, ns, meta["name"]),
            "manifest": obj,
        })

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
        "namespaces": namespaces,
        "pods": pods,
    }
