"""Bringing a cluster up and down: plan, realize, start node agents, wait, tear down.

This is the composition root of a cluster's lifetime: the only place that knows which
plugins, which runtime and which agents make a cluster.
"""

import json
import os
import shutil
import subprocess
import sys
import time

from cni.install import install_plugin
from netsim import ledger as ledgermod
from netsim import netns, plan as planmod, state as statemod
from netsim.realize import Realizer

from . import nodeagent
from .errors import UserError

WAIT_BASE_S = 30.0
WAIT_PER_POD_S = 0.05


def resolve_cluster(name=None):
    """The cluster a command is about: NAME, or the only one that is up."""
    if name:
        st = statemod.ClusterState(name)
        if not st.exists():
            up = statemod.list_clusters()
            hint = f" Clusters up: {', '.join(up)}." if up else " No cluster is up; start one with `netsim up`."
            raise UserError(f"No cluster named {name!r} is up (no ledger in {st.root}).{hint}")
        return st
    up = statemod.list_clusters()
    if not up:
        raise UserError(f"No cluster is up (nothing under {statemod.base_dir()}); start one with `netsim up`.")
    if len(up) > 1:
        raise UserError(f"Several clusters are up ({', '.join(up)}); choose one with --name.")
    return statemod.ClusterState(up[0])


def load_plan(st):
    with open(st.plan) as f:
        return json.load(f)


def read_pod_status(st, plan):
    """{"ns/name": status} merged from every node agent's report, plus agent liveness."""
    out, agents = {}, {}
    for node in plan["nodes"]:
        try:
            with open(nodeagent.status_path(st, node["name"])) as f:
                doc = json.load(f)
        except (FileNotFoundError, json.JSONDecodeError):
            agents[node["name"]] = None
            continue
        agents[node["name"]] = doc.get("agentPid")
        out.update(doc.get("pods", {}))
    return out, agents


def agent_alive(pid):
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _spawn_agent(st, ledger, node):
    log = open(os.path.join(st.node_dir(node["name"]), "agent.log"), "ab")
    path = netns.netns_path(node["netns"])

    def enter_node():
        # The agent lives in its node's namespace: the plugins it executes act on the node.
        fd = os.open(path, os.O_RDONLY)
        netns.setns(fd, netns.CLONE_NEWNET)
        os.close(fd)

    proc = subprocess.Popen(
        [sys.executable, "-m", "netsim.cli.nodeagent", "--cluster", st.name, "--node", node["name"]],
        stdin=subprocess.DEVNULL, stdout=log, stderr=log, preexec_fn=enter_node,
        start_new_session=True, close_fds=True)
    log.close()
    ledger.record_process(proc.pid, role=f"node-agent {node['name']}")
    return proc


def up(lab, ui):
    """Bring LAB's cluster up; returns the plan. Raises UserError with a sentence on failure."""
    st = statemod.ClusterState(lab.name)
    if st.exists():
        plan = load_plan(st)
        _, agents = read_pod_status(st, plan)
        if all(agent_alive(p) for p in agents.values()):
            ui.note(f"Cluster {lab.name!r} is already up.")
            return plan
        raise UserError(f"Cluster {lab.name!r} has state in {st.root} but its node agents are not running; "
                        f"remove it with `netsim down --name {lab.name}` and run `netsim up` again.")
    for n in [planmod.fabric_netns(lab.name)] + [planmod.node_netns(lab.name, x) for x in lab.nodes]:
        if netns.exists(n):
            raise UserError(f"A network namespace named {n} already exists but no netsim cluster "
                            f"{lab.name!r} owns it; choose another cluster name (`name:` in the lab file).")
    plan = planmod.plan(lab, st.root)
    os.makedirs(st.root, exist_ok=True)
    ledger = ledgermod.Ledger(st.ledger)
    ledger.record("cluster", name=lab.name, root=st.root)
    try:
        _bring_up(st, ledger, plan, ui)
    except BaseException:
        ui.note("Bring-up failed; removing what was created.")
        down(st, ui, quiet=True)
        raise
    return plan


def _bring_up(st, ledger, plan, ui):
    with open(st.plan, "w") as f:
        json.dump(plan, f, indent=1)
    if plan["cni"]["plugins"] == "netsim":
        install_plugin(plan["cni"]["path"][0], "bridge")
    for node in plan["nodes"]:
        os.makedirs(os.path.dirname(nodeagent.conflist_path(st, node["name"])), exist_ok=True)
        with open(nodeagent.conflist_path(st, node["name"]), "w") as f:
            json.dump(node["conflist"], f, indent=1)

    with ui.progress("Nodes", total=len(plan["nodes"]) + 2) as advance:
        realizer = Realizer(plan, ledger)
        realizer.build_fabric()
        advance()
        for node in plan["nodes"]:
            realizer.build_node(node)
            _spawn_agent(st, ledger, node)
            advance()
        realizer.build_external()
        advance()

    total = len(plan["pods"])
    deadline = time.monotonic() + WAIT_BASE_S + WAIT_PER_POD_S * total
    with ui.progress("Pods", total=total) as advance:
        done = 0
        while True:
            status, agents = read_pod_status(st, plan)
            finished = sum(1 for s in status.values() if s.get("phase") != "Pending")
            advance(finished - done)
            done = finished
            if finished >= total and len(status) == total:
                break
            dead = [n for n, pid in agents.items() if pid is not None and not agent_alive(pid)]
            if dead:
                log = os.path.join(st.node_dir(dead[0]), "agent.log")
                raise UserError(f"The node agent of {dead[0]} exited while starting pods; see {log}.")
            if time.monotonic() > deadline:
                waiting = sorted(k for k, s in status.items() if s.get("phase") == "Pending")
                raise UserError(f"Timed out waiting for {total - finished} pods ({', '.join(waiting[:5])}); "
                                f"see the node agents' logs under {st.path('nodes')}.")
            time.sleep(0.05)
    failed = {k: s for k, s in status.items() if s.get("phase") == "Failed"}
    if failed:
        lines = "; ".join(f"{k}: {s.get('message')}" for k, s in sorted(failed.items())[:5])
        raise UserError(f"{len(failed)} pod(s) failed to start: {lines}")


def down(st, ui, quiet=False):
    """Remove everything the cluster's ledger holds, then its state directory."""
    ledger = ledgermod.Ledger(st.ledger)
    removed = ledgermod.teardown(ledger)
    shutil.rmtree(st.root, ignore_errors=True)
    if not quiet:
        parts = ", ".join(f"{n} {k}" for k, n in sorted(removed.items())) or "nothing left to remove"
        ui.note(f"Cluster {st.name!r} is down ({parts}).")
    return removed
