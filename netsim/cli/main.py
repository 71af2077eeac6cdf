"""The `netsim` command: up, down, status, exec, probe, logs."""

import argparse
import json
import os
import shutil
import sys

from netsim import lab as labmod
from netsim import netns

from . import apiserver, cluster
from .errors import UserError
from .targets import resolve
from .ui import UI

def cmd_up(args, ui):
    try:
        lab = labmod.load(args.file) if args.file else labmod.default()
    except labmod.LabError as e:
        raise UserError(f"{e} (fix the lab file and run `netsim up` again)")
    plan = cluster.up(lab, ui)
    st = cluster.resolve_cluster(plan["cluster"])
    print_status(ui, st, plan)
    # Hints name the command as the user can type it (make up runs .venv/bin/netsim).
    prog = "netsim" if shutil.which("netsim") == os.path.abspath(sys.argv[0]) else os.path.relpath(sys.argv[0])
    ui.note(f"\nCluster [bold]{plan['cluster']}[/] is up: {len(plan['nodes'])} nodes, {len(plan['pods'])} pods. "
            "Try:")
    if plan["pods"]:
        a, b = plan["pods"][0], plan["pods"][-1]
        ui.note(f"  {prog} exec {a['namespace']}/{a['name']} -- ip addr show eth0")
        ui.note(f"  {prog} probe {b['namespace']}/{b['name']} {a['namespace']}/{a['name']} --proto icmp")
    ui.note(f"  {prog} exec {plan['nodes'][0]['name']} -- ip route")
    ui.note(f"  {prog} down --name {plan['cluster']}")
    return 0


def cmd_down(args, ui):
    if args.name is None and not cluster.statemod.list_clusters():
        ui.note("No cluster is up; nothing to remove.")
        return 0
    if args.name and not cluster.statemod.ClusterState(args.name).exists():
        ui.note(f"No cluster named {args.name!r} is up; nothing to remove.")
        return 0
    cluster.down(cluster.resolve_cluster(args.name), ui)
    return 0


def status_doc(st, plan):
    pods, agents = cluster.read_pod_status(st, plan)
    return {
        "cluster": plan["cluster"],
        "stateDir": st.root,
        "cni": plan["cni"]["plugins"],
        "fabric": {"netns": plan["fabric"]["netns"], "bridge": plan["fabric"]["bridge"], "ip": plan["fabric"]["ip"]},
        "external": {"netns": plan["external"]["netns"], "ip": plan["external"]["ip"],
                     "routes": plan["external"]["routes"]},
        "loadBalancerPool": plan["loadBalancerPool"],
        "nodes": [{"name": n["name"], "netns": n["netns"], "ip": n["ip"], "podCIDR": n["podCIDR"],
                   "agent": "running" if cluster.agent_alive(agents.get(n["name"])) else "stopped"}
                  for n in plan["nodes"]],
        "pods": [{"namespace": p["namespace"], "name": p["name"], "node": p["node"], "netns": p["netns"],
                  "ip": pods.get(f"{p['namespace']}/{p['name']}", {}).get("ip"),
                  "phase": _phase(pods.get(f"{p['namespace']}/{p['name']}", {}), agents.get(p["node"])),
                  "message": pods.get(f"{p['namespace']}/{p['name']}", {}).get("message")}
                 for p in plan["pods"]],
    }


def _phase(status, agent_pid):
    phase = status.get("phase", "Pending")
    # A pod whose node agent is gone has nobody serving it: say so rather than "Running".
    if phase == "Running" and not cluster.agent_alive(agent_pid):
        return "Unknown"
    return phase


def print_status(ui, st, plan):
    doc = status_doc(st, plan)
    ui.table(f"Nodes of {doc['cluster']} (cni: {doc['cni']})", ["NAME", "NETNS", "IP", "POD CIDR", "AGENT"],
             [(n["name"], n["netns"], n["ip"], n["podCIDR"], n["agent"]) for n in doc["nodes"]])
    ext = doc["external"]
    ui.note(f"External client: netns {ext['netns']}, IP {ext['ip']}"
            + (f", LoadBalancer pool {', '.join(doc['loadBalancerPool'])} routed to the nodes"
               if doc["loadBalancerPool"] else ""))
    ui.table("Pods", ["NAMESPACE", "NAME", "NODE", "NETNS", "IP", "PHASE"],
             [(p["namespace"], p["name"], p["node"], p["netns"], p["ip"], p["phase"]) for p in doc["pods"]])


def cmd_status(args, ui):
    st = cluster.resolve_cluster(args.name)
    plan = cluster.load_plan(st)
    if args.output == "json":
        print(json.dumps(status_doc(st, plan), indent=2))
    else:
        print_status(ui, st, plan)
    return 0


def cmd_exec(args, ui):
    if not args.command:
        raise UserError("Nothing to run: give a command after `--`, e.g. `netsim exec node-1 -- ip addr`.")
    st = cluster.resolve_cluster(args.name)
    plan = cluster.load_plan(st)
    pods, _ = cluster.read_pod_status(st, plan)
    target = resolve(args.target, st, plan, pods)
    from netsim.containers.images import SpecError, exec_argv

    argv = list(args.command)
    try:
        # A command naming an upstream test image's own binary runs its built-in equivalent.
        argv = exec_argv(argv) or argv
    except SpecError as e:
        raise UserError(str(e))
    fd = os.open(target.netns_path, os.O_RDONLY)
    netns.setns(fd, netns.CLONE_NEWNET)
    os.close(fd)
    if target.uts:
        fd = os.open(target.uts, os.O_RDONLY)
        netns.setns(fd, netns.CLONE_NEWUTS)
        os.close(fd)
    sys.stdout.flush()
    try:
        os.execvp(argv[0], argv)
    except FileNotFoundError:
        raise UserError(f"Command {argv[0]!r} not found in {target.name}'s PATH.")


def cmd_iptables(args, ui):
    """`netsim iptables NODE`: the node's netfilter rules, read from the backend netsim writes
    (plain `iptables-save` on Debian reads the nft backend and would show nothing)."""
    from proxy.kubeproxy.sync import IPTABLES_SAVE

    st = cluster.resolve_cluster(args.name)
    plan = cluster.load_plan(st)
    target = resolve(args.node, st, plan, {})
    if target.kind == "pod":
        raise UserError(f"`netsim iptables` takes a node name (or `external`), got the pod {args.node}.")
    argv = [IPTABLES_SAVE] + (["-t", args.table] if args.table else [])
    fd = os.open(target.netns_path, os.O_RDONLY)
    netns.setns(fd, netns.CLONE_NEWNET)
    os.close(fd)
    sys.stdout.flush()
    os.execvp(argv[0], argv)


def cmd_probe(args, ui):
    from netsim.probe import probe

    st = cluster.resolve_cluster(args.name)
    plan = cluster.load_plan(st)
    pods, _ = cluster.read_pod_status(st, plan)
    src = resolve(args.src, st, plan, pods)
    dst = resolve(args.dst, st, plan, pods, allow_ip=True)
    if not dst.ip:
        raise UserError(f"{args.dst} has no IP yet (phase {pods.get(args.dst, {}).get('phase', 'Pending')}).")
    if args.proto != "icmp" and args.port is None:
        raise UserError(f"--port is required for --proto {args.proto}.")
    result = probe(src_netns=src.netns_path, dst=dst.ip, port=args.port, proto=args.proto, timeout=args.timeout)
    doc = {**result.to_json(), "src": args.src, "dst": args.dst, "dstIP": dst.ip, "srcNetns": src.netns}
    if args.output == "json":
        print(json.dumps(doc, indent=2))
    else:
        where = f"{dst.ip}:{args.port}" if args.port else dst.ip
        verdict = "[green]reachable[/]" if result.reachable else "[red]unreachable[/]"
        rtt = f" in {result.rtt_ms:.2f} ms" if result.rtt_ms is not None else ""
        ui.note(f"{args.src} -> {args.dst} ({where}/{args.proto}): {verdict}{rtt} ({result.detail})")
    return 0 if result.reachable else 1


def cmd_logs(args, ui):
    st = cluster.resolve_cluster(args.name)
    plan = cluster.load_plan(st)
    pods, _ = cluster.read_pod_status(st, plan)
    target = resolve(args.pod, st, plan, pods)
    if target.kind != "pod":
        raise UserError(f"`netsim logs` takes NAMESPACE/POD, got the node {args.pod!r}.")
    ns, _, name = args.pod.partition("/")
    pod = next(p for p in plan["pods"] if p["namespace"] == ns and p["name"] == name)
    names = [c["name"] for c in pod["manifest"]["spec"]["containers"]]
    if args.container and args.container not in names:
        raise UserError(f"Pod {args.pod} has no container {args.container!r}; containers: {', '.join(names)}.")
    for c in [args.container] if args.container else names:
        path = os.path.join(st.pod_dir(ns, name), f"{c}.log")
        if len(names) > 1 and not args.container:
            print(f"==> {c} <==")
        try:
            with open(path, errors="replace") as f:
                sys.stdout.write(f.read())
        except FileNotFoundError:
            pass
    return 0


def parser():
    ap = argparse.ArgumentParser(prog="netsim", description="Kubernetes networking emulated with real kernel objects.")
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    p = sub.add_parser("up", help="create a cluster from a lab file (default: 2 nodes, a few pods)")
    p.add_argument("-f", "--file", help="lab file (YAML)")
    p.set_defaults(fn=cmd_up)

    p = sub.add_parser("down", help="remove everything a cluster created")
    p.add_argument("--name", help="cluster name (default: the only cluster up)")
    p.set_defaults(fn=cmd_down)

    p = sub.add_parser("status", help="nodes and pods of a cluster")
    p.add_argument("--name")
    p.add_argument("-o", "--output", choices=["text", "json"], default="text")
    p.set_defaults(fn=cmd_status)

    p = sub.add_parser("exec", help="run a command in a node, a pod or the external client: netsim exec TARGET -- CMD...")
    p.add_argument("--name")
    p.add_argument("target", metavar="TARGET", help="node name, `external` or NAMESPACE/POD")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="CMD")
    p.set_defaults(fn=cmd_exec)

    p = sub.add_parser("probe", help="is DST reachable from SRC? exit 0 if so, 1 if not")
    p.add_argument("--name")
    p.add_argument("src", metavar="SRC", help="node name, `external` or NAMESPACE/POD")
    p.add_argument("dst", metavar="DST", help="node name, `external`, NAMESPACE/POD or IP")
    p.add_argument("--port", type=int)
    p.add_argument("--proto", choices=["tcp", "udp", "icmp"], default="tcp")
    p.add_argument("--timeout", type=float, default=1.0)
    p.add_argument("-o", "--output", choices=["text", "json"], default="text")
    p.set_defaults(fn=cmd_probe)

    p = sub.add_parser("iptables", help="a node's netfilter rules (iptables-legacy-save in the node)")
    p.add_argument("--name")
    p.add_argument("node", metavar="NODE")
    p.add_argument("-t", "--table", choices=["filter", "nat", "mangle", "raw"])
    p.set_defaults(fn=cmd_iptables)

    p = sub.add_parser("logs", help="container logs of a pod")
    p.add_argument("--name")
    p.add_argument("pod", metavar="NAMESPACE/POD")
    p.add_argument("-c", "--container")
    p.set_defaults(fn=cmd_logs)

    p = sub.add_parser("cni", help="CNI plugin tools: netsim cni conformance --plugin PATH")
    from .conformance import add_cni_parser
    add_cni_parser(p)

    p = sub.add_parser("apiserver", help="run a Kubernetes API server alone, in the foreground")
    apiserver.add_arguments(p)
    p.set_defaults(fn=apiserver.cmd_apiserver)

    p = sub.add_parser("kubeconfig", help="print the admin kubeconfig of a running API server or cluster")
    p.add_argument("--name", help="API server or cluster name (default: the only one)")
    p.set_defaults(fn=apiserver.cmd_kubeconfig)
    return ap


def main(argv=None):
    args = parser().parse_args(argv)
    if getattr(args, "command", None) and args.command[0] == "--":
        args.command = args.command[1:]
    ui = UI()
    if os.geteuid() != 0:
        ui.error("netsim creates network namespaces and needs root: run it with sudo or as root.")
        return 2
    try:
        return args.fn(args, ui)
    except UserError as e:
        ui.error(str(e))
        return 1
    except KeyboardInterrupt:
        ui.error("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
