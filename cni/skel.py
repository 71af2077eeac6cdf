"""The plugin side of the CNI contract: environment, stdin, versions, errors.

`dispatch(env, stdin, plugin)` is what a plugin executable's main does, without touching the
process: it reads the CNI_* variables from ENV and the network configuration from STDIN,
validates them as libcni's skel does (same checks, same order, same error codes as the
reference plugins 1.1.1 answer, see MEASURED.md), calls the plugin and returns
`(exit_code, stdout_bytes)`. The shim and the resident agent both call it, so a plugin
behaves identically whether it runs as its own process or inside the agent.

A plugin is any object with `cmd_add`, `cmd_del`, `cmd_check`, `cmd_gc`, `cmd_status` taking
`CmdArgs`; `cmd_add` returns a 1.x-shaped result (see `cni.spec`), the others return None.
Failures are raised as `CNIError`; any other exception becomes code 999 (ERR_INTERNAL).
"""

import dataclasses
import json
import re

from cni import spec
from cni.spec import CNIError

SUPPORTED_VERSIONS = spec.SPEC_VERSIONS

_COMMANDS = ("ADD", "DEL", "CHECK", "VERSION", "GC", "STATUS")
# Which variables each command needs (libcni skel's reqForCmd).
_REQUIRED = {
    "CNI_CONTAINERID": ("ADD", "CHECK", "DEL"),
    "CNI_NETNS": ("ADD", "CHECK"),
    "CNI_IFNAME": ("ADD", "CHECK", "DEL"),
    "CNI_PATH": ("ADD", "CHECK", "DEL", "GC", "STATUS"),
}
# The lowest config version that may ask for a command (SPEC.md: CHECK came with 0.4.0,
# GC and STATUS with 1.1.0); libcni's skel answers an older config with code 1.
_SINCE = {"CHECK": (0, 4, 0), "GC": (1, 1, 0), "STATUS": (1, 1, 0)}
_ID_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$")
_IFNAME_MAX = 15


@dataclasses.dataclass
class CmdArgs:
    """One invocation, as the plugin functions see it."""

    command: str
    container_id: str
    netns: str
    ifname: str
    args: str
    path: list
    stdin: bytes
    conf: dict
    cni_version: str

    def cni_args(self):
        """CNI_ARGS as a dict ("IgnoreUnknown=1;K8S_POD_NAME=web" -> {...})."""
        pairs = (item.split("=", 1) for item in self.args.split(";") if "=" in item)
        return {k: v for k, v in pairs}

    @property
    def prev_result(self):
        doc = self.conf.get("prevResult")
        return spec.parse_result(doc) if doc is not None else None


def validate_container_id(container_id):
    if not container_id:
        raise CNIError(spec.ERR_UNKNOWN_CONTAINER, "missing containerID")
    if not _ID_RE.match(container_id):
        raise CNIError(spec.ERR_INVALID_ENV, "invalid characters in containerID", container_id)


def validate_ifname(ifname):
    """The kernel's rules for an interface name, with libcni's messages."""
    if not ifname:
        raise CNIError(spec.ERR_INVALID_ENV, "interface name is empty")
    if len(ifname) > _IFNAME_MAX:
        raise CNIError(spec.ERR_INVALID_ENV, "interface name is too long",
                       f"interface name should be less than {_IFNAME_MAX + 1} characters")
    if ifname in (".", ".."):
        raise CNIError(spec.ERR_INVALID_ENV, "interface name is . or ..")
    if any(c in "/:" or c.isspace() for c in ifname):
        raise CNIError(spec.ERR_INVALID_ENV, "interface name contains / or : or whitespace characters")


def _parse_conf(stdin):
    try:
        conf = json.loads(stdin or b"{}")
    except ValueError as e:
        raise CNIError(spec.ERR_DECODE, f"error unmarshall network config: {e}")
    if not isinstance(conf, dict):
        raise CNIError(spec.ERR_DECODE, "error unmarshall network config: expected a JSON object",
                       f"got {type(conf).__name__}")
    name = conf.get("name")
    if not name:
        raise CNIError(spec.ERR_INVALID_NETCONF, "missing network name")
    if not isinstance(name, str) or not _ID_RE.match(name):
        raise CNIError(spec.ERR_INVALID_NETCONF, "invalid characters found in network name", str(name))
    return conf


def _check_version(conf, command):
    version = conf.get("cniVersion") or "0.1.0"
    if version not in SUPPORTED_VERSIONS:
        raise CNIError(spec.ERR_INCOMPATIBLE_VERSION, "incompatible CNI versions",
                       f"config is {json.dumps(version)}, plugin supports {json.dumps(list(SUPPORTED_VERSIONS))}")
    since = _SINCE.get(command)
    if since and spec.version_tuple(version) < since:
        raise CNIError(spec.ERR_INCOMPATIBLE_VERSION, f"config version does not allow {command}",
                       f"config is {version}, {command} needs {'.'.join(map(str, since))} or later")
    return version


def _version_answer(stdin):
    """VERSION echoes the cniVersion it was asked with (SPEC.md, VERSION: "cniVersion: The value
    of cniVersion specified on input"), or names the newest when the input has none we know."""
    try:
        asked = json.loads(stdin or b"{}").get("cniVersion")
    except (ValueError, AttributeError):
        asked = None
    version = asked if asked in SUPPORTED_VERSIONS else SUPPORTED_VERSIONS[-1]
    doc = {"cniVersion": version, "supportedVersions": list(SUPPORTED_VERSIONS)}
    return json.dumps(doc, separators=(",", ":")).encode()


def _error(err, version):
    return 1, (json.dumps(err.to_json(version), indent=4)).encode()


def dispatch(env, stdin, plugin):
    """Run one CNI invocation of PLUGIN; returns (exit code, stdout bytes)."""
    command = env.get("CNI_COMMAND", "")
    version = "1.1.0"
    try:
        if not command:
            # The reference prints its "about" text on stderr and exits 0.
            return 0, b""
        missing = [k for k, cmds in _REQUIRED.items() if command in cmds and not env.get(k)]
        if missing:
            raise CNIError(spec.ERR_INVALID_ENV, f"required env variables [{' '.join(missing)}] missing")
        if command == "VERSION":
            return 0, _version_answer(stdin)
        conf = _parse_conf(stdin)
        if command not in ("GC", "STATUS"):
            validate_container_id(env.get("CNI_CONTAINERID", ""))
            validate_ifname(env.get("CNI_IFNAME", ""))
        if command not in _COMMANDS:
            raise CNIError(spec.ERR_INVALID_ENV, f"unknown CNI_COMMAND: {command}")
        version = _check_version(conf, command)
        args = CmdArgs(
            command=command,
            container_id=env.get("CNI_CONTAINERID", ""),
            netns=env.get("CNI_NETNS", ""),
            ifname=env.get("CNI_IFNAME", ""),
            args=env.get("CNI_ARGS", ""),
            path=[p for p in env.get("CNI_PATH", "").split(":") if p],
            stdin=stdin,
            conf=conf,
            cni_version=version,
        )
        if command == "ADD":
            result = plugin.cmd_add(args)
            return 0, spec.dumps_result(result, version).encode()
        handler = {"DEL": plugin.cmd_del, "CHECK": plugin.cmd_check,
                   "GC": plugin.cmd_gc, "STATUS": plugin.cmd_status}[command]
        handler(args)
        return 0, b""
    except CNIError as err:
        return _error(err, version)
    except Exception as exc:  # a plugin bug or an unexpected kernel answer: still the spec's JSON
        return _error(CNIError(spec.ERR_INTERNAL, f"{type(exc).__name__}: {exc}"), version)
