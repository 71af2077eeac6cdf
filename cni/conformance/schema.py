"""What a plugin's answers must look like, per spec version: the ADD result, the error
structure and the VERSION answer. Pure functions returning a list of problems (empty when the
document conforms), each naming the field, what was found and what the spec expects."""

import ipaddress
import json
import re

from cni import spec

_MAC = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")
_SEMVER = re.compile(r"^\d+\.\d+\.\d+$")
# Keys each result shape may carry (SPEC.md Section 5 of each version; 1.1.0 added the
# interface and route attributes).
_TOP_1 = {"cniVersion", "interfaces", "ips", "routes", "dns"}
_IFACE = {"name", "mac", "sandbox"}
_IFACE_1_1 = _IFACE | {"mtu", "socketPath", "pciID"}
_ROUTE = {"dst", "gw"}
_ROUTE_1_1 = _ROUTE | {"mtu", "advmss", "priority", "table", "scope"}
_DNS = {"nameservers", "domain", "search", "options"}


def _is_cidr(value):
    if not isinstance(value, str) or "/" not in value:
        return False
    try:
        ipaddress.ip_interface(value)
    except ValueError:
        return False
    return True


def _is_ip(value):
    try:
        ipaddress.ip_address(value)
    except (ValueError, TypeError):
        return False
    return True


def parse_json(data):
    """(document, problem): the JSON object in DATA, or None and why not."""
    text = data.decode(errors="replace") if isinstance(data, bytes) else data
    if not text.strip():
        return None, "nothing on stdout"
    try:
        doc = json.loads(text)
    except ValueError as e:
        return None, f"stdout is not JSON ({e}): {text[:200]!r}"
    if not isinstance(doc, dict):
        return None, f"stdout is JSON but not an object: {text[:200]!r}"
    return doc, None


def _check_dns(dns, problems):
    if not isinstance(dns, dict):
        problems.append(f"dns: got {dns!r}; expected an object")
        return
    for key in sorted(set(dns) - _DNS):
        problems.append(f"dns.{key}: not a DNS key; expected only {sorted(_DNS)}")
    for key in ("nameservers", "search", "options"):
        if key in dns and not (isinstance(dns[key], list) and all(isinstance(v, str) for v in dns[key])):
            problems.append(f"dns.{key}: got {dns[key]!r}; expected a list of strings")
    for i, server in enumerate(dns.get("nameservers") or []):
        if not _is_ip(server):
            problems.append(f"dns.nameservers[{i}]: got {server!r}; expected an IPv4 or IPv6 address")
    if "domain" in dns and not isinstance(dns["domain"], str):
        problems.append(f"dns.domain: got {dns['domain']!r}; expected a string")


def _check_routes(routes, keys, problems, where="routes"):
    if not isinstance(routes, list):
        problems.append(f"{where}: got {routes!r}; expected a list")
        return
    for i, route in enumerate(routes):
        if not isinstance(route, dict):
            problems.append(f"{where}[{i}]: got {route!r}; expected an object")
            continue
        for key in sorted(set(route) - keys):
            problems.append(f"{where}[{i}].{key}: not a route key at this version; expected only {sorted(keys)}")
        if not _is_cidr(route.get("dst")):
            problems.append(f"{where}[{i}].dst: got {route.get('dst')!r}; expected a destination in CIDR notation")
        if "gw" in route and not _is_ip(route["gw"]):
            problems.append(f"{where}[{i}].gw: got {route['gw']!r}; expected an IP address")


def _check_rich(doc, version, problems):
    """Results of 0.3.0 and later: interfaces, ips with an interface index, routes, dns."""
    v = spec.version_tuple(version)
    iface_keys = _IFACE_1_1 if v >= (1, 1, 0) else _IFACE
    interfaces = doc.get("interfaces", [])
    if not isinstance(interfaces, list):
        problems.append(f"interfaces: got {interfaces!r}; expected a list")
        interfaces = []
    for i, iface in enumerate(interfaces):
        if not isinstance(iface, dict):
            problems.append(f"interfaces[{i}]: got {iface!r}; expected an object")
            continue
        for key in sorted(set(iface) - iface_keys):
            problems.append(f"interfaces[{i}].{key}: not an interface key at {version}; expected only {sorted(iface_keys)}")
        if not isinstance(iface.get("name"), str) or not iface.get("name"):
            problems.append(f"interfaces[{i}].name: got {iface.get('name')!r}; expected the interface name")
        if "mac" in iface and not _MAC.match(str(iface["mac"])):
            problems.append(f"interfaces[{i}].mac: got {iface['mac']!r}; expected a hardware address aa:bb:cc:dd:ee:ff")
        if "sandbox" in iface and not isinstance(iface["sandbox"], str):
            problems.append(f"interfaces[{i}].sandbox: got {iface['sandbox']!r}; expected a netns path")
    ips = doc.get("ips", [])
    if not isinstance(ips, list):
        problems.append(f"ips: got {ips!r}; expected a list")
        ips = []
    for i, ip in enumerate(ips):
        if not isinstance(ip, dict):
            problems.append(f"ips[{i}]: got {ip!r}; expected an object")
            continue
        address = ip.get("address")
        if not _is_cidr(address):
            problems.append(f"ips[{i}].address: got {address!r}; expected an address in CIDR notation, e.g. 10.1.0.5/16")
        if "gateway" in ip and not _is_ip(ip["gateway"]):
            problems.append(f"ips[{i}].gateway: got {ip['gateway']!r}; expected an IP address")
        if v >= (1, 0, 0):
            if "version" in ip:
                problems.append(f"ips[{i}].version: present; spec 1.0.0 removed it")
        elif ip.get("version") not in ("4", "6"):
            problems.append(f"ips[{i}].version: got {ip.get('version')!r}; expected \"4\" or \"6\" at {version}")
        elif _is_cidr(address) and ip["version"] != spec.ip_version(address):
            problems.append(f"ips[{i}].version: {ip['version']!r} does not match {address}")
        if "interface" in ip:
            index = ip["interface"]
            if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(interfaces):
                problems.append(f"ips[{i}].interface: got {index!r}; expected an index into interfaces "
                                f"(0..{len(interfaces) - 1})")
        elif interfaces:
            problems.append(f"ips[{i}].interface: missing; expected the index of the interface the address is on")
    _check_routes(doc.get("routes", []), _ROUTE_1_1 if v >= (1, 1, 0) else _ROUTE, problems)
    if "dns" not in doc:
        problems.append("dns: missing; expected an object (empty when there is no DNS information)")
    else:
        _check_dns(doc["dns"], problems)
    if v >= (1, 0, 0):
        for key in sorted(set(doc) - _TOP_1):
            problems.append(f"{key}: not a result key at {version}; expected only {sorted(_TOP_1)}")


def _check_legacy(doc, problems):
    """Results of 0.1.0 and 0.2.0: one ip4 and/or ip6 object, each with its routes."""
    for family in ("ip4", "ip6"):
        conf = doc.get(family)
        if conf is None:
            continue
        if not isinstance(conf, dict):
            problems.append(f"{family}: got {conf!r}; expected an object")
            continue
        if not _is_cidr(conf.get("ip")) or spec.ip_version(conf["ip"]) != family[-1]:
            problems.append(f"{family}.ip: got {conf.get('ip')!r}; expected an IPv{family[-1]} address in CIDR notation")
        if "gateway" in conf and not _is_ip(conf["gateway"]):
            problems.append(f"{family}.gateway: got {conf['gateway']!r}; expected an IP address")
        _check_routes(conf.get("routes", []), _ROUTE, problems, where=f"{family}.routes")
    if "dns" in doc:
        _check_dns(doc["dns"], problems)


def result_problems(doc, version):
    """Problems of an ADD result DOC against the result shape of spec VERSION."""
    problems = []
    if doc.get("cniVersion") != version:
        problems.append(f"cniVersion: got {doc.get('cniVersion')!r}; expected {version!r}, the version of the config")
    if spec.version_tuple(version) >= (0, 3, 0):
        _check_rich(doc, version, problems)
    else:
        _check_legacy(doc, problems)
    return problems


def error_problems(code, stdout, expected_codes=None):
    """Problems of a failed invocation's answer: non-zero exit, the error structure on stdout
    ({code, msg, details}), and a code among EXPECTED_CODES when given. Returns (doc, problems)."""
    problems = []
    if code == 0:
        problems.append("exit code 0; expected non-zero on failure")
    doc, why = parse_json(stdout)
    if doc is None:
        problems.append(f"no error structure: {why}")
        return None, problems
    if not isinstance(doc.get("code"), int) or isinstance(doc.get("code"), bool):
        problems.append(f"code: got {doc.get('code')!r}; expected a numeric error code")
    elif expected_codes and doc["code"] not in expected_codes:
        wanted = " or ".join(str(c) for c in expected_codes)
        problems.append(f"code: got {doc['code']}; expected {wanted}")
    if not isinstance(doc.get("msg"), str) or not doc.get("msg"):
        problems.append(f"msg: got {doc.get('msg')!r}; expected a short message")
    if "details" in doc and not isinstance(doc["details"], str):
        problems.append(f"details: got {doc['details']!r}; expected a string")
    return doc, problems


def version_problems(doc, asked):
    """Problems of the VERSION answer DOC to a request whose cniVersion was ASKED."""
    problems = []
    if doc.get("cniVersion") != asked:
        problems.append(f"cniVersion: got {doc.get('cniVersion')!r}; expected {asked!r}, the value on input")
    if "supportedVersions" not in doc:
        problems.append("supportedVersions: missing; expected the list of spec versions the plugin supports")
    return problems


def supported_versions_problems(versions):
    """Problems of a VERSION answer's supportedVersions list."""
    if not isinstance(versions, list) or not versions:
        return [f"supportedVersions: got {versions!r}; expected a non-empty list of spec versions"]
    problems = []
    for i, v in enumerate(versions):
        if not isinstance(v, str) or not _SEMVER.match(v):
            problems.append(f"supportedVersions[{i}]: got {v!r}; expected a semantic version such as \"1.0.0\"")
        elif v not in spec.SPEC_VERSIONS:
            problems.append(f"supportedVersions[{i}]: {v!r} is not a released spec version "
                            f"({', '.join(spec.SPEC_VERSIONS)})")
    if len(set(map(str, versions))) != len(versions):
        problems.append("supportedVersions: lists a version twice")
    return problems
