"""IP masquerade for the bridge plugin, laid out as the reference plugin lays it out.

One nat chain per attachment, `CNI-` + the first 24 hex characters of sha512(network name +
container ID), with an ACCEPT for the attachment's own subnet and a MASQUERADE for everything
but multicast, jumped to from POSTROUTING for the attachment's address, all commented
`name: "<net>" id: "<containerID>"`. Written with ONE `iptables-legacy-restore --noflush` batch
per family and change (the backend netsim writes everywhere; see the README). Unlike the
reference, teardown finds the chain from the table itself when the addresses are unknown, so a
DEL after the netns is gone leaves nothing (containernetworking/plugins#810).
"""

import hashlib
import ipaddress
import json
import subprocess

from cni import spec
from cni.spec import CNIError

_CHAIN_PREFIX = "CNI-"
_CHAIN_LEN = 28
_MULTICAST = {"4": "224.0.0.0/4", "6": "ff00::/8"}
_IPTABLES = {"4": ("iptables-legacy-restore", "iptables-legacy-save"),
             "6": ("ip6tables-legacy-restore", "ip6tables-legacy-save")}


def masq_chain(network, container_id):
    """The reference's per-attachment chain name: CNI- + sha512(name + containerID)[:24]."""
    digest = hashlib.sha512((network + container_id).encode()).hexdigest()
    return _CHAIN_PREFIX + digest[:_CHAIN_LEN - len(_CHAIN_PREFIX)]


def masq_comment(network, container_id):
    return f"name: {json.dumps(network)} id: {json.dumps(container_id)}"



def _run_iptables(family, argv_tail, stdin=None):
    restore, save = _IPTABLES[family]
    argv = [restore, "-w", "5", "--noflush"] if stdin is not None else [save, "-t", "nat"]
    proc = subprocess.run(argv + argv_tail, input=stdin, capture_output=True)
    return proc


def _masq_jump(ip, chain, comment):
    iface = ipaddress.ip_interface(ip)
    host = f"{iface.ip}/{iface.max_prefixlen}"
    return f'POSTROUTING -s {host} -m comment --comment {json.dumps(comment)} -j {chain}'


def setup_masquerade(network, container_id, ips):
    """ONE iptables-legacy-restore per family: the chain, its two rules, the POSTROUTING jump."""
    chain, comment = masq_chain(network, container_id), masq_comment(network, container_id)
    quoted = json.dumps(comment)
    for family in ("4", "6"):
        mine = [ip for ip in ips if spec.ip_version(ip) == family]
        if not mine:
            continue
        lines = ["*nat", f":{chain} - [0:0]"]
        for ip in mine:
            subnet = ipaddress.ip_interface(ip).network
            lines.append(f"-A {_masq_jump(ip, chain, comment)}")
            lines.append(f"-A {chain} -d {subnet} -m comment --comment {quoted} -j ACCEPT")
        lines.append(f"-A {chain} ! -d {_MULTICAST[family]} -m comment --comment {quoted} -j MASQUERADE")
        lines.append("COMMIT\n")
        proc = _run_iptables(family, [], "\n".join(lines).encode())
        if proc.returncode != 0:
            raise CNIError(spec.ERR_INTERNAL, f"failed to set up IP masquerade for {container_id}",
                           proc.stderr.decode(errors="replace").strip())


def _saved_jumps(family, chains):
    """{chain: [POSTROUTING rule specs jumping to it]} from iptables-legacy-save of the nat table."""
    proc = _run_iptables(family, [])
    found = {}
    for line in proc.stdout.decode(errors="replace").splitlines():
        if line.startswith(":") and line[1:].split(" ", 1)[0] in chains:
            found.setdefault(line[1:].split(" ", 1)[0], [])
        elif line.startswith("-A POSTROUTING ") and line.rsplit(" -j ", 1)[-1] in chains:
            found.setdefault(line.rsplit(" -j ", 1)[-1], []).append(line[3:])
    return found


def _delete_chains(family, jumps):
    lines = ["*nat"]
    for chain in jumps:
        lines.append(f":{chain} - [0:0]")
    for chain, rules in jumps.items():
        lines.extend(f"-D {rule}" for rule in rules)
    lines.extend(f"-X {chain}" for chain in jumps)
    lines.append("COMMIT\n")
    return _run_iptables(family, [], "\n".join(lines).encode())


def teardown_masquerade(network, container_id, ips):
    """Remove the attachment's chain and its jump; nothing there is not an error."""
    chain, comment = masq_chain(network, container_id), masq_comment(network, container_id)
    for family in ("4", "6"):
        mine = sorted({ip for ip in ips if spec.ip_version(ip) == family})
        if mine and _delete_chains(family, {chain: [_masq_jump(ip, chain, comment) for ip in mine]}).returncode == 0:
            continue
        # The addresses are unknown or stale: find the jumps in the table itself.
        jumps = _saved_jumps(family, {chain})
        if jumps:
            proc = _delete_chains(family, jumps)
            if proc.returncode != 0:
                raise CNIError(spec.ERR_INTERNAL, f"failed to remove masquerade chain {chain}",
                               proc.stderr.decode(errors="replace").strip())


def gc_masquerade(network, valid_ids):
    """Remove this network's masquerade chains whose container ID is not a valid attachment."""
    # iptables-save quotes the comment as JSON would: "name: \"net\" id: \"cid\""
    prefix = "--comment " + json.dumps(f"name: {json.dumps(network)} id: ")[:-1]
    for family in ("4", "6"):
        proc = _run_iptables(family, [])
        stale = {}
        for line in proc.stdout.decode(errors="replace").splitlines():
            if line.startswith("-A POSTROUTING ") and prefix in line:
                chain = line.rsplit(" -j ", 1)[-1]
                comment = line.split("--comment ", 1)[1].rsplit(" -j ", 1)[0]
                container_id = json.loads(json.loads(comment).split(" id: ", 1)[1])
                if container_id not in valid_ids and chain == masq_chain(network, container_id):
                    stale.setdefault(chain, []).append(line[3:])
        if stale:
            proc = _delete_chains(family, stale)
            if proc.returncode != 0:
                raise CNIError(spec.ERR_INTERNAL, f"failed to remove stale masquerade chains {sorted(stale)}",
                               proc.stderr.decode(errors="replace").strip())
