"""Deleting what belongs to deleted owners: the garbage collector's decisions.

Upstream's garbage collector (`pkg/controller/garbagecollector`) follows ownerReferences:
with background propagation (kubectl's default) dependents whose owners are all gone are
deleted; references to owners that are gone are dropped when another owner remains; an owner
deleted with `propagationPolicy: Foreground` (finalizer `foregroundDeletion`) waits until its
dependents that block owner deletion are gone; one deleted with `Orphan` (finalizer `orphan`)
first has its references removed from its dependents. So deleting a Deployment removes its
ReplicaSets and, through them, their pods.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from cluster.controllers.objects import is_deleting, meta, uid_of

FOREGROUND = "foregroundDeletion"
ORPHAN = "orphan"


@dataclass
class Collection:
    """Writes to make: objects to delete (with the propagation to pass on), dependents whose
    ownerReferences to drop (uid -> the owner uids to remove), owners whose finalizer to remove
    (uid -> finalizer)."""

    delete: list[tuple[dict, str]] = field(default_factory=list)
    drop_refs: dict[str, list[str]] = field(default_factory=dict)
    remove_finalizer: dict[str, str] = field(default_factory=dict)


def _refs(obj: dict) -> list[dict]:
    return meta(obj).get("ownerReferences") or []


def collect(objects: list[dict]) -> Collection:
    """One pass over every object the collector knows (all namespaced and cluster objects that
    have or may be owners). Owner references name uids; a uid not among `objects` is gone, so
    confirm with a GET (404, or another uid) before deleting, as upstream's isDangling does."""
    by_uid = {uid_of(o): o for o in objects if uid_of(o)}
    dependents: dict[str, list[dict]] = {}
    for obj in objects:
        for ref in _refs(obj):
            dependents.setdefault(ref.get("uid") or "", []).append(obj)
    result = Collection()
    for obj in objects:
        refs = _refs(obj)
        if not refs or is_deleting(obj):
            continue
        gone = [r.get("uid") for r in refs if r.get("uid") not in by_uid]
        alive = [by_uid[r["uid"]] for r in refs if r.get("uid") in by_uid]
        foreground_owner = any(is_deleting(o) and FOREGROUND in (meta(o).get("finalizers") or [])
                               for o in alive)
        orphaning_owner = [uid_of(o) for o in alive
                           if is_deleting(o) and ORPHAN in (meta(o).get("finalizers") or [])]
        if orphaning_owner:
            result.drop_refs[uid_of(obj)] = gone + orphaning_owner
        elif not alive:
            result.delete.append((obj, "Background"))
        elif foreground_owner and all(is_deleting(o) for o in alive):
            # dependents of a foreground deletion go first, and foreground themselves
            result.delete.append((obj, "Foreground"))
        elif gone:
            result.drop_refs[uid_of(obj)] = gone
    for owner in objects:
        finalizers = meta(owner).get("finalizers") or []
        if not is_deleting(owner):
            continue
        deps = dependents.get(uid_of(owner), [])
        if FOREGROUND in finalizers:
            blocking = [d for d in deps if any(r.get("uid") == uid_of(owner)
                                               and r.get("blockOwnerDeletion") for r in _refs(d))]
            if not blocking:
                result.remove_finalizer[uid_of(owner)] = FOREGROUND
        elif ORPHAN in finalizers:
            if all(uid_of(d) in result.drop_refs for d in deps):
                result.remove_finalizer[uid_of(owner)] = ORPHAN
    return result
