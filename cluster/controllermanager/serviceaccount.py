"""The ServiceAccounts controller: every active Namespace has its `default` ServiceAccount
(`cluster.controllers.serviceaccount` says which are missing); one deleted is made again."""
from __future__ import annotations

from cluster.api.errors import APIError
from cluster.api.resources import by_name
from cluster.client import Controller
from cluster.controllers import serviceaccount as sactl

from .context import Context
from .namespace import NAMESPACES

SERVICEACCOUNTS = by_name("serviceaccounts")


def new(ctx: Context) -> Controller:
    client = ctx.client
    namespaces, accounts = ctx.informer(NAMESPACES), ctx.informer(SERVICEACCOUNTS)

    async def reconcile(name: str):
        ns = namespaces.indexer.get_by_key(name)
        if ns is None:
            return None
        for sa in sactl.missing(ns, accounts.indexer.list(name)):
            try:
                await client.create(SERVICEACCOUNTS, sa, name)
            except APIError as e:
                # 409: the cache is behind; 403: the namespace began terminating meanwhile
                if e.code not in (409, 403):
                    raise
        return None

    controller = Controller("serviceaccount", reconcile, workers=ctx.options.workers)
    controller.watch(namespaces)
    controller.watch(accounts, lambda sa: [sa["metadata"]["namespace"]])
    return controller
