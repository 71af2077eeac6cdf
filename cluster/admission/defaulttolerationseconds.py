"""DefaultTolerationSeconds: every pod tolerates a NotReady or unreachable node for 5 minutes.

As upstream's plugin of that name: a pod created (or updated) without a toleration for the
`node.kubernetes.io/not-ready:NoExecute` taint, or for `node.kubernetes.io/unreachable:NoExecute`,
gets one with `tolerationSeconds: 300`, so the node lifecycle controller evicts it five minutes
after its node stops answering rather than at once. A toleration with an empty key (every
taint) or an empty effect (every effect) already covers the taint; the plugin then adds nothing.
Running on updates too keeps `kubectl replace` of the original manifest valid: pod updates may
not remove tolerations.
"""
from __future__ import annotations

from cluster.admission import CREATE, UPDATE, AdmissionContext, AdmissionRequest, Plugin

NOT_READY = "node.kubernetes.io/not-ready"
UNREACHABLE = "node.kubernetes.io/unreachable"
DEFAULT_SECONDS = 300


def tolerates(tolerations: list, key: str) -> bool:
    """Whether one of TOLERATIONS covers the NoExecute taint KEY (upstream's test, not full matching)."""
    return any(isinstance(t, dict) and t.get("key", "") in (key, "")
               and t.get("effect", "") in ("NoExecute", "") for t in tolerations)


class DefaultTolerationSeconds(Plugin):
    def __init__(self, not_ready_seconds: int = DEFAULT_SECONDS, unreachable_seconds: int = DEFAULT_SECONDS):
        self.seconds = {NOT_READY: not_ready_seconds, UNREACHABLE: unreachable_seconds}

    async def admit(self, req: AdmissionRequest, ctx: AdmissionContext) -> None:
        if (req.operation not in (CREATE, UPDATE) or not req.is_core("pods") or req.subresource
                or not isinstance(req.obj, dict) or not isinstance(req.obj.get("spec"), dict)):
            return
        spec = req.obj["spec"]
        tolerations = spec.get("tolerations") or []
        if not isinstance(tolerations, list):
            return  # validation names the field
        missing = [key for key in (NOT_READY, UNREACHABLE) if not tolerates(tolerations, key)]
        if missing:
            spec["tolerations"] = tolerations + [
                {"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": self.seconds[key]}
                for key in missing]
