"""Pod volumes: `configMap`, `secret` and `emptyDir`, as directories under the pod's directory.

`prepare(pod, pod_dir, objects)` writes each volume's files (a ConfigMap's or Secret's keys, or
the listed `items` at their `path`, with `defaultMode`/`mode`) and returns {volume name:
directory}; `mount_plan(container, dirs, scratch)` is what a container's private mount table
binds where (see mounts.py). Files are written once, when the pod starts: later changes to the
ConfigMap or Secret are not propagated (the kubelet's periodic refresh is not implemented).
"""
from __future__ import annotations

import base64
import os

from .env import CONFIGMAPS, SECRETS, ConfigError
from .mounts import Bind, MountPlan, check_target

SUPPORTED = ("configMap", "secret", "emptyDir")


def references(pod: dict) -> set[tuple[str, str]]:
    """The (kind, name) objects the pod's volumes read."""
    refs = set()
    for v in (pod.get("spec") or {}).get("volumes") or []:
        if v.get("configMap"):
            refs.add((CONFIGMAPS, v["configMap"].get("name", "")))
        if v.get("secret"):
            refs.add((SECRETS, v["secret"].get("secretName", "")))
    return refs


def _data(kind, obj):
    if kind == SECRETS:
        return {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
    out = {k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()}
    out.update({k: v.encode() for k, v in (obj.get("data") or {}).items()})
    return out


def _write_files(directory, data, source, kind_word, name, optional):
    items = source.get("items")
    mode = source.get("defaultMode", 0o644)
    files = []
    if items:
        for item in items:
            if item.get("key") not in data:
                if optional:
                    continue
                raise ConfigError(f'configmap references non-existent config key: {item.get("key")}'
                                  if kind_word == "configmap" else
                                  f'references non-existent secret key: {item.get("key")}')
            files.append((item.get("path") or item["key"], data[item["key"]], item.get("mode", mode)))
    else:
        files = [(k, v, mode) for k, v in data.items()]
    for path, content, file_mode in files:
        if os.path.isabs(path) or ".." in path.split("/"):
            raise ConfigError(f"volume {name!r}: item path {path!r} must be relative without '..'")
        full = os.path.join(directory, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "wb") as f:
            f.write(content)
        os.chmod(full, file_mode)


def prepare(pod: dict, pod_dir: str, objects: dict) -> dict[str, str]:
    """Make every volume's directory; {volume name: host directory}. ConfigError when a
    non-optional ConfigMap, Secret or key is missing, or a volume type is not supported."""
    dirs = {}
    for v in (pod.get("spec") or {}).get("volumes") or []:
        name = v.get("name", "")
        if v.get("emptyDir") is not None:
            directory = os.path.join(pod_dir, "volumes", "kubernetes.io~empty-dir", name)
            os.makedirs(directory, mode=0o777, exist_ok=True)
            os.chmod(directory, 0o777)
        elif v.get("configMap") is not None or v.get("secret") is not None:
            kind = CONFIGMAPS if v.get("configMap") is not None else SECRETS
            source = v.get("configMap") or v.get("secret") or {}
            ref = source.get("name") if kind == CONFIGMAPS else source.get("secretName")
            word = "configmap" if kind == CONFIGMAPS else "secret"
            directory = os.path.join(pod_dir, "volumes", f"kubernetes.io~{word}", name)
            os.makedirs(directory, exist_ok=True)
            obj = objects.get((kind, ref))
            if obj is None:
                if source.get("optional"):
                    dirs[name] = directory
                    continue
                raise ConfigError(f'{word} "{ref}" not found (volume {name!r})')
            _write_files(directory, _data(kind, obj), source, word, name, source.get("optional"))
        else:
            kinds = [k for k in v if k != "name"]
            raise ConfigError(f"volume {name!r}: type {', '.join(kinds) or 'none'} is not supported "
                              f"by netsim's kubelet: expected one of {', '.join(SUPPORTED)}")
        dirs[name] = directory
    return dirs


def mount_plan(container: dict, dirs: dict[str, str], scratch: str) -> MountPlan | None:
    """The binds of CONTAINER's volumeMounts, or None when it mounts nothing."""
    binds = []
    for m in container.get("volumeMounts") or []:
        name, target = m.get("name", ""), m.get("mountPath", "")
        where = f"container {container.get('name')!r} volumeMounts[{name!r}]"
        if name not in dirs:
            raise ConfigError(f"{where}: no volume named {name!r} in spec.volumes")
        if m.get("subPath") or m.get("subPathExpr"):
            raise ConfigError(f"{where}: subPath is not supported by netsim's kubelet")
        check_target(target, where)
        binds.append(Bind(dirs[name], target, bool(m.get("readOnly"))))
    if not binds:
        return None
    os.makedirs(scratch, exist_ok=True)
    return MountPlan(binds, scratch)
