"""A container's environment and argv, as the kubelet's makeEnvironmentVariables builds them: pure.

Order and precedence follow upstream: `envFrom` sources in order (ConfigMap or Secret keys,
with their `prefix`; keys that are not valid variable names are skipped), then `env` entries,
which override; an `env` value's `$(VAR)` references expand against the variables defined
before it; `valueFrom` reads the downward API (`fieldRef`, `resourceFieldRef`) or a key of a
ConfigMap or Secret. `command` and `args` expand `$(VAR)` against the final environment.

A reference that cannot be resolved (a missing ConfigMap, Secret or key that is not optional)
raises ConfigError, whose message is the one upstream puts in the container's
`CreateContainerConfigError` waiting state.
"""
from __future__ import annotations

import base64
import re

from cluster.api.quantity import Quantity, QuantityError
from netsim.containers.images import expand

CONFIGMAPS, SECRETS = "configmaps", "secrets"
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_FIELD_KEY = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")


class ConfigError(ValueError):
    """A container's environment cannot be built yet (CreateContainerConfigError)."""


def references(container: dict) -> set[tuple[str, str]]:
    """The (CONFIGMAPS|SECRETS, name) objects the container's environment reads."""
    refs = set()
    for source in container.get("envFrom") or []:
        if source.get("configMapRef"):
            refs.add((CONFIGMAPS, source["configMapRef"].get("name", "")))
        if source.get("secretRef"):
            refs.add((SECRETS, source["secretRef"].get("name", "")))
    for item in container.get("env") or []:
        value_from = item.get("valueFrom") or {}
        if value_from.get("configMapKeyRef"):
            refs.add((CONFIGMAPS, value_from["configMapKeyRef"].get("name", "")))
        if value_from.get("secretKeyRef"):
            refs.add((SECRETS, value_from["secretKeyRef"].get("name", "")))
    return refs


def object_data(kind: str, obj: dict) -> dict[str, str]:
    """A ConfigMap's data, or a Secret's data decoded (stringData is folded in by the server)."""
    if kind == SECRETS:
        out = {k: base64.b64decode(v).decode(errors="replace") for k, v in (obj.get("data") or {}).items()}
        out.update(obj.get("stringData") or {})
        return out
    out = {k: base64.b64decode(v).decode(errors="replace") for k, v in (obj.get("binaryData") or {}).items()}
    out.update(obj.get("data") or {})
    return out


_KIND_WORD = {CONFIGMAPS: "ConfigMap", SECRETS: "Secret"}


def _singular(kind):
    return "configmap" if kind == CONFIGMAPS else "secret"


def field_value(pod: dict, path: str, pod_ips: list[str], host_ips: list[str]) -> str:
    """The downward API's value of fieldPath PATH (upstream's podFieldSelectorRuntimeValue)."""
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    simple = {
        "metadata.name": meta.get("name", ""), "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""), "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.podIP": pod_ips[0] if pod_ips else "", "status.podIPs": ",".join(pod_ips),
        "status.hostIP": host_ips[0] if host_ips else "", "status.hostIPs": ",".join(host_ips),
    }
    if path in simple:
        return simple[path]
    if path in ("metadata.labels", "metadata.annotations"):
        values = meta.get(path.split(".")[1]) or {}
        return "\n".join(f'{k}="{v}"' for k, v in sorted(values.items()))
    m = _FIELD_KEY.match(path)
    if m:
        return (meta.get(m.group(1)) or {}).get(m.group(2), "")
    raise ConfigError(f"fieldRef.fieldPath {path!r} is not supported: expected one of "
                      f"{', '.join(sorted(simple))}, metadata.labels['KEY'], metadata.annotations['KEY']")


def resource_value(container: dict, ref: dict, allocatable: dict) -> str:
    """resourceFieldRef: the container's limit (node allocatable when unset) or request, in DIVISOR units."""
    resource = ref.get("resource", "")
    kind, _, name = resource.partition(".")
    if kind not in ("limits", "requests") or name not in ("cpu", "memory", "ephemeral-storage"):
        raise ConfigError(f"resourceFieldRef.resource {resource!r}: expected limits.cpu, limits.memory, "
                          "requests.cpu or requests.memory")
    raw = ((container.get("resources") or {}).get(kind) or {}).get(name)
    if raw is None:
        raw = allocatable.get(name, "0") if kind == "limits" else "0"
    try:
        value = Quantity.parse(raw)
        divisor = Quantity.parse(ref.get("divisor") or "1")
    except QuantityError as e:
        raise ConfigError(f"resourceFieldRef {resource}: {e}") from None
    if divisor.is_zero():
        divisor = Quantity.parse("1")
    return str(-(-value.nanos // divisor.nanos))  # rounded up, as upstream's ConvertResourceCPUToString


def _source_values(kind, name, optional, objects):
    obj = objects.get((kind, name))
    if obj is None:
        if optional:
            return None
        raise ConfigError(f'{_singular(kind)} "{name}" not found')
    return object_data(kind, obj)


def environment(pod: dict, container: dict, pod_ips: list[str], host_ips: list[str],
                objects: dict, allocatable: dict | None = None) -> dict[str, str]:
    """The container's variables (without PATH); OBJECTS maps (kind, name) to the object or None."""
    allocatable = allocatable or {}
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        for kind, key in ((CONFIGMAPS, "configMapRef"), (SECRETS, "secretRef")):
            ref = source.get(key)
            if not ref:
                continue
            data = _source_values(kind, ref.get("name", ""), ref.get("optional"), objects)
            for k, v in (data or {}).items():
                if _ENV_NAME.match(prefix + k):
                    env[prefix + k] = v
    for item in container.get("env") or []:
        name = item.get("name", "")
        if "valueFrom" not in item:
            env[name] = expand(str(item.get("value", "")), env)
            continue
        value_from = item["valueFrom"] or {}
        if value_from.get("fieldRef"):
            env[name] = field_value(pod, value_from["fieldRef"].get("fieldPath", ""), pod_ips, host_ips)
        elif value_from.get("resourceFieldRef"):
            env[name] = resource_value(container, value_from["resourceFieldRef"], allocatable)
        else:
            for kind, key in ((CONFIGMAPS, "configMapKeyRef"), (SECRETS, "secretKeyRef")):
                ref = value_from.get(key)
                if not ref:
                    continue
                data = _source_values(kind, ref.get("name", ""), ref.get("optional"), objects)
                if data is None:
                    break
                if ref.get("key") not in data:
                    if ref.get("optional"):
                        break
                    raise ConfigError(f"couldn't find key {ref.get('key')} in {_KIND_WORD[kind]} "
                                      f"{pod['metadata'].get('namespace')}/{ref.get('name')}")
                env[name] = data[ref["key"]]
                break
    return env


def argv(container: dict, env: dict[str, str]) -> list[str]:
    """command + args with $(VAR) expanded (the image's entrypoint is not known here)."""
    return [expand(str(a), env) for a in (container.get("command") or []) + (container.get("args") or [])]
