"""ResourceQuota: refuse writes that would take a namespace past its quotas, and keep quota status current.

Tracked, as upstream's evaluators count them: object counts (`count/<resource>[.<group>]`, and
the legacy names `pods`, `services`, `configmaps`, `secrets`, `resourcequotas`), pod compute
(`requests.cpu`, `requests.memory`, `limits.cpu`, `limits.memory`, bare `cpu`/`memory` meaning
requests, ephemeral storage and extended `requests.*`), and `services.nodeports` /
`services.loadbalancers`. Terminal pods do not count toward compute or `pods`; the scopes
Terminating, NotTerminating, BestEffort, NotBestEffort and PriorityClass select pods.

There is no quota controller here, so usage is recomputed from the objects in the namespace on
each check and written to the quota's status. Writes admitted but not yet stored are held in a
short-lived ledger, and checks in one namespace are serialized, so concurrent creates cannot
overshoot a quota between admission and storage. A denial reads as upstream's:
`exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2`.
"""
from __future__ import annotations

import asyncio
import copy
import time
import uuid
from datetime import datetime

from cluster.admission import (CREATE, DELETE, UPDATE, AdmissionContext, AdmissionRequest, Plugin,
                               forbidden)
from cluster.admission.podresources import (ResourceList, container_resources, containers,
                                            pod_total, quantities)
from cluster.api import errors
from cluster.api.quantity import Quantity
from cluster.api.resources import RESOURCES, Resource, by_kind

QUOTAS = by_kind("v1", "ResourceQuota")
PODS = by_kind("v1", "Pod")
SERVICES = by_kind("v1", "Service")
# How long an admitted create is charged before the store shows it (the gap is normally milliseconds).
PENDING_SECONDS = 5.0

_LEGACY_COUNTS = {"pods", "services", "configmaps", "secrets", "resourcequotas",
                  "replicationcontrollers", "persistentvolumeclaims"}
_COMPUTE = ("cpu", "memory", "ephemeral-storage")
# Resources whose absence on a container fails a quota that limits them (upstream's validationSet).
_MUST_SPECIFY = {"cpu", "memory", "requests.cpu", "requests.memory", "limits.cpu", "limits.memory"}
_ONE = Quantity.from_int(1)


def count_name(resource: Resource) -> str:
    return f"count/{resource.plural}" + (f".{resource.group}" if resource.group else "")


def _compute_usage(requests: ResourceList, limits: ResourceList) -> ResourceList:
    """Upstream's podComputeUsageHelper."""
    usage: ResourceList = {"pods": _ONE}
    for name in _COMPUTE:
        if name in requests:
            usage[name] = requests[name]
            usage[f"requests.{name}"] = requests[name]
        if name in limits:
            usage[f"limits.{name}"] = limits[name]
    for name, q in requests.items():
        if name.startswith("hugepages-"):
            usage[name] = q
            usage[f"requests.{name}"] = q
        elif "/" in name and not name.startswith("kubernetes.io/"):
            usage[f"requests.{name}"] = q
    return usage


def _pod_counts_compute(pod: dict) -> bool:
    """Upstream's QuotaV1Pod: terminal pods, and pods past their deletion grace period, are free."""
    if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return False
    meta = pod.get("metadata") or {}
    deleted, grace = meta.get("deletionTimestamp"), meta.get("deletionGracePeriodSeconds")
    if deleted and grace is not None:
        when = datetime.fromisoformat(deleted.replace("Z", "+00:00")).timestamp()
        if time.time() > when + grace:
            return False
    return True


def usage(resource: Resource, obj: dict) -> ResourceList:
    """What one object charges against quotas."""
    charged: ResourceList = {count_name(resource): _ONE}
    if resource.group:
        return charged
    if resource.plural == "pods":
        if _pod_counts_compute(obj):
            spec = obj.get("spec") or {}
            charged.update(_compute_usage(pod_total(spec, "requests"), pod_total(spec, "limits")))
    elif resource.plural == "services":
        charged["services"] = _ONE
        spec = obj.get("spec") or {}
        ports = spec.get("ports") or []
        if spec.get("type") == "LoadBalancer":
            charged["services.loadbalancers"] = _ONE
            if spec.get("allocateLoadBalancerNodePorts") is False:
                ports = [p for p in ports if p.get("nodePort")]
        if spec.get("type") in ("NodePort", "LoadBalancer") and ports:
            charged["services.nodeports"] = Quantity.from_int(len(ports))
    elif resource.plural in _LEGACY_COUNTS:
        charged[resource.plural] = _ONE
    return charged


def tracks(resource: Resource, name: str) -> bool:
    """Whether quota resource `name` counts objects of `resource` (upstream's MatchingResources)."""
    if name == count_name(resource):
        return True
    if resource.group:
        return False
    if resource.plural == "pods":
        return (name in ("pods", *_COMPUTE) or name.startswith(("requests.", "limits.", "hugepages-")))
    if resource.plural == "services":
        return name in ("services", "services.nodeports", "services.loadbalancers")
    return name == resource.plural and name in _LEGACY_COUNTS


def resource_for(name: str) -> Resource | None:
    """The resource whose objects a quota resource name counts."""
    for resource in RESOURCES:
        if tracks(resource, name):
            return resource
    return None


def _best_effort(pod: dict) -> bool:
    for container in containers(pod.get("spec") or {}):
        resources = container.get("resources") or {}
        for bucket in ("requests", "limits"):
            if any(n in ("cpu", "memory") for n in resources.get(bucket) or {}):
                return False
    return True


def _scope_matches(scope: str, operator: str, values: list, resource: Resource, obj: dict) -> bool:
    if resource != PODS:
        return False
    spec = obj.get("spec") or {}
    if scope in ("Terminating", "NotTerminating"):
        has_deadline = spec.get("activeDeadlineSeconds") is not None
        result = has_deadline if scope == "Terminating" else not has_deadline
    elif scope in ("BestEffort", "NotBestEffort"):
        result = _best_effort(obj) if scope == "BestEffort" else not _best_effort(obj)
    elif scope == "PriorityClass":
        priority = spec.get("priorityClassName")
        if operator == "In":
            return priority in values
        if operator == "NotIn":
            return priority not in values
        return (priority is not None) == (operator == "Exists")
    else:
        return False
    return result if operator in ("Exists", "In", "") else not result


def scopes_match(quota: dict, resource: Resource, obj: dict) -> bool:
    spec = quota.get("spec") or {}
    selectors = [(s, "Exists", []) for s in spec.get("scopes") or []]
    for expr in (spec.get("scopeSelector") or {}).get("matchExpressions") or []:
        selectors.append((expr.get("scopeName"), expr.get("operator", ""), expr.get("values") or []))
    return all(_scope_matches(s, op, values, resource, obj) for s, op, values in selectors)


def _pretty(resources: ResourceList) -> str:
    return ",".join(f"{name}={resources[name]}" for name in sorted(resources))


def _missing_requests(required: set[str], pod: dict) -> str:
    """Upstream's pod Constraints: each container must state every cpu/memory the quota limits."""
    required = required & _MUST_SPECIFY
    missing: dict[str, list[str]] = {}
    for container in containers(pod.get("spec") or {}):
        stated = _compute_usage(container_resources(container, "requests"),
                                container_resources(container, "limits"))
        for name in sorted(required - set(stated)):
            missing.setdefault(name, [])
            if container.get("name") not in missing[name]:
                missing[name].append(container.get("name", ""))
    if not missing:
        return ""
    return "must specify " + "; ".join(f"{name} for: {','.join(sorted(names))}"
                                       for name, names in sorted(missing.items()))


def _meta(obj: dict | None) -> dict:
    return (obj or {}).get("metadata") or {}


class ResourceQuota(Plugin):
    def __init__(self):
        self._locks: dict[str, asyncio.Lock] = {}
        # (namespace, plural) -> {name: (object, deadline)} of admitted creates not yet stored
        self._pending: dict[tuple[str, str], dict[str, tuple[dict, float]]] = {}

    def _lock(self, namespace: str) -> asyncio.Lock:
        return self._locks.setdefault(namespace, asyncio.Lock())

    async def _objects(self, ctx: AdmissionContext, resource: Resource, namespace: str,
                       exclude: str = "") -> list[dict]:
        """Stored objects of `resource` plus admitted-but-unstored creates, without `exclude`."""
        stored = [o for o in await ctx.list(resource, namespace) if _meta(o).get("name") != exclude]
        pending = self._pending.get((namespace, resource.plural), {})
        names = {_meta(o).get("name") for o in stored}
        now = time.monotonic()
        for name, (obj, deadline) in list(pending.items()):
            if name in names or deadline < now or name == exclude:
                del pending[name]
            else:
                stored.append(obj)
        return stored

    async def _used(self, ctx, quota: dict, names: set[str], namespace: str,
                    exclude: tuple[str, str] = ("", "")) -> ResourceList:
        """Usage of quota resources `names` in the namespace, recomputed from the objects."""
        used: ResourceList = {name: Quantity() for name in names}
        by_resource: dict[Resource, list[str]] = {}
        for name in names:
            resource = resource_for(name)
            if resource is not None:
                by_resource.setdefault(resource, []).append(name)
        for resource, tracked in by_resource.items():
            skip = exclude[1] if exclude[0] == resource.plural else ""
            for obj in await self._objects(ctx, resource, namespace, skip):
                if not scopes_match(quota, resource, obj):
                    continue
                charged = usage(resource, obj)
                for name in tracked:
                    if name in charged:
                        used[name] = used[name] + charged[name]
        return used

    async def _write_status(self, ctx, quota: dict, used: ResourceList) -> None:
        hard = (quota.get("spec") or {}).get("hard") or {}
        status = {"hard": dict(hard), "used": {name: str(used[name]) for name in sorted(used)}}
        if quota.get("status") == status:
            return
        updated = copy.deepcopy(quota)
        updated["status"] = status
        try:
            await ctx.update_status(QUOTAS, updated)
        except errors.APIError:
            pass  # the quota changed or went away meanwhile; the next check recomputes it

    async def sync_namespace(self, ctx: AdmissionContext, namespace: str) -> None:
        """Recompute and write the status of every quota in `namespace` (e.g. after one is created)."""
        async with self._lock(namespace):
            for quota in await ctx.list(QUOTAS, namespace):
                hard = quantities((quota.get("spec") or {}).get("hard"))
                await self._write_status(ctx, quota, await self._used(ctx, quota, set(hard), namespace))

    async def admit(self, req: AdmissionRequest, ctx: AdmissionContext) -> None:
        """A quota being created or changed shows its usage at once, as the quota controller would."""
        if req.operation not in (CREATE, UPDATE) or not req.is_core("resourcequotas") or req.subresource:
            return
        hard = (req.obj.get("spec") or {}).get("hard") or {}
        used = await self._used(ctx, req.obj, set(quantities(hard)), req.namespace)
        req.obj["status"] = {"hard": dict(hard), "used": {n: str(used[n]) for n in sorted(used)}}

    async def validate(self, req: AdmissionRequest, ctx: AdmissionContext) -> None:
        if req.subresource or not req.namespace or req.operation not in (CREATE, UPDATE, DELETE):
            return
        quotas = await ctx.list(QUOTAS, req.namespace)
        if not quotas:
            return
        async with self._lock(req.namespace):
            if req.operation == DELETE:
                await self._release(req, ctx, quotas)
            else:
                await self._charge(req, ctx, quotas)

    async def _release(self, req: AdmissionRequest, ctx: AdmissionContext, quotas: list[dict]) -> None:
        """A deleted object stops counting: refresh the status of the quotas that counted it."""
        if req.dry_run:
            return
        self._pending.get((req.namespace, req.resource.plural), {}).pop(req.name, None)
        for quota in quotas:
            hard = quantities((quota.get("spec") or {}).get("hard"))
            if any(tracks(req.resource, name) for name in hard):
                used = await self._used(ctx, quota, set(hard), req.namespace,
                                        (req.resource.plural, req.name))
                await self._write_status(ctx, quota, used)

    async def _charge(self, req: AdmissionRequest, ctx: AdmissionContext, quotas: list[dict]) -> None:
        resource, obj = req.resource, req.obj
        relevant = []
        for quota in quotas:
            hard = quantities((quota.get("spec") or {}).get("hard"))
            restricted = {name for name in hard if tracks(resource, name)}
            if not restricted or not scopes_match(quota, resource, obj):
                continue
            if resource == PODS:
                missing = _missing_requests(restricted, obj)
                if missing:
                    raise forbidden(req, f"failed quota: {_meta(quota).get('name')}: {missing}")
            relevant.append((quota, hard))
        if not relevant:
            return
        delta = usage(resource, obj)
        negative = sorted(name for name, q in delta.items() if q.sign() < 0)
        if negative:
            raise forbidden(req, "quota usage is negative for resource(s): " + ",".join(negative))
        name = _meta(obj).get("name") or req.name
        if req.operation == UPDATE and req.old_obj is not None:
            # charge only the growth; shrinking frees nothing until the object is stored
            before = usage(resource, req.old_obj)
            delta = {n: max(q - before[n], Quantity()) if n in before else q for n, q in delta.items()}
        delta = {n: q for n, q in delta.items() if not q.is_zero()}
        if not delta:
            return
        # a create's own name is left out of the count in case an earlier attempt is still pending
        exclude = (resource.plural, name) if req.operation == CREATE else ("", "")
        checked = []
        for quota, hard in relevant:
            requested = {n: q for n, q in delta.items() if n in hard}
            if not requested:
                continue
            used = await self._used(ctx, quota, set(hard), req.namespace, exclude)
            exceeded = sorted(n for n, q in requested.items() if used[n] + q > hard[n])
            if exceeded:
                raise forbidden(req, "exceeded quota: {}, requested: {}, used: {}, limited: {}".format(
                    _meta(quota).get("name"), _pretty({n: requested[n] for n in exceeded}),
                    _pretty({n: used[n] for n in exceeded}), _pretty({n: hard[n] for n in exceeded})))
            checked.append((quota, {n: used[n] + requested.get(n, Quantity()) for n in used}))
        if req.dry_run:
            return
        if req.operation == CREATE:
            key = name or f"pending-{uuid.uuid4()}"
            self._pending.setdefault((req.namespace, resource.plural), {})[key] = (
                obj, time.monotonic() + PENDING_SECONDS)
        for quota, new_used in checked:
            await self._write_status(ctx, quota, new_used)
