"""The realizer: turns a plan's fabric and nodes into kernel objects, recording each first.

The fabric namespace holds the node network's bridge; each node is a namespace whose `eth0`
is a veth into that bridge, with forwarding on, host-gw routes to the other nodes' pod CIDRs
and permanent neighbour entries for the other nodes; the external client namespace sits on
the same bridge and routes LoadBalancer IPs to the nodes. Nothing here touches the host's root
namespace. Pods are made by `sandbox.py`, on the node agents.
"""

import contextlib

from . import links, netns


class Realizer:
    def __init__(self, plan, ledger):
        self.plan = plan
        self.ledger = ledger

    def _namespace(self, name, role):
        self.ledger.record("netns", name=name, role=role)
        netns.create(name)

    def build_fabric(self):
        fab = self.plan["fabric"]
        self._namespace(fab["netns"], "fabric")
        self.ledger.record("link", netns=fab["netns"], name=fab["bridge"], type="bridge")
        with links.socket_in(fab["netns"]) as ipr:
            links.set_up(ipr, "lo")
            links.add_bridge(ipr, fab["bridge"], mac=fab["mac"])
            links.add_address(ipr, fab["bridge"], fab["ip"], fab["prefixlen"])

    @contextlib.contextmanager
    def _on_node_network(self, entry, role):
        """A namespace for ENTRY (a node or the external client) whose `eth0` is a veth into
        the fabric bridge, up with its address; yields a netlink socket inside it."""
        fab = self.plan["fabric"]
        self._namespace(entry["netns"], role)
        self.ledger.record("link", netns=fab["netns"], name=entry["fabricLink"], type="veth",
                           peer={"netns": entry["netns"], "name": "eth0"})
        with links.socket_in(fab["netns"]) as ipr:
            links.add_veth_into(ipr, entry["fabricLink"], "eth0", entry["netns"],
                                master=fab["bridge"], peer_mac=entry["mac"])
            links.add_permanent_neighbour(ipr, fab["bridge"], entry["ip"], entry["mac"])
        with links.socket_in(entry["netns"]) as ipr:
            links.set_up(ipr, "lo")
            links.set_up(ipr, "eth0")
            links.add_address(ipr, "eth0", entry["ip"], fab["prefixlen"])
            yield ipr

    def build_node(self, node):
        fab = self.plan["fabric"]
        with self._on_node_network(node, "node") as ipr:
            links.add_permanent_neighbour(ipr, "eth0", fab["ip"], fab["mac"])
            for n in node["neighbours"]:
                links.add_permanent_neighbour(ipr, "eth0", n["ip"], n["mac"])
            for r in node["routes"]:
                links.add_route(ipr, r["dst"], r["via"], "eth0")
        links.set_sysctl(node["netns"], "net.ipv4.ip_forward", 1)

    def build_external(self):
        """The external client: on the node network, LoadBalancer IPs routed to the nodes."""
        ext = self.plan["external"]
        with self._on_node_network(ext, "external") as ipr:
            for n in self.plan["nodes"]:
                links.add_permanent_neighbour(ipr, "eth0", n["ip"], n["mac"])
            for r in ext["routes"]:
                links.add_multipath_route(ipr, r["dst"], r["via"], "eth0")
        for node in self.plan["nodes"]:
            with links.socket_in(node["netns"]) as ipr:
                links.add_permanent_neighbour(ipr, "eth0", ext["ip"], ext["mac"])
