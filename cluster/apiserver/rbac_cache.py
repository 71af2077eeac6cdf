"""The RBAC objects the authorizer reads, kept in memory from a list and a watch of the store,
so authorizing a request costs no store read (upstream's authorizer reads informer caches)."""

import asyncio
import contextlib
import json
import logging

from cluster.api.resources import lookup
from cluster.store import Compacted, StoreError

log = logging.getLogger(__name__)

KINDS = {"Role": "roles", "ClusterRole": "clusterroles", "RoleBinding": "rolebindings",
         "ClusterRoleBinding": "clusterrolebindings"}


class RBACCache:
    """`list(kind, namespace)` over Roles, ClusterRoles and their bindings (cluster.auth's lister)."""

    def __init__(self, store):
        self.store = store
        self._objects = {kind: {} for kind in KINDS}
        self._tasks = []

    def list(self, kind, namespace):
        objects = self._objects[kind].values()
        if namespace is None:
            return list(objects)
        return [o for o in objects if o["metadata"].get("namespace") == namespace]

    async def start(self):
        """Fill the cache, then follow the store; returns once the cache is filled."""
        for kind, plural in KINDS.items():
            res = lookup("rbac.authorization.k8s.io", "v1", plural)
            revision = await self._fill(kind, res)
            self._tasks.append(asyncio.create_task(self._follow(kind, res, revision)))

    async def _fill(self, kind, res):
        page, revision = await self.store.list(res.prefix())
        self._objects[kind] = {key: json.loads(value) for key, value, _ in page}
        return revision

    async def _follow(self, kind, res, revision):
        while True:
            try:
                async for event in self.store.watch(res.prefix(), revision):
                    revision = event.revision
                    if event.type == "DELETED":
                        self._objects[kind].pop(event.key, None)
                    else:
                        self._objects[kind][event.key] = json.loads(event.value)
                return
            except Compacted:
                revision = await self._fill(kind, res)
            except StoreError as e:
                log.warning("RBAC cache of %s: watch failed (%s); relisting", kind, e)
                await asyncio.sleep(1)
                revision = await self._fill(kind, res)

    async def stop(self):
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, StoreError):
                await task
        self._tasks.clear()
