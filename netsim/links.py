"""Links, addresses, routes, neighbours and sysctls inside our namespaces, over netlink.

Each function takes an open pyroute2 `IPRoute` bound to the namespace it acts in (open it
with `socket_in(ns)`): one socket per namespace and batch of work, never pyroute2's forking
`NetNS`, which costs ~6 ms a call.
"""

import contextlib
import os

from . import netns


@contextlib.contextmanager
def socket_in(ns):
    """An IPRoute socket opened inside namespace NS (a name or a path), closed afterwards."""
    from pyroute2 import IPRoute  # ~100 ms to import: only where netlink is used

    with netns.enter(ns):
        ipr = IPRoute()
    try:
        yield ipr
    finally:
        ipr.close()


def index(ipr, ifname):
    found = ipr.link_lookup(ifname=ifname)
    if not found:
        raise LookupError(f"no link named {ifname}")
    return found[0]


def set_up(ipr, ifname):
    ipr.link("set", index=index(ipr, ifname), state="up")


def add_bridge(ipr, name, mac=None):
    attrs = {"ifname": name, "kind": "bridge"}
    if mac:
        attrs["address"] = mac
    ipr.link("add", **attrs)
    ipr.link("set", index=index(ipr, name), state="up")


def add_veth_into(ipr, name, peer_name, peer_ns, master=None, peer_mac=None):
    """One RTM_NEWLINK: veth NAME here, its peer PEER_NAME created directly inside PEER_NS."""
    fd = os.open(netns.netns_path(peer_ns) if "/" not in peer_ns else peer_ns, os.O_RDONLY)
    try:
        peer = {"ifname": peer_name, "net_ns_fd": fd}
        if peer_mac:
            peer["address"] = peer_mac
        ipr.link("add", ifname=name, kind="veth", peer=peer)
    finally:
        os.close(fd)
    idx = index(ipr, name)
    if master:
        ipr.link("set", index=idx, master=index(ipr, master))
    ipr.link("set", index=idx, state="up")


def add_address(ipr, ifname, ip, prefixlen):
    ipr.addr("add", index=index(ipr, ifname), address=ip, prefixlen=prefixlen)


def add_route(ipr, dst, gateway, ifname=None):
    attrs = {"dst": dst, "gateway": gateway}
    if ifname:
        attrs["oif"] = index(ipr, ifname)
    ipr.route("add", **attrs)


def add_multipath_route(ipr, dst, gateways, ifname):
    """DST over every gateway at once (ECMP), or a plain route when there is one."""
    if len(gateways) == 1:
        return add_route(ipr, dst, gateways[0], ifname)
    oif = index(ipr, ifname)
    ipr.route("add", dst=dst, multipath=[{"gateway": g, "oif": oif} for g in gateways])


def add_permanent_neighbour(ipr, ifname, ip, mac):
    """A NUD_PERMANENT entry: not counted against the host-wide gc_thresh3 limit."""
    ipr.neigh("replace", dst=ip, lladdr=mac, ifindex=index(ipr, ifname), state="permanent")


def set_sysctl(ns, key, value):
    """Write a net.* sysctl of namespace NS (net sysctls resolve to the writer's namespace)."""
    path = "/proc/sys/" + key.replace(".", "/")
    with netns.enter(ns):
        with open(path, "w") as f:
            f.write(str(value))


def get_sysctl(ns, key):
    path = "/proc/sys/" + key.replace(".", "/")
    with netns.enter(ns):
        with open(path) as f:
            return f.read().strip()
