"""Admission: the plugins a write passes after authorization and before it is stored.

A `Chain` runs every plugin's `admit` (mutating: LimitRanger fills in default requests and
limits, DefaultTolerationSeconds the NotReady and unreachable tolerations) and then every
plugin's `validate` (NamespaceLifecycle, LimitRanger bounds, PodSecurity, and ResourceQuota
last, as kube-apiserver orders them). The server calls `admit` before it
validates the object and `validate` after, reading what plugins need through an
`AdmissionContext`. A plugin refuses a request by raising an `APIError` whose message says what
to change; `warnings` collects what the client should be told without refusing (HTTP `Warning`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from cluster.api import errors
from cluster.api.resources import Resource
from cluster.auth.user import UserInfo

CREATE = "CREATE"
UPDATE = "UPDATE"
DELETE = "DELETE"
CONNECT = "CONNECT"


@dataclass
class AdmissionRequest:
    operation: str
    resource: Resource
    subresource: str
    namespace: str
    name: str
    obj: dict | None
    old_obj: dict | None
    user: UserInfo | None
    dry_run: bool = False
    warnings: list[str] = field(default_factory=list)

    def is_core(self, plural: str) -> bool:
        return self.resource.group == "" and self.resource.plural == plural

    def object_name(self) -> str:
        """The name errors should show: the request's, the object's, its generateName, or "Unknown"."""
        if self.name:
            return self.name
        meta = (self.obj or {}).get("metadata") or {}
        return meta.get("name") or meta.get("generateName") or "Unknown"


class AdmissionContext(Protocol):
    """What plugins may read and write; the server implements it over its caches and store."""

    async def get(self, resource: Resource, namespace: str | None, name: str) -> dict | None: ...

    async def list(self, resource: Resource, namespace: str | None) -> list[dict]: ...

    async def update_status(self, resource: Resource, obj: dict) -> dict: ...


class Plugin:
    """An admission plugin; both phases let the request through unless a plugin overrides them."""

    async def admit(self, req: AdmissionRequest, ctx: AdmissionContext) -> None:
        return None

    async def validate(self, req: AdmissionRequest, ctx: AdmissionContext) -> None:
        return None


class Chain:
    def __init__(self, plugins: list[Plugin]):
        self.plugins = list(plugins)

    async def admit(self, req: AdmissionRequest, ctx: AdmissionContext) -> None:
        for plugin in self.plugins:
            await plugin.admit(req, ctx)

    async def validate(self, req: AdmissionRequest, ctx: AdmissionContext) -> None:
        for plugin in self.plugins:
            await plugin.validate(req, ctx)


def forbidden(req: AdmissionRequest, message: str) -> errors.APIError:
    """403 as upstream's admission.NewForbidden words it: `pods "web" is forbidden: <message>`."""
    return errors.forbidden(req.resource, req.object_name(), message)


def aggregate(messages: list[str]) -> str:
    """Several errors in one message, deduplicated, as upstream's utilerrors.NewAggregate prints them."""
    distinct = list(dict.fromkeys(messages))
    return distinct[0] if len(distinct) == 1 else "[" + ", ".join(distinct) + "]"


def default_chain() -> Chain:
    """The plugins kube-apiserver enables by default that this emulator implements, in its order."""
    # imported here: the plugin modules import this package's request type
    from cluster.admission.defaulttolerationseconds import DefaultTolerationSeconds
    from cluster.admission.lifecycle import NamespaceLifecycle
    from cluster.admission.limitranger import LimitRanger
    from cluster.admission.podsecurity import PodSecurity
    from cluster.admission.quota import ResourceQuota
    return Chain([NamespaceLifecycle(), LimitRanger(), PodSecurity(), DefaultTolerationSeconds(),
                  ResourceQuota()])
