"""Which containers run a built-in, and with which flags: pure functions of a container spec.

Kubernetes combines `command` and `args` with the image's ENTRYPOINT and CMD (command replaces
ENTRYPOINT, args replace CMD; a command alone drops CMD). When the resulting argv names the
image's own binary, the built-in equivalent runs; any other command is a real process. Flags
are parsed as the originals' cobra/pflag parsers do (`--port 80`, `--port=80`, `--http=false`),
so a typo fails here with the container and flag named instead of at runtime.
"""

import dataclasses
import os
import re
import sys

AGNHOST_ENTRYPOINT = ["/agnhost"]
AGNHOST_CMD = ["pause"]
AGNHOST_BINARIES = ("agnhost", "agnhost-2")  # the image links agnhost-2 for entrypoint tests
ECHOSERVER_DEFAULT_PORT = 3000


class SpecError(ValueError):
    """A container spec that no built-in or process can run; the message names the field."""


@dataclasses.dataclass(frozen=True)
class Port:
    port: int
    protocol: str = "TCP"

    def __str__(self):
        return f"{self.port}/{self.protocol}"


@dataclasses.dataclass(frozen=True)
class Builtin:
    """A built-in container: IMAGE (agnhost, echoserver, echo) run with ARGV.

    argv starts with the subcommand for agnhost; options holds the parsed flags; ports are the
    sockets the built-in listens on; env holds the container's literal `env` values.
    """
    image: str
    subcommand: str | None
    argv: list
    ports: list
    options: dict = dataclasses.field(default_factory=dict)
    positional: list = dataclasses.field(default_factory=list)
    env: dict = dataclasses.field(default_factory=dict)

    @property
    def oneshot(self):
        """True for built-ins that do one thing and exit (agnhost connect)."""
        return self.subcommand == "connect"

    def standalone_argv(self):
        """The argv that runs this built-in as its own process (`python -m netsim.containers`)."""
        return [sys.executable, "-m", "netsim.containers", self.image, *self.argv]


# Flag tables of the originals: name -> (type, default).
_FLAGS = {
    "serve-hostname": {
        "tcp": ("bool", False), "udp": ("bool", False), "http": ("bool", True),
        "close": ("bool", False), "port": ("int", 9376),
    },
    "netexec": {
        "http-port": ("int", 8080), "udp-port": ("int", 8081), "sctp-port": ("int", -1),
        "tls-cert-file": ("str", ""), "tls-private-key-file": ("str", ""),
        "http-override": ("str", ""), "udp-listen-addresses": ("str", ""),
        "delay-shutdown": ("int", 0),
    },
    "pause": {},
    "connect": {
        "timeout": ("duration", 0.0), "protocol": ("str", "tcp"),
        "udp-data": ("str", "hostname"), "sctp-data": ("str", "hostname"),
    },
}
_POSITIONAL = {"serve-hostname": (0, 0), "netexec": (0, 0), "pause": (0, 0), "connect": (1, 1)}

AGNHOST_SUBCOMMANDS = tuple(_FLAGS)


def image_name(image):
    """The last path part of an image reference without tag or digest: agnhost, nginx..."""
    ref = image.split("@", 1)[0]
    last = ref.rsplit("/", 1)[-1]
    return last.split(":", 1)[0]


_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")


def parse_duration(text):
    """Seconds in a Go duration string ("5s", "1m30s", "250ms", "0"); ValueError otherwise."""
    text = text.strip()
    sign = -1.0 if text.startswith("-") else 1.0
    body = text.lstrip("+-")
    if body == "0":
        return 0.0
    pos, total = 0, 0.0
    while pos < len(body):
        m = _DURATION_PART.match(body, pos)
        if not m:
            raise ValueError(f"time: invalid duration {text!r}")
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    if not body:
        raise ValueError(f"time: invalid duration {text!r}")
    return sign * total


def _convert(kind, name, raw, where):
    try:
        if kind == "int":
            return int(raw, 0)
        if kind == "bool":
            low = raw.lower()
            if low in ("1", "t", "true"):
                return True
            if low in ("0", "f", "false"):
                return False
            raise ValueError(raw)
        if kind == "duration":
            return parse_duration(raw)
    except ValueError:
        expected = {"int": "an integer", "bool": "true or false",
                    "duration": "a Go duration such as 5s"}[kind]
        raise SpecError(f"{where}: invalid value {raw!r} for flag --{name}: expected {expected}")
    return raw


def parse_flags(subcommand, argv, where="agnhost"):
    """Parse ARGV (after the subcommand) as pflag would: (options, positional arguments)."""
    table = _FLAGS[subcommand]
    options = {name: default for name, (_, default) in table.items()}
    positional = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            positional.extend(argv[i:])
            break
        if not arg.startswith("-") or arg == "-":
            positional.append(arg)
            continue
        name, eq, value = arg.lstrip("-").partition("=")
        if name not in table:
            known = ", ".join(f"--{n}" for n in table) or "none"
            raise SpecError(f"{where}: unknown flag {arg!r} for agnhost {subcommand} (known flags: {known})")
        kind = table[name][0]
        if not eq:
            if kind == "bool":
                value = "true"
            elif i < len(argv):
                value = argv[i]
                i += 1
            else:
                raise SpecError(f"{where}: flag --{name} of agnhost {subcommand} needs a value")
        options[name] = _convert(kind, name, value, where)
    low, high = _POSITIONAL[subcommand]
    if not low <= len(positional) <= high:
        want = "no arguments" if high == 0 else "exactly one argument (host:port)"
        raise SpecError(f"{where}: agnhost {subcommand} takes {want}, got {positional}")
    return options, positional


def _agnhost_ports(subcommand, options, where):
    if subcommand == "serve-hostname":
        if options["http"] and (options["tcp"] or options["udp"]):
            raise SpecError(f"{where}: agnhost serve-hostname can't serve TCP/UDP mode and HTTP mode "
                            f"at the same time: add --http=false to --tcp/--udp")
        port = options["port"]
        ports = []
        if options["tcp"] or options["http"]:
            ports.append(Port(port, "TCP"))
        if options["udp"]:
            ports.append(Port(port, "UDP"))
        return ports
    if subcommand == "netexec":
        ports = [Port(options["http-port"], "TCP")]
        if options["udp-port"] != -1:
            ports.append(Port(options["udp-port"], "UDP"))
        return ports
    return []


def agnhost(argv, env=None, where="agnhost"):
    """The Builtin for agnhost run with ARGV (subcommand first)."""
    if not argv:
        raise SpecError(f"{where}: agnhost needs a subcommand, one of {', '.join(AGNHOST_SUBCOMMANDS)}")
    subcommand = argv[0]
    if subcommand not in _FLAGS:
        raise SpecError(f"{where}: agnhost subcommand {subcommand!r} has no built-in equivalent "
                        f"(supported: {', '.join(AGNHOST_SUBCOMMANDS)})")
    options, positional = parse_flags(subcommand, list(argv[1:]), where)
    return Builtin("agnhost", subcommand, list(argv), _agnhost_ports(subcommand, options, where),
                   options, positional, dict(env or {}))


def echoserver(env=None, declared=(), where="echoserver"):
    """The ingress-conformance echoserver: HTTP on $PORT (default 3000).

    registry.k8s.io/echoserver (an nginx image answering on 8080) shares the name, so declared
    TCP containerPorts are served too: manifests of either image then work unchanged.
    """
    env = dict(env or {})
    raw = env.get("PORT") or str(ECHOSERVER_DEFAULT_PORT)
    try:
        port = int(raw)
    except ValueError:
        raise SpecError(f"{where}: env PORT={raw!r} is not a port number")
    ports = [Port(port)] + [Port(p) for p in declared if p != port]
    return Builtin("echoserver", None, [], ports, {"port": port}, [], env)


def echo(ports, env=None):
    """The default JSON echo server on each of PORTS (TCP)."""
    argv = []
    for p in ports:
        argv += ["--port", str(p)]
    return Builtin("echo", None, argv, [Port(p) for p in ports], {}, [], dict(env or {}))


def parse_echo_argv(argv, where="echo"):
    """Ports from the standalone echo argv: `--port 80 --port=8080`."""
    ports = []
    it = iter(argv)
    for arg in it:
        name, eq, value = arg.partition("=")
        if name != "--port":
            raise SpecError(f"{where}: unknown argument {arg!r}: expected --port N")
        value = value if eq else next(it, "")
        try:
            ports.append(int(value))
        except ValueError:
            raise SpecError(f"{where}: --port needs a port number, got {value!r}")
    return ports


_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(text, env):
    """Kubernetes' $(VAR) expansion in command and args: unknown references stay as written."""
    def sub(m):
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))
    return _VAR_REF.sub(sub, text)


def literal_env(container):
    """The container's `env` entries that carry a literal value (valueFrom is the agent's job)."""
    env = {}
    for item in container.get("env") or []:
        if "name" in item and "value" in item:
            env[item["name"]] = str(item["value"])
    return env


def _string_list(container, field, where):
    value = container.get(field)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, (str, int, float)) for v in value):
        raise SpecError(f"{where}: field {field!r} must be a list of strings, got {value!r}")
    return [str(v) for v in value]


def _declared_tcp_ports(container, where):
    ports = []
    for item in container.get("ports") or []:
        if (item.get("protocol") or "TCP").upper() != "TCP":
            continue
        try:
            ports.append(int(item["containerPort"]))
        except (KeyError, TypeError, ValueError):
            raise SpecError(f"{where}: ports entry {item!r} needs an integer containerPort")
    return ports


def resolve(container):
    """The Builtin that runs CONTAINER (a Pod spec container dict), or None to run a process.

    Raises SpecError when the image is a built-in one but its arguments are not valid.
    """
    where = f"container {container.get('name', '?')!r}"
    image = container.get("image")
    if not image or not isinstance(image, str):
        raise SpecError(f"{where}: field 'image' is required (an image reference such as "
                        f"registry.k8s.io/e2e-test-images/agnhost:2.53)")
    env = literal_env(container)
    command = _string_list(container, "command", where)
    args = _string_list(container, "args", where)
    if command is not None:
        command = [expand(c, env) for c in command]
    if args is not None:
        args = [expand(a, env) for a in args]
    name = image_name(image)

    if name == "agnhost":
        argv = (command if command else AGNHOST_ENTRYPOINT) + (
            args if args is not None else ([] if command else AGNHOST_CMD))
        if os.path.basename(argv[0]) not in AGNHOST_BINARIES:
            return None
        return agnhost(argv[1:], env, f"{where} (image {image})")
    if "echoserver" in name:
        if command and "echoserver" not in os.path.basename(command[0]):
            return None
        return echoserver(env, _declared_tcp_ports(container, where), f"{where} (image {image})")
    if command:
        return None
    return echo(_declared_tcp_ports(container, where), env)


def exec_argv(argv):
    """Map a command run in a pod (`/agnhost connect 10.0.0.1:80`) to the built-in process argv.

    Returns None when ARGV does not name a built-in binary, so the caller runs it as it is.
    """
    if not argv or os.path.basename(argv[0]) not in AGNHOST_BINARIES:
        return None
    return agnhost(argv[1:], where=f"command {' '.join(argv)!r}").standalone_argv()
