"""The suite's throwaway world: a "host" network namespace the plugin runs in, container
namespaces, a temp dir for IPAM data and the runtime's cache; executing the plugin there as a
runtime would; reading and tampering with what it built; and removing all of it.

The plugin acts on its current network namespace as the host side (SPEC.md: "The runtime must
execute the plugin in the runtime's networking domain"), so every exec happens from a thread
that has entered the host namespace: the child starts there. The root namespace is never
touched. Everything created is recorded here when created and removed by `close()`, which the
runner calls in a `finally`, so a failing case or Ctrl-C leaves nothing behind.
"""

import dataclasses
import ipaddress
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import threading
import time

from netsim import netns

# A plugin that does not answer within this is reported as failing, not waited for.
EXEC_TIMEOUT = 30.0
_CNI_VARS = ("CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "CNI_PATH")
_SAVE_TOOLS = ("iptables-legacy-save", "iptables-nft-save", "ip6tables-legacy-save", "ip6tables-nft-save")


@dataclasses.dataclass
class Invocation:
    """One execution of the plugin: what it was given and what it answered."""
    command: str
    env: dict
    stdin: bytes
    code: int
    stdout: bytes
    stderr: bytes
    duration_ms: float

    @property
    def ok(self):
        return self.code == 0

    def json(self):
        try:
            doc = json.loads(self.stdout)
        except ValueError:
            return None
        return doc if isinstance(doc, dict) else None

    def describe(self, limit=600):
        """One paragraph for a report: the CNI_* variables given, the exit code, the output."""
        given = " ".join(f"{k}={self.env[k]}" for k in _CNI_VARS if k in self.env and k != "CNI_PATH")
        out = self.stdout.decode(errors="replace").strip()
        err = self.stderr.decode(errors="replace").strip()
        text = f"{given or self.command}: exit {self.code}"
        if out:
            text += f", stdout {_clip(' '.join(out.split()), limit)}"
        if err:
            text += f", stderr {_clip(' '.join(err.split()), limit // 2)}"
        return text


def _clip(text, limit):
    return text if len(text) <= limit else text[:limit] + "..."


@dataclasses.dataclass
class Attachment:
    """A container the suite ADDed: its netns, IDs and the ADD result (raw, as printed)."""
    container_id: str
    netns: str
    ifname: str
    conf: dict
    result: dict = None
    add: Invocation = None


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """What the host side holds at a moment: links, netfilter chains and rules, IPAM files."""
    links: frozenset
    netfilter: frozenset
    ipam_files: frozenset

    def __sub__(self, other):
        return Snapshot(self.links - other.links, self.netfilter - other.netfilter,
                        self.ipam_files - other.ipam_files)

    def __and__(self, other):
        return Snapshot(self.links & other.links, self.netfilter & other.netfilter,
                        self.ipam_files & other.ipam_files)

    def without_links(self):
        return Snapshot(frozenset(), self.netfilter, self.ipam_files)

    def __bool__(self):
        return bool(self.links or self.netfilter or self.ipam_files)

    def describe(self, sep="; "):
        parts = [f"host link {name}" for name in sorted(self.links)]
        parts += sorted(self.netfilter)
        parts += [f"IPAM file {path}" for path in sorted(self.ipam_files)]
        return sep.join(parts) or "nothing"


class Lab:
    """The namespaces, files and plugin executions of one suite run."""

    def __init__(self, plugin, cni_path, env=None, prefix=None):
        self.plugin = plugin
        self.cni_path = list(cni_path)
        self.extra_env = dict(env or {})
        self.prefix = prefix or f"cnc{secrets.token_hex(3)}"
        self.tmp = tempfile.mkdtemp(prefix=f"netsim-conformance-{self.prefix}-")
        self.data_dir = os.path.join(self.tmp, "ipam")
        self.cache_dir = os.path.join(self.tmp, "cache")
        self._names = []
        self._lock = threading.Lock()
        self._count = 0
        self.attachments = []
        self.host = self._create("host")

    # --- namespaces ---------------------------------------------------------------------

    def _create(self, role):
        name = f"{self.prefix}-{role}"
        with self._lock:
            self._names.append(name)
        return netns.create(name)

    def container(self):
        """A fresh container network namespace; returns its path."""
        with self._lock:
            self._count += 1
            n = self._count
        return self._create(f"c{n}")

    def container_id(self):
        with self._lock:
            self._count += 1
            return f"conformance-{self.prefix}-{self._count}"

    def remove_netns(self, path):
        """Delete a container namespace now (a container that died before its DEL)."""
        name = os.path.basename(path)
        netns.delete(name)

    def missing_netns(self):
        """A path under /run/netns that names no namespace."""
        return netns.netns_path(f"{self.prefix}-gone")

    def close(self):
        """Remove every namespace and file this lab created; idempotent."""
        for name in reversed(self._names):
            netns.delete(name)
        self._names = []
        shutil.rmtree(self.tmp, ignore_errors=True)

    # --- executing the plugin -------------------------------------------------------------

    def invoke(self, command, conf=None, *, container_id=None, netns_path=None, ifname=None,
               stdin=None, drop=(), plugin=None):
        """Execute the plugin with CNI_COMMAND=COMMAND from inside the host namespace.

        CONF is sent as JSON on stdin (or the raw STDIN bytes); the CNI_* variables are set
        when given and removed when named in DROP. The environment is PATH plus the lab's
        extra environment: nothing else of ours leaks in."""
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), **self.extra_env,
               "CNI_COMMAND": command, "CNI_PATH": ":".join(self.cni_path)}
        for key, value in (("CNI_CONTAINERID", container_id), ("CNI_NETNS", netns_path), ("CNI_IFNAME", ifname)):
            if value is not None:
                env[key] = value
        for key in drop:
            env.pop(key, None)
        data = stdin if stdin is not None else json.dumps(conf).encode()
        start = time.monotonic()
        with netns.enter(self.host):
            try:
                proc = subprocess.run([plugin or self.plugin], input=data, env=env, capture_output=True,
                                      timeout=EXEC_TIMEOUT, check=False)
                code, out, err = proc.returncode, proc.stdout, proc.stderr
            except subprocess.TimeoutExpired as e:
                code, out, err = -1, e.stdout or b"", (e.stderr or b"") + f"\n(no answer within {EXEC_TIMEOUT:.0f} s)".encode()
        return Invocation(command, env, data, code, out, err, (time.monotonic() - start) * 1000)

    def attach(self, conf, ifname="eth0", netns_path=None):
        """ADD a new container (a fresh netns unless NETNS_PATH) and remember it for `release`.
        Returns the Attachment; its `result` is None when ADD failed."""
        att = Attachment(self.container_id(), netns_path or self.container(), ifname, conf)
        att.add = self.invoke("ADD", conf, container_id=att.container_id, netns_path=att.netns, ifname=ifname)
        att.result = att.add.json() if att.add.ok else None
        with self._lock:
            self.attachments.append(att)
        return att

    def delete(self, att, conf=None, prev_result=True, netns_path=True):
        """DEL an attachment: with its ADD result as prevResult unless PREV_RESULT is False,
        and CNI_NETNS unless NETNS_PATH is False."""
        conf = dict(conf or att.conf)
        if prev_result and att.result is not None and _has_prev_result(conf.get("cniVersion")):
            conf["prevResult"] = att.result
        return self.invoke("DEL", conf, container_id=att.container_id, ifname=att.ifname,
                           netns_path=att.netns if netns_path else None)

    def release(self, att, **kwargs):
        """DEL and forget: the runtime's duty that every ADD is eventually followed by a DEL."""
        inv = self.delete(att, **kwargs)
        with self._lock:
            if att in self.attachments:
                self.attachments.remove(att)
        return inv

    def release_all(self):
        """DEL every attachment still held; returns the invocations that failed."""
        return [inv for inv in (self.release(att) for att in list(self.attachments)) if not inv.ok]

    # --- reading the kernel -------------------------------------------------------------------

    def links(self, path):
        """{name: {"index", "mac", "kind", "up", "master"}} of the namespace at PATH."""
        from pyroute2 import IPRoute

        with netns.enter(path):
            ipr = IPRoute()
        try:
            out = {}
            for link in ipr.get_links():
                out[link.get("IFLA_IFNAME")] = {
                    "index": link["index"], "mac": link.get("IFLA_ADDRESS"),
                    "kind": link.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND"),
                    "up": bool(link["flags"] & 1), "master": link.get("IFLA_MASTER")}
            return out
        finally:
            ipr.close()

    def addresses(self, path):
        """{ifname: {"10.1.0.5/24", ...}} of the namespace at PATH."""
        from pyroute2 import IPRoute

        with netns.enter(path):
            ipr = IPRoute()
        try:
            names = {link["index"]: link.get("IFLA_IFNAME") for link in ipr.get_links()}
            out = {}
            for a in ipr.get_addr():
                iface = ipaddress.ip_interface(f"{a.get('IFA_ADDRESS')}/{a['prefixlen']}")
                out.setdefault(names.get(a["index"]), set()).add(str(iface))
            return out
        finally:
            ipr.close()

    def routes(self, path):
        """[(destination network, gateway or None, ifname)] of the main table at PATH."""
        from pyroute2 import IPRoute

        with netns.enter(path):
            ipr = IPRoute()
        try:
            names = {link["index"]: link.get("IFLA_IFNAME") for link in ipr.get_links()}
            out = []
            for family in (2, 10):
                for r in ipr.get_routes(family=family, table=254):
                    dst = r.get("RTA_DST") or ("::" if family == 10 else "0.0.0.0")
                    out.append((ipaddress.ip_network(f"{dst}/{r['dst_len']}", strict=False),
                                r.get("RTA_GATEWAY"), names.get(r.get("RTA_OIF"))))
            return out
        finally:
            ipr.close()

    # --- tampering ----------------------------------------------------------------------

    def tamper(self, path, ifname, what, address=None):
        """Break an attachment as an operator or a bug would: "address" removes ADDRESS from
        IFNAME, "down" sets IFNAME down, "delete" deletes it."""
        from pyroute2 import IPRoute

        with netns.enter(path):
            ipr = IPRoute()
        try:
            index = ipr.link_lookup(ifname=ifname)[0]
            if what == "address":
                iface = ipaddress.ip_interface(address)
                ipr.addr("del", index=index, address=str(iface.ip), prefixlen=iface.network.prefixlen)
            elif what == "down":
                ipr.link("set", index=index, state="down")
            elif what == "delete":
                ipr.link("del", index=index)
            else:
                raise ValueError(f"unknown tampering {what!r}: expected address, down or delete")
        finally:
            ipr.close()

    def add_foreign_link(self, path, ifname):
        """An interface the plugin did not create, named IFNAME, in the namespace at PATH (a
        veth pair: the dummy driver may not be loadable)."""
        from pyroute2 import IPRoute

        with netns.enter(path):
            ipr = IPRoute()
        try:
            ipr.link("add", ifname=ifname, kind="veth", peer=f"{ifname[:10]}-peer")
        finally:
            ipr.close()

    # --- leaks --------------------------------------------------------------------------------

    def netfilter(self):
        """{"<tool> <table>: <line>"} for every user chain and rule in the host namespace,
        as both the legacy and the nft backends see them (plugins use either)."""
        entries = set()
        for tool in _SAVE_TOOLS:
            if not shutil.which(tool):
                continue
            with netns.enter(self.host):
                proc = subprocess.run([tool], capture_output=True, text=True, check=False)
            table = "?"
            for line in proc.stdout.splitlines():
                if line.startswith("*"):
                    table = line[1:]
                elif line.startswith(":") and line.split()[1] == "-":
                    entries.add(f"{tool} {table} chain {line.split()[0][1:]}")
                elif line.startswith("-A "):
                    entries.add(f"{tool} {table}: {line}")
        return entries

    def ipam_files(self):
        """Paths (relative to the IPAM data dir) of files named after an IP address: leases."""
        found = set()
        for root, _, files in os.walk(self.data_dir):
            for name in files:
                try:
                    ipaddress.ip_address(name)
                except ValueError:
                    continue
                found.add(os.path.relpath(os.path.join(root, name), self.data_dir))
        return found

    def snapshot(self):
        # Bridges are shared by all attachments and outlive them in every bridge plugin:
        # they are the network, not an attachment's resource.
        links = {name for name, link in self.links(self.host).items() if name != "lo" and link["kind"] != "bridge"}
        return Snapshot(frozenset(links), frozenset(self.netfilter()), frozenset(self.ipam_files()))


def _has_prev_result(version):
    """DEL carries prevResult from spec 0.4.0 on."""
    try:
        return tuple(int(p) for p in str(version).split(".")) >= (0, 4, 0)
    except ValueError:
        return False
