"""The live kube-proxy of one node: informers feed a dirty flag, a bounded sync loop renders and
writes the node's netfilter through the Syncer.

As upstream's iptables proxier: Services and EndpointSlices (all namespaces, minus those
labelled `service.kubernetes.io/service-proxy-name` for another proxy and headless slices) and
this node's Node (its IP, and whether it is being deleted, for /healthz) are watched; every change
marks the state dirty and queues a health update. The loop waits for a change, a retry or the
periodic sync (`sync_period`), never starts two syncs closer than `min_sync_period` (changes that
arrive meanwhile are coalesced into the next one), renders against the previous rendering (so
only changed Service ports are rebuilt and only changed chains written) and syncs. The periodic
sync is the usual cheap partial sync; every `sync_period` a sync also checks the canary chain
first and syncs fully if something flushed the tables, and the Syncer rewrites everything once
an hour (upstream's FullSyncPeriod). Nothing is synced before the caches are complete.

Rendering and syncing run in a worker thread (iptables-restore takes tens of ms at 1k Services,
a second at 10k) so watches and HTTP keep being served. A failed sync is counted, logged and
retried after a backoff (1 s doubling to the sync period); the next sync is then full. Objects
kube-proxy cannot use are logged once each (the rendering skips them). Network programming
latency is observed for every EndpointSlice change whose trigger time is later than the
agent's start, at the end of the sync that programmed it.
"""

import asyncio
import dataclasses
import logging
import time

from cluster.api.resources import by_kind

from .metrics import Metrics, trigger_time
from .model import Node
from .render import ProxierConfig, render
from .server import ProxierHealth
from .sync import SyncError, Syncer

log = logging.getLogger(__name__)

SERVICES = by_kind("v1", "Service")
ENDPOINT_SLICES = by_kind("discovery.k8s.io/v1", "EndpointSlice")
NODES = by_kind("v1", "Node")

# Objects another proxy implementation owns, and headless Services' slices: upstream skips both.
SERVICE_PROXY_NAME = "service.kubernetes.io/service-proxy-name"
HEADLESS = "service.kubernetes.io/headless"
TO_BE_DELETED_TAINT = "ToBeDeletedByClusterAutoscaler"

RETRY_INITIAL = 1.0


@dataclasses.dataclass(frozen=True)
class AgentConfig:
    node_name: str
    netns_path: str
    proxier: ProxierConfig = ProxierConfig()
    sync_period: float = 30.0
    min_sync_period: float = 0.0


def node_ip(node):
    """The Node's first InternalIP (else ExternalIP) IPv4 address, as upstream picks it; "" if none."""
    addresses = ((node.get("status") or {}).get("addresses")) or []
    for kind in ("InternalIP", "ExternalIP"):
        for a in addresses:
            if a.get("type") == kind and "." in (a.get("address") or ""):
                return a["address"]
    return ""


def node_eligible(node):
    """False while the node is being deleted or drained for deletion (upstream's healthz check)."""
    if (node.get("metadata") or {}).get("deletionTimestamp"):
        return False
    return not any(t.get("key") == TO_BE_DELETED_TAINT for t in (node.get("spec") or {}).get("taints") or ())


def _key(obj):
    obj = getattr(obj, "obj", obj)  # a DeletedFinalStateUnknown carries the last state known
    meta = obj.get("metadata") or {}
    return meta.get("namespace", ""), meta.get("name", "")


class Agent:
    """kube-proxy for CONFIG.node_name; `await run(factory)` until cancelled."""

    def __init__(self, config, *, syncer=None, metrics=None, health=None, clock=time.monotonic,
                 wallclock=time.time):
        self.config = config
        self.syncer = syncer or Syncer(config.netns_path)
        self.metrics = metrics or Metrics()
        self.health = health or ProxierHealth(2 * config.sync_period, clock=wallclock)
        self.clock, self.wallclock = clock, wallclock
        self.started = wallclock()
        self.services, self.slices = {}, {}
        self.node_ip = ""
        self.previous = None
        self._dirty = asyncio.Event()
        self._triggers = {}  # (namespace, name, trigger time) -> the EndpointSlice that carried it
        self._errors = frozenset()
        self._last_start = None
        self._next_periodic = clock() + config.sync_period
        self._next_canary_check = self._next_periodic
        self._retry_at = None
        self._retry_delay = RETRY_INITIAL

    # -- what the informers tell us -------------------------------------------------------------

    def watch(self, factory):
        """Ask FACTORY for the Service, EndpointSlice and Node informers, with our handlers."""
        services = factory.informer(SERVICES, label_selector=f"!{SERVICE_PROXY_NAME}")
        slices = factory.informer(ENDPOINT_SLICES, label_selector=f"!{SERVICE_PROXY_NAME},!{HEADLESS}")
        nodes = factory.informer(NODES, field_selector=f"metadata.name={self.config.node_name}")
        services.add_event_handler(on_add=self.service_changed, on_update=lambda old, new: self.service_changed(new),
                                   on_delete=self.service_deleted)
        slices.add_event_handler(on_add=self.slice_changed, on_update=lambda old, new: self.slice_changed(new),
                                 on_delete=self.slice_deleted)
        nodes.add_event_handler(on_add=self.node_changed, on_update=lambda old, new: self.node_changed(new),
                                on_delete=self.node_deleted)

    def mark_dirty(self):
        self.health.queued_update()
        self._dirty.set()

    def service_changed(self, obj):
        self.services[_key(obj)] = obj
        self.mark_dirty()

    def service_deleted(self, obj):
        self.services.pop(_key(obj), None)
        self.mark_dirty()

    def slice_changed(self, obj):
        self.slices[_key(obj)] = obj
        self._note_trigger(obj)
        self.mark_dirty()

    def slice_deleted(self, obj):
        self.slices.pop(_key(obj), None)
        self._note_trigger(getattr(obj, "obj", obj))
        self.mark_dirty()

    def _note_trigger(self, obj):
        t = trigger_time(obj)
        # Changes from before we started were programmed by someone else (or never): as upstream,
        # only later ones count towards the latency.
        if t is not None and t > self.started:
            self._triggers[(*_key(obj), t)] = obj

    def node_changed(self, obj):
        self.health.node_eligible = node_eligible(obj)
        ip = node_ip(obj)
        if ip != self.node_ip:
            log.info("node %s: IP %s", self.config.node_name, ip or "(none)")
            self.node_ip = ip
            self.mark_dirty()

    def node_deleted(self, obj):
        self.health.node_eligible = False

    # -- the sync loop ------------------------------------------------------------------------

    async def run(self, factory):
        """Watch through FACTORY, wait for complete caches, then sync until cancelled."""
        self.watch(factory)
        factory.start()
        await factory.wait_for_sync()
        log.info("node %s: caches synced: %d Services, %d EndpointSlices; syncing into %s",
                 self.config.node_name, len(self.services), len(self.slices), self.config.netns_path)
        self.mark_dirty()
        await self.sync_loop()

    async def sync_loop(self):
        while True:
            due = self._next_periodic if self._retry_at is None else min(self._next_periodic, self._retry_at)
            if not self._dirty.is_set():
                try:
                    await asyncio.wait_for(self._dirty.wait(), max(0.0, due - self.clock()))
                except asyncio.TimeoutError:
                    pass
            if self._last_start is not None:
                wait = self._last_start + self.config.min_sync_period - self.clock()
                if wait > 0:
                    await asyncio.sleep(wait)
            await self.sync_once()

    async def sync_once(self):
        """One render and sync of the state as it is now; failures are logged and retried later."""
        self._dirty.clear()
        start = self._last_start = self.clock()
        self._next_periodic = start + self.config.sync_period
        # On its own schedule, as upstream's canary monitor: changes every few seconds must not
        # keep postponing it.
        check_canary = start >= self._next_canary_check
        if check_canary:
            self._next_canary_check = start + self.config.sync_period
        self._retry_at = None
        services, slices = list(self.services.values()), list(self.slices.values())
        triggers, self._triggers = self._triggers, {}
        node = Node(self.config.node_name, self.node_ip)
        try:
            full = False
            if check_canary and self.syncer.applied is not None:
                full = not await asyncio.to_thread(self.syncer.canary_present)
                if full:
                    log.warning("the canary chain is gone (something flushed the tables): syncing fully")
            rendering = await asyncio.to_thread(render, services, slices, node, self.config.proxier, self.previous)
            # A rendering is a valid basis even if writing it fails: the Syncer then syncs fully.
            self.previous = rendering
            self._log_errors(rendering.errors)
            result = await asyncio.to_thread(self.syncer.sync, rendering, full)
        except Exception as e:
            if isinstance(e, SyncError):
                self.metrics.observe_failure()
                log.error("sync failed, retrying in %.0fs: %s", self._retry_delay, e)
            else:
                log.exception("sync failed, retrying in %.0fs", self._retry_delay)
            self._triggers = {**triggers, **self._triggers}
            self._retry_at = self.clock() + self._retry_delay
            self._retry_delay = min(self._retry_delay * 2, self.config.sync_period)
            return None
        self._retry_delay = RETRY_INITIAL
        now = self.wallclock()
        # Sync first, then latency: whoever sees a programming count also sees the sync counted.
        self.metrics.observe_sync(result, rendering, now)
        self.metrics.observe_programmed(triggers.values(), now)
        self.health.updated()
        log.debug("%s sync in %.1f ms (restore %.1f ms): %d chains written, %d deleted, %d conntrack flushes",
                  result.kind, result.seconds * 1e3, result.restore_seconds * 1e3, result.chains_written,
                  result.chains_deleted, result.conntrack_flushes)
        return result

    def _log_errors(self, errors):
        errors = frozenset(errors)
        for error in sorted(errors - self._errors):
            log.error("skipped: %s", error)
        self._errors = errors
