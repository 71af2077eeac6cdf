"""Naming things on the command line: `node-1`, `external`, `NAMESPACE/POD`, or an IP address."""

import ipaddress

from netsim import netns

from . import pods as podsmod
from .errors import UserError


class Target:
    def __init__(self, kind, name, netns_name, ip, uts=None, pod=None):
        self.kind, self.name, self.netns, self.ip, self.uts = kind, name, netns_name, ip, uts
        self.pod = pod  # the PodView of a pod target

    @property
    def netns_path(self):
        return netns.netns_path(self.netns)


def resolve(spec, st, plan, allow_ip=False, need_sandbox=True):
    """The node or pod SPEC names in cluster ST; an IP is accepted where ALLOW_IP. Nodes and the
    external client come from the plan; pods from the API server and their kubelet's records."""
    if "/" in spec:
        pod = podsmod.one(st, plan, spec)
        if need_sandbox and not pod.netns:
            where = f"on {pod.node}" if pod.node else "not scheduled yet"
            raise UserError(f"Pod {spec} has no sandbox yet (phase {pod.phase}, {where}"
                            f"{'; ' + pod.message if pod.message else ''}); try again once it runs.")
        return Target("pod", spec, pod.netns, pod.ip, uts=pod.uts, pod=pod)
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
