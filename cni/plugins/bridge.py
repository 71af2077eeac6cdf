"""netsim's `bridge` CNI plugin: containernetworking/plugins' bridge, with the same options,
results, IPAM layout and masquerade chains, built for speed.

Options (as the reference): `bridge` (default "cni0"), `isGateway`, `isDefaultGateway`
(implies isGateway), `forceAddress`, `ipMasq`, `mtu`, `hairpinMode`, `promiscMode`, `ipam`,
`dns`. The plugin acts on the network namespace it runs in (the host side) and on CNI_NETNS.

ADD, in order: IPAM (host-local in-process, any other `ipam.type` executed from CNI_PATH);
the bridge, created up if missing, with the gateway address when isGateway; ONE RTM_NEWLINK
creating the veth with its peer directly inside the container (IFLA_NET_NS_FD), the host end
enslaved and up; the container side (address, up, routes, neighbour) over a netlink socket
opened inside the container; forwarding when isGateway; ipMasq as ONE iptables-legacy-restore.

Deliberate deviations from the reference, each for a measured reason (MEASURED.md):
- Fixed MACs and permanent neighbours. The container interface's MAC is derived from its IPv4
  address (0a:58:<ip bytes>, as ovn-kubernetes does), a bridge created here gets the MAC
  derived from the gateway, and NUD_PERMANENT neighbour entries are written pod -> gateway
  (inside the pod) and bridge -> pod (host side). Dynamic entries count against the host-wide
  gc_thresh3=1024 and overflowed at 1000 pods; permanent ones are not counted.
- DEL removes the masquerade chain even when the container's netns is already gone (the
  reference leaks it: containernetworking/plugins#810), from the addresses IPAM released, the
  prevResult, or, failing both, from the chain's own rules.
- CHECK treats a result route without `gw` as "via the interface's gateway", which is how ADD
  installs it (the reference's CHECK rejects its own ADD's routes for such entries).
- GC (spec 1.1.0) releases IPAM and masquerade chains of every attachment not listed in
  `cni.dev/valid-attachments`; STATUS reports code 50 when IPAM has no free address.
- IPv4 is the tested path; IPv6 addresses are configured without duplicate address detection.
"""

import fcntl
import ipaddress
import json
import os
import secrets
import shutil
import socket
import struct
import subprocess

from cni import spec
from cni.ipam import hostlocal
from cni.plugins.masquerade import gc_masquerade, setup_masquerade, teardown_masquerade
from cni.spec import CNIError
from netsim import netns

DEFAULT_BRIDGE = "cni0"
NUD_PERMANENT = 0x80
IFF_UP = 0x1
IFF_PROMISC = 0x100
IFA_F_NODAD = 0x02
RT_TABLE_MAIN, RTPROT_BOOT, RTN_UNICAST = 254, 3, 1
_FAMILY = {4: socket.AF_INET, 6: socket.AF_INET6}
_NLMSG_HEADER = struct.Struct("=IHHII")
_NLMSG_ERROR = 2
EEXIST, ENOENT, ENODEV = 17, 2, 19
# rtnetlink numbers (linux/rtnetlink.h, if_link.h, veth.h) for the messages encoded here
RTM_NEWLINK, RTM_SETLINK = 16, 19
NLM_F_REQUEST, NLM_F_ACK, NLM_F_REPLACE, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x100, 0x200, 0x400
NLA_F_NESTED = 0x8000
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_MASTER, IFLA_PROTINFO, IFLA_LINKINFO, IFLA_NET_NS_FD = 1, 3, 4, 10, 12, 18, 28
IFLA_INFO_KIND, IFLA_INFO_DATA, VETH_INFO_PEER, IFLA_BRPORT_MODE = 1, 2, 1, 4
_IFINFOMSG = struct.Struct("=BxHiII")
# ioctls (linux/sockios.h) that read one property of a link by name, in the caller's namespace
SIOCGIFFLAGS, SIOCGIFADDR, SIOCGIFNETMASK, SIOCGIFHWADDR = 0x8913, 0x8915, 0x891B, 0x8927


def _iproute():
    # pyroute2 costs ~110 ms to import; VERSION and argument errors should not pay for it.
    from pyroute2 import IPRoute
    return IPRoute()


def warm():
    """Import what a request will need, so a resident agent's first ADD does not pay for it."""
    from pyroute2 import IPRoute  # noqa: F401
    from pyroute2.netlink.exceptions import NetlinkError  # noqa: F401


def _netlink_code(exc):
    return getattr(exc, "code", None)


class NetConf:
    """The network configuration, with the reference bridge plugin's defaults."""

    def __init__(self, conf):
        self.name = conf["name"]
        self.bridge = conf.get("bridge") or DEFAULT_BRIDGE
        self.is_default_gateway = bool(conf.get("isDefaultGateway"))
        self.is_gateway = bool(conf.get("isGateway")) or self.is_default_gateway
        self.force_address = bool(conf.get("forceAddress"))
        self.ip_masq = bool(conf.get("ipMasq"))
        self.mtu = int(conf.get("mtu") or 0)
        self.hairpin = bool(conf.get("hairpinMode"))
        self.promisc = bool(conf.get("promiscMode"))
        self.ipam = conf.get("ipam") or {}
        self.dns = conf.get("dns") or {}
        if len(self.bridge) > 15:
            raise CNIError(spec.ERR_INVALID_NETCONF, f"bridge name {self.bridge!r} is too long",
                           "field 'bridge' must be at most 15 characters")
        if self.ipam and not self.ipam.get("type"):
            raise CNIError(spec.ERR_INVALID_NETCONF, "missing ipam type", 'set "ipam": {"type": "host-local", ...}')


# --- IPAM ------------------------------------------------------------------------------------

def _hostlocal(n):
    return hostlocal.HostLocalConfig(n.ipam, n.name) if n.ipam.get("type") == "host-local" else None


def _exec_ipam(n, args, command, conf=None):
    """Run the delegated IPAM plugin as the spec says: same env, same stdin, found in CNI_PATH."""
    plugin = n.ipam["type"]
    path = shutil.which(plugin, path=":".join(args.path))
    if not path:
        raise CNIError(spec.ERR_PLUGIN_NOT_AVAILABLE if command == "STATUS" else spec.ERR_INTERNAL,
                       f"failed to find plugin {plugin!r} in path {args.path}", "ipam.type names an executable in CNI_PATH")
    env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "CNI_COMMAND": command,
           "CNI_CONTAINERID": args.container_id, "CNI_NETNS": args.netns, "CNI_IFNAME": args.ifname,
           "CNI_ARGS": args.args, "CNI_PATH": ":".join(args.path)}
    stdin = json.dumps(conf).encode() if conf is not None else args.stdin
    proc = subprocess.run([path], input=stdin, env=env, capture_output=True)
    if proc.returncode != 0:
        try:
            raise CNIError.from_json(json.loads(proc.stdout))
        except ValueError:
            raise CNIError(spec.ERR_INTERNAL, f"IPAM plugin {plugin} failed with exit code {proc.returncode}",
                           proc.stderr.decode(errors="replace").strip()) from None
    return spec.parse_result(json.loads(proc.stdout)) if command == "ADD" else None


def _ipam_add(n, args):
    hl = _hostlocal(n)
    if hl:
        return hostlocal.allocate(hl, args.container_id, args.ifname)
    return _exec_ipam(n, args, "ADD")


def _ipam_del(n, args):
    """Release the attachment's addresses; returns those known to be freed (host-local only)."""
    hl = _hostlocal(n)
    if hl:
        return hostlocal.release(hl, args.container_id, args.ifname)
    _exec_ipam(n, args, "DEL")
    return []


# --- Names and addresses -----------------------------------------------------------------------

def mac_for_ipv4(address):
    """0a:58:<the four address bytes>: stable, locally administered, unique per address."""
    return "0a:58:" + ":".join(f"{b:02x}" for b in ipaddress.IPv4Address(address).packed)


def _random_mac():
    raw = bytearray(secrets.token_bytes(6))
    raw[0] = (raw[0] & 0xFE) | 0x02
    return ":".join(f"{b:02x}" for b in raw)


def _gateways(n, ips):
    """{family: (gateway address, ip interface)} for the first address of each family."""
    out = {}
    for ip in ips:
        iface = ipaddress.ip_interface(ip["address"])
        family = str(iface.version)
        if family in out:
            continue
        gw = ip.get("gateway") or (str(iface.network.network_address + 1) if n.is_gateway else None)
        if gw:
            ip["gateway"] = gw
        out[family] = (gw, iface)
    return out


# --- Host side -----------------------------------------------------------------------------------

def _get_link(ipr, name):
    """The link message for NAME in IPR's namespace, or None (one RTM_GETLINK, no dump)."""
    from pyroute2.netlink.exceptions import NetlinkError

    try:
        return ipr.link("get", ifname=name)[0]
    except NetlinkError as e:
        if _netlink_code(e) in (ENODEV, ENOENT):
            return None
        raise


def _link_kind(link):
    return link.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND")


# (namespace device, inode, bridge name) -> (index, _wanted(...)) of bridges an ADD of this
# process ensured: a resident runtime's next ADD checks the bridge with ioctls (it is still that
# link, up, with that gateway address first) instead of a link query and an address dump.
_ensured = {}


def _wanted(n, gateways):
    """What _ensure_bridge makes sure of, if ioctls can check it (IPv4 only); else None."""
    if n.is_gateway and "6" in gateways:
        return None
    v4 = gateways.get("4") if n.is_gateway else None
    return n.is_gateway, n.promisc, (v4[0], v4[1].network.prefixlen) if v4 and v4[0] else None


def _namespace_key(n):
    st = os.stat("/proc/thread-self/ns/net")
    return st.st_dev, st.st_ino, n.bridge


def _ifreq(sock, request, name):
    return fcntl.ioctl(sock, request, struct.pack("=16s24x", name.encode()))


def _known_bridge(n, gateways):
    """(index, MAC) of the bridge if an earlier ADD of this process ensured it as wanted now, in
    this namespace, and it is still that link (same index, so not deleted and made again), up,
    promiscuous if asked, with the gateway address as its first IPv4 address; else None."""
    wanted = _wanted(n, gateways)
    known = _ensured.get(_namespace_key(n)) if wanted else None
    if known is None or known[1] != wanted:
        return None
    try:
        if socket.if_nametoindex(n.bridge) != known[0]:
            return None
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            flags = struct.unpack_from("=H", _ifreq(sock, SIOCGIFFLAGS, n.bridge), 16)[0]
            mac = _ifreq(sock, SIOCGIFHWADDR, n.bridge)[18:24]
            if not flags & IFF_UP or (n.promisc and not flags & IFF_PROMISC):
                return None
            if wanted[2]:
                address = socket.inet_ntoa(_ifreq(sock, SIOCGIFADDR, n.bridge)[20:24])
                mask = int.from_bytes(_ifreq(sock, SIOCGIFNETMASK, n.bridge)[20:24], "big")
                if (address, mask.bit_count()) != wanted[2]:
                    return None
    except OSError:  # gone, or no IPv4 address
        return None
    return known[0], mac.hex(":")


def _ensure_bridge(ipr, n, gateways):
    """The bridge's (index, MAC), creating it up if missing; gateway addresses when isGateway."""
    from pyroute2.netlink.exceptions import NetlinkError

    link = _get_link(ipr, n.bridge)
    if link is None:
        v4 = gateways.get("4")
        attrs = {"ifname": n.bridge, "kind": "bridge", "state": "up"}
        if n.is_gateway and v4 and v4[0]:
            attrs["address"] = mac_for_ipv4(v4[0])
        if n.mtu:
            attrs["mtu"] = n.mtu
        try:
            ipr.link("add", **attrs)
        except NetlinkError as e:
            if _netlink_code(e) != EEXIST:  # another ADD created it meanwhile
                raise CNIError(spec.ERR_INTERNAL, f"could not add bridge {n.bridge!r}: {e}") from None
        link = ipr.link("get", ifname=n.bridge)[0]
    if _link_kind(link) != "bridge":
        raise CNIError(spec.ERR_INTERNAL, f"{n.bridge!r} already exists but is not a bridge",
                       "choose another name in field 'bridge'")
    index = link["index"]
    if link.get("state") != "up":
        ipr.link("set", index=index, state="up")
    if n.promisc and not link["flags"] & IFF_PROMISC:
        ipr.link("set", index=index, flags=IFF_PROMISC, change=IFF_PROMISC)
    if n.is_gateway:
        for gw, iface in gateways.values():
            _ensure_gateway_address(ipr, n, index, gw, iface)
    wanted = _wanted(n, gateways)
    if wanted:
        _ensured[_namespace_key(n)] = index, wanted
    return index, link.get("address")


def _ensure_gateway_address(ipr, n, index, gw, iface):
    from pyroute2.netlink.exceptions import NetlinkError

    family = 2 if iface.version == 4 else 10
    wanted = ipaddress.ip_interface(f"{gw}/{iface.network.prefixlen}")
    for a in ipr.addr("dump", index=index, family=family):
        have = ipaddress.ip_interface(f"{a.get('IFA_ADDRESS')}/{a['prefixlen']}")
        if have == wanted:
            return
        if have.is_link_local:
            continue
        if iface.version == 4 or wanted.ip in have.network or have.ip in wanted.network:
            if not n.force_address:
                raise CNIError(spec.ERR_INTERNAL, f"{n.bridge!r} already has an IP address different from {wanted}",
                               f"it has {have}; set forceAddress to replace it")
            ipr.addr("del", index=index, address=str(have.ip), prefixlen=have.network.prefixlen)
    extra = {"broadcast": str(wanted.network.broadcast_address)} if iface.version == 4 else {}
    try:
        ipr.addr("add", index=index, address=str(wanted.ip), prefixlen=wanted.network.prefixlen, **extra)
    except NetlinkError as e:
        if _netlink_code(e) != EEXIST:
            raise CNIError(spec.ERR_INTERNAL, f"could not add IP address to {n.bridge!r}: {e}") from None


def _rtattr(kind, payload):
    size = 4 + len(payload)
    return struct.pack("=HH", size, kind) + payload + bytes(-size % 4)


def _link_attrs(name, mac, mtu):
    attrs = _rtattr(IFLA_IFNAME, name.encode() + b"\0")
    if mac:
        attrs += _rtattr(IFLA_ADDRESS, bytes.fromhex(mac.replace(":", "")))
    if mtu:
        attrs += _rtattr(IFLA_MTU, struct.pack("=I", mtu))
    return attrs


def _create_veth(n, args, bridge_index, container_fd, container_mac):
    """One RTM_NEWLINK (encoded here: pyroute2's request machinery costs more than the kernel's
    work): the pair, peer named CNI_IFNAME inside the container, host end up on the bridge.
    Returns (host name, host MAC)."""
    peer = (_IFINFOMSG.pack(0, 0, 0, 0, 0) + _link_attrs(args.ifname, container_mac, n.mtu)
            + _rtattr(IFLA_NET_NS_FD, struct.pack("=I", container_fd)))
    info = _rtattr(IFLA_INFO_KIND, b"veth\0") + _rtattr(IFLA_INFO_DATA, _rtattr(VETH_INFO_PEER, peer))
    for _ in range(8):
        host_name, host_mac = f"veth{secrets.token_hex(4)}", _random_mac()
        msg = (_IFINFOMSG.pack(0, 0, 0, IFF_UP, IFF_UP) + _link_attrs(host_name, host_mac, n.mtu)
               + _rtattr(IFLA_MASTER, struct.pack("=I", bridge_index)) + _rtattr(IFLA_LINKINFO, info))
        [error] = _rtnl_errors([(msg, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL)])
        if not error:
            return host_name, host_mac
        if error != EEXIST:
            raise CNIError(spec.ERR_INTERNAL, f"failed to create veth for {args.ifname!r}: {os.strerror(error)}")
        if _container_has_link(args.netns, args.ifname):
            raise CNIError(spec.ERR_INTERNAL, f"container veth name provided ({args.ifname}) already exists",
                           f"CNI_IFNAME {args.ifname!r} is taken in {args.netns}")
    raise CNIError(spec.ERR_INTERNAL, "could not find a free host veth name after 8 attempts")


def _container_has_link(path, ifname):
    with netns.enter(path):
        ipr = _iproute()
        try:
            return _get_link(ipr, ifname) is not None
        finally:
            ipr.close()


def _rtnl_errors(requests):
    """Send [(message, type, flags)] as ONE write on a netlink socket of the current namespace
    and wait for every ack; returns each request's errno (0: done). A message is a pyroute2
    message or its encoded body (what follows the netlink header)."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    try:
        sock.bind((0, 0))
        payload = []
        for seq, (msg, msg_type, flags) in enumerate(requests, 1):
            flags |= NLM_F_REQUEST | NLM_F_ACK
            if isinstance(msg, bytes):
                payload.append(_NLMSG_HEADER.pack(_NLMSG_HEADER.size + len(msg), msg_type, flags, seq, 0) + msg)
                continue
            msg["header"]["type"] = msg_type
            msg["header"]["flags"] = flags
            msg["header"]["sequence_number"] = seq
            msg.encode()
            payload.append(msg.data)
        sock.send(b"".join(payload))
        errors = {}
        while len(errors) < len(requests):
            data = sock.recv(65536)
            offset = 0
            while offset < len(data):
                length, msg_type, _, seq, _ = _NLMSG_HEADER.unpack_from(data, offset)
                if msg_type == _NLMSG_ERROR:
                    errors[seq] = -struct.unpack_from("=i", data, offset + _NLMSG_HEADER.size)[0]
                offset += (length + 3) & ~3
    finally:
        sock.close()
    return [errors.get(seq, 0) for seq in range(1, len(requests) + 1)]


def _rtnl_batch(requests):
    """_rtnl_errors for [(what, message, type, flags)]: the first failure raises naming WHAT."""
    for (what, *_), error in zip(requests, _rtnl_errors([r[1:] for r in requests])):
        if error:
            raise CNIError(spec.ERR_INTERNAL, f"failed to {what}: {os.strerror(error)}")


def _configure_container(args, result, gateways, bridge_mac, n):
    """Inside the container, in one netlink batch: addresses, link up, routes, and the
    permanent neighbour entry for the gateway."""
    from pyroute2.netlink.rtnl import RTM_NEWADDR, RTM_NEWLINK, RTM_NEWNEIGH, RTM_NEWROUTE
    from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
    from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
    from pyroute2.netlink.rtnl.ndmsg import ndmsg
    from pyroute2.netlink.rtnl.rtmsg import rtmsg

    create = NLM_F_CREATE | NLM_F_EXCL
    with netns.enter(args.netns):
        index = socket.if_nametoindex(args.ifname)  # ioctl on a socket of this thread's namespace
        requests = []
        for ip in result["ips"]:
            iface = ipaddress.ip_interface(ip["address"])
            msg = ifaddrmsg()
            msg["family"], msg["prefixlen"], msg["index"] = _FAMILY[iface.version], iface.network.prefixlen, index
            msg["attrs"] = [("IFA_LOCAL", str(iface.ip)), ("IFA_ADDRESS", str(iface.ip))]
            if iface.version == 4:
                msg["attrs"].append(("IFA_BROADCAST", str(iface.network.broadcast_address)))
            else:
                msg["flags"] = IFA_F_NODAD
            requests.append((f"add address {iface} to {args.ifname}", msg, RTM_NEWADDR, create))
        up = ifinfmsg()
        up["index"], up["flags"], up["change"] = index, IFF_UP, IFF_UP
        requests.append((f"set {args.ifname} up", up, RTM_NEWLINK, 0))
        for route in result["routes"]:
            dst = ipaddress.ip_network(route["dst"], strict=False)
            family = str(dst.version)
            gw = route.get("gw") or (gateways.get(family) or (None,))[0]
            msg = rtmsg()
            msg["family"], msg["dst_len"], msg["table"] = _FAMILY[dst.version], dst.prefixlen, RT_TABLE_MAIN
            msg["proto"], msg["scope"], msg["type"] = RTPROT_BOOT, 0, RTN_UNICAST
            msg["attrs"] = [("RTA_OIF", index)] + ([("RTA_DST", str(dst.network_address))] if dst.prefixlen else [])
            if gw:
                msg["attrs"].append(("RTA_GATEWAY", gw))
            requests.append((f"add route {route['dst']} via {gw or args.ifname}", msg, RTM_NEWROUTE, create))
        v4 = gateways.get("4")
        if n.is_gateway and v4 and v4[0] and bridge_mac:
            msg = ndmsg()
            msg["family"], msg["ifindex"], msg["state"] = _FAMILY[4], index, NUD_PERMANENT
            msg["attrs"] = [("NDA_DST", v4[0]), ("NDA_LLADDR", bridge_mac)]
            requests.append((f"add neighbour {v4[0]} on {args.ifname}", msg, RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE))
        _rtnl_batch(requests)


def _configure_host(n, host_name, bridge_index, v4, container_mac):
    """Hairpin on the host end, and the bridge's permanent neighbour entry for the pod: one batch."""
    from pyroute2.netlink.rtnl import RTM_NEWNEIGH
    from pyroute2.netlink.rtnl.ndmsg import ndmsg

    requests = []
    if n.hairpin:
        # `bridge link set dev HOST hairpin on`; the index by an ioctl in this thread's namespace
        port = _IFINFOMSG.pack(socket.AF_BRIDGE, 0, socket.if_nametoindex(host_name), 0, 0)
        port += _rtattr(IFLA_PROTINFO | NLA_F_NESTED, _rtattr(IFLA_BRPORT_MODE, b"\1"))
        requests.append((f"set hairpin mode on {host_name}", port, RTM_SETLINK, 0))
    if n.is_gateway and v4:
        msg = ndmsg()
        msg["family"], msg["ifindex"], msg["state"] = _FAMILY[4], bridge_index, NUD_PERMANENT
        msg["attrs"] = [("NDA_DST", str(v4[1].ip)), ("NDA_LLADDR", container_mac)]
        requests.append((f"add neighbour {v4[1].ip} on {n.bridge}", msg, RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE))
    if requests:
        _rtnl_batch(requests)


def _enable_forwarding(families):
    for family in families:
        path = "/proc/sys/net/ipv4/ip_forward" if family == "4" else "/proc/sys/net/ipv6/conf/all/forwarding"
        with open(path, "r+") as f:
            if f.read().strip() != "1":
                f.seek(0)
                f.write("1")


# --- Commands ------------------------------------------------------------------------------------

def _open_netns(path):
    try:
        return os.open(path, os.O_RDONLY)
    except OSError as e:
        raise CNIError(spec.ERR_INTERNAL, f"failed to open netns {json.dumps(path)}: {e.strerror}",
                       "CNI_NETNS must name an existing network namespace file") from None


def cmd_add(args):
    n = NetConf(args.conf)
    container_fd = _open_netns(args.netns)
    host_name = None
    try:
        ipam = _ipam_add(n, args) if n.ipam else {"ips": [], "routes": [], "dns": {}}
        try:
            ips = [dict(ip, interface=2) for ip in ipam["ips"]]
            gateways = _gateways(n, ips)
            routes = [dict(r) for r in ipam.get("routes") or []]
            if n.is_default_gateway:
                for family, (gw, _) in gateways.items():
                    default = "0.0.0.0/0" if family == "4" else "::/0"
                    if gw and not any(r["dst"] == default for r in routes):
                        routes.append({"dst": default, "gw": gw})
            v4 = gateways.get("4")
            container_mac = mac_for_ipv4(v4[1].ip) if v4 else None
            known = _known_bridge(n, gateways)
            if known:
                bridge_index, bridge_mac = known
            else:
                ipr = _iproute()
                try:
                    bridge_index, bridge_mac = _ensure_bridge(ipr, n, gateways)
                finally:
                    ipr.close()
            host_name, host_mac = _create_veth(n, args, bridge_index, container_fd, container_mac)
            result = {"interfaces": [{"name": n.bridge, "mac": bridge_mac},
                                     {"name": host_name, "mac": host_mac},
                                     {"name": args.ifname, "mac": container_mac, "sandbox": args.netns}],
                      "ips": ips, "routes": routes, "dns": n.dns or ipam.get("dns") or {}}
            _configure_container(args, result, gateways, bridge_mac, n)
            _configure_host(n, host_name, bridge_index, v4, container_mac)
            if not container_mac:
                result["interfaces"][2]["mac"] = _container_mac(args)
            if n.is_gateway:
                _enable_forwarding(gateways)
            if n.ip_masq:
                setup_masquerade(n.name, args.container_id, [ip["address"] for ip in ips])
            return result
        except BaseException:
            _rollback(n, args, host_name)
            raise
    finally:
        os.close(container_fd)


def _container_mac(args):
    with netns.enter(args.netns):
        ipr = _iproute()
        try:
            return ipr.link("get", ifname=args.ifname)[0].get("address")
        finally:
            ipr.close()


def _rollback(n, args, host_name):
    """A failed ADD leaves nothing behind: no veth, no reservation (the reference keeps the veth)."""
    if host_name:
        ipr = _iproute()
        try:
            ipr.link("del", ifname=host_name)
        except Exception:  # already gone with the container side
            pass
        finally:
            ipr.close()
    if n.ipam:
        _ipam_del(n, args)


def _delete_container_link(args):
    """Delete CNI_IFNAME in the container; returns its addresses. A missing netns or link is fine."""
    from pyroute2.netlink.exceptions import NetlinkError

    if not args.netns or not os.path.exists(args.netns):
        return []
    try:
        with netns.enter(args.netns):
            ipr = _iproute()
            try:
                link = _get_link(ipr, args.ifname)
                if link is None:
                    return []
                addrs = [f"{a.get('IFA_ADDRESS')}/{a['prefixlen']}" for a in ipr.addr("dump", index=link["index"])
                         if a["scope"] == 0]
                try:
                    ipr.link("del", index=link["index"])
                except NetlinkError as e:
                    if _netlink_code(e) not in (ENODEV, ENOENT):
                        raise
                return addrs
            finally:
                ipr.close()
    except netns.NamespaceError:
        return []


def _delete_host_veth(n, prev):
    """The container is gone: its veth's host end goes with it, but the kernel destroys a dead
    namespace later, on a work queue. Delete the host end named in prevResult now, if it is
    still a veth on our bridge, so DEL leaves nothing behind when it returns."""
    from pyroute2.netlink.exceptions import NetlinkError

    hosts = [i.get("name") for i in (prev or {}).get("interfaces", []) if i.get("name") and not i.get("sandbox")]
    if not hosts:
        return
    ipr = _iproute()
    try:
        bridge = _get_link(ipr, n.bridge)
        for name in hosts:
            link = _get_link(ipr, name)
            if (link is None or bridge is None or _link_kind(link) != "veth"
                    or link.get_attr("IFLA_MASTER") != bridge["index"]):
                continue
            try:
                ipr.link("del", index=link["index"])
            except NetlinkError as e:
                if _netlink_code(e) not in (ENODEV, ENOENT):
                    raise
    finally:
        ipr.close()


def _forget_neighbours(n, addresses):
    """Drop the host-side permanent entries of these pod addresses; absent ones are fine."""
    from pyroute2.netlink.exceptions import NetlinkError

    v4 = {a.split("/")[0] for a in addresses if spec.ip_version(a) == "4"}
    if not (n.is_gateway and v4):
        return
    ipr = _iproute()
    try:
        bridge = _get_link(ipr, n.bridge)
        for dst in v4 if bridge else ():
            try:
                ipr.neigh("del", dst=dst, ifindex=bridge["index"])
            except NetlinkError as e:
                if _netlink_code(e) not in (ENOENT, ENODEV):
                    raise
    finally:
        ipr.close()


def _unheld(n, prev):
    """prevResult's addresses that no attachment holds now. A DEL interrupted after it released
    them and deleted the container's link (its kubelet killed) left their neighbour entries; the
    DEL repeated finds neither and has only prevResult to name them. An address another pod took
    meanwhile keeps its entry. host-local only: a delegated IPAM cannot be asked."""
    hl = _hostlocal(n) if n.ipam else None
    if hl is None or not prev:
        return set()
    held = hostlocal.Store(hl).reservations()
    return {ip["address"] for ip in prev.get("ips", []) if ip["address"].split("/")[0] not in held}


def cmd_del(args):
    n = NetConf(args.conf)
    released = _ipam_del(n, args) if n.ipam else []
    addresses = _delete_container_link(args)
    if not addresses:
        _delete_host_veth(n, args.prev_result)
    ours = set(released) | set(addresses)
    _forget_neighbours(n, ours or _unheld(n, args.prev_result))
    if n.ip_masq:
        known = set(released) | set(addresses)
        prev = args.prev_result
        if prev:
            known.update(ip["address"] for ip in prev.get("ips", []))
        teardown_masquerade(n.name, args.container_id, {a.split("/")[0] for a in known})


def cmd_check(args):
    n = NetConf(args.conf)
    prev = args.prev_result
    if prev is None:
        raise CNIError(spec.ERR_INTERNAL, "Required prevResult missing", "CHECK needs the ADD result as prevResult")
    if n.ipam:
        hl = _hostlocal(n)
        if hl:
            hostlocal.check(hl, args.container_id, args.ifname)
        else:
            _exec_ipam(n, args, "CHECK")
    ifaces = prev.get("interfaces", [])
    container = next((i for i in ifaces if i.get("sandbox") == args.netns and i.get("name") == args.ifname), None)
    if container is None:
        raise CNIError(spec.ERR_INTERNAL, f"Sandbox interface {args.ifname} not found in prevResult",
                       f"expected an interface named {args.ifname} with sandbox {args.netns}")
    host = next((i for i in ifaces if not i.get("sandbox") and i.get("name") != n.bridge), None)
    ipr = _iproute()
    try:
        bridge = _get_link(ipr, n.bridge)
        if bridge is None or _link_kind(bridge) != "bridge":
            raise CNIError(spec.ERR_INTERNAL, f"bridge {n.bridge} not found", "the field 'bridge' names it")
        host_index = None
        if host:
            host_link = _get_link(ipr, host["name"])
            if host_link is None:
                raise CNIError(spec.ERR_INTERNAL, f"host veth {host['name']} not found")
            if host_link.get("IFLA_MASTER") != bridge["index"]:
                raise CNIError(spec.ERR_INTERNAL, f"host veth {host['name']} is not attached to bridge {n.bridge}")
            host_index = host_link["index"]
    finally:
        ipr.close()
    _check_container(args, prev, container, host_index)


def _check_container(args, prev, container, host_index):
    with netns.enter(args.netns):
        ipr = _iproute()
        try:
            link = _get_link(ipr, args.ifname)
            if link is None:
                raise CNIError(spec.ERR_INTERNAL, f"Container interface {args.ifname} not found in {args.netns}")
            if _link_kind(link) != "veth":
                raise CNIError(spec.ERR_INTERNAL, f"Container interface {args.ifname} is not a veth")
            if container.get("mac") and link.get("address") != container["mac"].lower():
                raise CNIError(spec.ERR_INTERNAL, f"Container interface {args.ifname} Mac {link.get('address')} "
                               f"doesn't match: {container['mac']}")
            if host_index is not None and link.get("IFLA_LINK") != host_index:
                raise CNIError(spec.ERR_INTERNAL, f"Container interface {args.ifname} is not the peer of the host veth")
            have = {ipaddress.ip_interface(f"{a.get('IFA_ADDRESS')}/{a['prefixlen']}")
                    for a in ipr.addr("dump", index=link["index"])}
            gateways = {}
            for ip in prev.get("ips", []):
                want = ipaddress.ip_interface(ip["address"])
                gateways.setdefault(str(want.version), ip.get("gateway"))
                if want not in have:
                    raise CNIError(spec.ERR_INTERNAL, f"Failed to match addr {ip['address']} on interface {args.ifname}")
            table = [(ipaddress.ip_network(f"{r.get('RTA_DST') or ('::' if r['family'] == 10 else '0.0.0.0')}/{r['dst_len']}"),
                      r.get("RTA_GATEWAY"))
                     for family in (2, 10) for r in ipr.route("dump", family=family, table=254)]
            for route in prev.get("routes", []):
                dst = ipaddress.ip_network(route["dst"], strict=False)
                gw = route.get("gw") or gateways.get(spec.ip_version(route["dst"]))
                if not any(d == dst and (g == gw or (not route.get("gw") and g is None)) for d, g in table):
                    raise CNIError(spec.ERR_INTERNAL, f"Expected Route {route['dst']} via {gw or 'link'} "
                                   f"not found in routing table of {args.ifname}")
        finally:
            ipr.close()


def _valid_attachments(conf):
    # The spec 1.1.0 text said cni.dev/attachments; libcni sends both (containernetworking/cni#1101).
    raw = conf.get("cni.dev/valid-attachments", conf.get("cni.dev/attachments")) or []
    try:
        return {(a["containerID"], a["ifname"]) for a in raw}
    except (TypeError, KeyError):
        raise CNIError(spec.ERR_INVALID_NETCONF, "invalid cni.dev/valid-attachments",
                       'expected a list of {"containerID": ..., "ifname": ...}') from None


def cmd_gc(args):
    n = NetConf(args.conf)
    valid = _valid_attachments(args.conf)
    if n.ipam:
        hl = _hostlocal(n)
        if hl:
            freed = hostlocal.gc(hl, valid)
            _forget_neighbours(n, [address for _, _, address in freed])
        else:
            _exec_ipam(n, args, "GC")
    if n.ip_masq:
        gc_masquerade(n.name, {cid for cid, _ in valid})


def cmd_status(args):
    n = NetConf(args.conf)
    if not n.ipam:
        return
    hl = _hostlocal(n)
    if hl is None:
        _exec_ipam(n, args, "STATUS")
    elif not hostlocal.has_free_address(hl):
        raise CNIError(spec.ERR_PLUGIN_NOT_AVAILABLE, f"no free addresses in network {n.name}",
                       f"every address of ipam ranges is reserved in {hl.network_dir}")
