"""Bringing a cluster up and down: plan, realize, start the control plane and the kubelets,
apply the lab through the API, wait for its pods, tear down.

This is the composition root of a cluster's lifetime: the only place that knows which
plugins, which processes and which API make a cluster. `netsim up` on a cluster that is already
there starts again the processes that are missing (after a crash or a kill) and waits for the
pods; it does not apply the lab again, since the API server holds what the cluster should be
(`netsim apply -f` changes it).
"""

import asyncio
import json
import os
import shutil
import time

from cluster.api.errors import APIError
from cni.install import install_plugin
from netsim import ledger as ledgermod
from netsim import netns, plan as planmod, state as statemod
from netsim.lab import LabError
from netsim.realize import Realizer

from . import controlplane as cp
from . import kube
from .errors import UserError

WAIT_BASE_S = 30.0
WAIT_PER_POD_S = 0.05
NODES_READY_S = 30.0


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
    try:
        with open(st.plan) as f:
            return json.load(f)
    except FileNotFoundError:
        raise UserError(f"Cluster {st.name!r} has no plan in {st.root}: its bring-up was interrupted; "
                        f"remove it with `netsim down --name {st.name}`.")


def lab_items(lab, plan):
    """[(where, object)] of the lab's manifests in the plan's apply order; kinds the API server
    does not serve are refused here, before anything is made."""
    items = []
    for entry in plan["manifests"]:
        m = lab.manifests[entry["index"]]
        where = f"{m['source']}: {m['field']}"
        kube.resource_of(m["object"], where)
        items.append((where, m["object"]))
    return items


def up(lab, ui):
    """Bring LAB's cluster up (or start again what is missing of it); returns the plan.
    Raises UserError with a sentence on failure, after removing what it made."""
    st = statemod.ClusterState(lab.name)
    if st.exists():
        return restart(st, ui)
    for n in [planmod.fabric_netns(lab.name)] + [planmod.node_netns(lab.name, x) for x in lab.nodes]:
        if netns.exists(n):
            raise UserError(f"A network namespace named {n} already exists but no netsim cluster "
                            f"{lab.name!r} owns it; choose another cluster name (`name:` in the lab file).")
    try:
        plan = planmod.plan(lab, st.root)
    except LabError as e:
        raise UserError(f"{e} (fix the lab file and run `netsim up` again)")
    items = lab_items(lab, plan)
    os.makedirs(st.root, exist_ok=True)
    ledger = ledgermod.Ledger(st.ledger)
    ledger.record("cluster", name=lab.name, root=st.root)
    try:
        _bring_up(st, ledger, plan, items, ui)
    except BaseException:
        ui.note("Bring-up failed; removing what was created.")
        down(st, ui, quiet=True)
        raise
    return plan


def _bring_up(st, ledger, plan, items, ui):
    with open(st.plan, "w") as f:
        json.dump(plan, f, indent=1)
    if plan["cni"]["plugins"] == "netsim":
        install_plugin(plan["cni"]["path"][0], "bridge")
    for node in plan["nodes"]:
        os.makedirs(os.path.dirname(node["conflistPath"]), exist_ok=True)
        with open(node["conflistPath"], "w") as f:
            json.dump(node["conflist"], f, indent=1)

    with ui.progress("Nodes", total=len(plan["nodes"]) + 2) as advance:
        realizer = Realizer(plan, ledger)
        realizer.build_fabric()
        advance()
        for node in plan["nodes"]:
            realizer.build_node(node)
            advance()
        realizer.build_external()
        advance()
    cp.make_socket_dirs(st, ledger, plan)
    procs = _start(st, ledger, plan, cp.roles(plan), ui)
    kube.run(_converge(st, plan, procs, ui, items, kube.expected_pods([o for _, o in items])))


def restart(st, ui):
    """Start the cluster's missing processes again and wait for its pods; returns the plan."""
    plan = load_plan(st)
    gone = [n for n in [plan["fabric"]["netns"]] + [n["netns"] for n in plan["nodes"]] if not netns.exists(n)]
    if gone:
        raise UserError(f"Cluster {st.name!r} has state in {st.root} but its namespace {gone[0]} is gone; "
                        f"remove it with `netsim down --name {st.name}` and run `netsim up` again.")
    alive = cp.running(st)
    missing = [r for r in cp.roles(plan) if r not in alive]
    if not missing:
        ui.note(f"Cluster {st.name!r} is already up.")
        return plan
    ui.note(f"Cluster {st.name!r} is there but its {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not running: starting again.")
    procs = _start(st, ledgermod.Ledger(st.ledger), plan, missing, ui)
    kube.run(_converge(st, plan, procs, ui, [], 0))
    return plan


def _start(st, ledger, plan, roles, ui):
    """Start ROLES (API server first, waiting until it serves); {role: Popen}."""
    procs = {}
    with ui.progress("Control", total=len(roles)) as advance:
        if cp.APISERVER in roles:
            procs[cp.APISERVER] = cp.start_apiserver(st, ledger, plan)
            advance()
        for role in roles:
            if role != cp.APISERVER:
                procs[role] = cp.spawn(st, ledger, role, cp.argv(st, plan, role))
                advance()
    return procs


async def _converge(st, plan, procs, ui, items, expected):
    """Nodes registered and Ready, ITEMS applied, every pod Running and ready."""
    def check():
        cp.check_alive(st, procs)

    async with kube.connect(plan["controlPlane"]["kubeconfig"]) as client:
        await _wait_nodes(client, st, plan, check)
        if items:
            with ui.progress("Apply", total=len(items)) as advance:
                await kube.apply_all(client, items, advance)
        pods = (await client.list(kube.PODS)).get("items") or []
        expected = max(expected, sum(1 for p in pods if not p["metadata"].get("deletionTimestamp")))
        with ui.progress("Pods", total=expected) as advance:
            await kube.wait_for_pods(client, expected, WAIT_BASE_S + WAIT_PER_POD_S * expected, advance, check)


async def _wait_nodes(client, st, plan, check):
    want = {n["name"] for n in plan["nodes"]}
    deadline = time.monotonic() + NODES_READY_S
    while True:
        try:
            nodes = (await client.list(kube.NODES)).get("items") or []
        except APIError as e:
            if e.code != 503:
                raise
            nodes = []
        ready = {n["metadata"]["name"] for n in nodes if node_ready(n) == "True"}
        if want <= ready:
            return
        check()
        if time.monotonic() > deadline:
            raise UserError(f"Nodes {', '.join(sorted(want - ready))} did not register Ready within "
                            f"{NODES_READY_S:.0f}s; see the kubelets' logs in {st.path('logs')}.")
        await asyncio.sleep(0.05)


def node_ready(node):
    for c in (node.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c.get("status")
    return "Unknown"


def down(st, ui, quiet=False):
    """Remove everything the cluster's ledger holds (kubelets stopped first, then the control
    plane, then containers, namespaces and cgroups), then its state directory."""
    ledger = ledgermod.Ledger(st.ledger)
    removed = ledgermod.teardown(ledger)
    shutil.rmtree(st.root, ignore_errors=True)
    if not quiet:
        parts = ", ".join(f"{n} {k}" for k, n in sorted(removed.items())) or "nothing left to remove"
        ui.note(f"Cluster {st.name!r} is down ({parts}).")
    return removed
