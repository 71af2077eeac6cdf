"""Lab files: the YAML a user writes to describe a cluster, read and validated (pure).

    name: demo                 # cluster name: prefixes every kernel object of the cluster
    nodes: 2                   # a count, or a list of node names
    clusterCIDR: 10.244.0.0/16 # node i gets the i-th /24 as its pod CIDR
    serviceCIDR: 10.96.0.0/12
    nodeNetwork: 172.18.0.0/16 # the network the nodes share (a bridge in the fabric namespace)
    cni: netsim                # or `reference`: /usr/lib/cni/bridge + host-local
    loadBalancerPool: 172.18.200.0/24  # LoadBalancer IPs (a CIDR or a list); none: <pending>
    maxPods: 110               # pods per node, the kubelet's --max-pods (at most 253: a /24)
    manifests:                 # Kubernetes manifests of any kind the API server serves,
      - {path: pods.yaml}      # inline or {path: file.yaml}

Only the shape is checked here (apiVersion, kind, metadata.name; a Pod's containers, as a user
most often gets them wrong); `netsim up` has the API server validate the rest. Every error
names the file, the field path and what is expected.
"""

import ipaddress
import os
import re

import yaml

DEFAULTS = {
    "name": "netsim",
    "nodes": 2,
    "clusterCIDR": "10.244.0.0/16",
    "serviceCIDR": "10.96.0.0/12",
    "nodeNetwork": "172.18.0.0/16",
    "cni": "netsim",
    "maxPods": 110,
}
CNI_CHOICES = ("netsim", "reference")
KNOWN_FIELDS = set(DEFAULTS) | {"manifests", "loadBalancerPool"}
# The external client namespace ("the outside world") answers to this name on the CLI.
RESERVED_NODE_NAMES = ("external",)
MAX_NODES = 250
# A node's pod CIDR is a /24: host-local hands out .2-.254 (.1 is the bridge's gateway address).
MAX_PODS_PER_NODE = 253
# labs/ sits beside the packages in the source tree, which the Makefile installs editable.
DEFAULT_LAB = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "labs", "default.yaml")

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


class LabError(ValueError):
    """An invalid lab: `source` (file), `field` (path like `manifests[1].spec.containers`)."""

    def __init__(self, source, field, message):
        self.source, self.field, self.message = source, field, message
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{field}: {message}" if field else f"{where}{message}")


class Lab:
    """A validated lab: plain attributes, manifests as a list of dicts with their source."""

    def __init__(self, name, nodes, cluster_cidr, service_cidr, node_network, cni, manifests, source,
                 load_balancer_pool=(), max_pods=DEFAULTS["maxPods"]):
        self.name = name
        self.max_pods = max_pods
        self.nodes = nodes
        self.cluster_cidr = cluster_cidr
        self.service_cidr = service_cidr
        self.node_network = node_network
        self.cni = cni
        self.manifests = manifests
        self.source = source
        self.load_balancer_pool = list(load_balancer_pool)


def load(path):
    """Read and validate a lab file."""
    try:
        with open(path) as f:
            doc = yaml.safe_load(f)
    except FileNotFoundError:
        raise LabError(path, "", "no such lab file; pass an existing path to -f")
    except yaml.YAMLError as e:
        raise LabError(path, "", f"not valid YAML: {e}")
    return from_dict(doc if doc is not None else {}, source=path)


def default():
    """The lab `netsim up` runs without -f."""
    return load(DEFAULT_LAB)


def from_dict(doc, source="<lab>"):
    if not isinstance(doc, dict):
        raise LabError(source, "", f"expected a mapping of lab fields, got {type(doc).__name__}")
    unknown = sorted(set(doc) - KNOWN_FIELDS)
    if unknown:
        raise LabError(source, unknown[0], f"unknown field; expected one of {', '.join(sorted(KNOWN_FIELDS))}")
    merged = {**DEFAULTS, **{k: v for k, v in doc.items() if v is not None}}

    name = merged["name"]
    if not isinstance(name, str) or len(name) > 12 or not _DNS_LABEL.match(name) or not name[0].isalpha():
        raise LabError(source, "name", f"expected 1-12 lowercase letters, digits or '-', starting "
                                       f"with a letter (it prefixes kernel names), got {name!r}")

    nodes = _nodes(source, merged["nodes"])
    cluster_cidr = _network(source, "clusterCIDR", merged["clusterCIDR"], max_prefix=23)
    if len(nodes) > 2 ** (24 - cluster_cidr.prefixlen):
        raise LabError(source, "clusterCIDR", f"{cluster_cidr} holds {2 ** (24 - cluster_cidr.prefixlen)} "
                                              f"node /24s but the lab has {len(nodes)} nodes; use a larger CIDR")
    service_cidr = _network(source, "serviceCIDR", merged["serviceCIDR"], max_prefix=28)
    node_network = _network(source, "nodeNetwork", merged["nodeNetwork"], max_prefix=29)
    # Network and broadcast addresses, the fabric bridge and the external client take four.
    if node_network.num_addresses - 4 < len(nodes):
        raise LabError(source, "nodeNetwork", f"{node_network} has room for {node_network.num_addresses - 4} "
                                              f"nodes but the lab has {len(nodes)}")
    nets = {"clusterCIDR": cluster_cidr, "serviceCIDR": service_cidr, "nodeNetwork": node_network}
    names = list(nets)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            if nets[a].overlaps(nets[b]):
                raise LabError(source, b, f"{nets[b]} overlaps {a} {nets[a]}; the networks must be disjoint")

    cni = merged["cni"]
    if cni not in CNI_CHOICES:
        raise LabError(source, "cni", f"expected one of {', '.join(CNI_CHOICES)}, got {cni!r}")

    max_pods = merged["maxPods"]
    if isinstance(max_pods, bool) or not isinstance(max_pods, int) or not 1 <= max_pods <= MAX_PODS_PER_NODE:
        raise LabError(source, "maxPods", f"expected a pod count per node from 1 to {MAX_PODS_PER_NODE} (a "
                                          f"node's pod CIDR is a /24), got {max_pods!r}")

    pool = _pool(source, doc.get("loadBalancerPool"), [cluster_cidr, service_cidr])
    manifests = _manifests(source, doc.get("manifests") or [])
    return Lab(name, nodes, str(cluster_cidr), str(service_cidr), str(node_network), cni, manifests, source,
               load_balancer_pool=[str(n) for n in pool], max_pods=max_pods)


def _pool(source, value, taken):
    """LoadBalancer IPs: a CIDR or a list of CIDRs, disjoint from the pod and Service networks."""
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    pool = []
    for i, item in enumerate(items):
        field = f"loadBalancerPool[{i}]" if isinstance(value, list) else "loadBalancerPool"
        net = _network(source, field, item, max_prefix=32)
        for other in taken:
            if net.overlaps(other):
                raise LabError(source, field, f"{net} overlaps {other}; LoadBalancer IPs must be outside "
                                              "the pod and Service networks")
        pool.append(net)
    return pool


def _nodes(source, value):
    if isinstance(value, bool):
        value = None
    if isinstance(value, int):
        if not 1 <= value <= MAX_NODES:
            raise LabError(source, "nodes", f"expected a node count from 1 to {MAX_NODES}, got {value}")
        return [f"node-{i}" for i in range(1, value + 1)]
    if isinstance(value, list) and value:
        seen = set()
        for i, n in enumerate(value):
            if not isinstance(n, str) or len(n) > 63 or not _DNS_SUBDOMAIN.match(n):
                raise LabError(source, f"nodes[{i}]", f"expected a node name (lowercase DNS name, at "
                                                      f"most 63 characters), got {n!r}")
            if n in seen:
                raise LabError(source, f"nodes[{i}]", f"node {n!r} is listed twice")
            if n in RESERVED_NODE_NAMES:
                raise LabError(source, f"nodes[{i}]", f"{n!r} names the external client namespace; "
                                                      "choose another node name")
            seen.add(n)
        if len(value) > MAX_NODES:
            raise LabError(source, "nodes", f"at most {MAX_NODES} nodes, got {len(value)}")
        return list(value)
    raise LabError(source, "nodes", f"expected a count (1-{MAX_NODES}) or a list of node names, got {value!r}")


def _network(source, field, value, max_prefix):
    try:
        net = ipaddress.ip_network(str(value), strict=True)
    except ValueError as e:
        raise LabError(source, field, f"expected an IPv4 CIDR such as 10.244.0.0/16, got {value!r} ({e})")
    if net.version != 4:
        raise LabError(source, field, f"only IPv4 is supported for now, got {value!r}")
    if net.prefixlen > max_prefix:
        raise LabError(source, field, f"{net} is too small: use a prefix of /{max_prefix} or shorter")
    return net


def _manifests(source, items):
    if not isinstance(items, list):
        raise LabError(source, "manifests", "expected a list of manifests or {path: FILE} entries")
    base = os.path.dirname(os.path.abspath(source)) if os.path.exists(str(source)) else os.getcwd()
    out = []
    for i, item in enumerate(items):
        field = f"manifests[{i}]"
        if isinstance(item, dict) and set(item) == {"path"}:
            path = os.path.join(base, item["path"])
            try:
                out += read_manifests(path)
            except FileNotFoundError:
                raise LabError(source, f"{field}.path", f"file {path} does not exist")
            except yaml.YAMLError as e:
                raise LabError(source, f"{field}.path", f"{path} is not valid YAML: {e}")
        else:
            out.append(_manifest(source, field, item))
    return out


def read_manifests(path, stream=None):
    """The manifests of a YAML file (several documents; a List's items one by one), shape-checked
    as a lab's are: [{"source", "field", "object"}]. OSError and yaml.YAMLError pass through."""
    if stream is None:
        with open(path) as f:
            docs = list(yaml.safe_load_all(f))
    else:
        docs = list(yaml.safe_load_all(stream))
    out = []
    for j, d in enumerate(docs):
        if d is None:
            continue
        if isinstance(d, dict) and d.get("kind") == "List" and isinstance(d.get("items"), list):
            out += [_manifest(path, f"document {j + 1}.items[{k}]", item) for k, item in enumerate(d["items"])]
        else:
            out.append(_manifest(path, f"document {j + 1}", d))
    return out


def _manifest(source, field, doc):
    if not isinstance(doc, dict) or "kind" not in doc:
        raise LabError(source, field, "expected a Kubernetes manifest with apiVersion, kind and metadata")
    if not isinstance(doc["kind"], str) or not doc["kind"]:
        raise LabError(source, f"{field}.kind", f"expected a kind such as Pod or Deployment, got {doc['kind']!r}")
    if doc["kind"] == "List":
        raise LabError(source, f"{field}.kind", "List is not supported; give the items one by one")
    if not isinstance(doc.get("apiVersion"), str) or not doc["apiVersion"]:
        raise LabError(source, f"{field}.apiVersion", f"required: the API version of {doc['kind']} "
                                                      f"(e.g. v1, apps/v1), got {doc.get('apiVersion')!r}")
    if doc["kind"] in ("Namespace", "Pod") and doc["apiVersion"] != "v1":
        raise LabError(source, f"{field}.apiVersion", f"expected v1 for {doc['kind']}, got {doc['apiVersion']!r}")
    meta = doc.get("metadata")
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str):
        raise LabError(source, f"{field}.metadata.name", "required: the object's name")
    if "namespace" in meta and not isinstance(meta["namespace"], str):
        raise LabError(source, f"{field}.metadata.namespace", f"expected a namespace name, got {meta['namespace']!r}")
    name = meta["name"]
    limit, pattern = (63, _DNS_LABEL) if doc["kind"] == "Namespace" else (253, _DNS_SUBDOMAIN)
    if len(name) > limit or not pattern.match(name):
        raise LabError(source, f"{field}.metadata.name", f"{name!r} is not a valid {doc['kind']} name: "
                                                         "lowercase letters, digits, '-' (and '.' but for namespaces)")
    if doc["kind"] == "Pod":
        _pod_spec(source, field, doc)
    return {"source": source, "field": field, "object": doc}


def _pod_spec(source, field, doc):
    spec = doc.get("spec")
    if not isinstance(spec, dict):
        raise LabError(source, f"{field}.spec", "required: a pod spec with containers")
    containers = spec.get("containers")
    if not isinstance(containers, list) or not containers:
        raise LabError(source, f"{field}.spec.containers", "required: at least one container")
    seen = set()
    for i, c in enumerate(containers):
        cf = f"{field}.spec.containers[{i}]"
        if not isinstance(c, dict):
            raise LabError(source, cf, "expected a container with name and image")
        if not isinstance(c.get("name"), str) or not _DNS_LABEL.match(c["name"]):
            raise LabError(source, f"{cf}.name", f"required: a DNS label, got {c.get('name')!r}")
        if c["name"] in seen:
            raise LabError(source, f"{cf}.name", f"container name {c['name']!r} is used twice in this pod")
        seen.add(c["name"])
        if not isinstance(c.get("image"), str) or not c["image"]:
            raise LabError(source, f"{cf}.image", "required: the container image")
        for key in ("command", "args"):
            if key in c and (not isinstance(c[key], list) or not all(isinstance(a, (str, int, float)) for a in c[key])):
                raise LabError(source, f"{cf}.{key}", "expected a list of strings")
        for j, p in enumerate(c.get("ports") or []):
            port = p.get("containerPort") if isinstance(p, dict) else None
            if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
                raise LabError(source, f"{cf}.ports[{j}].containerPort", f"expected a port from 1 to 65535, got {port!r}")
            proto = p.get("protocol", "TCP")
            if proto not in ("TCP", "UDP", "SCTP"):
                raise LabError(source, f"{cf}.ports[{j}].protocol", f"expected TCP, UDP or SCTP, got {proto!r}")
    node = spec.get("nodeName")
    if node is not None and not isinstance(node, str):
        raise LabError(source, f"{field}.spec.nodeName", "expected a node name")
