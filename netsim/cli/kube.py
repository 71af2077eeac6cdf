"""The CLI's side of the API server: apply and delete objects, read tables, wait for pods.

Every call is async over one `cluster.client.Client`; commands run them with `run(...)`. What a
user gets wrong comes back as `UserError` sentences naming the object (and, for a file, where
it came from); the API server's own Status message is kept word for word.
"""

import asyncio
import json

import aiohttp

from cluster.api.errors import APIError
from cluster.api.resources import RESOURCES, by_kind, by_name, lookup
from cluster.client import Client, Informer
from cluster.client.rest import Unreachable, error_from_status

from .errors import UserError

PODS = lookup("", "v1", "pods")
NODES = lookup("", "v1", "nodes")
NAMESPACES = lookup("", "v1", "namespaces")
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io, application/json"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
# Writes in flight at once: enough to hide a request's round trip, few enough that two cores
# serve them without queueing (bench/apiserver.py: p99 rises past ~4-8 in flight).
WRITES_IN_FLIGHT = 8
# Kinds whose objects make pods: how many a lab or a file asks for (replicas default to 1).
POD_MAKERS = ("Deployment", "ReplicaSet")


def run(coro):
    return asyncio.run(coro)


def connect(kubeconfig):
    try:
        return Client.from_kubeconfig(kubeconfig)
    except (OSError, ValueError) as e:
        raise UserError(f"Cannot read the cluster's kubeconfig {kubeconfig}: {e}")


def resource_of(obj, where):
    """The served Resource of a manifest, or UserError naming WHERE and the kinds served."""
    res = by_kind(obj.get("apiVersion", ""), obj.get("kind", ""))
    if res is None:
        kinds = sorted({f"{r.kind} ({r.api_version})" for r in RESOURCES if "create" in r.verbs})
        raise UserError(f"{where}: kind {obj.get('kind')!r} of apiVersion {obj.get('apiVersion')!r} is not served "
                        f"by the API server; served kinds: {', '.join(kinds)}.")
    return res


def expected_pods(objs):
    """How many pods OBJS make once the controllers ran: their Pods and every replica."""
    count = 0
    for obj in objs:
        if obj["kind"] == "Pod":
            count += 1
        elif obj["kind"] in POD_MAKERS:
            replicas = (obj.get("spec") or {}).get("replicas")
            count += 1 if replicas is None else int(replicas)
    return count


def _with_last_applied(obj):
    """OBJ annotated as `kubectl apply` leaves it, so that a later kubectl apply merges 3-way."""
    meta = dict(obj.get("metadata") or {})
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k != LAST_APPLIED}
    annotations[LAST_APPLIED] = json.dumps(obj, sort_keys=True, separators=(",", ":")) + "\n"
    return {**obj, "metadata": {**meta, "annotations": annotations}}


async def apply_one(client, res, obj):
    """Create OBJ, or merge it into the object that exists; 'created' or 'configured'."""
    body = _with_last_applied(obj)
    ns = (obj["metadata"].get("namespace") or client.namespace) if res.namespaced else None
    try:
        await client.create(res, body, ns)
        return "created"
    except APIError as e:
        if e.code != 409 or e.reason != "AlreadyExists":
            raise
    await client.patch(res, obj["metadata"]["name"], body, ns, patch_type="strategic")
    return "configured"


async def apply_all(client, items, on_done=None):
    """Apply ITEMS ([(where, obj)]): Namespaces first, then the rest, WRITES_IN_FLIGHT at once.
    Returns [(where, res, obj, 'created'|'configured')]; the first refusal raises UserError."""
    resolved = [(where, resource_of(obj, where), obj) for where, obj in items]
    out = []
    sem = asyncio.Semaphore(WRITES_IN_FLIGHT)

    async def one(where, res, obj):
        async with sem:
            try:
                result = await apply_one(client, res, obj)
            except APIError as e:
                raise UserError(f"{where}: the API server refused {_ref(res, obj, client)}: {e.message} "
                                f"({e.code} {e.reason}); fix the manifest and apply it again.") from None
        out.append((where, res, obj, result))
        if on_done:
            on_done()

    for batch in ([i for i in resolved if i[1].kind == "Namespace"],
                  [i for i in resolved if i[1].kind != "Namespace"]):
        await _gather([one(*i) for i in batch])
    order = {id(obj): n for n, (_, obj) in enumerate(items)}
    return sorted(out, key=lambda r: order[id(r[2])])


async def delete_all(client, items):
    """Delete ITEMS ([(where, obj)]), namespaced objects before Namespaces; [(ref, error or None)]."""
    resolved = [(where, resource_of(obj, where), obj) for where, obj in items]
    resolved.sort(key=lambda i: i[1].kind == "Namespace")
    out = []
    for where, res, obj in resolved:
        ns = (obj["metadata"].get("namespace") or client.namespace) if res.namespaced else None
        try:
            await client.delete(res, obj["metadata"]["name"], ns, propagation_policy="Background")
            out.append((_ref(res, obj, client), None))
        except APIError as e:
            out.append((_ref(res, obj, client), e))
    return out


async def _gather(coros):
    """Run COROS; on the first failure cancel the others and raise it."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        await asyncio.gather(*tasks)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _ref(res, obj, client):
    name = obj["metadata"]["name"]
    if res.namespaced:
        return f"{res.kind} {obj['metadata'].get('namespace') or client.namespace}/{name}"
    return f"{res.kind} {name}"


def resolve_kind(text):
    res = by_name(text)
    if res is None or "list" not in res.verbs:
        names = sorted({r.plural for r in RESOURCES if "list" in r.verbs})
        raise UserError(f"the server doesn't have a resource type {text!r}; types: {', '.join(names)}.")
    return res


async def get(client, res, name="", namespace=None, all_namespaces=False, selector="", table=True):
    """A Table (table=True) or the object/list itself, as `kubectl get` asks for them."""
    ns = None if (all_namespaces or not res.namespaced) else (namespace or client.namespace)
    path = client.path(res, ns, name)
    params = {"labelSelector": selector} if selector and not name else {}
    headers = {"Accept": TABLE if table else "application/json"}
    try:
        async with client.session.get(client.url + path, params=params, headers=headers) as resp:
            raw = await resp.read()
            status, reason = resp.status, resp.reason or ""
    except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as e:
        raise Unreachable(client.url, e) from e
    if status >= 400:
        raise error_from_status(status, raw, reason)
    return json.loads(raw)


def pod_done(pod):
    """Whether POD is where `netsim up` waits for it: Running with its IP and every container
    ready, or finished successfully."""
    status = pod.get("status") or {}
    if status.get("phase") == "Succeeded":
        return True
    if status.get("phase") != "Running" or not status.get("podIP"):
        return False
    return all(c.get("ready") for c in status.get("containerStatuses") or [])


def pod_problem(pod):
    """A reason POD will not get there without a fix, as a sentence; None while it may."""
    status = pod.get("status") or {}
    ref = f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"
    if status.get("phase") == "Failed":
        return f"pod {ref} failed: {status.get('message') or status.get('reason') or 'a container exited non-zero'}"
    for c in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        waiting = (c.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in ("CreateContainerError", "CreateContainerConfigError"):
            return f"pod {ref} container {c['name']}: {waiting['reason']}: {waiting.get('message', '')}"
        terminated = (c.get("state") or {}).get("terminated") or (c.get("lastState") or {}).get("terminated") or {}
        if terminated.get("reason") == "StartError":
            return f"pod {ref} container {c['name']} cannot start: {terminated.get('message', '')}"
    return None


def pod_waiting_for(pod):
    """What POD still waits for, in a few words (for a timeout's message)."""
    status = pod.get("status") or {}
    ref = f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            return f"{ref} (unschedulable: {cond.get('message') or cond.get('reason')})"
    for c in status.get("containerStatuses") or []:
        waiting = (c.get("state") or {}).get("waiting")
        if waiting:
            return f"{ref} ({c['name']}: {waiting.get('reason')})"
        if not c.get("ready"):
            return f"{ref} ({c['name']} not ready)"
    return f"{ref} ({status.get('phase', 'Pending')})"


async def wait_for_pods(client, expected, deadline_s, advance=None, check=None, tick=0.25):
    """Wait until at least EXPECTED pods exist and every pod is done (pod_done), watching pods
    through an informer. ADVANCE(n) reports newly done pods; CHECK() is called every TICK and
    may raise (a process that died). Raises UserError on a pod problem or at the deadline.
    Returns the pods."""
    loop = asyncio.get_running_loop()
    changed = asyncio.Event()
    informer = Informer(client, PODS)

    def touched(*_):
        changed.set()

    informer.add_event_handler(on_add=touched, on_update=touched, on_delete=touched)
    deadline = loop.time() + deadline_s
    reported = 0
    async with informer:
        await informer.wait_for_sync(deadline_s)
        while True:
            if informer.has_synced():
                pods = [p for p in informer.indexer.list() if not p["metadata"].get("deletionTimestamp")]
                done = sum(1 for p in pods if pod_done(p))
                if advance and done > reported:
                    advance(done - reported)
                    reported = done
                for p in pods:
                    problem = pod_problem(p)
                    if problem:
                        raise UserError(f"{problem}. Fix the manifest, then `netsim apply -f` it "
                                        "(or `netsim down` and `netsim up` again).")
                if len(pods) >= expected and done == len(pods):
                    return pods
            if check:
                check()
            if loop.time() > deadline:
                waiting = [pod_waiting_for(p) for p in pods if not pod_done(p)] if informer.has_synced() else []
                missing = max(0, expected - len(pods)) if informer.has_synced() else expected
                what = "; ".join(waiting[:5]) + (f" and {len(waiting) - 5} more" if len(waiting) > 5 else "")
                if missing:
                    what = (what + "; " if what else "") + f"{missing} pod(s) not created yet"
                raise UserError(f"Timed out after {deadline_s:.0f}s waiting for pods: {what}.")
            changed.clear()
            try:
                await asyncio.wait_for(changed.wait(), tick)
            except asyncio.TimeoutError:
                pass
