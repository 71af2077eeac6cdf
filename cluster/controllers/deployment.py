"""A Deployment's decisions: its ReplicaSets, how far each rollout step goes, and its status.

Upstream's `pkg/controller/deployment` and `deployment/util`: the new ReplicaSet is the one whose
template equals the Deployment's (ignoring `pod-template-hash`), named `NAME-HASH` where HASH is
FNV-32a of the template (and `status.collisionCount`) encoded as SafeEncodeString; a RollingUpdate
scales the new ReplicaSet up to `replicas + maxSurge` total pods and the old ones down while
`replicas - maxUnavailable` stay available; a Recreate scales old to zero, waits for their pods to
go, then scales the new one up; a change of `replicas` mid-rollout is spread proportionally over
the ReplicaSets; old ReplicaSets beyond `revisionHistoryLimit` are deleted.

The hash is computed over the template's canonical JSON, not Go's struct dump, so its value
differs from a real cluster's for the same template; its form and behaviour are upstream's.
"""
from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from datetime import datetime

from cluster.controllers.objects import (controller_ref, creation_key, format_time,
                                         is_controlled_by, is_deleting, is_pod_terminal, meta,
                                         name_of, namespace_of, parse_time)

HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
_NOT_COPIED = {LAST_APPLIED, REVISION, REVISION_HISTORY, DESIRED_REPLICAS, MAX_REPLICAS}

_ALPHANUMS = "bcdfghjklmnpqrstvwxz2456789"


# --- naming --------------------------------------------------------------------------------------

def safe_encode(text: str) -> str:
    """apimachinery's rand.SafeEncodeString: no vowels, no confusable characters."""
    return "".join(_ALPHANUMS[ord(c) % len(_ALPHANUMS)] for c in text)


def fnv32a(data: bytes) -> int:
    h = 0x811C9DC5
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def compute_hash(template: dict, collision_count: int | None = None) -> str:
    """The pod-template-hash: FNV-32a of the template, then the collision count as upstream
    appends it (eight bytes, little-endian uint32 first), printed in decimal and safe-encoded."""
    data = json.dumps(template, sort_keys=True, separators=(",", ":")).encode()
    if collision_count is not None:
        data += (collision_count & 0xFFFFFFFF).to_bytes(4, "little") + bytes(4)
    return safe_encode(str(fnv32a(data)))


def _without_hash(template: dict) -> dict:
    t = copy.deepcopy(template or {})
    labels = (t.get("metadata") or {}).get("labels")
    if labels:
        labels.pop(HASH_LABEL, None)
    return t


def equal_ignore_hash(a: dict, b: dict) -> bool:
    return _without_hash(a) == _without_hash(b)


# --- intstr arithmetic ---------------------------------------------------------------------------

def scaled_value(value, total: int, round_up: bool) -> int:
    """An int or a percentage of `total` (intstr.GetScaledValueFromIntOrPercent)."""
    if isinstance(value, int):
        return value
    m = re.fullmatch(r"(\d+)%", str(value or "0%"))
    if not m:
        raise ValueError(f"invalid value for IntOrString: invalid value {value!r}: must be an"
                         " integer or a percentage (e.g. 25%)")
    numerator = int(m.group(1)) * total
    return -(-numerator // 100) if round_up else numerator // 100


def _replicas(obj: dict) -> int:
    value = (obj.get("spec") or {}).get("replicas")
    return 1 if value is None else int(value)


def _rolling(deployment: dict) -> dict | None:
    strategy = (deployment.get("spec") or {}).get("strategy") or {}
    if strategy.get("type", "RollingUpdate") != "RollingUpdate":
        return None
    return strategy.get("rollingUpdate") or {"maxSurge": "25%", "maxUnavailable": "25%"}


def resolve_fenceposts(max_surge, max_unavailable, desired: int) -> tuple[int, int]:
    """(surge, unavailable): surge rounds up, unavailable down; both zero means one unavailable."""
    surge = scaled_value(max_surge, desired, True)
    unavailable = scaled_value(max_unavailable, desired, False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def max_surge(deployment: dict) -> int:
    rolling = _rolling(deployment)
    if rolling is None:
        return 0
    return resolve_fenceposts(rolling.get("maxSurge", "25%"), rolling.get("maxUnavailable", "25%"),
                              _replicas(deployment))[0]


def max_unavailable(deployment: dict) -> int:
    rolling = _rolling(deployment)
    if rolling is None or _replicas(deployment) == 0:
        return 0
    _, unavailable = resolve_fenceposts(rolling.get("maxSurge", "25%"),
                                        rolling.get("maxUnavailable", "25%"),
                                        _replicas(deployment))
    return min(unavailable, _replicas(deployment))


def _spec_total(rss: list[dict]) -> int:
    return sum(_replicas(rs) for rs in rss if rs)


def _status_of(rs: dict | None, key: str) -> int:
    return int(((rs or {}).get("status") or {}).get(key) or 0)


def _available_total(rss: list[dict]) -> int:
    return sum(_status_of(rs, "availableReplicas") for rs in rss if rs)


# --- which ReplicaSets ---------------------------------------------------------------------------

def owned_replica_sets(deployment: dict, replica_sets: list[dict]) -> list[dict]:
    return [rs for rs in replica_sets if namespace_of(rs) == namespace_of(deployment)
            and is_controlled_by(rs, deployment)]


def find_new_replica_set(deployment: dict, owned: list[dict]) -> dict | None:
    """The oldest owned ReplicaSet whose template is the Deployment's (FindNewReplicaSet)."""
    template = (deployment.get("spec") or {}).get("template") or {}
    for rs in sorted(owned, key=creation_key):
        if equal_ignore_hash((rs.get("spec") or {}).get("template") or {}, template):
            return rs
    return None


def revision(obj: dict | None) -> int:
    try:
        return int((meta(obj or {}).get("annotations") or {}).get(REVISION, 0))
    except ValueError:
        return 0


def new_replicas(deployment: dict, all_rss: list[dict], new_rs: dict | None) -> int:
    """How big the new ReplicaSet may be now (NewRSNewReplicas)."""
    desired = _replicas(deployment)
    if _rolling(deployment) is None:
        return desired
    current_new = _replicas(new_rs) if new_rs else 0
    surge = scaled_value(_rolling(deployment).get("maxSurge", "25%"), desired, True)
    total = _spec_total(all_rss)
    if total >= desired + surge:
        return current_new
    return current_new + min(desired + surge - total, desired - current_new)


def _replica_annotations(deployment: dict) -> dict:
    return {DESIRED_REPLICAS: str(_replicas(deployment)),
            MAX_REPLICAS: str(_replicas(deployment) + max_surge(deployment))}


def new_replica_set(deployment: dict, owned: list[dict], existing_names: set[str] = frozenset()
                    ) -> tuple[dict, int | None]:
    """The new ReplicaSet to create, and the collisionCount it took: a name held by a ReplicaSet
    with another template bumps the count, as upstream does after an AlreadyExists."""
    spec = deployment.get("spec") or {}
    template = copy.deepcopy(spec.get("template") or {})
    collision = (deployment.get("status") or {}).get("collisionCount")
    # a name already taken is held by another template, or it would be the new ReplicaSet
    taken = {name_of(rs) for rs in owned} | set(existing_names)
    while True:
        pod_hash = compute_hash(template, collision)
        name = f"{name_of(deployment)}-{pod_hash}"
        if name not in taken:
            break
        collision = (collision or 0) + 1
    template.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = pod_hash
    selector = copy.deepcopy(spec.get("selector") or {})
    selector.setdefault("matchLabels", {})[HASH_LABEL] = pod_hash
    annotations = {k: v for k, v in (meta(deployment).get("annotations") or {}).items()
                   if k not in _NOT_COPIED}
    annotations.update(_replica_annotations(deployment))
    annotations[REVISION] = str(max((revision(rs) for rs in owned), default=0) + 1)
    rs = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": name, "namespace": namespace_of(deployment),
                     "labels": dict(template["metadata"]["labels"]),
                     "annotations": annotations,
                     "ownerReferences": [controller_ref(deployment, "apps/v1", "Deployment")]},
        "spec": {"replicas": 0, "minReadySeconds": int(spec.get("minReadySeconds") or 0),
                 "selector": selector, "template": template},
    }
    rs["spec"]["replicas"] = new_replicas(deployment, owned + [rs], rs)
    return rs, collision


def scaled(rs: dict, replicas: int, deployment: dict) -> dict:
    """A copy of `rs` at `replicas`, its desired/max-replicas annotations brought up to date."""
    out = copy.deepcopy(rs)
    out["spec"]["replicas"] = replicas
    out.setdefault("metadata", {}).setdefault("annotations", {}).update(
        _replica_annotations(deployment))
    return out


# --- rollout steps -------------------------------------------------------------------------------

def _active(rss: list[dict]) -> list[dict]:
    return [rs for rs in rss if rs and _replicas(rs) > 0]


def scale_down_old(deployment: dict, new_rs: dict | None, old_rss: list[dict]) -> dict[str, int]:
    """Old ReplicaSets' new sizes in a RollingUpdate (reconcileOldReplicaSets): unhealthy replicas
    go first, then available ones while `replicas - maxUnavailable` stay available."""
    sizes = {name_of(rs): _replicas(rs) for rs in old_rss}
    old_total = sum(sizes.values())
    if old_total == 0:
        return {}
    all_total = old_total + (_replicas(new_rs) if new_rs else 0)
    min_available = _replicas(deployment) - max_unavailable(deployment)
    new_unavailable = (_replicas(new_rs) - _status_of(new_rs, "availableReplicas")) if new_rs else 0
    budget = all_total - min_available - new_unavailable
    if budget <= 0:
        return {}
    ordered = sorted(old_rss, key=creation_key)
    cleaned = 0
    for rs in ordered:
        if cleaned >= budget:
            break
        unhealthy = sizes[name_of(rs)] - _status_of(rs, "availableReplicas")
        if sizes[name_of(rs)] == 0 or unhealthy <= 0:
            continue
        cut = min(budget - cleaned, unhealthy)
        sizes[name_of(rs)] -= cut
        cleaned += cut
    available = _available_total(old_rss) + _status_of(new_rs, "availableReplicas")
    if available > min_available:
        allowed, done = available - min_available, 0
        for rs in ordered:
            if done >= allowed:
                break
            cut = min(sizes[name_of(rs)], allowed - done)
            sizes[name_of(rs)] -= cut
            done += cut
    return {name: size for name, size in sizes.items()
            if size != _replicas(next(rs for rs in old_rss if name_of(rs) == name))}


def is_scaling_event(deployment: dict, rss: list[dict]) -> bool:
    """A ReplicaSet's desired-replicas annotation disagrees with the Deployment's replicas."""
    for rs in _active(rss):
        desired = (meta(rs).get("annotations") or {}).get(DESIRED_REPLICAS)
        if desired is not None and desired != str(_replicas(deployment)):
            return True
    return False


def proportional_scale(deployment: dict, new_rs: dict | None, old_rss: list[dict]
                       ) -> dict[str, int]:
    """New sizes when `replicas` changed (DeploymentController.scale): one active ReplicaSet takes
    the whole count; otherwise the difference is spread in proportion to their sizes, leftovers
    to the largest."""
    desired = _replicas(deployment)
    active = _active([new_rs] + old_rss if new_rs else old_rss)
    if len(active) <= 1:
        target = active[0] if active else (new_rs or (sorted(old_rss, key=creation_key)[-1]
                                                      if old_rss else None))
        if target is None or _replicas(target) == desired:
            return {}
        return {name_of(target): desired}
    if new_rs is not None and _is_saturated(deployment, new_rs):
        return {name_of(rs): 0 for rs in _active(old_rss)}
    if _rolling(deployment) is None:
        return {}
    allowed = desired + max_surge(deployment) if desired > 0 else 0
    to_add = allowed - _spec_total(active)
    if to_add > 0:   # larger first; a tie scales the newer up first
        active.sort(key=creation_key, reverse=True)
        active.sort(key=_replicas, reverse=True)
    elif to_add < 0:  # larger first; a tie scales the older down first
        active.sort(key=creation_key)
        active.sort(key=_replicas, reverse=True)
    sizes, added = {}, 0
    for rs in active:
        share = _proportion(rs, deployment, to_add, added) if to_add else 0
        sizes[name_of(rs)] = _replicas(rs) + share
        added += share
    if to_add and active:
        first = name_of(active[0])
        sizes[first] = max(0, sizes[first] + to_add - added)
    return {name: size for name, size in sizes.items()
            if size != _replicas(next(rs for rs in active if name_of(rs) == name))}


def _is_saturated(deployment: dict, rs: dict) -> bool:
    desired = _replicas(deployment)
    annotated = (meta(rs).get("annotations") or {}).get(DESIRED_REPLICAS)
    return (_replicas(rs) == desired and annotated == str(desired)
            and _status_of(rs, "availableReplicas") == desired)


def _proportion(rs: dict, deployment: dict, to_add: int, added: int) -> int:
    if _replicas(rs) == 0 or to_add == added:
        return 0
    desired = _replicas(deployment)
    if desired == 0:
        fraction = -_replicas(rs)
    else:
        max_now = desired + max_surge(deployment)
        try:
            before = int((meta(rs).get("annotations") or {}).get(MAX_REPLICAS, 0))
        except ValueError:
            before = 0
        before = before or int((deployment.get("status") or {}).get("replicas") or 0)
        # math.Round: halves away from zero
        exact = _replicas(rs) * max_now / before if before else _replicas(rs)
        fraction = int(exact + 0.5) if exact >= 0 else -int(-exact + 0.5)
        fraction -= _replicas(rs)
    allowed = to_add - added
    return min(fraction, allowed) if to_add > 0 else max(fraction, allowed)


def old_pods_running(new_rs: dict | None, old_rss: list[dict], pods_by_rs: dict[str, list[dict]]
                     ) -> bool:
    """Whether an old ReplicaSet still has a pod that is not finished (Recreate waits for them)."""
    if sum(_status_of(rs, "replicas") for rs in old_rss) > 0:
        return True
    new_uid = (meta(new_rs or {}).get("uid"))
    for rs in old_rss:
        if meta(rs).get("uid") == new_uid:
            continue
        if any(not is_pod_terminal(p) for p in pods_by_rs.get(meta(rs).get("uid") or "", [])):
            return True
    return False


def replica_sets_to_clean(deployment: dict, old_rss: list[dict]) -> list[dict]:
    """Old, empty ReplicaSets beyond revisionHistoryLimit, lowest revision first."""
    limit = (deployment.get("spec") or {}).get("revisionHistoryLimit")
    if limit is None:
        limit = 10
    cleanable = [rs for rs in old_rss if _replicas(rs) == 0 and _status_of(rs, "replicas") == 0
                 and not is_deleting(rs)]
    excess = len(cleanable) - int(limit)
    if excess <= 0:
        return []
    return sorted(cleanable, key=lambda rs: (revision(rs), creation_key(rs)))[:excess]


@dataclass
class DeploymentPlan:
    """One sync's writes: a ReplicaSet to create (then requeue), new sizes by ReplicaSet name
    (`scale`, objects from `scaled`), ReplicaSets to delete, the Deployment's revision and
    collisionCount to record."""

    create: dict | None = None
    scale: list[dict] = field(default_factory=list)
    delete: list[dict] = field(default_factory=list)
    revision: str = ""
    collision_count: int | None = None


def plan(deployment: dict, replica_sets: list[dict],
         pods_by_rs: dict[str, list[dict]] | None = None) -> DeploymentPlan:
    """The next step of the Deployment's rollout (syncDeployment), given all ReplicaSets in its
    namespace and, for Recreate, the pods of each owned ReplicaSet by its uid."""
    owned = owned_replica_sets(deployment, replica_sets)
    new_rs = find_new_replica_set(deployment, owned)
    old_rss = [rs for rs in owned if rs is not new_rs]
    result = DeploymentPlan()
    by_name = {name_of(rs): rs for rs in owned}

    def resize(sizes):
        result.scale += [scaled(by_name[n], size, deployment) for n, size in sizes.items()]
        return result

    if is_deleting(deployment):
        return result
    if new_rs is not None:
        result.revision = str(revision(new_rs))
    paused = bool((deployment.get("spec") or {}).get("paused"))
    if paused or is_scaling_event(deployment, owned):
        return resize(proportional_scale(deployment, new_rs, old_rss))
    recreate = _rolling(deployment) is None
    if recreate:
        sizes = {name_of(rs): 0 for rs in _active(old_rss)}
        if sizes:
            return resize(sizes)
        if old_pods_running(new_rs, old_rss, pods_by_rs or {}):
            return result
    if new_rs is None:
        result.create, result.collision_count = new_replica_set(deployment, owned)
        result.revision = result.create["metadata"]["annotations"][REVISION]
        return result
    newest_old = max((revision(rs) for rs in old_rss), default=0)
    if revision(new_rs) <= newest_old:
        # a rollback made an old ReplicaSet new again: it becomes the latest revision
        bumped = scaled(new_rs, _replicas(new_rs), deployment)
        bumped["metadata"]["annotations"][REVISION] = str(newest_old + 1)
        result.scale.append(bumped)
        result.revision = str(newest_old + 1)
        return result
    desired = _replicas(deployment)
    if _replicas(new_rs) != desired:
        target = desired if recreate or _replicas(new_rs) > desired else new_replicas(
            deployment, owned, new_rs)
        if target != _replicas(new_rs):
            return resize({name_of(new_rs): target})
    if not recreate:
        resize(scale_down_old(deployment, new_rs, old_rss))
        if result.scale:
            return result
    current = deployment.get("status") or {}
    if all(int(current.get(k) or 0) == desired
           for k in ("updatedReplicas", "replicas", "availableReplicas")):
        result.delete = replica_sets_to_clean(deployment, old_rss)
    return result


# --- status --------------------------------------------------------------------------------------

def _condition(type_, status, reason, message, now, old: dict | None) -> dict:
    t = format_time(now)
    transition = old.get("lastTransitionTime") if old and old.get("status") == status else t
    return {"type": type_, "status": status, "lastUpdateTime": t,
            "lastTransitionTime": transition, "reason": reason, "message": message}


def status(deployment: dict, replica_sets: list[dict], now: datetime) -> dict:
    """status as calculateStatus and syncRolloutStatus leave it: counts, Available and Progressing."""
    owned = owned_replica_sets(deployment, replica_sets)
    new_rs = find_new_replica_set(deployment, owned)
    old = deployment.get("status") or {}
    desired = _replicas(deployment)
    available = _available_total(owned)
    result = {
        "observedGeneration": meta(deployment).get("generation", 0),
        "replicas": sum(_status_of(rs, "replicas") for rs in owned),
        "updatedReplicas": _status_of(new_rs, "replicas"),
        "readyReplicas": sum(_status_of(rs, "readyReplicas") for rs in owned),
        "availableReplicas": available,
        "unavailableReplicas": max(0, _spec_total(owned) - available),
    }
    if old.get("collisionCount") is not None:
        result["collisionCount"] = old["collisionCount"]
    conditions = {c.get("type"): c for c in old.get("conditions") or []}
    if available >= desired - max_unavailable(deployment):
        conditions["Available"] = _condition("Available", "True", "MinimumReplicasAvailable",
                                             "Deployment has minimum availability.", now,
                                             conditions.get("Available"))
    else:
        conditions["Available"] = _condition("Available", "False", "MinimumReplicasUnavailable",
                                             "Deployment does not have minimum availability.",
                                             now, conditions.get("Available"))
    progressing = _progressing(deployment, result, old, new_rs, conditions.get("Progressing"), now)
    if progressing is not None:
        conditions["Progressing"] = progressing
    result["conditions"] = [conditions[t] for t in ("Available", "Progressing") if t in conditions]
    return result


def _progressing(deployment, new, old, new_rs, current, now) -> dict | None:
    if new_rs is None:
        return current
    rs_name = name_of(new_rs)
    desired = _replicas(deployment)
    complete = (new["updatedReplicas"] == desired and new["replicas"] == desired
                and new["availableReplicas"] == desired)
    if complete:
        return _condition("Progressing", "True", "NewReplicaSetAvailable",
                          f'ReplicaSet "{rs_name}" has successfully progressed.', now, current)
    old_old = int(old.get("replicas") or 0) - int(old.get("updatedReplicas") or 0)
    moved = (new["updatedReplicas"] > int(old.get("updatedReplicas") or 0)
             or new["readyReplicas"] > int(old.get("readyReplicas") or 0)
             or new["availableReplicas"] > int(old.get("availableReplicas") or 0)
             or new["replicas"] - new["updatedReplicas"] < old_old)
    if moved or current is None or rs_name not in (current.get("message") or ""):
        return _condition("Progressing", "True", "ReplicaSetUpdated",
                          f'ReplicaSet "{rs_name}" is progressing.', now, current)
    deadline = (deployment.get("spec") or {}).get("progressDeadlineSeconds")
    since = parse_time(current.get("lastUpdateTime"))
    if deadline is not None and since is not None and (now - since).total_seconds() > deadline:
        if current.get("reason") == "ProgressDeadlineExceeded":
            return current
        return _condition("Progressing", "False", "ProgressDeadlineExceeded",
                          f'ReplicaSet "{rs_name}" has timed out progressing.', now, current)
    return current
