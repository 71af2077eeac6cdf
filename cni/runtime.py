"""The runtime side of CNI, as libcni does it: load a network configuration list, execute its
plugins for ADD / CHECK / DEL / GC / STATUS / VERSION, and keep libcni's result cache.

Semantics follow containernetworking/cni `libcni/api.go` and `pkg/invoke`:
- a plugin is the executable named by its `type`, looked up in `CNIConfig.path` in order;
- its stdin is its own configuration with `name` and `cniVersion` injected from the list,
  `prevResult` when chaining, and `runtimeConfig` holding the capability arguments that the
  plugin declares in `capabilities`;
- its environment is ours plus `CNIConfig.env` plus the CNI_* variables;
- a non-zero exit is a `CNIError` parsed from the plugin's stdout JSON;
- the result of a successful ADD is cached in `<cache_dir>/results/<network>-<container>-<ifname>`
  in libcni's `cniCacheV1` format, so CHECK and DEL get it as `prevResult`, also after a restart,
  and a Go runtime pointed at the same cache directory reads our entries and we read its.

Two deliberate differences from libcni, both about cleaning up:
- a failed ADD runs DEL for the whole list before raising (libcni leaves that to its caller;
  containerd's CRI does it, and the spec asks for a DEL after every ADD), so a failed pod
  leaves no veth, no address lease and no cache entry behind;
- a successful DEL removes the cache entry for every cniVersion (libcni only for >= 0.4.0).

Results are passed on as the plugins answer them, without conversion between spec versions;
as libcni does, a result without `cniVersion` is taken to be in the list's version.

Plugins run in the network namespace of the calling thread: a node agent calls us inside the
node's namespace (`netsim.netns.enter`) so that a bridge plugin creates `cni0` there.
The runtime keeps no mutable state in memory, so calls for different attachments may run in
parallel threads; the cache is written atomically. The spec forbids parallel calls for the
same attachment, and so do we.
"""

import base64
import dataclasses
import errno
import json
import os
import re
import subprocess
import tempfile
import time

from cni.spec import (CNIError, ERR_DECODE, ERR_INCOMPATIBLE_VERSION, ERR_INTERNAL,
                      ERR_INVALID_ENV, ERR_INVALID_NETCONF, ERR_UNKNOWN_CONTAINER, SPEC_VERSIONS)

CACHE_KIND = "cniCacheV1"
DEFAULT_CACHE_DIR = "/var/lib/cni"
# The newest spec version this runtime implements; sent with VERSION, as libcni sends its own.
CURRENT_VERSION = SPEC_VERSIONS[-1]
GC_ATTACHMENTS_KEY = "cni.dev/valid-attachments"

# libcni's pkg/utils: container IDs and network names; interface names follow the kernel's rules.
_VALID_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$")
_MAX_IFNAME = 15
# A plugin binary being replaced while we exec it answers ETXTBSY; libcni retries too.
_TXTBSY_RETRIES = 5


def _version_key(version):
    return tuple(int(part) for part in version.split("."))


def _at_least(version, minimum):
    return _version_key(version) >= _version_key(minimum)


@dataclasses.dataclass
class NetworkConfigList:
    """A parsed conflist: `plugins` are the raw plugin objects, `bytes` the file as read."""
    name: str
    cni_version: str
    plugins: list
    bytes: bytes
    disable_check: bool = False
    disable_gc: bool = False
    source: str = "<bytes>"


@dataclasses.dataclass
class RuntimeConf:
    """The per-attachment arguments of one call: what libcni's RuntimeConf holds."""
    container_id: str
    netns: str
    ifname: str
    args: list = dataclasses.field(default_factory=list)
    capability_args: dict = dataclasses.field(default_factory=dict)


def _conf_error(source, field, problem, code=ERR_INVALID_NETCONF):
    return CNIError(code, f"{source}: {field}: {problem}")


def _read_bool(raw, key, source):
    value = raw.get(key, False)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise _conf_error(source, key, f"got {value!r}; expected true or false")


def _pick_version(raw, source):
    """cniVersion, or with 1.1.0's `cniVersions` the highest listed version we implement."""
    version = raw.get("cniVersion")
    if version is not None and version not in SPEC_VERSIONS:
        raise _conf_error(source, "cniVersion",
                          f"got {version!r}; expected one of {', '.join(SPEC_VERSIONS)}")
    versions = raw.get("cniVersions")
    if versions is not None:
        if not isinstance(versions, list) or not all(isinstance(v, str) for v in versions):
            raise _conf_error(source, "cniVersions", "expected a list of version strings")
        usable = [v for v in versions if v in SPEC_VERSIONS] + ([version] if version else [])
        if usable:
            version = max(usable, key=_version_key)
    if version is None:
        raise _conf_error(source, "cniVersion", "missing (or no cniVersions entry is known); "
                                                f"expected one of {', '.join(SPEC_VERSIONS)}")
    return version


def _check_plugin(plugin, field, source):
    if not isinstance(plugin, dict):
        raise _conf_error(source, field, f"got {type(plugin).__name__}; expected a JSON object")
    kind = plugin.get("type")
    if not isinstance(kind, str) or not kind or "/" in kind:
        raise _conf_error(source, f"{field}.type",
                          f"got {kind!r}; expected the name of a plugin executable, e.g. \"bridge\"")
    caps = plugin.get("capabilities", {})
    if not isinstance(caps, dict):
        raise _conf_error(source, f"{field}.capabilities",
                          "expected an object of capability names to true/false")


def _json_object(data, source):
    try:
        raw = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise CNIError(ERR_DECODE, f"{source}: not valid JSON ({e}); expected a JSON object") from None
    if not isinstance(raw, dict):
        raise _conf_error(source, "(top level)", "expected a JSON object", ERR_DECODE)
    return raw


def conflist_from_bytes(data, source="<bytes>"):
    """Parse a network configuration list; errors name SOURCE, the field and what is expected."""
    raw = _json_object(data, source)
    name = raw.get("name")
    if not isinstance(name, str) or not _VALID_NAME.match(name):
        raise _conf_error(source, "name", f"got {name!r}; expected a network name of letters, "
                                          "digits, '_', '.' or '-', starting with a letter or digit")
    plugins = raw.get("plugins")
    if not isinstance(plugins, list) or not plugins:
        raise _conf_error(source, "plugins", "missing or empty; expected a list of plugin objects, "
                                             "each with a \"type\"")
    for i, plugin in enumerate(plugins):
        _check_plugin(plugin, f"plugins[{i}]", source)
    return NetworkConfigList(name=name, cni_version=_pick_version(raw, source), plugins=plugins,
                             bytes=bytes(data) if not isinstance(data, str) else data.encode(),
                             disable_check=_read_bool(raw, "disableCheck", source),
                             disable_gc=_read_bool(raw, "disableGC", source), source=source)


def _conflist_from_conf(data, source):
    """A single-plugin .conf file becomes a list of one, as libcni's ConfListFromConf does."""
    raw = _json_object(data, source)
    _check_plugin(raw, "(top level)", source)
    wrapped = {"name": raw.get("name"), "cniVersion": raw.get("cniVersion"), "plugins": [raw]}
    return conflist_from_bytes(json.dumps(wrapped).encode(), source)


def load_conflist(filename):
    """Load a `.conflist`, or a single-plugin `.conf`/`.json` wrapped as a list (by extension,
    as libcni decides)."""
    with open(filename, "rb") as f:
        data = f.read()
    if filename.endswith((".conf", ".json")):
        return _conflist_from_conf(data, filename)
    return conflist_from_bytes(data, filename)


def _validate_attachment(rt):
    if not rt.container_id:
        raise CNIError(ERR_UNKNOWN_CONTAINER, "container_id: missing; expected the container ID")
    if not _VALID_NAME.match(rt.container_id):
        raise CNIError(ERR_INVALID_ENV, f"container_id: invalid characters in {rt.container_id!r}; "
                                        "expected letters, digits, '_', '.' or '-'")
    ifname = rt.ifname
    if not ifname or len(ifname) > _MAX_IFNAME or ifname in (".", "..") \
            or any(c in "/:" or c.isspace() for c in ifname):
        raise CNIError(ERR_INVALID_ENV, f"ifname: got {ifname!r}; expected 1 to {_MAX_IFNAME} "
                                        "characters without '/', ':' or whitespace")


def _describe(plugin):
    return f"type={plugin['type']!r}"


class CNIConfig:
    """Executes conflists against plugins found in PATH, caching results under CACHE_DIR."""

    def __init__(self, path, cache_dir=DEFAULT_CACHE_DIR, env=None, timeout=None, exec=None):
        self.path = [path] if isinstance(path, str) else list(path)
        self.cache_dir = cache_dir
        self.env = dict(env or {})
        self.timeout = timeout
        # libcni's invoke.Exec seam: exec(plugin_path, stdin, env) -> CompletedProcess.
        self.exec = exec or self.run_executable

    # --- exec ---------------------------------------------------------------------------

    def find_plugin(self, plugin_type):
        for directory in self.path:
            candidate = os.path.join(directory, plugin_type)
            if os.path.isfile(candidate):
                return candidate
        raise CNIError(ERR_INVALID_NETCONF,
                       f"failed to find plugin {plugin_type!r} in path {self.path}: "
                       f"expected an executable named {plugin_type!r} in one of these directories")

    def plugin_env(self, command, rt=None):
        """The environment a plugin gets: ours, then `self.env`, then the CNI_* variables
        (last, so that neither can override what the spec defines)."""
        env = dict(os.environ)
        env.update(self.env)
        env.update({
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": rt.container_id if rt else "",
            "CNI_NETNS": rt.netns if rt else "",
            "CNI_IFNAME": rt.ifname if rt else "",
            "CNI_ARGS": ";".join(f"{k}={v}" for k, v in rt.args) if rt else "",
            "CNI_PATH": ":".join(self.path),
        })
        return env

    def run_executable(self, plugin_path, stdin, env):
        """The default exec: run the plugin binary (retrying ETXTBSY as libcni does)."""
        attempt = 0
        while True:
            try:
                return subprocess.run([plugin_path], input=stdin, env=env, capture_output=True,
                                      timeout=self.timeout, check=False)
            except OSError as e:
                if e.errno != errno.ETXTBSY or attempt == _TXTBSY_RETRIES:
                    raise CNIError(ERR_INTERNAL, f"cannot execute plugin {plugin_path}: {e}") from None
            except subprocess.TimeoutExpired:
                raise CNIError(ERR_INTERNAL, f"plugin {plugin_path} did not answer within "
                                             f"{self.timeout} s") from None
            time.sleep(0.05 * 2 ** attempt)
            attempt += 1

    def exec_plugin(self, plugin_type, stdin_doc, env):
        """Run one plugin; return its parsed stdout (None when it printed nothing)."""
        plugin_path = self.find_plugin(plugin_type)
        proc = self.exec(plugin_path, json.dumps(stdin_doc).encode(), env)
        if proc.returncode != 0:
            raise _plugin_error(proc)
        if not proc.stdout.strip():
            return None
        try:
            return json.loads(proc.stdout)
        except ValueError:
            raise CNIError(ERR_DECODE, f"plugin {plugin_path} succeeded but its output is not "
                                       f"JSON: {proc.stdout[:200]!r}") from None

    # --- stdin --------------------------------------------------------------------------

    @staticmethod
    def plugin_stdin(conflist, plugin, prev_result=None, rt=None):
        """The plugin's config with the list's name and version, prevResult and runtimeConfig."""
        doc = dict(plugin)
        doc["name"] = conflist.name
        doc["cniVersion"] = conflist.cni_version
        if prev_result is not None:
            doc["prevResult"] = prev_result
        if rt is not None:
            runtime_config = {cap: rt.capability_args[cap]
                              for cap, on in plugin.get("capabilities", {}).items()
                              if on and cap in rt.capability_args}
            if runtime_config:
                doc["runtimeConfig"] = runtime_config
        return doc

    # --- cache --------------------------------------------------------------------------

    def cache_path(self, network, rt):
        return os.path.join(self.cache_dir, "results", f"{network}-{rt.container_id}-{rt.ifname}")

    def _cache_add(self, conflist, rt, result):
        entry = {"kind": CACHE_KIND, "containerId": rt.container_id,
                 "config": base64.b64encode(conflist.bytes).decode(),
                 "ifName": rt.ifname, "networkName": conflist.name}
        # Go's omitempty: libcni leaves these out when empty, and so do we.
        if rt.netns:
            entry["netns"] = rt.netns
        if rt.args:
            entry["cniArgs"] = [[k, v] for k, v in rt.args]
        if rt.capability_args:
            entry["capabilityArgs"] = rt.capability_args
        if result:
            entry["result"] = result
        path = self.cache_path(conflist.name, rt)
        directory = os.path.dirname(path)
        os.makedirs(directory, mode=0o700, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(entry, f)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise

    def _cache_entry(self, network, rt):
        """The cache entry, None when absent; CNIError when present but unreadable."""
        path = self.cache_path(network, rt)
        try:
            with open(path, "rb") as f:
                entry = json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            raise CNIError(ERR_DECODE, f"cached result {path} is unreadable: {e}") from None
        if not isinstance(entry, dict) or entry.get("kind") != CACHE_KIND:
            raise CNIError(ERR_DECODE, f"cached result {path}: kind: expected {CACHE_KIND!r}")
        return entry

    def _cache_del(self, network, rt):
        try:
            os.unlink(self.cache_path(network, rt))
        except FileNotFoundError:
            pass

    def get_cached_result(self, conflist, rt):
        """The result the last successful ADD of this attachment returned, or None;
        CNIError when the entry exists but cannot be read."""
        entry = self._cache_entry(conflist.name, rt)
        return entry.get("result") if entry else None

    def cached_attachments(self, container_id=None):
        """The cache entries (dicts in cniCacheV1 form), optionally of one container only."""
        directory = os.path.join(self.cache_dir, "results")
        try:
            names = sorted(os.listdir(directory))
        except FileNotFoundError:
            return []
        entries = []
        for name in names:
            if name.startswith(".tmp-"):
                continue
            try:
                with open(os.path.join(directory, name), "rb") as f:
                    entry = json.load(f)
            except (OSError, ValueError):
                continue
            if not isinstance(entry, dict) or entry.get("kind") != CACHE_KIND:
                continue
            if not entry.get("ifName") or not entry.get("networkName"):
                continue
            if container_id and entry.get("containerId") != container_id:
                continue
            entries.append(entry)
        return entries

    # --- verbs --------------------------------------------------------------------------

    def add_network_list(self, conflist, rt):
        """ADD every plugin in order, chaining prevResult; cache and return the last result.

        On a plugin's failure, DEL runs for the whole list (errors of that cleanup go into
        the raised error's details) and the plugin's error is raised."""
        _validate_attachment(rt)
        env = self.plugin_env("ADD", rt)
        result = None
        for plugin in conflist.plugins:
            try:
                answer = self.exec_plugin(plugin["type"], self.plugin_stdin(conflist, plugin, result, rt), env)
            except CNIError as e:
                raise self._rolled_back(conflist, rt, plugin, e) from None
            if not isinstance(answer, dict):
                error = CNIError(ERR_DECODE, f"plugin {_describe(plugin)} returned no result object for ADD")
                raise self._rolled_back(conflist, rt, plugin, error) from None
            answer.setdefault("cniVersion", conflist.cni_version)
            result = answer
        self._cache_add(conflist, rt, result)
        return result

    def _rolled_back(self, conflist, rt, plugin, error):
        failed = CNIError(error.code, f"plugin {_describe(plugin)} failed (add): {error.msg}", error.details)
        # Best effort: unlike a DEL the caller asked for, a rollback goes on past a failing
        # plugin, so that one plugin's error does not leak what the others made.
        problems = []
        env = self.plugin_env("DEL", rt)
        for other in reversed(conflist.plugins):
            try:
                self.exec_plugin(other["type"], self.plugin_stdin(conflist, other, None, rt), env)
            except CNIError as cleanup:
                problems.append(f"plugin {_describe(other)} failed (delete): {cleanup.msg}")
        if problems:
            extra = "cleanup DEL failed too: " + "; ".join(problems)
            failed.details = f"{failed.details}; {extra}" if failed.details else extra
        return failed

    def check_network_list(self, conflist, rt):
        """CHECK every plugin with the cached result as prevResult (spec >= 0.4.0)."""
        if not _at_least(conflist.cni_version, "0.4.0"):
            raise CNIError(ERR_INCOMPATIBLE_VERSION, f"{conflist.source}: cniVersion "
                           f"{conflist.cni_version!r} does not support the CHECK command; expected >= 0.4.0")
        if conflist.disable_check:
            return
        _validate_attachment(rt)
        cached = self.get_cached_result(conflist, rt)
        env = self.plugin_env("CHECK", rt)
        for plugin in conflist.plugins:
            try:
                self.exec_plugin(plugin["type"], self.plugin_stdin(conflist, plugin, cached, rt), env)
            except CNIError as e:
                raise CNIError(e.code, f"plugin {_describe(plugin)} failed (check): {e.msg}", e.details) from None

    def del_network_list(self, conflist, rt):
        """DEL every plugin in reverse order with the cached result, then drop the cache entry.

        Idempotent: plugins must accept a DEL of what is already gone, and a missing cache
        entry just means no prevResult. An unreadable entry is dropped (as libcni does)."""
        _validate_attachment(rt)
        cached = None
        if _at_least(conflist.cni_version, "0.4.0"):
            try:
                cached = self.get_cached_result(conflist, rt)
            except CNIError:
                self._cache_del(conflist.name, rt)
        self._del_plugins(conflist, rt, cached)
        self._cache_del(conflist.name, rt)

    def _del_plugins(self, conflist, rt, cached):
        env = self.plugin_env("DEL", rt)
        for plugin in reversed(conflist.plugins):
            try:
                self.exec_plugin(plugin["type"], self.plugin_stdin(conflist, plugin, cached, rt), env)
            except CNIError as e:
                raise CNIError(e.code, f"plugin {_describe(plugin)} failed (delete): {e.msg}", e.details) from None

    def gc_network_list(self, conflist, valid_attachments=()):
        """DEL every cached attachment of this network that is not in VALID_ATTACHMENTS
        (pairs of container ID and ifname), then, for spec >= 1.1.0 and unless the list says
        disableGC, send GC with `cni.dev/valid-attachments` to each plugin. All steps run;
        their errors are raised together at the end."""
        valid = {(cid, ifname) for cid, ifname in valid_attachments}
        errors = []
        for entry in self.cached_attachments():
            if entry["networkName"] != conflist.name or (entry["containerId"], entry["ifName"]) in valid:
                continue
            stale = RuntimeConf(container_id=entry["containerId"], netns=entry.get("netns", ""),
                                ifname=entry["ifName"], args=[tuple(a) for a in entry.get("cniArgs", [])],
                                capability_args=entry.get("capabilityArgs", {}))
            try:
                self.del_network_list(conflist, stale)
            except CNIError as e:
                errors.append(CNIError(e.code, f"failed to delete stale attachment "
                                               f"{stale.container_id} {stale.ifname}: {e.msg}", e.details))
        if _at_least(conflist.cni_version, "1.1.0") and not conflist.disable_gc:
            listed = [{"containerID": cid, "ifname": ifname} for cid, ifname in valid_attachments]
            env = self.plugin_env("GC")
            for plugin in conflist.plugins:
                doc = self.plugin_stdin(conflist, plugin)
                doc[GC_ATTACHMENTS_KEY] = listed
                try:
                    self.exec_plugin(plugin["type"], doc, env)
                except CNIError as e:
                    errors.append(CNIError(e.code, f"failed to GC plugin {_describe(plugin)}: {e.msg}", e.details))
        if errors:
            raise CNIError(errors[0].code, "; ".join(e.msg for e in errors))

    def get_status_network_list(self, conflist):
        """STATUS of each plugin (spec >= 1.1.0; older lists have no STATUS and pass)."""
        if not _at_least(conflist.cni_version, "1.1.0"):
            return
        env = self.plugin_env("STATUS")
        for plugin in conflist.plugins:
            self.exec_plugin(plugin["type"], self.plugin_stdin(conflist, plugin), env)

    def get_version_info(self, plugin_type):
        """The plugin's VERSION answer: {"cniVersion", "supportedVersions"}."""
        # Fake values, as libcni sends, for plugins built on an old skel that insists on them.
        rt = RuntimeConf(container_id="", netns="dummy", ifname="dummy")
        env = self.plugin_env("VERSION", rt)
        env["CNI_PATH"] = "dummy"
        try:
            answer = self.exec_plugin(plugin_type, {"cniVersion": CURRENT_VERSION}, env)
        except CNIError as e:
            if e.msg == "unknown CNI_COMMAND: VERSION":
                return {"cniVersion": "0.1.0", "supportedVersions": ["0.1.0"]}
            raise
        if not isinstance(answer, dict) or not isinstance(answer.get("supportedVersions"), list):
            raise CNIError(ERR_DECODE, f"plugin {plugin_type!r} answered VERSION without "
                                       f"a supportedVersions list: {answer!r}")
        return answer


def _plugin_error(proc):
    try:
        doc = json.loads(proc.stdout)
    except ValueError:
        doc = None
    if isinstance(doc, dict) and ("code" in doc or "msg" in doc):
        return CNIError.from_json(doc)
    stderr = proc.stderr.decode(errors="replace").strip()
    text = stderr or proc.stdout.decode(errors="replace").strip() or "no error message"
    return CNIError(ERR_INTERNAL, f"plugin exited with status {proc.returncode}: {text}")
