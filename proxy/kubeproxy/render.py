"""Services + EndpointSlices -> the iptables ruleset upstream kube-proxy (iptables mode) writes.

Pure: `render()` reads API objects and returns a `Rendering` (the filter and nat tables, chain
by chain) and, against the previous rendering, which chains changed and which chains went
stale, so that a sync can rewrite only those (KEP-3453). Rules, comments, chain names and
the order of rules inside each chain follow `syncProxyRules` in upstream's
pkg/proxy/iptables/proxier.go; chains are laid out in the order upstream's own tests sort
them (KUBE-NODEPORTS, KUBE-SERVICES, then by name), which iptables-restore accepts as is.

Rendering is incremental: each Service port's rules are kept as a fragment and reused when the
port and its endpoints are unchanged, and objects that carry the same resourceVersion as last
time are not converted again, so a one-Service change costs little at 10k Services.
"""

import dataclasses
import ipaddress
import secrets

from . import hashing
from .model import ModelError, SERVICE_NAME_LABEL, categorize_endpoints, endpoints_map, service_ports

KUBE_SERVICES = "KUBE-SERVICES"
KUBE_EXTERNAL_SERVICES = "KUBE-EXTERNAL-SERVICES"
KUBE_NODEPORTS = "KUBE-NODEPORTS"
KUBE_POSTROUTING = "KUBE-POSTROUTING"
KUBE_MARK_MASQ = "KUBE-MARK-MASQ"
KUBE_FORWARD = "KUBE-FORWARD"
KUBE_PROXY_FIREWALL = "KUBE-PROXY-FIREWALL"
KUBE_FIREWALL = "KUBE-FIREWALL"

# Above this many endpoints upstream drops the per-endpoint comments ("large cluster mode"):
# they make up ~40% of the ruleset's size.
LARGE_CLUSTER_ENDPOINTS_THRESHOLD = 1000

NFACCT_CT_STATE_INVALID = "ct_state_invalid_dropped_pkts"
NFACCT_LOCALHOST_NODEPORT = "localhost_nps_accepted_pkts"


@dataclasses.dataclass(frozen=True)
class ProxierConfig:
    """kube-proxy's flags that change the rules it writes.

    cluster_cidr: the local-traffic detector (--cluster-cidr with --detect-local-mode=ClusterCIDR);
    None leaves it unimplemented, as upstream does without a cluster CIDR.
    localhost_nodeports: NodePorts answer on 127.0.0.1 (needs route_localnet, set by the syncer).
    nfacct: the nfacct counters exist, so upstream adds its `-m nfacct` accounting rules.
    random_fully: iptables supports MASQUERADE --random-fully (1.8.9 here does).
    conntrack_tcp_be_liberal: the node sets nf_conntrack_tcp_be_liberal, so no INVALID drop.
    """
    cluster_cidr: str | None = None
    masquerade_all: bool = False
    masquerade_bit: int = 14
    localhost_nodeports: bool = True
    nfacct: bool = False
    random_fully: bool = True
    conntrack_tcp_be_liberal: bool = False

    @property
    def masquerade_mark(self):
        return hex(1 << self.masquerade_bit)


@dataclasses.dataclass
class _Fragment:
    """The rules one Service port contributes, and the inputs they were computed from."""
    svc: object
    endpoints: tuple
    large: bool
    filter_rules: dict  # top-level filter chain -> [rule]
    nat_rules: dict     # KUBE-SERVICES / KUBE-NODEPORTS -> [rule]
    own: dict           # this port's nat chains (SVC/SVL/EXT/FW/SEP) -> (rule, ...)
    udp_targets: tuple  # conntrack filters matching this port's traffic, for UDP ports


def chain_order(chain):
    """Upstream's test order: KUBE-NODEPORTS, KUBE-SERVICES, then KUBE-* by name, then others."""
    if chain == KUBE_NODEPORTS:
        return (0, chain)
    if chain == KUBE_SERVICES:
        return (1, chain)
    return (2, chain) if chain.startswith("KUBE-") else (3, chain)


class Rendering:
    """The rendered filter and nat tables, and what changed since the rendering it was based on.

    tables: {"filter": {chain: (rule, ...)}, "nat": {...}}, each rule a full "-A CHAIN ..." line.
    changed: {(table, chain)} whose rules differ from the previous rendering (all, without one).
    stale: nat chains the previous rendering had and this one has not (to delete).
    conntrack_flush: conntrack filters (argument tuples) of UDP Service ports whose endpoints
    changed: their stale entries must go, or clients keep talking to the old endpoints.
    errors: objects that could not be used (skipped), each naming the object and field.
    token / basis: this rendering's identity and that of the rendering it was diffed against.
    """

    def __init__(self, tables, changed, stale, conntrack_flush, errors, basis, state):
        self.tables = tables
        self.changed = frozenset(changed)
        self.stale = frozenset(stale)
        self.conntrack_flush = tuple(conntrack_flush)
        self.errors = tuple(errors)
        self.basis = basis
        self.token = secrets.token_hex(8)
        self._state = state

    @property
    def config(self):
        return self._state["config"]

    @property
    def service_ports(self):
        return len(self._state["fragments"])

    @property
    def endpoints(self):
        return self._state["total_endpoints"]

    def chains(self, table):
        return sorted(self.tables[table], key=chain_order)

    def restore_input(self, only=None, delete=()):
        """iptables-restore input (for --noflush): every chain, or only the (table, chain) pairs in
        ONLY, plus chain lines and `-X` for the nat chains in DELETE. Tables with nothing to write
        are left out, so iptables-restore does not touch them."""
        out = []
        for table in ("filter", "nat"):
            chains = self.tables[table]
            names = list(chains) if only is None else [c for c in chains if (table, c) in only]
            dels = sorted(delete) if table == "nat" else []
            if not names and not dels:
                continue
            names.sort(key=chain_order)
            out.append(f"*{table}")
            out.extend(f":{c} - [0:0]" for c in sorted(names + dels, key=chain_order))
            for c in names:
                out.extend(chains[c])
            out.extend(f"-X {c}" for c in dels)
            out.append("COMMIT")
        return "\n".join(out) + "\n" if out else ""

    def text(self):
        """The whole ruleset, as upstream's tests print it."""
        return self.restore_input()


def _service_key(obj):
    meta = obj.get("metadata") or {}
    return meta.get("namespace"), meta.get("name")


def _convert_services(services, cache, errors):
    ports, new_cache = [], {}
    for obj in services:
        key = _service_key(obj)
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        hit = cache.get(key)
        if rv and hit and hit[0] == rv:
            converted = hit[1]
        else:
            try:
                converted = tuple(service_ports(obj))
            except ModelError as e:
                errors.append(str(e))
                converted = ()
        new_cache[key] = (rv, converted)
        ports.extend(converted)
    return ports, new_cache


def _convert_endpoints(endpoint_slices, node_name, cache, errors):
    groups = {}
    for es in endpoint_slices:
        meta = es.get("metadata") or {}
        key = (meta.get("namespace"), (meta.get("labels") or {}).get(SERVICE_NAME_LABEL))
        groups.setdefault(key, []).append(es)
    merged, new_cache = {}, {}
    for key, slices in groups.items():
        rvs = [((s.get("metadata") or {}).get("name"), (s.get("metadata") or {}).get("resourceVersion"))
               for s in slices]
        signature = tuple(sorted(rvs)) if all(rv for _, rv in rvs) else None
        hit = cache.get(key)
        if signature and hit and hit[0] == signature:
            converted = hit[1]
        else:
            converted = endpoints_map(slices, node_name, errors)
        new_cache[key] = (signature, converted)
        merged.update(converted)
    return merged, new_cache


def render(services, endpoint_slices, node, config, previous=None):
    """Render SERVICES and ENDPOINT_SLICES (API objects as dicts) for NODE (a model.Node) under
    CONFIG (a ProxierConfig). With PREVIOUS (the last Rendering), also work out which chains
    changed and which went stale, and reuse what did not change."""
    prev_state = previous._state if previous is not None else None
    if prev_state and (prev_state["node"] != node or prev_state["config"] != config):
        prev_state = None  # every rule may depend on them: start afresh, diff still against previous
    errors = []
    ports, service_cache = _convert_services(services, prev_state["services"] if prev_state else {}, errors)
    eps, endpoint_cache = _convert_endpoints(endpoint_slices, node.name,
                                             prev_state["endpoints"] if prev_state else {}, errors)
    total = sum(len(eps.get(svc.name, ())) for svc in ports)
    large = total > LARGE_CLUSTER_ENDPOINTS_THRESHOLD

    prev_fragments = prev_state["fragments"] if prev_state else {}
    fragments, rebuilt = {}, []
    for svc in sorted(ports, key=lambda s: (str(s.name), s.name.protocol)):
        endpoints = eps.get(svc.name, ())
        old = prev_fragments.get(svc.name)
        if old is not None and old.large == large and old.svc == svc and old.endpoints == endpoints:
            fragments[svc.name] = old
        else:
            fragments[svc.name] = _fragment(svc, endpoints, node, config, large)
            rebuilt.append(svc.name)

    tables = {"filter": _filter_table(fragments, config), "nat": _nat_table(fragments, config)}
    changed, stale, flush = _diff(tables, fragments, rebuilt, previous, prev_fragments)
    state = {"node": node, "config": config, "services": service_cache, "endpoints": endpoint_cache,
             "fragments": fragments, "total_endpoints": total}
    return Rendering(tables, changed, stale, flush, errors,
                     previous.token if previous is not None else None, state)


def _diff(tables, fragments, rebuilt, previous, prev_fragments):
    if previous is None:
        return {(t, c) for t in tables for c in tables[t]}, set(), []
    changed, stale, flush = set(), set(), []
    for table in tables:
        before = previous.tables[table]
        for chain, rules in tables[table].items():
            if not hashing.is_service_chain(chain) and before.get(chain) != rules:
                changed.add((table, chain))
    nat_before = previous.tables["nat"]
    for name in rebuilt:
        frag = fragments[name]
        for chain, rules in frag.own.items():
            if nat_before.get(chain) != rules:
                changed.add(("nat", chain))
        old = prev_fragments.get(name)
        if old is not None:
            stale.update(set(old.own) - set(frag.own))
        if frag.udp_targets and (old is None or old.endpoints != frag.endpoints):
            flush.extend(frag.udp_targets)
    for name, old in prev_fragments.items():
        if name not in fragments:
            stale.update(old.own)
    if not prev_fragments and previous.tables["nat"]:
        # No fragments to compare with (node or config changed): compare whole tables.
        for chain in previous.tables["nat"]:
            if hashing.is_service_chain(chain) and chain not in tables["nat"]:
                stale.add(chain)
        for chain, rules in tables["nat"].items():
            if hashing.is_service_chain(chain) and nat_before.get(chain) != rules:
                changed.add(("nat", chain))
    return changed, stale, flush


def _filter_table(fragments, config):
    mark = config.masquerade_mark
    chains = {KUBE_NODEPORTS: [], KUBE_SERVICES: [], KUBE_EXTERNAL_SERVICES: [], KUBE_FORWARD: [],
              KUBE_PROXY_FIREWALL: []}
    for frag in fragments.values():
        for chain, rules in frag.filter_rules.items():
            chains[chain].extend(rules)
    if config.localhost_nodeports:
        # Mitigates the hole route_localnet opens (kubernetes#90259); kubelet writes the same rule.
        chains[KUBE_FIREWALL] = [
            f'-A {KUBE_FIREWALL} -m comment --comment "block incoming localnet connections" -d 127.0.0.0/8 '
            "! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP"]
    forward = chains[KUBE_FORWARD]
    if not config.conntrack_tcp_be_liberal:
        nfacct = f" -m nfacct --nfacct-name {NFACCT_CT_STATE_INVALID}" if config.nfacct else ""
        forward.append(f"-A {KUBE_FORWARD} -m conntrack --ctstate INVALID{nfacct} -j DROP")
    forward.append(f'-A {KUBE_FORWARD} -m comment --comment "kubernetes forwarding rules" '
                   f"-m mark --mark {mark}/{mark} -j ACCEPT")
    forward.append(f'-A {KUBE_FORWARD} -m comment --comment "kubernetes forwarding conntrack rule" '
                   "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")
    return {c: tuple(rules) for c, rules in chains.items()}


def _nat_table(fragments, config):
    mark = config.masquerade_mark
    services, nodeports = [], []
    own = {}
    for frag in fragments.values():
        services.extend(frag.nat_rules[KUBE_SERVICES])
        nodeports.extend(frag.nat_rules[KUBE_NODEPORTS])
        own.update(frag.own)
    destinations = "-m addrtype --dst-type LOCAL" + ("" if config.localhost_nodeports else " ! -d 127.0.0.0/8")
    services.append(f'-A {KUBE_SERVICES} -m comment --comment "kubernetes service nodeports; NOTE: this must be '
                    f'the last rule in this chain" {destinations} -j {KUBE_NODEPORTS}')
    masquerade = (f'-A {KUBE_POSTROUTING} -m comment --comment "kubernetes service traffic requiring SNAT" '
                  "-j MASQUERADE" + (" --random-fully" if config.random_fully else ""))
    tables = {
        KUBE_NODEPORTS: tuple(nodeports),
        KUBE_SERVICES: tuple(services),
        KUBE_MARK_MASQ: (f"-A {KUBE_MARK_MASQ} -j MARK --or-mark {mark}",),
        KUBE_POSTROUTING: (f"-A {KUBE_POSTROUTING} -m mark ! --mark {mark}/{mark} -j RETURN",
                           # Clear the mark so a packet that traverses the stack again is not re-masqueraded.
                           f"-A {KUBE_POSTROUTING} -j MARK --xor-mark {mark}",
                           masquerade),
    }
    tables.update(own)
    return tables


def _probability(n):
    return "%0.10f" % (1.0 / n)


def _fragment(svc, endpoints, node, config, large):
    """The rules of one Service port, in upstream's order (see syncProxyRules)."""
    name = str(svc.name)
    proto = svc.protocol.lower()
    svc_chain, svl_chain, ext_chain, fw_chain = hashing.service_chains(name, proto)
    cluster, local, reachable, has_any = categorize_endpoints(endpoints, svc)

    uses_cluster_chain = bool(cluster) and svc.uses_cluster_endpoints
    uses_local_chain = bool(local) and svc.uses_local_endpoints
    internal_chain, has_internal = svc_chain, has_any
    if svc.internal_policy_local:
        internal_chain = svl_chain
        has_internal = has_internal and bool(local)
    external_policy_chain, has_external = svc_chain, has_any
    if svc.external_policy_local:
        external_policy_chain = svl_chain
        has_external = has_external and bool(local)
    # The EXT chain exists whenever there are endpoints anywhere: its short-circuit rules for
    # traffic from this node and its pods apply even without local endpoints.
    uses_ext_chain = has_any and svc.externally_accessible
    uses_fw_chain = has_any and bool(svc.load_balancer_vips) and bool(svc.load_balancer_source_ranges)
    lb_chain = fw_chain if uses_fw_chain else ext_chain

    if not has_any:
        internal_target = external_target = "REJECT"
        internal_comment = external_comment = f'"{name} has no endpoints"'
    else:
        internal_target = external_target = None
        internal_comment = external_comment = f'"{name} has no local endpoints"'
        if not has_internal:
            internal_target = "DROP"
        if not has_external:
            external_target = "DROP"

    match = f"-m {proto} -p {proto}"
    port = svc.port
    filt = {KUBE_SERVICES: [], KUBE_EXTERNAL_SERVICES: [], KUBE_PROXY_FIREWALL: [], KUBE_NODEPORTS: []}
    top = {KUBE_SERVICES: [], KUBE_NODEPORTS: []}
    own = {}

    if has_internal:
        top[KUBE_SERVICES].append(f'-A {KUBE_SERVICES} -m comment --comment "{name} cluster IP" {match} '
                                  f"-d {svc.cluster_ip} --dport {port} -j {internal_chain}")
    else:
        filt[KUBE_SERVICES].append(f"-A {KUBE_SERVICES} -m comment --comment {internal_comment} {match} "
                                   f"-d {svc.cluster_ip} --dport {port} -j {internal_target}")

    for ip in svc.external_ips:
        if has_any:
            top[KUBE_SERVICES].append(f'-A {KUBE_SERVICES} -m comment --comment "{name} external IP" {match} '
                                      f"-d {ip} --dport {port} -j {ext_chain}")
        if not has_external:
            filt[KUBE_EXTERNAL_SERVICES].append(
                f"-A {KUBE_EXTERNAL_SERVICES} -m comment --comment {external_comment} {match} "
                f"-d {ip} --dport {port} -j {external_target}")

    for ip in svc.load_balancer_vips:
        if has_any:
            top[KUBE_SERVICES].append(f'-A {KUBE_SERVICES} -m comment --comment "{name} loadbalancer IP" {match} '
                                      f"-d {ip} --dport {port} -j {lb_chain}")
        if uses_fw_chain:
            filt[KUBE_PROXY_FIREWALL].append(
                f'-A {KUBE_PROXY_FIREWALL} -m comment --comment "{name} traffic not accepted by {fw_chain}" '
                f"{match} -d {ip} --dport {port} -j DROP")
    if not has_external:
        for ip in svc.load_balancer_vips:
            filt[KUBE_EXTERNAL_SERVICES].append(
                f"-A {KUBE_EXTERNAL_SERVICES} -m comment --comment {external_comment} {match} "
                f"-d {ip} --dport {port} -j {external_target}")

    if svc.node_port:
        if has_any:
            if config.localhost_nodeports and config.nfacct:
                top[KUBE_NODEPORTS].append(
                    f"-A {KUBE_NODEPORTS} -m comment --comment {name} {match} -d 127.0.0.0/8 "
                    f"--dport {svc.node_port} -m nfacct --nfacct-name {NFACCT_LOCALHOST_NODEPORT} -j {ext_chain}")
            top[KUBE_NODEPORTS].append(f"-A {KUBE_NODEPORTS} -m comment --comment {name} {match} "
                                       f"--dport {svc.node_port} -j {ext_chain}")
        if not has_external:
            filt[KUBE_EXTERNAL_SERVICES].append(
                f"-A {KUBE_EXTERNAL_SERVICES} -m comment --comment {external_comment} -m addrtype --dst-type LOCAL "
                f"{match} --dport {svc.node_port} -j {external_target}")

    if svc.health_check_node_port:
        filt[KUBE_NODEPORTS].append(
            f'-A {KUBE_NODEPORTS} -m comment --comment "{name} health check node port" -m tcp -p tcp '
            f"--dport {svc.health_check_node_port} -j ACCEPT")

    def rules_of(chain):
        return own.setdefault(chain, [])

    if has_internal:
        args = f'-m comment --comment "{name} cluster IP" {match} -d {svc.cluster_ip} --dport {port}'
        if config.masquerade_all:
            rules_of(internal_chain).append(f"-A {internal_chain} {args} -j {KUBE_MARK_MASQ}")
        elif config.cluster_cidr:
            # Off-cluster traffic to a Service IP may leave through another node: masquerade it.
            rules_of(internal_chain).append(
                f"-A {internal_chain} {args} ! -s {config.cluster_cidr} -j {KUBE_MARK_MASQ}")

    if uses_ext_chain:
        ext = rules_of(ext_chain)
        if not svc.external_policy_local:
            ext.append(f'-A {ext_chain} -m comment --comment "masquerade traffic for {name} external destinations" '
                       f"-j {KUBE_MARK_MASQ}")
        else:
            if config.cluster_cidr:
                # Pod -> external IP is treated as if it went out to the load balancer and back.
                ext.append(f'-A {ext_chain} -m comment --comment "pod traffic for {name} external destinations" '
                           f"-s {config.cluster_cidr} -j {svc_chain}")
            ext.append(f'-A {ext_chain} -m comment --comment "masquerade LOCAL traffic for {name} external '
                       f'destinations" -m addrtype --src-type LOCAL -j {KUBE_MARK_MASQ}')
            ext.append(f'-A {ext_chain} -m comment --comment "route LOCAL traffic for {name} external '
                       f'destinations" -m addrtype --src-type LOCAL -j {svc_chain}')
        if has_external:
            ext.append(f"-A {ext_chain} -j {external_policy_chain}")

    if uses_fw_chain:
        fw = rules_of(fw_chain)
        head = f'-A {fw_chain} -m comment --comment "{name} loadbalancer IP"'
        allow_from_node = False
        for cidr in svc.load_balancer_source_ranges:
            fw.append(f"{head} -s {cidr} -j {ext_chain}")
            allow_from_node = allow_from_node or _contains(cidr, node.ip)
        if allow_from_node:
            # A VIP often is a local address of the node, so the node's own requests come back
            # with the VIP as source: let those through too.
            for ip in svc.load_balancer_vips:
                fw.append(f"{head} -s {ip} -j {ext_chain}")
        fw.append(f'-A {fw_chain} -m comment --comment "other traffic to {name} will be dropped by '
                  f'{KUBE_PROXY_FIREWALL}"')

    if uses_cluster_chain:
        _service_to_endpoints(rules_of(svc_chain), name, proto, svc, svc_chain, cluster, large)
    if uses_local_chain:
        _service_to_endpoints(rules_of(svl_chain), name, proto, svc, svl_chain, local, large)

    comment = "" if large else f" -m comment --comment {name}"
    for ep in reachable:
        chain = hashing.endpoint_chain(name, proto, str(ep))
        recent = f" -m recent --name {chain} --set" if svc.session_affinity_client_ip else ""
        own[chain] = [f"-A {chain}{comment} -s {ep.ip} -j {KUBE_MARK_MASQ}",
                      f"-A {chain}{comment}{recent} {match} -j DNAT --to-destination {ep}"]

    udp = ()
    if proto == "udp":
        udp = tuple(("--orig-dst", ip) for ip in (svc.cluster_ip, *svc.external_ips, *svc.load_balancer_vips))
        if svc.node_port:
            udp += (("--orig-port-dst", str(svc.node_port)),)
    return _Fragment(svc, endpoints, large, {c: r for c, r in filt.items() if r}, top,
                     {c: tuple(r) for c, r in own.items()}, udp)


def _service_to_endpoints(rules, name, proto, svc, chain, endpoints, large):
    def comment(ep):
        return "" if large else f' -m comment --comment "{name} -> {ep}"'

    if svc.session_affinity_client_ip:
        for ep in endpoints:
            sep = hashing.endpoint_chain(name, proto, str(ep))
            rules.append(f"-A {chain}{comment(ep)} -m recent --name {sep} --rcheck --seconds "
                         f"{svc.sticky_max_age_seconds} --reap -j {sep}")
    n = len(endpoints)
    for i, ep in enumerate(endpoints):
        sep = hashing.endpoint_chain(name, proto, str(ep))
        statistic = f" -m statistic --mode random --probability {_probability(n - i)}" if i < n - 1 else ""
        rules.append(f"-A {chain}{comment(ep)}{statistic} -j {sep}")


def _contains(cidr, ip):
    try:
        return ipaddress.ip_address(ip) in ipaddress.ip_network(cidr)
    except ValueError:
        return False
