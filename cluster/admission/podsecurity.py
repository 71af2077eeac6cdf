"""PodSecurity admission: the namespace's `pod-security.kubernetes.io/*` labels decide what pods may run.

`enforce` refuses pods that fail the level (`privileged`, `baseline`, `restricted`) with
upstream's message, `violates PodSecurity "restricted:latest": allowPrivilegeEscalation != false
(container "web" must set securityContext.allowPrivilegeEscalation=false), ...`; `warn` only
warns; `-version` pins the checks of an older release. Deployments and ReplicaSets whose pod
template would be refused get a warning, not a refusal, as upstream. Namespaces with invalid
labels are refused; tightening `enforce` warns about the pods that already break it. Audit
annotations are not produced (this server keeps no audit log).
"""
from __future__ import annotations

import copy

from cluster.admission import (CREATE, UPDATE, AdmissionContext, AdmissionRequest, Plugin,
                               forbidden)
from cluster.admission import pss
from cluster.api import errors
from cluster.api.errors import Cause
from cluster.api.resources import by_kind

NAMESPACES = by_kind("v1", "Namespace")
PODS = by_kind("v1", "Pod")
LABEL_PREFIX = "pod-security.kubernetes.io/"
MODES = ("enforce", "audit", "warn")
# annotations the checks read; changing them makes a pod update worth re-checking
_CHECKED_ANNOTATION_PREFIXES = ("container.apparmor.security.beta.kubernetes.io/",
                                "seccomp.security.alpha.kubernetes.io/pod",
                                "container.seccomp.security.alpha.kubernetes.io/")
_TEMPLATE_KINDS = {("apps", "deployments"), ("apps", "replicasets")}


class Policy:
    """The level and version of one mode, read from namespace labels."""

    def __init__(self, level: str, minor: int | None):
        self.level = level
        self.minor = minor

    def __str__(self) -> str:
        return f"{self.level}:{'latest' if self.minor is None else f'v1.{self.minor}'}"

    def __eq__(self, other) -> bool:
        return isinstance(other, Policy) and (self.level, self.minor) == (other.level, other.minor)

    def evaluate(self, meta: dict, spec: dict) -> list[tuple[str, str]]:
        return pss.evaluate(self.level, self.minor, meta, spec)


def policy_for(labels: dict, mode: str) -> tuple[Policy, list[Cause]]:
    """The mode's policy (privileged:latest when unlabelled) and the label errors, if any."""
    causes = []
    level_key, version_key = f"{LABEL_PREFIX}{mode}", f"{LABEL_PREFIX}{mode}-version"
    level, error = pss.parse_level(labels.get(level_key, pss.PRIVILEGED))
    if error:
        causes.append(Cause.invalid(f"metadata.labels[{level_key}]", labels[level_key], error))
    minor, error = pss.parse_version(labels.get(version_key, pss.LATEST))
    if error:
        causes.append(Cause.invalid(f"metadata.labels[{version_key}]", labels[version_key], error))
    return Policy(level, minor), causes


def _labels(obj: dict | None) -> dict:
    return ((obj or {}).get("metadata") or {}).get("labels") or {}


def _stripped(pod: dict) -> tuple[dict, dict]:
    """The parts of a pod the checks read, without fields that updates may change harmlessly."""
    spec = copy.deepcopy(pod.get("spec") or {})
    for key in ("activeDeadlineSeconds", "tolerations"):
        spec.pop(key, None)
    for group in ("containers", "initContainers"):
        for container in spec.get(group) or []:
            container.pop("image", None)
    annotations = {k: v for k, v in ((pod.get("metadata") or {}).get("annotations") or {}).items()
                   if k.startswith(_CHECKED_ANNOTATION_PREFIXES)}
    return spec, annotations


def _group_by_failure(pods: list[dict], policy: Policy) -> list[str]:
    """`name: reasons` per pod, identical failures folded as `a (and 2 other pods): reasons`."""
    groups: dict[str, list[str]] = {}
    for pod in pods:
        failures = policy.evaluate(pod.get("metadata") or {}, pod.get("spec") or {})
        if failures:
            reasons = ", ".join(reason for reason, _ in failures)
            groups.setdefault(reasons, []).append((pod.get("metadata") or {}).get("name", ""))
    lines = []
    for reasons, names in groups.items():
        others = len(names) - 1
        who = names[0] if not others else f"{names[0]} (and {others} other {'pod' if others == 1 else 'pods'})"
        lines.append(f"{who}: {reasons}")
    return lines


class PodSecurity(Plugin):
    async def validate(self, req: AdmissionRequest, ctx: AdmissionContext) -> None:
        if req.operation not in (CREATE, UPDATE) or req.obj is None:
            return
        if req.is_core("namespaces") and not req.subresource:
            await self._namespace(req, ctx)
        elif req.is_core("pods") and req.subresource in ("", "ephemeralcontainers"):
            await self._pod(req, ctx)
        elif (req.resource.group, req.resource.plural) in _TEMPLATE_KINDS and not req.subresource:
            await self._template(req, ctx)

    async def _policies(self, req: AdmissionRequest, ctx: AdmissionContext) -> tuple[Policy, Policy]:
        namespace = await ctx.get(NAMESPACES, None, req.namespace) or {}
        labels = _labels(namespace)
        return policy_for(labels, "enforce")[0], policy_for(labels, "warn")[0]

    async def _namespace(self, req: AdmissionRequest, ctx: AdmissionContext) -> None:
        labels = _labels(req.obj)
        causes = [c for mode in MODES for c in policy_for(labels, mode)[1]]
        name = req.object_name()
        if causes:
            raise errors.invalid("Namespace", name, causes)
        if req.operation != UPDATE:
            return
        new, _ = policy_for(labels, "enforce")
        old, _ = policy_for(_labels(req.old_obj), "enforce")
        if new == old or new.level == pss.PRIVILEGED:
            return
        pods = await ctx.list(PODS, name)
        lines = _group_by_failure(pods, new)
        if lines:
            req.warnings.append(f'existing pods in namespace "{name}" violate the new PodSecurity'
                                f' enforce level "{new}"')
            req.warnings.extend(lines)

    async def _pod(self, req: AdmissionRequest, ctx: AdmissionContext) -> None:
        if req.operation == UPDATE and req.old_obj is not None and not req.subresource:
            if _stripped(req.obj) == _stripped(req.old_obj):
                return
        enforce, warn = await self._policies(req, ctx)
        meta, spec = req.obj.get("metadata") or {}, req.obj.get("spec") or {}
        failures = enforce.evaluate(meta, spec)
        if failures:
            raise forbidden(req, f'violates PodSecurity "{enforce}": {pss.describe(failures)}')
        if warn != enforce:
            failures = warn.evaluate(meta, spec)
            if failures:
                req.warnings.append(f'would violate PodSecurity "{warn}": {pss.describe(failures)}')

    async def _template(self, req: AdmissionRequest, ctx: AdmissionContext) -> None:
        template = (req.obj.get("spec") or {}).get("template") or {}
        enforce, warn = await self._policies(req, ctx)
        for policy in (enforce, warn) if warn != enforce else (enforce,):
            failures = policy.evaluate(template.get("metadata") or {}, template.get("spec") or {})
            if failures:
                req.warnings.append(f'would violate PodSecurity "{policy}": {pss.describe(failures)}')
