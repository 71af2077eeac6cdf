"""Periodic compaction, the policy the Kubernetes API server applies to etcd, for any store.

Every `interval` seconds the store is compacted to the revision it had at the previous tick,
so a watcher always has at least one interval of history to resume from, and never to less
than `keep_revisions` behind the head, so a burst of writes does not expire every watcher.
"""

import asyncio
import logging

from cluster.store.base import Store, StoreError

log = logging.getLogger(__name__)


async def compact_periodically(store: Store, interval: float = 300.0,
                               keep_revisions: int = 1000) -> None:
    """Run until cancelled; a failed compaction is logged and retried at the next tick."""
    previous = await store.current_revision()
    while True:
        await asyncio.sleep(interval)
        try:
            current = await store.current_revision()
            target = min(previous, current - keep_revisions)
            if target > 0:
                await store.compact(target)
            previous = current
        except StoreError as err:
            log.warning("compaction failed, retrying in %ss: %s", interval, err)
