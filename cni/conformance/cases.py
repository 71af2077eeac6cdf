"""The cases: each one a clause of SPEC.md (1.0.0, and 1.1.0 for GC and STATUS), the section it
is in, the words it enforces, and a function that exercises the plugin in the lab.

A case function takes the `Run` (lab, target, shared state) and returns its evidence on
success; it raises `Failed(evidence)` when the plugin breaks the clause and `Skipped(reason)`
when the clause cannot be exercised. `needs` lists what the case requires of the target
(a verb the tested version must have, host-local IPAM, a chain); the runner skips a case whose
needs are not met, before running it.
"""

import concurrent.futures
import copy
import dataclasses
import ipaddress
import json
import time

from cni import spec
from cni.conformance import schema
from cni.runtime import CNIConfig, RuntimeConf, conflist_from_bytes
from cni.spec import CNIError
from netsim import netns

CONCURRENT_ADDS = 8


class Failed(Exception):
    """The plugin broke the clause; the message is the evidence."""


class Skipped(Exception):
    """The clause cannot be exercised here; the message says why."""


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    title: str
    section: str
    quote: str
    fn: object
    needs: tuple = ()


CASES = []


def case(id, title, section, quote, needs=()):
    def register(fn):
        CASES.append(Case(id, title, section, " ".join(quote.split()), fn, tuple(needs)))
        return fn
    return register


def expect(problems, what):
    if problems:
        raise Failed(f"{what}:\n- " + "\n- ".join(problems))


# --- shared steps --------------------------------------------------------------------------

def _add(run, conf=None, netns_path=None):
    """ADD a fresh attachment; Failed with the plugin's answer when ADD does not succeed."""
    att = run.lab.attach(conf or run.target.conf, netns_path=netns_path)
    if not att.add.ok or att.result is None:
        raise Failed(f"ADD did not succeed: {att.add.describe()}")
    return att


def _check(run, att):
    conf = dict(att.conf, prevResult=att.result)
    return run.lab.invoke("CHECK", conf, container_id=att.container_id, netns_path=att.netns, ifname=att.ifname)


def _del_ok(inv, what="DEL"):
    if not inv.ok:
        raise Failed(f"{what} failed: {inv.describe()}")


def _error_case(run, expected_codes, *, conf=None, stdin=None, must_name=None, **env):
    """ADD with something wrong in a scratch container; the answer must be the error structure
    with one of EXPECTED_CODES, naming MUST_NAME (any of its spellings) when given."""
    args = {"container_id": "conformance-error", "netns_path": run.scratch(), "ifname": "eth0", **env}
    inv = run.lab.invoke("ADD", conf or run.target.conf, stdin=stdin, **args)
    # The runtime's duty after any ADD, failed or not: a DEL with the same parameters.
    run.lab.invoke("DEL", conf or run.target.conf, stdin=stdin, **args)
    doc, problems = schema.error_problems(inv.code, inv.stdout, expected_codes)
    if doc is not None and must_name:
        text = f"{doc.get('msg', '')} {doc.get('details', '')}".lower()
        if not any(name.lower() in text for name in must_name):
            problems.append(f"msg/details: {text.strip()!r} does not name {must_name[0]}")
    expect(problems, f"the answer to {inv.describe()}")
    return inv, doc


# The kernel destroys a namespace whose last reference is gone later, on a work queue, and its
# veth peers with it: links still there right after a DEL get this long to go.
LINK_SETTLE_S = 1.0


def _released(run, before, after):
    """(still there now, all) of the resources an ADD created: AFTER - BEFORE."""
    mine = after - before
    left = mine & run.lab.snapshot()
    deadline = time.monotonic() + LINK_SETTLE_S
    while left.links and time.monotonic() < deadline:
        time.sleep(0.02)
        left = mine & run.lab.snapshot()
    return left, mine


def _interfaces(result):
    return result.get("interfaces") or []


def _sandbox_index(att):
    for i, iface in enumerate(_interfaces(att.result)):
        if iface.get("name") == att.ifname and iface.get("sandbox") == att.netns:
            return i
    return None


# --- VERSION ---------------------------------------------------------------------------------

@case("version.answer", "VERSION answers with the version result, given only CNI_COMMAND",
      "1.0.0 Section 2 VERSION; Section 5 Version",
      "Required environment parameters: `CNI_COMMAND` ... `cniVersion`: The value of `cniVersion` "
      "specified on input")
def version_answer(run):
    asked = run.target.cni_version
    inv = run.lab.invoke("VERSION", {"cniVersion": asked}, drop=("CNI_PATH",))
    if not inv.ok:
        raise Failed(f"VERSION failed: {inv.describe()}")
    doc, why = schema.parse_json(inv.stdout)
    if doc is None:
        raise Failed(f"VERSION printed no version result: {why}")
    expect(schema.version_problems(doc, asked), f"VERSION with cniVersion {asked} answered {json.dumps(doc)}")
    return f"VERSION answered {json.dumps(doc)}"


@case("version.supported", "supportedVersions lists released spec versions, the tested one among them",
      "1.0.0 Section 5 Version",
      "`supportedVersions`: A list of supported specification versions")
def version_supported(run):
    versions = run.target.supported
    if not versions:
        raise Failed(f"no supportedVersions: VERSION answered {run.version_invocation.describe()}")
    problems = schema.supported_versions_problems(versions)
    if not problems and run.target.cni_version not in versions:
        problems.append(f"the tested version {run.target.cni_version} is not listed")
    expect(problems, f"supportedVersions {versions!r}")
    return f"supportedVersions {', '.join(versions)}"


# --- ADD ---------------------------------------------------------------------------------------

@case("add.result", "the ADD result has the shape of the negotiated version",
      "1.0.0 Section 5 Success",
      "`cniVersion`: The same version supplied on input ... `interface` (uint): the index into the "
      "`interfaces` list for a CNI Plugin Result indicating which interface this IP configuration "
      "should be applied to.")
def add_result(run):
    att = run.primary()
    expect(schema.result_problems(att.result, run.target.cni_version),
           f"ADD result {json.dumps(att.result)}")
    return f"ADD result at {run.target.cni_version}: {json.dumps(att.result)}"


@case("add.sandbox-interface", "the result lists CNI_IFNAME with CNI_NETNS as its sandbox, and an IP on it",
      "1.0.0 Section 5 Success",
      "`sandbox`: The isolation domain reference (e.g. path to network namespace) for the interface, "
      "or empty if on the host. For interfaces created inside the container, this should be the value "
      "passed via `CNI_NETNS`.", needs=("interfaces",))
def add_sandbox_interface(run):
    att = run.primary()
    index = _sandbox_index(att)
    if index is None:
        raise Failed(f"no interface named {att.ifname!r} with sandbox {att.netns!r} in "
                     f"interfaces {json.dumps(_interfaces(att.result))}")
    on_it = [ip["address"] for ip in att.result.get("ips") or [] if ip.get("interface") == index]
    if not on_it:
        raise Failed(f"interfaces[{index}] is the container's {att.ifname}, but no ips entry has "
                     f"interface {index}: {json.dumps(att.result.get('ips'))}")
    return f"interfaces[{index}] = {att.ifname} in {att.netns}, carrying {', '.join(on_it)}"


@case("add.links", "every interface the result lists exists, where it says, with its MAC",
      "1.0.0 Section 2 ADD",
      "A CNI plugin, upon receiving an `ADD` command, should either create the interface defined by "
      "`CNI_IFNAME` inside the container at `CNI_NETNS`, or adjust the configuration of the interface "
      "defined by `CNI_IFNAME` inside the container at `CNI_NETNS`.")
def add_links(run):
    att = run.primary()
    container, host = run.lab.links(att.netns), run.lab.links(run.lab.host)
    problems = []
    if att.ifname not in container:
        problems.append(f"{att.ifname} is not in {att.netns} (links there: {sorted(container)})")
    for i, iface in enumerate(_interfaces(att.result)):
        where, links = (att.netns, container) if iface.get("sandbox") else ("the host namespace", host)
        if iface.get("sandbox") and iface["sandbox"] != att.netns:
            continue  # another isolation domain (a VM, another netns): not ours to look into
        link = links.get(iface.get("name"))
        if link is None:
            problems.append(f"interfaces[{i}] {iface.get('name')!r} is not in {where}")
        elif iface.get("mac") and (link["mac"] or "").lower() != iface["mac"].lower():
            problems.append(f"interfaces[{i}] {iface['name']} has MAC {link['mac']} in {where}, "
                            f"the result says {iface['mac']}")
    expect(problems, "the kernel does not hold what the result claims")
    return f"{len(_interfaces(att.result))} interfaces found as listed; {att.ifname} in the container"


@case("add.addresses", "every address the result lists is configured on its interface",
      "1.0.0 Section 4 Plugin Delegation",
      "As part of its operation, a CNI plugin is expected to assign (and maintain) an IP address to the "
      "interface and install any necessary routes relevant for that interface.")
def add_addresses(run):
    att = run.primary()
    result = spec.parse_result(att.result)
    interfaces = result.get("interfaces") or []
    have = {"container": run.lab.addresses(att.netns), "host": run.lab.addresses(run.lab.host)}
    problems, found = [], []
    for i, ip in enumerate(result.get("ips") or []):
        want = str(ipaddress.ip_interface(ip["address"]))
        index = ip.get("interface")
        iface = interfaces[index] if isinstance(index, int) and 0 <= index < len(interfaces) else None
        if iface is None:
            side, names = "container", [att.ifname]
        else:
            side, names = ("container" if iface.get("sandbox") else "host"), [iface.get("name")]
        if not any(want in have[side].get(name, set()) for name in names):
            problems.append(f"ips[{i}] {want} is not on {names[0]} in the {side} namespace "
                            f"(it has {sorted(have[side].get(names[0], set())) or 'no address'})")
        else:
            found.append(f"{want} on {names[0]}")
    if not result.get("ips"):
        return "the result lists no address"
    expect(problems, "addresses missing")
    return "; ".join(found)


@case("add.routes", "every route the result lists is in the container's routing table",
      "1.0.0 Section 5 Success",
      "`routes`: Routes created by this attachment: ... `gw`: The next hop address. If unset, a value "
      "in `gateway` in the `ips` array may be used.")
def add_routes(run):
    att = run.primary()
    result = spec.parse_result(att.result)
    table = run.lab.routes(att.netns)
    gateways = {ip.get("gateway") for ip in result.get("ips") or [] if ip.get("gateway")}
    problems, found = [], []
    for i, route in enumerate(result.get("routes") or []):
        dst = ipaddress.ip_network(route["dst"], strict=False)
        allowed = {route["gw"]} if route.get("gw") else gateways | {None}
        match = [r for r in table if r[0] == dst and r[1] in allowed]
        if match:
            found.append(f"{dst} via {match[0][1] or match[0][2]}")
        else:
            present = [f"{r[0]} via {r[1] or r[2]}" for r in table]
            problems.append(f"routes[{i}] {dst} via {route.get('gw') or 'a gateway of ips or the link'} "
                            f"is not in {att.netns} (table: {', '.join(present) or 'empty'})")
    if not result.get("routes"):
        return "the result lists no route"
    expect(problems, "routes missing")
    return "; ".join(found)


@case("add.existing-interface", "ADD fails when CNI_IFNAME already exists in the container",
      "1.0.0 Section 2 ADD",
      "If an interface of the requested name already exists in the container, the CNI plugin MUST "
      "return with an error.")
def add_existing_interface(run):
    path = run.lab.container()
    run.lab.add_foreign_link(path, "eth0")
    att = run.lab.attach(run.target.conf, netns_path=path)
    if att.add.ok:
        raise Failed(f"ADD succeeded although eth0 existed in {path}: {att.add.describe()}")
    doc, problems = schema.error_problems(att.add.code, att.add.stdout)
    expect(problems, f"the answer to {att.add.describe()}")
    return f"ADD refused: {att.add.describe()}"


# --- CHECK ---------------------------------------------------------------------------------------

@case("check.after-add", "CHECK passes right after ADD, with the ADD result as prevResult",
      "1.0.0 Section 2 CHECK",
      "The plugin must handle `CHECK` being called immediately after an `ADD`, and therefore should "
      "allow a reasonable convergence delay for any asynchronous resources.", needs=("CHECK",))
def check_after_add(run):
    att = run.primary()
    inv = _check(run, att)
    if not inv.ok:
        raise Failed(f"CHECK failed on an untouched attachment: {inv.describe()}\nADD result: "
                     f"{json.dumps(att.result)}")
    return f"CHECK exit 0 ({inv.duration_ms:.0f} ms)"


_TAMPER_QUOTE = ("The plugin should return an error if a resource included in the CNI Result type "
                 "(interface, address or route) was created by the plugin, and is listed in `prevResult`, "
                 "but is missing or in an invalid state.")


def _tampered_check(run, what):
    att = _add(run)
    try:
        before = _check(run, att)
        if not before.ok:
            raise Skipped(f"CHECK fails on the untampered attachment too (see check.after-add): {before.describe()}")
        address = None
        if what == "address":
            ips = spec.parse_result(att.result).get("ips") or []
            if not ips:
                raise Skipped("the ADD result lists no address to remove")
            address = ips[0]["address"]
        run.lab.tamper(att.netns, att.ifname, what, address)
        after = _check(run, att)
        if after.ok:
            raise Failed(f"CHECK passed after the tampering: {after.describe()}")
        _, problems = schema.error_problems(after.code, after.stdout)
        expect(problems, f"CHECK failed, but its answer is not the error structure: {after.describe()}")
        return f"CHECK refused: {after.describe()}"
    finally:
        run.lab.release(att)


@case("check.address-removed", "CHECK fails once the container's address is removed",
      "1.0.0 Section 2 CHECK", _TAMPER_QUOTE, needs=("CHECK",))
def check_address_removed(run):
    return _tampered_check(run, "address")


@case("check.link-down", "CHECK fails once the container's interface is set down",
      "1.0.0 Section 2 CHECK", _TAMPER_QUOTE, needs=("CHECK",))
def check_link_down(run):
    return _tampered_check(run, "down")


@case("check.link-deleted", "CHECK fails once the container's interface is deleted",
      "1.0.0 Section 2 CHECK", _TAMPER_QUOTE, needs=("CHECK",))
def check_link_deleted(run):
    return _tampered_check(run, "delete")


# --- DEL ---------------------------------------------------------------------------------------

@case("del.idempotent", "DEL twice for the same attachment succeeds both times",
      "1.0.0 Section 2 DEL",
      "Plugins MUST accept multiple `DEL` calls for the same (`CNI_CONTAINERID`, `CNI_IFNAME`) pair, "
      "and return success if the interface in question, or any modifications added, are missing.")
def del_idempotent(run):
    att = _add(run)
    first = run.lab.delete(att)
    second = run.lab.release(att)
    _del_ok(first, "the first DEL")
    _del_ok(second, "the second DEL")
    return f"DEL exit 0 twice ({first.duration_ms:.0f} ms, {second.duration_ms:.0f} ms)"


def _del_releases(run, how, **del_args):
    before = run.lab.snapshot()
    att = _add(run)
    after = run.lab.snapshot()
    if how == "netns-gone":
        run.lab.remove_netns(att.netns)
    inv = run.lab.release(att, **del_args)
    _del_ok(inv)
    left, mine = _released(run, before, after)
    if how == "without-netns":
        # Without CNI_NETNS the container's interface can only go with its namespace, which is
        # the runtime's to remove: count the rest.
        left = left.without_links()
        run.lab.remove_netns(att.netns)
    if left:
        raise Failed(f"DEL succeeded ({inv.describe()}) but left what ADD created:\n- "
                     + left.describe("\n- "))
    return f"DEL exit 0 and released {mine.describe()}"


@case("del.netns-gone", "DEL succeeds and cleans up after the container's netns is gone",
      "1.0.0 Section 2 DEL",
      "the `bridge` plugin should delegate the DEL action to the IPAM plugin and clean up its own "
      "resources even if the container network namespace and/or container network interface no "
      "longer exist.")
def del_netns_gone(run):
    return _del_releases(run, "netns-gone")


_WITHOUT_QUOTE = ("When `CNI_NETNS` and/or `prevResult` are not provided, the plugin should clean up as "
                  "many resources as possible (e.g. releasing IPAM allocations) and return a successful "
                  "response.")


@case("del.without-netns", "DEL without CNI_NETNS succeeds and releases what it can",
      "0.4.0 Parameters DEL (CNI_NETNS optional for DEL in 1.0.0 Section 2)", _WITHOUT_QUOTE)
def del_without_netns(run):
    return _del_releases(run, "without-netns", netns_path=False)


@case("del.without-prevresult", "DEL without prevResult succeeds and releases everything",
      "0.4.0 Parameters DEL", _WITHOUT_QUOTE)
def del_without_prev_result(run):
    return _del_releases(run, "without-prevresult", prev_result=False)


def _narrowed(conf, address):
    """CONF with host-local handing out ADDRESS only."""
    conf = copy.deepcopy(conf)
    ipam = conf["ipam"]
    ip = ipaddress.ip_interface(address)
    ranges = ipam.pop("ranges", None) or [[{k: ipam.pop(k) for k in ("subnet", "gateway") if k in ipam}]]
    ipam.pop("subnet", None)
    entry = next((dict(r) for rs in ranges for r in rs
                  if r.get("subnet") and ip.ip in ipaddress.ip_network(r["subnet"], strict=False)),
                 {"subnet": str(ip.network)})
    entry.update(rangeStart=str(ip.ip), rangeEnd=str(ip.ip))
    ipam["ranges"] = [[entry]]
    return conf


@case("del.releases-address", "DEL releases the address: a new ADD can be given it",
      "1.0.0 Section 4 Delegated plugin execution procedure",
      "If a plugin is executed with `CNI_COMMAND=CHECK` or `DEL`, it must also execute any delegated "
      "plugins.", needs=("host-local",))
def del_releases_address(run):
    att = _add(run)
    ips = spec.parse_result(att.result).get("ips") or []
    if not ips:
        run.lab.release(att)
        raise Skipped("the ADD result lists no address")
    address = ips[0]["address"]
    _del_ok(run.lab.release(att))
    again = _add(run, _narrowed(run.target.conf, address))
    got = [ip["address"] for ip in spec.parse_result(again.result).get("ips") or []]
    _del_ok(run.lab.release(again), "DEL of the second attachment")
    if address not in got:
        raise Failed(f"after DEL of {att.container_id}, an ADD limited to {address} got {got}")
    return f"{address} released by DEL and handed to the next ADD"


# --- errors --------------------------------------------------------------------------------------

@case("error.malformed-json", "malformed JSON on stdin gives error code 6",
      "1.0.0 Section 5 Error",
      "`6`|Failed to decode content. For example, failed to unmarshal network config from bytes or "
      "failed to decode version info from string.")
def error_malformed_json(run):
    inv, doc = _error_case(run, {spec.ERR_DECODE}, stdin=b'{"cniVersion": "1.0.0", "name": ')
    return f"code {doc['code']}: {doc['msg']}"


@case("error.missing-env", "ADD without CNI_CONTAINERID, CNI_NETNS or CNI_IFNAME gives code 4 naming it",
      "1.0.0 Section 2 ADD; Section 5 Error",
      "`4`|Invalid necessary environment variables, like CNI_COMMAND, CNI_CONTAINERID, etc. The error "
      "message must contain the names of invalid variables.")
def error_missing_env(run):
    answers = []
    for var in ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"):
        _, doc = _error_case(run, {spec.ERR_INVALID_ENV}, drop=(var,), must_name=(var,))
        answers.append(f"without {var}: {doc['msg']}")
    return "; ".join(answers)


@case("error.unknown-command", "an unknown CNI_COMMAND gives code 4 naming CNI_COMMAND",
      "1.0.0 Section 5 Error",
      "`4`|Invalid necessary environment variables, like CNI_COMMAND, CNI_CONTAINERID, etc. The error "
      "message must contain the names of invalid variables.")
def error_unknown_command(run):
    inv = run.lab.invoke("BOGUS", run.target.conf, container_id="conformance-error",
                         netns_path=run.scratch(), ifname="eth0")
    doc, problems = schema.error_problems(inv.code, inv.stdout, {spec.ERR_INVALID_ENV})
    if doc is not None and "cni_command" not in f"{doc.get('msg')} {doc.get('details', '')}".lower():
        problems.append(f"msg/details {doc.get('msg')!r} does not name CNI_COMMAND")
    expect(problems, f"the answer to {inv.describe()}")
    return f"code {doc['code']}: {doc['msg']}"


@case("error.container-id", "an invalid container ID gives code 4",
      "1.0.0 Section 2 Parameters; Section 5 Error",
      "`CNI_CONTAINERID`: Container ID. A unique plaintext identifier for a container, allocated by the "
      "runtime. Must not be empty. Must start with an alphanumeric character, optionally followed by any "
      "combination of one or more alphanumeric characters, underscore (), dot (.) or hyphen (-).")
def error_container_id(run):
    _, doc = _error_case(run, {spec.ERR_INVALID_ENV}, container_id="-bad id/x",
                         must_name=("CNI_CONTAINERID", "containerid", "container id"))
    return f"code {doc['code']}: {doc['msg']} {doc.get('details', '')}".strip()


@case("error.ifname-too-long", "a 16-character CNI_IFNAME gives code 4",
      "1.0.0 Section 2 Parameters; 0.4.0 Parameters",
      "`CNI_IFNAME`: Name of the interface to create inside the container; if the plugin is unable to "
      "use this interface name it must return an error. ... must be less than 16 characters")
def error_ifname_too_long(run):
    _, doc = _error_case(run, {spec.ERR_INVALID_ENV}, ifname="eth0123456789abc",
                         must_name=("CNI_IFNAME", "ifname", "interface name"))
    return f"code {doc['code']}: {doc['msg']}"


@case("error.cni-version", "an unknown or unclaimed cniVersion gives code 1",
      "1.0.0 Section 5 Error", "`1`|Incompatible CNI version")
def error_cni_version(run):
    unclaimed = [v for v in spec.SPEC_VERSIONS if run.target.supported and v not in run.target.supported]
    answers = []
    for version in ["9.9.9"] + unclaimed:
        _, doc = _error_case(run, {spec.ERR_INCOMPATIBLE_VERSION}, conf=dict(run.target.conf, cniVersion=version))
        answers.append(f"{version}: code {doc['code']}")
    return "; ".join(answers)


@case("error.netns-missing", "ADD into a netns path that does not exist gives the error structure",
      "1.0.0 Section 2 Errors",
      "A plugin must exit with a return code of 0 on success, and non-zero on failure. If the plugin "
      "encounters an error, it should output an \"error\" result structure")
def error_netns_missing(run):
    _, doc = _error_case(run, None, netns_path=run.lab.missing_netns())
    return f"code {doc['code']}: {doc['msg']}"


@case("error.cni-version-field", "the error structure carries the config's cniVersion",
      "1.0.0 Section 5 Error",
      "Plugins should output a JSON object with the following keys if they encounter an error: "
      "`cniVersion`: The same value as provided by the configuration")
def error_cni_version_field(run):
    _, doc = _error_case(run, None, netns_path=run.lab.missing_netns())
    if doc.get("cniVersion") != run.target.cni_version:
        raise Failed(f"error structure {json.dumps(doc)} has cniVersion {doc.get('cniVersion')!r}; "
                     f"expected {run.target.cni_version!r}, the config's")
    return f"error structure has cniVersion {doc['cniVersion']}"


# --- chaining ------------------------------------------------------------------------------------

@case("chain.prev-result", "in a conflist, the result goes on as prevResult; CHECK and DEL get the final result",
      "1.0.0 Section 3 Adding / Deleting an attachment",
      "For all additional plugins, the previous result is the result of the previous plugins. ... "
      "The previous result provided is always the final result of the _add_ operation.", needs=("chain",))
def chain_prev_result(run):
    network = run.target.chain
    notes = []
    version = _chain_version(run, network, notes)
    network["cniVersion"] = version
    conflist = conflist_from_bytes(json.dumps(network).encode(), "the chain")
    cfg = CNIConfig(run.lab.cni_path, cache_dir=run.lab.cache_dir, env=run.lab.extra_env)
    rt = RuntimeConf(container_id=run.lab.container_id(), netns=run.lab.container(), ifname="eth0")
    types = " -> ".join(p["type"] for p in network["plugins"])
    before = run.lab.snapshot()
    with netns.enter(run.lab.host):
        try:
            result = cfg.add_network_list(conflist, rt)
        except CNIError as e:
            raise Failed(f"ADD of the chain {types} at {version} failed: {e}") from None
        try:
            if spec.version_tuple(version) >= (0, 4, 0):
                if run.passed("check.after-add"):
                    cfg.check_network_list(conflist, rt)
                    notes.append("CHECK of the chain passed")
                else:
                    notes.append("CHECK not run: it fails without a chain too (check.after-add)")
        except CNIError as e:
            raise Failed(f"CHECK of the chain {types} failed: {e}") from None
        finally:
            try:
                cfg.del_network_list(conflist, rt)
            except CNIError as e:
                raise Failed(f"DEL of the chain {types} failed: {e}") from None
    left = run.lab.snapshot() - before
    if left:
        raise Failed(f"DEL of the chain {types} left {left.describe()}")
    ips = [ip.get("address") or ip.get("ip") for ip in result.get("ips") or []]
    return f"{types} at {version}: final result ips {ips}; " + "; ".join(notes + ["DEL released everything"])


def _chain_version(run, network, notes):
    """The tested version when every plugin of the chain claims it, else the highest they share
    (what a runtime negotiates, 1.1.0 Section 1 Version considerations)."""
    version = run.target.cni_version
    for p in network["plugins"]:
        if p["type"] == run.target.type:
            continue
        claimed = run.claims(p["type"])
        if version not in claimed:
            shared = [v for v in claimed if v in run.target.supported]
            if not shared:
                raise Skipped(f"{p['type']} shares no spec version with the plugin ({claimed})")
            version = max(shared, key=spec.version_tuple)
            notes.append(f"{p['type']} claims up to {max(claimed, key=spec.version_tuple)}: chained at {version}")
    return version


# --- GC and STATUS (1.1.0) ---------------------------------------------------------------------

@case("gc.valid-attachments", "GC removes the resources of attachments not listed, and only those",
      "1.1.0 Section 2 GC",
      "A plugin SHOULD remove as many stale resources as possible. For example, a plugin should remove any "
      "IPAM reservations associated with attachments not in the provided list. ... Garbage collection is a "
      "per-network operation.", needs=("GC",))
def gc_valid_attachments(run):
    lab = run.lab
    s0 = lab.snapshot()
    kept = _add(run)
    s1 = lab.snapshot()
    stale = _add(run)
    s2 = lab.snapshot()
    other_conf = dict(run.target.conf, name=run.target.conf["name"] + "-other")
    other = _add(run, other_conf)
    s3 = lab.snapshot()
    kept_res, stale_res, other_res = s1 - s0, s2 - s1, s3 - s2
    # The stale container is gone, as after a node reboot; its attachment was never DELeted.
    lab.remove_netns(stale.netns)
    listed = [{"containerID": kept.container_id, "ifname": kept.ifname}]
    # libcni sends both keys (the 1.1.0 text said cni.dev/attachments: containernetworking/cni#1101).
    conf = dict(run.target.conf, **{"cni.dev/valid-attachments": listed, "cni.dev/attachments": listed})
    inv = lab.invoke("GC", conf)
    now = lab.snapshot()
    lab.release(stale)
    lab.release(kept)
    lab.release(other, conf=other_conf)
    if not inv.ok:
        raise Failed(f"GC failed: {inv.describe()}")
    problems = []
    # The stale container's links went with its netns; GC is about what outlives it.
    stale_left = (stale_res & now).without_links()
    if stale_left:
        problems.append(f"the unlisted attachment kept: {stale_left.describe()}")
    for name, res in (("the listed attachment", kept_res), ("an attachment of another network", other_res)):
        gone = res - now
        if gone:
            problems.append(f"{name} lost: {gone.describe()}")
    expect(problems, f"GC listing only {kept.container_id}/{kept.ifname}")
    return (f"GC exit 0: removed {stale_res.describe()}; kept {kept_res.describe()} and the other "
            f"network's {other_res.describe()}")


@case("status.ready", "STATUS succeeds, printing nothing, when the plugin can serve ADD",
      "1.1.0 Section 2 STATUS",
      "A plugin must exit with a zero (success) return code if the plugin is ready to service ADD requests.",
      needs=("STATUS",))
def status_ready(run):
    inv = run.lab.invoke("STATUS", run.target.conf)
    if not inv.ok:
        raise Failed(f"STATUS failed on a network with free addresses: {inv.describe()}")
    if inv.stdout.strip():
        raise Failed(f"STATUS succeeded but printed {inv.stdout[:200]!r}; expected no output")
    return f"STATUS exit 0 ({inv.duration_ms:.0f} ms)"


# --- concurrency -----------------------------------------------------------------------------------

@case("concurrency.parallel-add", f"{CONCURRENT_ADDS} parallel ADDs all succeed with distinct addresses",
      "1.0.0 Section 3 Lifecycle & Ordering",
      "Plugins must handle being executed concurrently across different containers. If necessary, they "
      "must implement locking on shared resources (e.g. IPAM databases).")
def concurrency_parallel_add(run):
    paths = [run.lab.container() for _ in range(CONCURRENT_ADDS)]
    with concurrent.futures.ThreadPoolExecutor(CONCURRENT_ADDS) as pool:
        atts = list(pool.map(lambda p: run.lab.attach(run.target.conf, netns_path=p), paths))
    failed = [a.add.describe() for a in atts if not a.add.ok]
    owners = {}
    for a in atts:
        for ip in spec.parse_result(a.result).get("ips") or [] if a.result else []:
            owners.setdefault(str(ipaddress.ip_interface(ip["address"]).ip), []).append(a.container_id)
    with concurrent.futures.ThreadPoolExecutor(CONCURRENT_ADDS) as pool:
        dels = list(pool.map(run.lab.release, atts))
    problems = [f"ADD failed: {d}" for d in failed]
    problems += [f"{ip} given to {', '.join(cids)}" for ip, cids in sorted(owners.items()) if len(cids) > 1]
    problems += [f"parallel DEL failed: {d.describe()}" for d in dels if not d.ok]
    expect(problems, f"{CONCURRENT_ADDS} parallel ADDs")
    return f"{CONCURRENT_ADDS} ADDs, {len(owners)} distinct addresses, {CONCURRENT_ADDS} DELs, all exit 0"


# --- leaks -------------------------------------------------------------------------------------------

_LEAK_QUOTE = ("A CNI plugin, upon receiving a `DEL` command, should either delete the interface defined by "
               "`CNI_IFNAME` inside the container at `CNI_NETNS`, or undo any modifications applied in the "
               "plugin's `ADD` functionality")


def _leftover(run, kind):
    left = getattr(run.settled() - run.baseline, kind)
    notes = run.settle_notes()
    if left:
        raise Failed("after every attachment was DELeted, the host still holds:\n- " + "\n- ".join(sorted(left))
                     + (f"\n{notes}" if notes else ""))
    return f"nothing left{f' ({notes})' if notes else ''}"


@case("leaks.links", "after the run's DELs, no link the plugin created is left in the host netns",
      "1.0.0 Section 2 DEL", _LEAK_QUOTE)
def leaks_links(run):
    return _leftover(run, "links")


@case("leaks.netfilter", "after the run's DELs, no netfilter chain or rule is left (legacy and nft)",
      "1.0.0 Section 2 DEL", _LEAK_QUOTE)
def leaks_netfilter(run):
    return _leftover(run, "netfilter")


@case("leaks.ipam", "after the run's DELs, no IPAM reservation is left on disk",
      "1.0.0 Section 2 DEL", _LEAK_QUOTE)
def leaks_ipam(run):
    return _leftover(run, "ipam_files")


def by_id(case_id):
    return next(c for c in CASES if c.id == case_id)
