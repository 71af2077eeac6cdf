"""Naming things on the command line: `node-1`, `external`, `NAMESPACE/POD`, or an IP address."""

import ipaddress

from netsim import netns

from .errors import UserError


class Target:
    def __init__(self, kind, name, netns_name, ip, uts=None):
        self.kind, self.name, self.netns, self.ip, self.uts = kind, name, netns_name, ip, uts

    @property
    def netns_path(self):
        return netns.netns_path(self.netns)


def resolve(spec, st, plan, pod_status, allow_ip=False):
    """The node or pod SPEC names in cluster ST; an IP is accepted where ALLOW_IP."""
    if "/" in spec:
        ns, _, name = spec.partition("/")
        for p in plan["pods"]:
            if p["namespace"] == ns and p["name"] == name:
                status = pod_status.get(spec, {})
                from netsim.sandbox import uts_path

                return Target("pod", spec, p["netns"], status.get("ip"), uts=uts_path(st.pod_dir(ns, name)))
        pods = ", ".join(f"{p['namespace']}/{p['name']}" for p in plan["pods"][:8]) or "none"
        raise UserError(f"No pod {spec} in cluster {plan['cluster']!r}; pods: {pods}.")
    for n in plan["nodes"]:
        if n["name"] == spec:
            return Target("node", spec, n["netns"], n["ip"])
    if spec == "external" and "external" in plan:
        return Target("external", spec, plan["external"]["netns"], plan["external"]["ip"])
    if allow_ip:
        try:
            return Target("ip", spec, None, str(ipaddress.ip_address(spec)))
        except ValueError:
            pass
    nodes = ", ".join(n["name"] for n in plan["nodes"])
    what = ("a node name, `external`, NAMESPACE/POD or an IP address" if allow_ip
            else "a node name, `external` or NAMESPACE/POD")
    raise UserError(f"{spec!r} names nothing in cluster {plan['cluster']!r}: expected {what} (nodes: {nodes}).")
