"""The `netsim` command: up, down, status, exec, probe, logs, iptables, apply, delete, get, kubeconfig."""

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
    doc = print_status(ui, st, plan)
    # Hints name the command as the user can type it (make up runs .venv/bin/netsim).
    prog = "netsim" if shutil.which("netsim") == os.path.abspath(sys.argv[0]) else os.path.relpath(sys.argv[0])
    ui.note(f"\nCluster [bold]{plan['cluster']}[/] is up: {len(plan['nodes'])} nodes, {len(doc['pods'])} pods. "
            "Try:")
    if doc["pods"]:
        a, b = doc["pods"][0], doc["pods"][-1]
        ui.note(f"  {prog} exec {a['namespace']}/{a['name']} -- ip addr show eth0")
        ui.note(f"  {prog} probe {b['namespace']}/{b['name']} {a['namespace']}/{a['name']} --proto icmp")
    ui.note(f"  {prog} exec {plan['nodes'][0]['name']} -- ip route")
    ui.note(f"  {prog} get pods -A -o wide")
    ui.note(f"  kubectl --kubeconfig {plan['controlPlane']['kubeconfig']} get nodes")
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
    from . import controlplane as cp
    from . import pods as podsmod

    alive = cp.running(st)
    try:
        nodes, pods = podsmod.read(st, plan)
        problem = None
    except UserError as e:
        nodes, pods, problem = {}, [], str(e)
    doc = {
        "cluster": plan["cluster"],
        "stateDir": st.root,
        "kubeconfig": plan["controlPlane"]["kubeconfig"],
        "cni": plan["cni"]["plugins"],
        "fabric": {"netns": plan["fabric"]["netns"], "bridge": plan["fabric"]["bridge"], "ip": plan["fabric"]["ip"]},
        "external": {"netns": plan["external"]["netns"], "ip": plan["external"]["ip"],
                     "routes": plan["external"]["routes"]},
        "loadBalancerPool": plan["loadBalancerPool"],
        "controlPlane": {role: "running" if role in alive else "stopped"
                         for role in (cp.APISERVER, cp.CONTROLLER_MANAGER, cp.SCHEDULER)},
        "nodes": [{"name": n["name"], "netns": n["netns"], "ip": n["ip"],
                   "podCIDR": ((nodes.get(n["name"]) or {}).get("spec") or {}).get("podCIDR", n["podCIDR"]),
                   "agent": "running" if cp.kubelet_role(n["name"]) in alive else "stopped",
                   "ready": cluster.node_ready(nodes[n["name"]]) if n["name"] in nodes else "Unknown"}
                  for n in plan["nodes"]],
        "pods": [p.to_json() for p in pods],
    }
    if problem:
        doc["error"] = problem
    return doc


def print_status(ui, st, plan):
    doc = status_doc(st, plan)
    ui.table(f"Nodes of {doc['cluster']} (cni: {doc['cni']})", ["NAME", "NETNS", "IP", "POD CIDR", "READY", "KUBELET"],
             [(n["name"], n["netns"], n["ip"], n["podCIDR"], n["ready"], n["agent"]) for n in doc["nodes"]])
    stopped = [role for role, state in doc["controlPlane"].items() if state != "running"]
    ui.note(f"Control plane: {'running' if not stopped else 'stopped: ' + ', '.join(stopped)}; "
            f"kubeconfig {doc['kubeconfig']}")
    ext = doc["external"]
    ui.note(f"External client: netns {ext['netns']}, IP {ext['ip']}"
            + (f", LoadBalancer pool {', '.join(doc['loadBalancerPool'])} routed to the nodes"
               if doc["loadBalancerPool"] else ""))
    if "error" in doc:
        ui.error(doc["error"])
    ui.table("Pods", ["NAMESPACE", "NAME", "NODE", "NETNS", "IP", "PHASE"],
             [(p["namespace"], p["name"], p["node"], p["netns"], p["ip"], p["phase"]) for p in doc["pods"]])
    return doc


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
    target = resolve(args.target, st, plan)
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
    if "/" in args.node:
        raise UserError(f"`netsim iptables` takes a node name (or `external`), got the pod {args.node}.")
    target = resolve(args.node, st, plan)
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
    src = resolve(args.src, st, plan)
    dst = resolve(args.dst, st, plan, allow_ip=True, need_sandbox=False)
    if not dst.ip:
        raise UserError(f"{args.dst} has no IP yet (phase {dst.pod.phase if dst.pod else 'Pending'}).")
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
    if "/" not in args.pod:
        raise UserError(f"`netsim logs` takes NAMESPACE/POD, got the node {args.pod!r}.")
    pod = resolve(args.pod, st, plan, need_sandbox=False).pod
    names = pod.containers
    if args.container and args.container not in names:
        raise UserError(f"Pod {args.pod} has no container {args.container!r}; containers: {', '.join(names)}.")
    if not pod.log_dir:
        raise UserError(f"Pod {args.pod} has not started yet (phase {pod.phase}); no logs.")
    for c in [args.container] if args.container else names:
        # The kubelet's layout (cluster.kubelet.logs): <container>/<container>.log is the current one.
        path = os.path.join(pod.log_dir, c, f"{c}.log")
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

    from .objects import add_parsers
    add_parsers(sub)

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
