"""Services + EndpointSlices -> the iptables ruleset upstream kube-proxy (iptables mode) writes.

Pure: `render()` reads API objects and returns a `Rendering` (the filter and nat tables, chain
by chain) and, against the previous rendering, which chains changed and which chains went
stale, so that a sync can rewrite only those (KEP-3453). Rules, comments, chain names and
the order of rules inside each chain follow `syncProxyRules` in upstream's
pkg/proxy/iptables/proxier.go; chains are laid out in the order upstream's own tests sort
them (KUBE-NODEPORTS, KUBE-SERVICES, then by name), which iptables-restore accepts as is.

Rendering is incremental, as upstream's change trackers make it: objects that carry the same
resourceVersion as last time are not converted again, each Service port's rules are kept as a
fragment and reused while the port and its endpoints are unchanged, and the nat table is
patched from the previous rendering (only rebuilt fragments' chains are replaced and compared),
so a one-Service change at 10k Services costs ~10 ms here, most of it the one pass over the
objects that finds what changed.
"""

import bisect
import contextlib
import dataclasses
import gc
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
NAT_TOP_LEVEL = (KUBE_NODEPORTS, KUBE_SERVICES, KUBE_MARK_MASQ, KUBE_POSTROUTING)

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


@dataclasses.dataclass(slots=True)
class _Fragment:
    """The rules one Service port contributes, and the inputs they were computed from."""
    svc: object
    endpoints: tuple
    large: bool
    order: tuple        # where its rules go among the other ports' (upstream's test order)
    filter_rules: dict  # top-level filter chain -> (rule, ...)
    services: tuple     # its rules in nat KUBE-SERVICES
    nodeports: tuple    # its rules in nat KUBE-NODEPORTS
    own: dict           # this port's nat chains (SVC/SVL/EXT/FW/SEP) -> (rule, ...)
    udp_targets: tuple  # conntrack filters matching this port's traffic, for UDP ports

    def top_level(self):
        """What it adds to the top-level chains (KUBE-SERVICES and the others)."""
        return self.services, self.nodeports, self.filter_rules

    def made_from(self, svc, endpoints, large):
        # Unchanged inputs are the very objects the conversion caches handed out last time, so
        # identity answers first and the field-by-field comparison is rarely needed.
        return (self.large == large and (self.svc is svc or self.svc == svc)
                and (self.endpoints is endpoints or self.endpoints == endpoints))


def in_chain_order(chains):
    """CHAINS in upstream's test order: KUBE-NODEPORTS, KUBE-SERVICES, then KUBE-* by name, then
    others by name. A plain sort and a few moves: a sort keyed per chain takes 10x longer at 40k
    chains."""
    names = sorted(chains)
    # The KUBE- chains are one run of the sorted names ("." follows "-").
    lo, hi = bisect.bisect_left(names, "KUBE-"), bisect.bisect_left(names, "KUBE.")
    kube = names[lo:hi]
    first = [c for c in (KUBE_NODEPORTS, KUBE_SERVICES) if c in chains]
    for c in first:
        kube.remove(c)
    return first + kube + names[:lo] + names[hi:]


class Rendering:
    """The rendered filter and nat tables, and what changed since the rendering it was based on.

    tables: {"filter": {chain: (rule, ...)}, "nat": {...}}, each rule a full "-A CHAIN ..." line;
    read only: later renderings share what did not change.
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
        return in_chain_order(self.tables[table])

    def restore_input(self, only=None, delete=(), extra=None):
        """iptables-restore input (for --noflush): every chain, or only the (table, chain) pairs in
        ONLY, plus chain lines and `-X` for the nat chains in DELETE. EXTRA, {table: (chains,
        rules)}, adds chains and rules of the writer's own to a table being written. Tables with
        nothing to write are left out, so iptables-restore does not touch them."""
        out = []
        for table in ("filter", "nat"):
            chains = self.tables[table]
            names = in_chain_order(chains if only is None else [c for t, c in only if t == table and c in chains])
            dels = sorted(delete) if table == "nat" else []
            if not names and not dels:
                continue
            extra_chains, extra_rules = (extra or {}).get(table, ((), ()))
            out.append(f"*{table}")
            declared = in_chain_order(names + dels) if dels else names
            out.extend(f":{c} - [0:0]" for c in (*declared, *extra_chains))
            for c in names:
                out.extend(chains[c])
            out.extend(extra_rules)
            out.extend(f"-X {c}" for c in dels)
            out.append("COMMIT")
        return "\n".join(out) + "\n" if out else ""

    def text(self):
        """The whole ruleset, as upstream's tests print it."""
        return self.restore_input()


def _track_services(services, before):
    """Convert the Services that changed since BEFORE (the previous _Sources, or None).
    Returns (cache, ports, changed port names, errors): a Service whose resourceVersion is the
    one converted last time is not looked at again."""
    old_cache = before.services if before else {}
    cache, changed_keys, known = {}, [], 0
    for obj in services:  # the one pass over every Service: keep it lean
        meta = obj.get("metadata") or {}
        key, rv = (meta.get("namespace"), meta.get("name")), meta.get("resourceVersion")
        hit = old_cache.get(key)
        if hit is not None:
            known += 1
            if rv and hit[0] == rv:
                cache[key] = hit
                continue
        try:
            cache[key] = (rv, tuple(service_ports(obj)), None)
        except ModelError as e:
            cache[key] = (rv, (), str(e))
        changed_keys.append(key)
    if known < len(old_cache):  # some went away
        changed_keys.extend(old_cache.keys() - cache.keys())
    if before is not None and not changed_keys:
        return cache, before.ports, set(), before.service_errors
    ports = dict(before.ports) if before else {}
    errors = dict(before.service_errors) if before else {}
    names = set()
    for key in changed_keys:
        for port in old_cache[key][1] if key in old_cache else ():
            ports.pop(port.name, None)  # (gone already if the same Service came twice)
            names.add(port.name)
        errors.pop(key, None)
        if key in cache:
            _, converted, error = cache[key]
            for port in converted:
                ports[port.name] = port
                names.add(port.name)
            if error:
                errors[key] = error
    return cache, ports, names, errors


def _track_endpoints(endpoint_slices, node_name, before):
    """Convert the endpoints of the Services whose EndpointSlices changed since BEFORE.
    Returns (slice cache, groups, endpoints, changed port names, errors). Slices are grouped by their
    Service, as upstream merges them; a group is converted again when one of its slices is new,
    has a new resourceVersion, moved to another Service or went away."""
    old_slices = before.slices if before else {}
    cache, dirty, group_of, known = {}, set(), [], 0
    for es in endpoint_slices:  # the one pass over every slice: keep it lean
        meta = es.get("metadata") or {}
        key, rv = (meta.get("namespace"), meta.get("name")), meta.get("resourceVersion")
        hit = old_slices.get(key)
        if hit is not None:
            known += 1
            if rv and hit[0] == rv:
                cache[key] = hit
                group_of.append(hit[1])
                continue
            dirty.add(hit[1])  # the slice may have moved to another Service
        group = meta.get("namespace"), (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
        dirty.add(group)
        cache[key] = (rv, group)
        group_of.append(group)
    if known < len(old_slices):  # some went away
        dirty.update(old_slices[key][1] for key in old_slices.keys() - cache.keys())
    if before is not None and not dirty:
        return cache, before.groups, before.endpoints, set(), before.slice_errors
    members = {group: [] for group in dirty}
    for es, group in zip(endpoint_slices, group_of):
        if group in members:
            members[group].append(es)
    groups = dict(before.groups) if before else {}
    endpoints = dict(before.endpoints) if before else {}
    errors = dict(before.slice_errors) if before else {}
    names = set()
    for group, slices in members.items():
        for name in groups.pop(group, ()):
            del endpoints[name]
            names.add(name)
        errors.pop(group, None)
        if slices:
            problems = []
            groups[group] = converted = endpoints_map(slices, node_name, problems)
            endpoints.update(converted)
            names.update(converted)
            if problems:
                errors[group] = problems
    return cache, groups, endpoints, names, errors


@dataclasses.dataclass
class _Sources:
    """The API objects as converted last time, kept so that only changed ones are converted again."""
    services: dict        # (namespace, name) -> (resourceVersion, (ServicePort, ...), error or None)
    ports: dict           # ServicePortName -> ServicePort
    service_errors: dict  # (namespace, name) -> error
    slices: dict          # (namespace, name) -> (resourceVersion, (namespace, service name))
    groups: dict          # (namespace, service name) -> {ServicePortName: (Endpoint, ...)}
    endpoints: dict       # ServicePortName -> (Endpoint, ...)
    slice_errors: dict    # (namespace, service name) -> [error, ...]

    def errors(self):
        return [*self.service_errors.values(), *(e for errors in self.slice_errors.values() for e in errors)]


def _port_order(name):
    return str(name), name.protocol


@contextlib.contextmanager
def _cyclic_gc_paused():
    # A render at 10k Services allocates ~10^5 containers and makes no reference cycles, yet the
    # allocations trigger collector passes over every live object (the API objects included):
    # a quarter of a full render's time, measured. Paused for the render, as a whole.
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def render(services, endpoint_slices, node, config, previous=None):
    """Render SERVICES and ENDPOINT_SLICES (API objects as dicts) for NODE (a model.Node) under
    CONFIG (a ProxierConfig). With PREVIOUS (the last Rendering), also work out which chains
    changed and which went stale, and reuse what did not change: only the Service ports whose
    Service or endpoints changed are rendered again. PREVIOUS itself is left as it was."""
    with _cyclic_gc_paused():
        return _render(services, endpoint_slices, node, config, previous)


def _render(services, endpoint_slices, node, config, previous):
    prev_state = previous._state if previous is not None else None
    if prev_state and (prev_state["node"] != node or prev_state["config"] != config):
        prev_state = None  # every rule may depend on them: start afresh, diff still against previous
    before = prev_state["sources"] if prev_state else None
    service_cache, ports, changed_ports, service_errors = _track_services(services, before)
    slice_cache, groups, eps, changed_endpoints, slice_errors = _track_endpoints(endpoint_slices, node.name, before)
    sources = _Sources(service_cache, ports, service_errors, slice_cache, groups, eps, slice_errors)
    names = changed_ports | changed_endpoints

    prev_fragments = prev_state["fragments"] if prev_state else {}
    total = prev_state["total_endpoints"] if prev_state else 0
    for name in names:
        if name in ports:
            total += len(eps.get(name, ()))
        if before and name in before.ports:
            total -= len(before.endpoints.get(name, ()))
    large = total > LARGE_CLUSTER_ENDPOINTS_THRESHOLD
    if prev_state and large != prev_state["large"]:
        names = set(ports) | set(prev_fragments)  # large cluster mode changes every endpoint rule

    fragments = dict(prev_fragments)
    rebuilt, removed, added = [], [], False
    for name in sorted(names, key=_port_order):
        old, svc = fragments.get(name), ports.get(name)
        if svc is None:
            if old is not None:
                removed.append(fragments.pop(name))
            continue
        endpoints = eps.get(name, ())
        if old is None or not old.made_from(svc, endpoints, large):
            fragments[name] = _fragment(svc, endpoints, node, config, large)
            rebuilt.append(name)
            added = added or old is None
    if added and prev_fragments:
        # KUBE-SERVICES lists Service ports in upstream's test order: new ones go in their place.
        fragments = dict(sorted(fragments.items(), key=lambda item: item[1].order))

    if prev_state and not rebuilt and not removed:
        tables = previous.tables  # nothing changed (tables are never modified once built)
    else:
        replaced = [prev_fragments[n] for n in rebuilt if n in prev_fragments] + removed
        # Most changes move endpoints and leave every rule in the top-level chains as it was.
        same_top = prev_state is not None and not removed and all(
            n in prev_fragments and prev_fragments[n].top_level() == fragments[n].top_level() for n in rebuilt)
        base = previous.tables if prev_state else None
        tables = {"filter": base["filter"] if same_top else _filter_table(fragments, config),
                  "nat": _nat_table(fragments, config, base["nat"] if base else None, replaced,
                                    [fragments[n] for n in rebuilt], same_top)}
    changed, stale, flush = _diff(tables, fragments, rebuilt, removed, previous, prev_fragments)
    state = {"node": node, "config": config, "sources": sources, "fragments": fragments,
             "total_endpoints": total, "large": large}
    return Rendering(tables, changed, stale, flush, sources.errors(),
                     previous.token if previous is not None else None, state)


def _diff(tables, fragments, rebuilt, removed, previous, prev_fragments):
    """(changed, stale, conntrack flushes) against PREVIOUS. With fragments to compare with, only
    top-level chains and the own chains of rebuilt fragments can differ; without (the first
    rendering after a node or config change), whole tables are compared."""
    if previous is None:
        return {(t, c) for t in tables for c in tables[t]}, set(), []
    before = previous.tables
    if tables is before:
        return set(), set(), []
    stale, flush = set(), []
    if prev_fragments:
        candidates = [("filter", c) for c in tables["filter"]] + [("nat", c) for c in NAT_TOP_LEVEL]
        for name in rebuilt:
            candidates.extend(("nat", c) for c in fragments[name].own)
    else:
        candidates = [(t, c) for t in tables for c in tables[t]]
        stale.update(c for c in before["nat"] if hashing.is_service_chain(c) and c not in tables["nat"])
    changed = {(t, c) for t, c in candidates if before[t].get(c) != tables[t][c]}
    for name in rebuilt:
        frag, old = fragments[name], prev_fragments.get(name)
        if old is not None:
            stale.update(old.own.keys() - frag.own.keys())
        if frag.udp_targets and (old is None or old.endpoints != frag.endpoints):
            flush.extend(frag.udp_targets)
    for old in removed:
        stale.update(old.own)
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


def _nat_table(fragments, config, base, replaced, added, same_top=False):
    """The nat table: the Service ports' own chains patched into BASE (the previous nat table:
    REPLACED fragments' chains out, ADDED ones' in), or all collected from FRAGMENTS without a
    base; top-level chains built afresh, or BASE's kept when SAME_TOP."""
    if base is None:
        tables = {}
        for frag in fragments.values():
            tables.update(frag.own)
    else:
        tables = dict(base)
        for old in replaced:
            for chain in old.own:
                del tables[chain]
        for frag in added:
            tables.update(frag.own)
    if not (same_top and base):
        tables.update(_nat_top_level(fragments, config))
    return tables


def _nat_top_level(fragments, config):
    mark = config.masquerade_mark
    services, nodeports = [], []
    for frag in fragments.values():
        services.extend(frag.services)
        nodeports.extend(frag.nodeports)
    destinations = "-m addrtype --dst-type LOCAL" + ("" if config.localhost_nodeports else " ! -d 127.0.0.0/8")
    services.append(f'-A {KUBE_SERVICES} -m comment --comment "kubernetes service nodeports; NOTE: this must be '
                    f'the last rule in this chain" {destinations} -j {KUBE_NODEPORTS}')
    masquerade = (f'-A {KUBE_POSTROUTING} -m comment --comment "kubernetes service traffic requiring SNAT" '
                  "-j MASQUERADE" + (" --random-fully" if config.random_fully else ""))
    return {
        KUBE_NODEPORTS: tuple(nodeports),
        KUBE_SERVICES: tuple(services),
        KUBE_MARK_MASQ: (f"-A {KUBE_MARK_MASQ} -j MARK --or-mark {mark}",),
        KUBE_POSTROUTING: (f"-A {KUBE_POSTROUTING} -m mark ! --mark {mark}/{mark} -j RETURN",
                           # Clear the mark so a packet that traverses the stack again is not re-masqueraded.
                           f"-A {KUBE_POSTROUTING} -j MARK --xor-mark {mark}",
                           masquerade),
    }


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

    # Hashing is most of the cost of a fragment: one name per endpoint, used by every rule.
    seps = {ep: hashing.endpoint_chain(name, proto, str(ep)) for ep in reachable}
    if uses_cluster_chain:
        _service_to_endpoints(rules_of(svc_chain), name, svc, svc_chain, cluster, seps, large)
    if uses_local_chain:
        _service_to_endpoints(rules_of(svl_chain), name, svc, svl_chain, local, seps, large)

    comment = "" if large else f" -m comment --comment {name}"
    for ep, chain in seps.items():
        recent = f" -m recent --name {chain} --set" if svc.session_affinity_client_ip else ""
        own[chain] = [f"-A {chain}{comment} -s {ep.ip} -j {KUBE_MARK_MASQ}",
                      f"-A {chain}{comment}{recent} {match} -j DNAT --to-destination {ep}"]

    udp = ()
    if proto == "udp":
        udp = tuple(("--orig-dst", ip) for ip in (svc.cluster_ip, *svc.external_ips, *svc.load_balancer_vips))
        if svc.node_port:
            udp += (("--orig-port-dst", str(svc.node_port)),)
    return _Fragment(svc, endpoints, large, (name, svc.protocol), {c: tuple(r) for c, r in filt.items() if r},
                     tuple(top[KUBE_SERVICES]), tuple(top[KUBE_NODEPORTS]),
                     {c: tuple(r) for c, r in own.items()}, udp)


def _service_to_endpoints(rules, name, svc, chain, endpoints, seps, large):
    def comment(ep):
        return "" if large else f' -m comment --comment "{name} -> {ep}"'

    if svc.session_affinity_client_ip:
        for ep in endpoints:
            rules.append(f"-A {chain}{comment(ep)} -m recent --name {seps[ep]} --rcheck --seconds "
                         f"{svc.sticky_max_age_seconds} --reap -j {seps[ep]}")
    n = len(endpoints)
    for i, ep in enumerate(endpoints):
        statistic = f" -m statistic --mode random --probability {_probability(n - i)}" if i < n - 1 else ""
        rules.append(f"-A {chain}{comment(ep)}{statistic} -j {seps[ep]}")


def _contains(cidr, ip):
    try:
        return ipaddress.ip_address(ip) in ipaddress.ip_network(cidr)
    except ValueError:
        return False
