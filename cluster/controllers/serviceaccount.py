"""The `default` ServiceAccount every active Namespace has (upstream's serviceaccounts-controller).

A Namespace that is terminating gets none, so deleting a namespace is not undone by this
controller; a deleted `default` ServiceAccount is recreated.
"""
from __future__ import annotations

from cluster.controllers.objects import is_deleting, name_of

DEFAULT_SERVICE_ACCOUNTS = ("default",)


def is_active(namespace: dict) -> bool:
    phase = (namespace.get("status") or {}).get("phase") or "Active"
    return phase == "Active" and not is_deleting(namespace)


def missing(namespace: dict, service_accounts: list[dict]) -> list[dict]:
    """ServiceAccounts to create in `namespace`, given those that exist there."""
    if not is_active(namespace):
        return []
    have = {name_of(sa) for sa in service_accounts}
    return [{"apiVersion": "v1", "kind": "ServiceAccount",
             "metadata": {"name": name, "namespace": name_of(namespace)}}
            for name in DEFAULT_SERVICE_ACCOUNTS if name not in have]
