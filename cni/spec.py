"""The CNI contract's vocabulary: spec versions, well-known error codes and the error type.

Error codes are SPEC.md's "Error" section; codes 0-99 are reserved by the spec.
"""

import json

SPEC_VERSIONS = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")

ERR_INCOMPATIBLE_VERSION = 1
ERR_UNSUPPORTED_FIELD = 2
ERR_UNKNOWN_CONTAINER = 3
ERR_INVALID_ENV = 4
ERR_IO = 5
ERR_DECODE = 6
ERR_INVALID_NETCONF = 7
ERR_TRY_AGAIN = 11
ERR_PLUGIN_NOT_AVAILABLE = 50
ERR_LIMITED_CONNECTIVITY = 51
ERR_INTERNAL = 999


class CNIError(Exception):
    """An error as the spec shapes it: {"cniVersion", "code", "msg", "details"}."""

    def __init__(self, code, msg, details=""):
        super().__init__(msg)
        self.code = int(code)
        self.msg = msg
        self.details = details

    def to_json(self, cni_version="1.1.0"):
        doc = {"cniVersion": cni_version, "code": self.code, "msg": self.msg}
        if self.details:
            doc["details"] = self.details
        return doc

    def dumps(self, cni_version="1.1.0"):
        return json.dumps(self.to_json(cni_version))

    @classmethod
    def from_json(cls, doc):
        return cls(doc.get("code", ERR_INTERNAL), doc.get("msg", ""), doc.get("details", ""))

    def __str__(self):
        text = f"CNI error {self.code}: {self.msg}"
        return f"{text} ({self.details})" if self.details else text


# --- Results -------------------------------------------------------------------------------
# Internally a result is a dict in the 1.x shape (SPEC.md "Success"): interfaces, ips with an
# `interface` index, routes, dns. It is converted to the config's cniVersion only when printed,
# and a prevResult of any version is parsed back to the 1.x shape, as libcni's types packages do.
# Keys are emitted in the reference plugins' (Go struct) order so outputs compare equal as text.

_INTERFACE_KEYS = ("name", "mac", "mtu", "sandbox", "socketPath", "pciID")
_INTERFACE_KEYS_1_0 = ("name", "mac", "sandbox")
_IP_KEYS = ("interface", "address", "gateway")
_ROUTE_KEYS = ("dst", "gw", "mtu", "advmss", "priority", "table", "scope")
_ROUTE_KEYS_1_0 = ("dst", "gw")
_DNS_KEYS = ("nameservers", "domain", "search", "options")


def version_tuple(version):
    """'0.3.1' -> (0, 3, 1); a CNIError(ERR_DECODE) names the value when it is not a version."""
    try:
        parts = tuple(int(p) for p in str(version).split("."))
    except ValueError:
        parts = ()
    if len(parts) != 3:
        raise CNIError(ERR_DECODE, f"invalid cniVersion {version!r}", "expected a semantic version such as 1.0.0")
    return parts


def ip_version(address):
    """'4' or '6' for an address with or without a prefix length."""
    return "6" if ":" in address else "4"


def _pick(doc, keys):
    return {k: doc[k] for k in keys if doc.get(k) not in (None, "", [])}


def _dns(doc):
    return _pick(doc.get("dns") or {}, _DNS_KEYS)


def convert_result(result, to_version):
    """The 1.x-shaped RESULT as the spec version TO_VERSION prints it."""
    target = version_tuple(to_version)
    if target >= (1, 0, 0):
        iface_keys, route_keys = (_INTERFACE_KEYS, _ROUTE_KEYS) if target >= (1, 1, 0) else (_INTERFACE_KEYS_1_0, _ROUTE_KEYS_1_0)
        out = {"cniVersion": to_version}
        if result.get("interfaces"):
            out["interfaces"] = [_pick(i, iface_keys) for i in result["interfaces"]]
        if result.get("ips"):
            out["ips"] = [_pick(ip, _IP_KEYS) for ip in result["ips"]]
        if result.get("routes"):
            out["routes"] = [_pick(r, route_keys) for r in result["routes"]]
        out["dns"] = _dns(result)
        return out
    if target >= (0, 3, 0):
        out = {"cniVersion": to_version}
        if result.get("interfaces"):
            out["interfaces"] = [_pick(i, _INTERFACE_KEYS_1_0) for i in result["interfaces"]]
        if result.get("ips"):
            out["ips"] = [{"version": ip_version(ip["address"]), **_pick(ip, _IP_KEYS)} for ip in result["ips"]]
        if result.get("routes"):
            out["routes"] = [_pick(r, _ROUTE_KEYS_1_0) for r in result["routes"]]
        out["dns"] = _dns(result)
        return out
    # 0.1.0 / 0.2.0 know one address per family and no interfaces; routes go with their family.
    out = {"cniVersion": to_version}
    families = {}
    for ip in result.get("ips", []):
        family = "ip" + ip_version(ip["address"])
        if family not in families:
            families[family] = _pick({"ip": ip["address"], "gateway": ip.get("gateway")}, ("ip", "gateway"))
    for route in result.get("routes", []):
        family = "ip" + ip_version(route["dst"])
        if family in families:
            families[family].setdefault("routes", []).append(_pick(route, _ROUTE_KEYS_1_0))
    for family in ("ip4", "ip6"):
        if family in families:
            out[family] = families[family]
    out["dns"] = _dns(result)
    return out


def parse_result(doc):
    """A result of any spec version (e.g. a prevResult) in the 1.x shape."""
    if not isinstance(doc, dict):
        raise CNIError(ERR_DECODE, "prevResult is not a JSON object", f"got {type(doc).__name__}")
    version = doc.get("cniVersion") or "0.1.0"
    if version_tuple(version) < (0, 3, 0):
        ips, routes = [], []
        for family in ("ip4", "ip6"):
            conf = doc.get(family)
            if conf:
                ips.append(_pick({"address": conf.get("ip"), "gateway": conf.get("gateway")}, _IP_KEYS))
                routes.extend(_pick(r, _ROUTE_KEYS_1_0) for r in conf.get("routes") or [])
        return {"cniVersion": version, "ips": ips, "routes": routes, "dns": _dns(doc)}
    return {
        "cniVersion": version,
        "interfaces": [_pick(i, _INTERFACE_KEYS) for i in doc.get("interfaces") or []],
        "ips": [_pick(ip, _IP_KEYS) for ip in doc.get("ips") or []],
        "routes": [_pick(r, _ROUTE_KEYS) for r in doc.get("routes") or []],
        "dns": _dns(doc),
    }


def dumps_result(result, cni_version):
    """The result as the plugin prints it: converted, indented like libcni's PrintResult."""
    return json.dumps(convert_result(result, cni_version), indent=4)
