"""What is under test: the plugin executable, the configuration it is run with, the spec version
and the CNI_PATH, resolved from the user's --plugin/--conf/--cni-version as a runtime would.

Every problem with those inputs is a `ConformanceError` that names the option or the file and
field, and says what is expected."""

import copy
import dataclasses
import json
import os

from cni import runtime, spec
from cni.spec import CNIError

REFERENCE_DIR = "/usr/lib/cni"
# The chained plugin the suite appends when the conf has one plugin: it passes prevResult
# through, so it shows whether the plugin's result survives a chain.
CHAIN_PARTNER = "tuning"
DEFAULT_NETWORK = "conformance"
DEFAULT_SUBNET = "10.250.0.0/24"
DEFAULT_ROUTE = "10.96.0.0/12"


class ConformanceError(ValueError):
    """The suite cannot start with these inputs; the message says which and what to give."""


@dataclasses.dataclass
class Target:
    plugin: str
    type: str
    cni_version: str
    supported: list
    network: dict
    conf_source: str
    cni_path: list
    index: int = 0

    @property
    def conf(self):
        """The plugin's execution configuration (Section 3: name and cniVersion inserted,
        capabilities removed)."""
        doc = {k: v for k, v in self.network["plugins"][self.index].items() if k != "capabilities"}
        doc["name"] = self.network["name"]
        doc["cniVersion"] = self.cni_version
        return copy.deepcopy(doc)

    @property
    def ipam_type(self):
        return (self.conf.get("ipam") or {}).get("type")

    @property
    def chain(self):
        """The conflist (dict) to run for chaining, or None when there is nothing to chain with."""
        if len(self.network["plugins"]) > 1:
            return copy.deepcopy(self.network)
        if find_in_path(CHAIN_PARTNER, self.cni_path):
            net = copy.deepcopy(self.network)
            net["plugins"].append({"type": CHAIN_PARTNER})
            return net
        return None


def find_in_path(name, path):
    for directory in path:
        candidate = os.path.join(directory, name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def check_plugin(path):
    """The absolute path of an executable, or a ConformanceError naming --plugin."""
    if not path:
        raise ConformanceError("--plugin: missing; expected the path of the plugin executable")
    full = os.path.abspath(path)
    if not os.path.isfile(full):
        raise ConformanceError(f"--plugin {path}: no such file; expected the path of the plugin executable")
    if not os.access(full, os.X_OK):
        raise ConformanceError(f"--plugin {path}: not executable; expected an executable file (chmod +x)")
    return full


def default_network(type_name, data_dir):
    """A bridge-style network as a Kubernetes node would have it: host-local IPAM on a test
    subnet, the bridge as default gateway, masquerade on, and a route without `gw` (the spec's
    own example shape: "If unset, a value in `gateway` in the `ips` array may be used")."""
    return {"cniVersion": "1.0.0", "name": DEFAULT_NETWORK, "plugins": [{
        "type": type_name, "bridge": "cni0", "isGateway": True, "isDefaultGateway": True, "ipMasq": True,
        "ipam": {"type": "host-local", "dataDir": data_dir, "ranges": [[{"subnet": DEFAULT_SUBNET}]],
                 "routes": [{"dst": DEFAULT_ROUTE}]}}]}


def load_network(conf_path):
    """The user's .conf/.json (one plugin) or .conflist as a conflist dict, validated by the
    runtime's loader (errors name the file and field)."""
    try:
        parsed = runtime.load_conflist(conf_path)
    except FileNotFoundError:
        raise ConformanceError(f"--conf {conf_path}: no such file; expected a .conf, .json or .conflist file") from None
    except CNIError as e:
        raise ConformanceError(f"--conf {e.msg}") from None
    network = json.loads(parsed.bytes)
    if "plugins" not in network:  # a single-plugin .conf, wrapped as libcni does
        network = {"name": parsed.name, "cniVersion": parsed.cni_version, "plugins": [network]}
    network["cniVersion"] = parsed.cni_version
    return network


def pick_version(requested, supported, conf_version):
    """The version to test: REQUESTED if given (it must be claimed when SUPPORTED is known);
    else the newest the plugin claims, capped by CONF_VERSION when a conf gave one."""
    if requested:
        if requested not in spec.SPEC_VERSIONS:
            raise ConformanceError(f"--cni-version {requested}: not a spec version; expected one of "
                                   f"{', '.join(spec.SPEC_VERSIONS)}")
        if supported and requested not in supported:
            raise ConformanceError(f"--cni-version {requested}: the plugin does not claim it (its VERSION "
                                   f"answer lists {', '.join(supported)}); pick one of those")
        return requested
    key = spec.version_tuple
    known = [v for v in supported if v in spec.SPEC_VERSIONS]
    if conf_version:
        capped = [v for v in known if key(v) <= key(conf_version)]
        return max(capped, key=key) if capped else conf_version
    return max(known, key=key) if known else "1.0.0"


def cni_path_for(plugin, network):
    """The plugin's directory, plus /usr/lib/cni when a type the network names (an IPAM, a
    chained plugin, the chain partner) is not there."""
    path = [os.path.dirname(plugin)]
    wanted = {p.get("type") for p in network["plugins"]} | {CHAIN_PARTNER}
    wanted |= {(p.get("ipam") or {}).get("type") for p in network["plugins"]}
    wanted.discard(None)
    if any(not find_in_path(t, path) for t in wanted) and os.path.isdir(REFERENCE_DIR) \
            and REFERENCE_DIR not in path:
        path.append(REFERENCE_DIR)
    for i, p in enumerate(network["plugins"]):
        for field, name in ((f"plugins[{i}].type", p.get("type")),
                            (f"plugins[{i}].ipam.type", (p.get("ipam") or {}).get("type"))):
            if name and not find_in_path(name, path):
                raise ConformanceError(f"conf: {field}: no executable {name!r} in {':'.join(path)}; "
                                       "expected it next to the plugin or in /usr/lib/cni")
    return path


def resolve(plugin, type_name, supported, conf_path, cni_version, data_dir):
    """The Target for these inputs. Host-local's dataDir is pointed at DATA_DIR, so the suite's
    leases never mix with a real network's."""
    if conf_path:
        network = load_network(conf_path)
        source = conf_path
        index = next((i for i, p in enumerate(network["plugins"]) if p.get("type") == type_name), None)
        if index is None:
            types = [p.get("type") for p in network["plugins"]]
            raise ConformanceError(f"--conf {conf_path}: plugins[].type: no plugin of type {type_name!r} "
                                   f"(the name of --plugin) among {types}; expected one")
        version = pick_version(cni_version, supported, network.get("cniVersion"))
    else:
        network = default_network(type_name, data_dir)
        source = "(default: bridge-style, host-local IPAM on " + DEFAULT_SUBNET + ", ipMasq)"
        index = 0
        version = pick_version(cni_version, supported, None)
    network["cniVersion"] = version
    network.pop("cniVersions", None)
    for p in network["plugins"]:
        if (p.get("ipam") or {}).get("type") == "host-local":
            p["ipam"]["dataDir"] = data_dir
    return Target(plugin=plugin, type=type_name, cni_version=version, supported=list(supported),
                  network=network, conf_source=source, cni_path=cni_path_for(plugin, network), index=index)
