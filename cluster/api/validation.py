"""Validation of API objects for the fields the emulator uses, as `pkg/apis/*/validation` does it.

`validate(resource, obj, old)` returns field Causes with Kubernetes field paths and upstream's
wording; an empty list means valid. `default` (from `defaults.py`) runs first, as in the real
API server, so validation sees defaulted objects. `unknown_fields` serves fieldValidation=Strict.
"""
from __future__ import annotations

import base64
import binascii
import ipaddress
import json

from cluster.api import names, schema
from cluster.api.defaults import default  # noqa: F401  (part of this module's contract)
from cluster.api.errors import Cause
from cluster.api.resources import Resource
from cluster.api.selectors import from_label_selector

IMMUTABLE = "field is immutable"
TOTAL_ANNOTATION_SIZE = 256 * 1024
CONFIG_MAP_MAX_SIZE = 1024 * 1024
NON_NEGATIVE = "must be greater than or equal to 0"


def unknown_fields(resource: Resource, obj: dict) -> list[str]:
    """Field paths the kind does not define (for fieldValidation=Strict and Warn)."""
    return schema.unknown_fields(resource, obj)


def validate(resource: Resource, obj: dict, old: dict | None = None) -> list[Cause]:
    """Causes that make `obj` invalid on create (old is None) or on update from `old`."""
    mistyped = schema.type_errors(resource, obj)
    if mistyped:
        # The checks below assume the schema's types, as upstream's run on decoded Go structs.
        return [Cause.type_invalid(path, value, f"must be of type {expected}")
                for path, value, expected in mistyped]
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        return [Cause.required("metadata")]
    old_meta = (old or {}).get("metadata") if old is not None else None
    causes = validate_metadata(resource, meta, old_meta)
    check = _BY_KIND.get(resource.kind)
    if check is not None:
        causes += check(obj, old)
    return causes


# --- metadata -------------------------------------------------------------------------------

def name_check(resource: Resource):
    """The name rule of a kind: DNS label, DNS-1035 label, path segment or DNS subdomain."""
    if resource.kind == "Namespace":
        return names.dns1123_label
    if resource.kind == "Service":
        return names.dns1035_label
    if resource.group == "rbac.authorization.k8s.io":
        return names.path_segment_name
    return names.dns1123_subdomain


def validate_metadata(resource: Resource, meta: dict, old_meta: dict | None = None,
                      path: str = "metadata") -> list[Cause]:
    causes: list[Cause] = []
    name = meta.get("name") or ""
    generate_name = meta.get("generateName") or ""
    check = name_check(resource)
    if generate_name and not name:
        # generateName's prefix is checked as a name without its trailing dash.
        prefix = generate_name[:-1] if generate_name.endswith("-") else generate_name
        causes += [Cause.invalid(f"{path}.generateName", generate_name, m) for m in check(prefix)]
    if not name:
        if not generate_name:
            causes.append(Cause.required(f"{path}.name", "name or generateName is required"))
    else:
        causes += [Cause.invalid(f"{path}.name", name, m) for m in check(name)]
    namespace = meta.get("namespace") or ""
    if resource.namespaced:
        if not namespace:
            causes.append(Cause.required(f"{path}.namespace"))
        else:
            causes += [Cause.invalid(f"{path}.namespace", namespace, m)
                       for m in names.dns1123_label(namespace)]
    elif namespace:
        causes.append(Cause.forbidden(f"{path}.namespace", "not allowed on this type"))
    causes += validate_labels(meta.get("labels"), f"{path}.labels")
    causes += validate_annotations(meta.get("annotations"), f"{path}.annotations")
    for i, finalizer in enumerate(meta.get("finalizers") or []):
        causes += [Cause.invalid(f"{path}.finalizers[{i}]", finalizer, m)
                   for m in names.qualified_name(str(finalizer))]
    for i, ref in enumerate(meta.get("ownerReferences") or []):
        for key in ("apiVersion", "kind", "name", "uid"):
            if not (ref or {}).get(key):
                causes.append(Cause.invalid(f"{path}.ownerReferences[{i}].{key}", "",
                                            f"{key} must not be empty"))
    if old_meta is not None:
        for key in ("name", "namespace", "uid", "creationTimestamp"):
            if old_meta.get(key) and meta.get(key) != old_meta.get(key):
                causes.append(Cause.invalid(f"{path}.{key}", meta.get(key), IMMUTABLE))
    return causes


def validate_labels(labels, path: str) -> list[Cause]:
    if labels is None:
        return []
    if not isinstance(labels, dict):
        return [Cause.type_invalid(path, labels, "must be a map of strings")]
    causes = []
    for key, value in labels.items():
        causes += [Cause.invalid(path, key, m) for m in names.qualified_name(key)]
        if not isinstance(value, str):
            causes.append(Cause.type_invalid(f"{path}[{key}]", value, "must be a string"))
            continue
        causes += [Cause.invalid(path, value, m) for m in names.label_value(value)]
    return causes


def validate_annotations(annotations, path: str) -> list[Cause]:
    if annotations is None:
        return []
    if not isinstance(annotations, dict):
        return [Cause.type_invalid(path, annotations, "must be a map of strings")]
    causes = []
    size = 0
    for key, value in annotations.items():
        causes += [Cause.invalid(path, key, m) for m in names.qualified_name(key.lower())]
        if not isinstance(value, str):
            causes.append(Cause.type_invalid(f"{path}[{key}]", value, "must be a string"))
            continue
        size += len(key) + len(value.encode())
    if size > TOTAL_ANNOTATION_SIZE:
        causes.append(Cause.too_long(path, TOTAL_ANNOTATION_SIZE))
    return causes


def validate_label_selector(selector, path: str) -> list[Cause]:
    """A metav1.LabelSelector: matchLabels syntax and matchExpressions operators and values."""
    if selector is None:
        return []
    if not isinstance(selector, dict):
        return [Cause.type_invalid(path, selector, "must be a label selector object")]
    causes = validate_labels(selector.get("matchLabels"), f"{path}.matchLabels")
    for i, req in enumerate(selector.get("matchExpressions") or []):
        p = f"{path}.matchExpressions[{i}]"
        op, values = req.get("operator"), req.get("values") or []
        if op in ("In", "NotIn"):
            if not values:
                causes.append(Cause.required(f"{p}.values",
                                             "must be specified when `operator` is 'In' or 'NotIn'"))
        elif op in ("Exists", "DoesNotExist"):
            if values:
                causes.append(Cause.forbidden(
                    f"{p}.values", "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"))
        else:
            causes.append(Cause.not_supported(f"{p}.operator", op,
                                              ["In", "NotIn", "Exists", "DoesNotExist"]))
        causes += [Cause.invalid(f"{p}.key", req.get("key"), m)
                   for m in names.qualified_name(str(req.get("key") or ""))]
        for j, v in enumerate(values):
            causes += [Cause.invalid(f"{p}.values[{j}]", v, m) for m in names.label_value(str(v))]
    return causes


def selector_matches(selector: dict, labels: dict) -> bool:
    return from_label_selector(selector).matches(labels or {})


# --- small helpers --------------------------------------------------------------------------

def _nonnegative(value, path: str) -> list[Cause]:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
        return [Cause.invalid(path, value, NON_NEGATIVE)]
    return []


def _supported(value, path: str, supported: list[str], required: bool = True) -> list[Cause]:
    if value in (None, ""):
        return [Cause.required(path)] if required else []
    if value not in supported:
        return [Cause.not_supported(path, value, supported)]
    return []


def _port_or_name(value, path: str) -> list[Cause]:
    """An IntOrString port: a number 1-65535 or an IANA service name."""
    if isinstance(value, str):
        if value.isdigit():
            return [Cause.invalid(path, value, m) for m in names.port_number(int(value))]
        return [Cause.invalid(path, value, m) for m in names.iana_svc_name(value)]
    return [Cause.invalid(path, value, m) for m in names.port_number(value)]


def _quantity(value, path: str):
    from cluster.api.quantity import Quantity, QuantityError
    try:
        return Quantity.parse(value), []
    except QuantityError as e:
        return None, [Cause.invalid(path, value, str(e))]


def _resource_list(values, path: str) -> tuple[dict, list[Cause]]:
    """Parsed quantities of a ResourceList, and causes for malformed or negative ones."""
    from cluster.api.quantity import ZERO
    parsed, causes = {}, []
    for name, value in (values or {}).items():
        q, errs = _quantity(value, f"{path}.{name}")
        causes += errs
        if q is not None:
            if q < ZERO:
                causes.append(Cause.invalid(f"{path}.{name}", value, NON_NEGATIVE))
            parsed[name] = q
    return parsed, causes


# --- pods -----------------------------------------------------------------------------------

CONTAINER_KEYS = ("initContainers", "containers")
RESTART_POLICIES = ["Always", "OnFailure", "Never"]
PROTOCOLS = ["SCTP", "TCP", "UDP"]
PULL_POLICIES = ["Always", "IfNotPresent", "Never"]
DNS_POLICIES = ["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"]
FIELD_REF_PATHS = ["metadata.annotations", "metadata.labels", "metadata.name", "metadata.namespace",
                   "metadata.uid", "spec.nodeName", "spec.serviceAccountName", "status.hostIP",
                   "status.hostIPs", "status.podIP", "status.podIPs"]
VOLUME_SOURCES = ("configMap", "secret", "emptyDir", "hostPath", "downwardAPI", "projected",
                  "persistentVolumeClaim", "ephemeral", "image", "nfs", "csi")


def _probe(probe, path: str, single_success: bool) -> list[Cause]:
    if probe is None:
        return []
    causes = []
    handlers = [h for h in ("exec", "httpGet", "tcpSocket", "grpc") if probe.get(h) is not None]
    if not handlers:
        causes.append(Cause.required(path, "must specify a handler type"))
    for extra in handlers[1:]:
        causes.append(Cause.forbidden(f"{path}.{extra}", "may not specify more than 1 handler type"))
    if "exec" in handlers and not (probe["exec"] or {}).get("command"):
        causes.append(Cause.required(f"{path}.exec.command"))
    if "httpGet" in handlers:
        http = probe["httpGet"]
        causes += _port_or_name(http.get("port"), f"{path}.httpGet.port")
        causes += _supported(http.get("scheme"), f"{path}.httpGet.scheme", ["HTTP", "HTTPS"],
                             required=False)
    if "tcpSocket" in handlers:
        causes += _port_or_name(probe["tcpSocket"].get("port"), f"{path}.tcpSocket.port")
    if "grpc" in handlers:
        causes += [Cause.invalid(f"{path}.grpc.port", probe["grpc"].get("port"), m)
                   for m in names.port_number(probe["grpc"].get("port"))]
    for key in ("initialDelaySeconds", "timeoutSeconds", "periodSeconds", "successThreshold",
                "failureThreshold", "terminationGracePeriodSeconds"):
        causes += _nonnegative(probe.get(key), f"{path}.{key}")
    if single_success and probe.get("successThreshold") not in (None, 1):
        causes.append(Cause.invalid(f"{path}.successThreshold", probe["successThreshold"],
                                    "must be 1"))
    return causes


def _env(env, path: str) -> list[Cause]:
    causes = []
    for i, var in enumerate(env or []):
        p = f"{path}[{i}]"
        name = var.get("name") or ""
        if not name:
            causes.append(Cause.required(f"{p}.name"))
        else:
            causes += [Cause.invalid(f"{p}.name", name, m) for m in names.env_var_name(name)]
        source = var.get("valueFrom")
        if source is None:
            continue
        kinds = [k for k in ("fieldRef", "resourceFieldRef", "configMapKeyRef", "secretKeyRef",
                             "fileKeyRef") if source.get(k) is not None]
        if var.get("value"):
            causes.append(Cause.invalid(f"{p}.valueFrom", "",
                                        "may not be specified when `value` is not empty"))
        if not kinds:
            causes.append(Cause.invalid(f"{p}.valueFrom", "", "must specify one of: `fieldRef`, "
                                        "`resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`"))
        elif len(kinds) > 1:
            causes.append(Cause.invalid(f"{p}.valueFrom", "",
                                        "may not have more than one field specified at a time"))
        if "fieldRef" in kinds:
            field_path = source["fieldRef"].get("fieldPath")
            if not field_path:
                causes.append(Cause.required(f"{p}.valueFrom.fieldRef.fieldPath"))
            elif field_path.split("[", 1)[0] not in FIELD_REF_PATHS:
                causes.append(Cause.not_supported(f"{p}.valueFrom.fieldRef.fieldPath", field_path,
                                                  FIELD_REF_PATHS))
        for ref in ("configMapKeyRef", "secretKeyRef"):
            if ref in kinds:
                for key in ("key", "name"):
                    if not source[ref].get(key):
                        causes.append(Cause.required(f"{p}.valueFrom.{ref}.{key}"))
        if "resourceFieldRef" in kinds and not source["resourceFieldRef"].get("resource"):
            causes.append(Cause.required(f"{p}.valueFrom.resourceFieldRef.resource"))
    return causes


def _env_from(env_from, path: str) -> list[Cause]:
    causes = []
    for i, source in enumerate(env_from or []):
        p = f"{path}[{i}]"
        refs = [k for k in ("configMapRef", "secretRef") if source.get(k) is not None]
        if not refs:
            causes.append(Cause.invalid(p, "", "must specify one of: `configMapRef` or `secretRef`"))
        elif len(refs) > 1:
            causes.append(Cause.invalid(p, "", "may not have more than one field specified at a time"))
        for ref in refs:
            name = source[ref].get("name") or ""
            if not name:
                causes.append(Cause.required(f"{p}.{ref}.name"))
            else:
                causes += [Cause.invalid(f"{p}.{ref}.name", name, m)
                           for m in names.dns1123_subdomain(name)]
        prefix = source.get("prefix")
        if prefix:
            causes += [Cause.invalid(f"{p}.prefix", prefix, m) for m in names.env_var_name(prefix)]
    return causes


def _resources(resources, path: str) -> list[Cause]:
    if not resources:
        return []
    limits, causes = _resource_list(resources.get("limits"), f"{path}.limits")
    requests, errs = _resource_list(resources.get("requests"), f"{path}.requests")
    causes += errs
    for name, request in requests.items():
        limit = limits.get(name)
        if limit is not None and request > limit:
            causes.append(Cause.invalid(f"{path}.requests", str(request),
                                        f"must be less than or equal to {name} limit of {limit}"))
    return causes


def _container(c, path: str, volumes: set[str], init: bool) -> list[Cause]:
    causes = []
    name = c.get("name") or ""
    if not name:
        causes.append(Cause.required(f"{path}.name"))
    else:
        causes += [Cause.invalid(f"{path}.name", name, m) for m in names.dns1123_label(name)]
    if not c.get("image"):
        causes.append(Cause.required(f"{path}.image"))
    causes += _supported(c.get("imagePullPolicy"), f"{path}.imagePullPolicy", PULL_POLICIES,
                         required=False)
    for i, port in enumerate(c.get("ports") or []):
        p = f"{path}.ports[{i}]"
        if port.get("containerPort") is None:
            causes.append(Cause.required(f"{p}.containerPort"))
        else:
            causes += [Cause.invalid(f"{p}.containerPort", port["containerPort"], m)
                       for m in names.port_number(port["containerPort"])]
        if port.get("hostPort"):
            causes += [Cause.invalid(f"{p}.hostPort", port["hostPort"], m)
                       for m in names.port_number(port["hostPort"])]
        if port.get("name"):
            causes += [Cause.invalid(f"{p}.name", port["name"], m)
                       for m in names.iana_svc_name(port["name"])]
        causes += _supported(port.get("protocol"), f"{p}.protocol", PROTOCOLS)
    causes += _env(c.get("env"), f"{path}.env")
    causes += _env_from(c.get("envFrom"), f"{path}.envFrom")
    causes += _resources(c.get("resources"), f"{path}.resources")
    restart_policy = c.get("restartPolicy")
    sidecar = init and restart_policy == "Always"
    if init:
        causes += _supported(restart_policy, f"{path}.restartPolicy", ["Always"], required=False)
    elif restart_policy is not None:
        causes += _supported(restart_policy, f"{path}.restartPolicy", RESTART_POLICIES)
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        if init and not sidecar and c.get(probe) is not None:
            causes.append(Cause.forbidden(f"{path}.{probe}", "may not be set for init containers"
                                          " without restartPolicy=Always"))
        else:
            causes += _probe(c.get(probe), f"{path}.{probe}", probe != "readinessProbe")
    if init and not sidecar and c.get("lifecycle") is not None:
        causes.append(Cause.forbidden(f"{path}.lifecycle", "may not be set for init containers"
                                      " without restartPolicy=Always"))
    mount_paths = set()
    for i, mount in enumerate(c.get("volumeMounts") or []):
        p = f"{path}.volumeMounts[{i}]"
        if not mount.get("name"):
            causes.append(Cause.required(f"{p}.name"))
        elif mount["name"] not in volumes:
            causes.append(Cause.not_found(f"{p}.name", mount["name"]))
        mount_path = mount.get("mountPath")
        if not mount_path:
            causes.append(Cause.required(f"{p}.mountPath"))
        elif mount_path in mount_paths:
            causes.append(Cause.invalid(f"{p}.mountPath", mount_path, "must be unique"))
        mount_paths.add(mount_path)
    return causes


def _key_paths(items, path: str) -> list[Cause]:
    causes = []
    for i, item in enumerate(items or []):
        if not item.get("key"):
            causes.append(Cause.required(f"{path}[{i}].key"))
        item_path = item.get("path") or ""
        if not item_path:
            causes.append(Cause.required(f"{path}[{i}].path"))
        elif item_path.startswith("/"):
            causes.append(Cause.invalid(f"{path}[{i}].path", item_path, "must be a relative path"))
        elif ".." in item_path.split("/"):
            causes.append(Cause.invalid(f"{path}[{i}].path", item_path, "must not contain '..'"))
    return causes


def _volumes(volumes, path: str) -> tuple[set[str], list[Cause]]:
    seen: set[str] = set()
    causes = []
    for i, v in enumerate(volumes or []):
        p = f"{path}[{i}]"
        name = v.get("name") or ""
        if not name:
            causes.append(Cause.required(f"{p}.name"))
        else:
            causes += [Cause.invalid(f"{p}.name", name, m) for m in names.dns1123_label(name)]
            if name in seen:
                causes.append(Cause.duplicate(f"{p}.name", name))
            seen.add(name)
        sources = [k for k in v if k != "name" and v[k] is not None]
        if not sources:
            causes.append(Cause.required(p, "must specify a volume type"))
        for extra in sources[1:]:
            causes.append(Cause.forbidden(f"{p}.{extra}", "may not specify more than 1 volume type"))
        if v.get("configMap") is not None:
            if not v["configMap"].get("name"):
                causes.append(Cause.required(f"{p}.configMap.name"))
            causes += _key_paths(v["configMap"].get("items"), f"{p}.configMap.items")
        if v.get("secret") is not None:
            if not v["secret"].get("secretName"):
                causes.append(Cause.required(f"{p}.secret.secretName"))
            causes += _key_paths(v["secret"].get("items"), f"{p}.secret.items")
        if v.get("emptyDir") is not None:
            causes += _supported(v["emptyDir"].get("medium"), f"{p}.emptyDir.medium",
                                 ["", "Memory", "HugePages"], required=False)
            if v["emptyDir"].get("sizeLimit") is not None:
                causes += _quantity(v["emptyDir"]["sizeLimit"], f"{p}.emptyDir.sizeLimit")[1]
        if v.get("hostPath") is not None and not v["hostPath"].get("path"):
            causes.append(Cause.required(f"{p}.hostPath.path"))
    return seen, causes


def _node_selector_requirement(req, path: str) -> list[Cause]:
    op, values = req.get("operator"), req.get("values") or []
    causes = []
    if op in ("In", "NotIn"):
        if not values:
            causes.append(Cause.required(f"{path}.values",
                                         "must be specified when `operator` is 'In' or 'NotIn'"))
    elif op in ("Exists", "DoesNotExist"):
        if values:
            causes.append(Cause.forbidden(f"{path}.values", "may not be specified when `operator`"
                                          " is 'Exists' or 'DoesNotExist'"))
    elif op in ("Gt", "Lt"):
        if len(values) != 1:
            causes.append(Cause.required(f"{path}.values", "must be specified single value when"
                                         " `operator` is 'Lt' or 'Gt'"))
    else:
        causes.append(Cause.invalid(f"{path}.operator", op, "not a valid selector operator"))
    causes += [Cause.invalid(f"{path}.key", req.get("key"), m)
               for m in names.qualified_name(str(req.get("key") or ""))]
    return causes


def _node_selector_term(term, path: str) -> list[Cause]:
    causes = []
    for i, req in enumerate(term.get("matchExpressions") or []):
        causes += _node_selector_requirement(req, f"{path}.matchExpressions[{i}]")
    for i, req in enumerate(term.get("matchFields") or []):
        p = f"{path}.matchFields[{i}]"
        if req.get("key") != "metadata.name":
            causes.append(Cause.invalid(f"{p}.key", req.get("key"), "not a valid field selector key"))
        if req.get("operator") in ("In", "NotIn") and len(req.get("values") or []) != 1:
            causes.append(Cause.required(f"{p}.values",
                                         "must be only one value when `operator` is 'In' or 'NotIn'"
                                         " for node field selector"))
    return causes


def _affinity(affinity, path: str) -> list[Cause]:
    causes = []
    node = (affinity or {}).get("nodeAffinity")
    if not node:
        return causes
    p = f"{path}.nodeAffinity"
    required = node.get("requiredDuringSchedulingIgnoredDuringExecution")
    if required is not None:
        terms = required.get("nodeSelectorTerms") or []
        rp = f"{p}.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms"
        if not terms:
            causes.append(Cause.required(rp, "must have at least one node selector term"))
        for i, term in enumerate(terms):
            causes += _node_selector_term(term, f"{rp}[{i}]")
    for i, pref in enumerate(node.get("preferredDuringSchedulingIgnoredDuringExecution") or []):
        pp = f"{p}.preferredDuringSchedulingIgnoredDuringExecution[{i}]"
        weight = pref.get("weight")
        if not isinstance(weight, int) or not 1 <= weight <= 100:
            causes.append(Cause.invalid(f"{pp}.weight", weight, "must be in the range 1-100"))
        causes += _node_selector_term(pref.get("preference") or {}, f"{pp}.preference")
    return causes


def _tolerations(tolerations, path: str) -> list[Cause]:
    causes = []
    for i, t in enumerate(tolerations or []):
        p = f"{path}[{i}]"
        key, op = t.get("key") or "", t.get("operator") or "Equal"
        if key:
            causes += [Cause.invalid(f"{p}.key", key, m) for m in names.qualified_name(key)]
        elif op != "Exists":
            causes.append(Cause.invalid(f"{p}.operator", op, "operator must be Exists when `key`"
                                        " is empty, which means \"match all values and all keys\""))
        if op == "Exists" and t.get("value"):
            causes.append(Cause.invalid(f"{p}.operator", t["value"],
                                        "value must be empty when `operator` is 'Exists'"))
        elif op not in ("Equal", "Exists"):
            causes.append(Cause.not_supported(f"{p}.operator", op, ["Equal", "Exists"]))
        elif op == "Equal" and t.get("value"):
            causes += [Cause.invalid(f"{p}.value", t["value"], m)
                       for m in names.label_value(str(t["value"]))]
        effect = t.get("effect")
        if effect:
            causes += _supported(effect, f"{p}.effect", ["NoSchedule", "PreferNoSchedule",
                                                         "NoExecute"])
        if t.get("tolerationSeconds") is not None and effect != "NoExecute":
            causes.append(Cause.invalid(f"{p}.effect", effect, "effect must be 'NoExecute' when"
                                        " `tolerationSeconds` is set"))
    return causes


def validate_pod_spec(spec, path: str = "spec", template: bool = False) -> list[Cause]:
    if not isinstance(spec, dict):
        return [Cause.required(path)]
    volumes, causes = _volumes(spec.get("volumes"), f"{path}.volumes")
    if not spec.get("containers"):
        causes.append(Cause.required(f"{path}.containers"))
    seen_containers: set[str] = set()
    port_names: set[str] = set()
    for key in CONTAINER_KEYS:
        for i, c in enumerate(spec.get(key) or []):
            p = f"{path}.{key}[{i}]"
            if not isinstance(c, dict):
                causes.append(Cause.type_invalid(p, c, "must be a container object"))
                continue
            causes += _container(c, p, volumes, init=(key == "initContainers"))
            name = c.get("name")
            if name:
                if name in seen_containers:
                    causes.append(Cause.duplicate(f"{p}.name", name))
                seen_containers.add(name)
            for j, port in enumerate(c.get("ports") or []):
                if port.get("name"):
                    if port["name"] in port_names:
                        causes.append(Cause.duplicate(f"{p}.ports[{j}].name", port["name"]))
                    port_names.add(port["name"])
    causes += _supported(spec.get("restartPolicy"), f"{path}.restartPolicy", RESTART_POLICIES)
    causes += _supported(spec.get("dnsPolicy"), f"{path}.dnsPolicy", DNS_POLICIES, required=False)
    causes += _nonnegative(spec.get("terminationGracePeriodSeconds"),
                           f"{path}.terminationGracePeriodSeconds")
    deadline = spec.get("activeDeadlineSeconds")
    if deadline is not None and (not isinstance(deadline, int) or deadline <= 0):
        causes.append(Cause.invalid(f"{path}.activeDeadlineSeconds", deadline,
                                    "must be between 1 and 2147483647, inclusive"))
    if spec.get("nodeName"):
        causes += [Cause.invalid(f"{path}.nodeName", spec["nodeName"], m)
                   for m in names.dns1123_subdomain(spec["nodeName"])]
    causes += validate_labels(spec.get("nodeSelector"), f"{path}.nodeSelector")
    causes += _affinity(spec.get("affinity"), f"{path}.affinity")
    causes += _tolerations(spec.get("tolerations"), f"{path}.tolerations")
    for key in ("hostname", "subdomain"):
        if spec.get(key):
            causes += [Cause.invalid(f"{path}.{key}", spec[key], m)
                       for m in names.dns1123_label(spec[key])]
    if spec.get("serviceAccountName"):
        causes += [Cause.invalid(f"{path}.serviceAccountName", spec["serviceAccountName"], m)
                   for m in names.dns1123_subdomain(spec["serviceAccountName"])]
    return causes


_POD_MUTABLE_HINT = ("pod updates may not change fields other than `spec.containers[*].image`,"
                     "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,"
                     "`spec.tolerations` (only additions to existing tolerations),"
                     "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was"
                     " previously negative)")


def _pod_spec_without_mutable(spec: dict) -> dict:
    spec = json.loads(json.dumps(spec))
    for key in CONTAINER_KEYS:
        for c in spec.get(key) or []:
            c.pop("image", None)
    for key in ("activeDeadlineSeconds", "tolerations", "schedulingGates"):
        spec.pop(key, None)
    return spec


def _pod(obj: dict, old: dict | None) -> list[Cause]:
    causes = validate_pod_spec(obj.get("spec"))
    if old is not None and isinstance(obj.get("spec"), dict):
        old_spec = old.get("spec") or {}
        if _pod_spec_without_mutable(obj["spec"]) != _pod_spec_without_mutable(old_spec):
            causes.append(Cause.forbidden("spec", _POD_MUTABLE_HINT))
        old_tolerations = old_spec.get("tolerations") or []
        new_tolerations = obj["spec"].get("tolerations") or []
        if any(t not in new_tolerations for t in old_tolerations):
            causes.append(Cause.forbidden("spec.tolerations", "existing toleration can not be"
                                          " modified except its tolerationSeconds"))
    phase = (obj.get("status") or {}).get("phase")
    causes += _supported(phase, "status.phase", ["Pending", "Running", "Succeeded", "Failed",
                                                 "Unknown"], required=False)
    return causes


def _binding(obj: dict, old: dict | None) -> list[Cause]:
    target = obj.get("target") or {}
    if not target.get("name"):
        return [Cause.required("target.name")]
    if target.get("kind") not in (None, "", "Node"):
        return [Cause.not_supported("target.kind", target["kind"], ["Node"])]
    return []


# --- workloads ------------------------------------------------------------------------------

def _go_map(labels: dict) -> str:
    """A label map as upstream's error shows it (Go's %#v of map[string]string)."""
    inner = ", ".join(f"{json.dumps(k)}:{json.dumps(v)}" for k, v in sorted(labels.items()))
    return f"map[string]string{{{inner}}}"


def _template(spec: dict, path: str) -> list[Cause]:
    """A controller's selector and pod template: the selector must select the template's pods."""
    causes = []
    selector = spec.get("selector")
    if selector is None:
        causes.append(Cause.required(f"{path}.selector"))
    else:
        causes += validate_label_selector(selector, f"{path}.selector")
        if not selector.get("matchLabels") and not selector.get("matchExpressions"):
            causes.append(Cause.invalid(f"{path}.selector", selector,
                                        "empty selector is invalid for deployment"))
    template = spec.get("template")
    if not isinstance(template, dict):
        return causes + [Cause.required(f"{path}.template")]
    labels = (template.get("metadata") or {}).get("labels") or {}
    causes += validate_labels(labels, f"{path}.template.metadata.labels")
    if selector and (selector.get("matchLabels") or selector.get("matchExpressions")) and not causes:
        if not selector_matches(selector, labels):
            causes.append(Cause.invalid(f"{path}.template.metadata.labels", _go_map(labels),
                                        "`selector` does not match template `labels`"))
    template_spec = template.get("spec")
    causes += validate_pod_spec(template_spec, f"{path}.template.spec", template=True)
    if isinstance(template_spec, dict) and template_spec.get("restartPolicy") not in (None, "Always"):
        causes.append(Cause.not_supported(f"{path}.template.spec.restartPolicy",
                                          template_spec["restartPolicy"], ["Always"]))
    return causes


def _int_or_percent(value, path: str, is_max_unavailable: bool) -> list[Cause]:
    if isinstance(value, str):
        if not value.endswith("%") or not value[:-1].isdigit():
            return [Cause.invalid(path, value, "a valid percent string must be a numeric string"
                                  " followed by an ending '%' (e.g. '1%',  or '93%', regex used"
                                  " for validation is '[0-9]+%')")]
        if is_max_unavailable and int(value[:-1]) > 100:
            return [Cause.invalid(path, value, "must not be greater than 100%")]
        return []
    return _nonnegative(value, path)


def _is_zero(value) -> bool:
    return value in (0, "0%")


def _workload_common(obj: dict, old: dict | None) -> list[Cause]:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [Cause.required("spec")]
    causes = _nonnegative(spec.get("replicas"), "spec.replicas")
    causes += _nonnegative(spec.get("minReadySeconds"), "spec.minReadySeconds")
    causes += _template(spec, "spec")
    if old is not None:
        old_selector = (old.get("spec") or {}).get("selector")
        if old_selector is not None and spec.get("selector") != old_selector:
            causes.append(Cause.invalid("spec.selector", spec.get("selector"), IMMUTABLE))
    return causes


def _deployment(obj: dict, old: dict | None) -> list[Cause]:
    causes = _workload_common(obj, old)
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return causes
    strategy = spec.get("strategy") or {}
    kind = strategy.get("type")
    causes += _supported(kind, "spec.strategy.type", ["Recreate", "RollingUpdate"])
    rolling = strategy.get("rollingUpdate")
    if kind == "Recreate" and rolling is not None:
        causes.append(Cause.forbidden("spec.strategy.rollingUpdate",
                                      "may not be specified when strategy `type` is 'Recreate'"))
    elif kind == "RollingUpdate" and isinstance(rolling, dict):
        p = "spec.strategy.rollingUpdate"
        causes += _int_or_percent(rolling.get("maxUnavailable"), f"{p}.maxUnavailable", True)
        causes += _int_or_percent(rolling.get("maxSurge"), f"{p}.maxSurge", False)
        if _is_zero(rolling.get("maxUnavailable")) and _is_zero(rolling.get("maxSurge")):
            causes.append(Cause.invalid(f"{p}.maxUnavailable", rolling.get("maxUnavailable"),
                                        "may not be 0 when `maxSurge` is 0"))
    causes += _nonnegative(spec.get("revisionHistoryLimit"), "spec.revisionHistoryLimit")
    deadline = spec.get("progressDeadlineSeconds")
    if deadline is not None:
        causes += _nonnegative(deadline, "spec.progressDeadlineSeconds")
        if isinstance(deadline, int) and deadline <= (spec.get("minReadySeconds") or 0):
            causes.append(Cause.invalid("spec.progressDeadlineSeconds", deadline,
                                        "must be greater than minReadySeconds"))
    return causes


def _scale(obj: dict, old: dict | None) -> list[Cause]:
    return _nonnegative((obj.get("spec") or {}).get("replicas"), "spec.replicas")


# --- services and endpoints -----------------------------------------------------------------

SERVICE_TYPES = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"]


def _cluster_ips(spec: dict) -> list[Cause]:
    causes = []
    cluster_ip = spec.get("clusterIP") or ""
    cluster_ips = spec.get("clusterIPs") or []
    if spec.get("type") == "ExternalName":
        if cluster_ip:
            causes.append(Cause.forbidden("spec.clusterIPs", "may not be set for ExternalName"
                                          " services"))
        return causes
    if cluster_ip and cluster_ips and cluster_ips[0] != cluster_ip:
        causes.append(Cause.invalid("spec.clusterIPs", cluster_ips, "first value must match"
                                    " `clusterIP`"))
    for i, ip in enumerate(cluster_ips or ([cluster_ip] if cluster_ip else [])):
        p = f"spec.clusterIPs[{i}]" if cluster_ips else "spec.clusterIP"
        if ip == "None":
            if i > 0 or len(cluster_ips) > 1:
                causes.append(Cause.invalid(p, ip, "must not contain 'None' alongside IP addresses"))
            continue
        causes += [Cause.invalid(p, ip, m) for m in names.ip_address(ip)]
    return causes


def _service(obj: dict, old: dict | None) -> list[Cause]:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [Cause.required("spec")]
    kind = spec.get("type")
    causes = _supported(kind, "spec.type", SERVICE_TYPES)
    headless = spec.get("clusterIP") == "None"
    ports = spec.get("ports") or []
    if not ports and not headless and kind != "ExternalName":
        causes.append(Cause.required("spec.ports"))
    if kind == "ExternalName":
        external_name = spec.get("externalName") or ""
        if not external_name:
            causes.append(Cause.required("spec.externalName"))
        else:
            causes += [Cause.invalid("spec.externalName", external_name, m)
                       for m in names.dns1123_subdomain(external_name.rstrip("."))]
    port_names: set[str] = set()
    port_keys: set[tuple] = set()
    for i, port in enumerate(ports):
        p = f"spec.ports[{i}]"
        name = port.get("name") or ""
        if len(ports) > 1 and not name:
            causes.append(Cause.required(f"{p}.name"))
        if name:
            causes += [Cause.invalid(f"{p}.name", name, m) for m in names.dns1123_label(name)]
            if name in port_names:
                causes.append(Cause.duplicate(f"{p}.name", name))
            port_names.add(name)
        causes += [Cause.invalid(f"{p}.port", port.get("port"), m)
                   for m in names.port_number(port.get("port"))]
        causes += _supported(port.get("protocol"), f"{p}.protocol", PROTOCOLS)
        if port.get("targetPort") is not None:
            causes += _port_or_name(port["targetPort"], f"{p}.targetPort")
        key = (port.get("port"), port.get("protocol"))
        if key in port_keys:
            causes.append(Cause.duplicate(p, {"port": key[0], "protocol": key[1]}))
        port_keys.add(key)
        node_port = port.get("nodePort")
        if node_port:
            if kind not in ("NodePort", "LoadBalancer"):
                causes.append(Cause.forbidden(f"{p}.nodePort",
                                              f"may not be used when `type` is '{kind}'"))
            causes += [Cause.invalid(f"{p}.nodePort", node_port, m)
                       for m in names.port_number(node_port)]
    causes += _supported(spec.get("sessionAffinity"), "spec.sessionAffinity", ["ClientIP", "None"],
                         required=False)
    timeout = (((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {})
               .get("timeoutSeconds"))
    if spec.get("sessionAffinity") == "ClientIP" and timeout is not None:
        if not isinstance(timeout, int) or not 0 < timeout <= 86400:
            causes.append(Cause.invalid("spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                                        timeout, "must be greater than 0 and less than 86400"))
    elif spec.get("sessionAffinity") != "ClientIP" and spec.get("sessionAffinityConfig"):
        causes.append(Cause.invalid("spec.sessionAffinityConfig", spec["sessionAffinityConfig"],
                                    "must not be set when session affinity is None"))
    causes += _cluster_ips(spec)
    for i, ip in enumerate(spec.get("externalIPs") or []):
        causes += [Cause.invalid(f"spec.externalIPs[{i}]", ip, m) for m in names.ip_address(ip)]
    external_policy = spec.get("externalTrafficPolicy")
    if external_policy:
        causes += _supported(external_policy, "spec.externalTrafficPolicy", ["Cluster", "Local"])
        if kind not in ("NodePort", "LoadBalancer") and not spec.get("externalIPs"):
            causes.append(Cause.invalid("spec.externalTrafficPolicy", external_policy,
                                        "may only be set for externally-accessible services"))
    causes += _supported(spec.get("internalTrafficPolicy"), "spec.internalTrafficPolicy",
                         ["Cluster", "Local"], required=False)
    ranges = spec.get("loadBalancerSourceRanges") or []
    if ranges and kind != "LoadBalancer":
        causes.append(Cause.forbidden("spec.loadBalancerSourceRanges",
                                      "may only be used when `type` is 'LoadBalancer'"))
    for i, r in enumerate(ranges):
        causes += [Cause.invalid(f"spec.loadBalancerSourceRanges[{i}]", r, m)
                   for m in names.cidr(r.strip())]
    if spec.get("selector") is not None:
        causes += validate_labels(spec["selector"], "spec.selector")
    if old is not None:
        old_spec = old.get("spec") or {}
        old_ip = old_spec.get("clusterIP")
        if (old_ip and spec.get("clusterIP") != old_ip and kind != "ExternalName"
                and old_spec.get("type") != "ExternalName"):
            causes.append(Cause.invalid("spec.clusterIPs[0]", spec.get("clusterIP") or "",
                                        "may not change once set"))
    return causes


def _endpoints(obj: dict, old: dict | None) -> list[Cause]:
    causes = []
    for i, subset in enumerate(obj.get("subsets") or []):
        p = f"subsets[{i}]"
        for key in ("addresses", "notReadyAddresses"):
            for j, address in enumerate(subset.get(key) or []):
                causes += [Cause.invalid(f"{p}.{key}[{j}].ip", address.get("ip"), m)
                           for m in names.ip_address(str(address.get("ip") or ""))]
        for j, port in enumerate(subset.get("ports") or []):
            causes += [Cause.invalid(f"{p}.ports[{j}].port", port.get("port"), m)
                       for m in names.port_number(port.get("port"))]
            causes += _supported(port.get("protocol"), f"{p}.ports[{j}].protocol", PROTOCOLS)
    return causes


ADDRESS_TYPES = ["FQDN", "IPv4", "IPv6"]


def _endpoint_address(address: str, address_type: str) -> list[str]:
    if address_type == "IPv4":
        return names.ip_family_address(address, 4)
    if address_type == "IPv6":
        return names.ip_family_address(address, 6)
    return names.dns1123_subdomain(address)


def _endpoint_slice(obj: dict, old: dict | None) -> list[Cause]:
    address_type = obj.get("addressType")
    causes = _supported(address_type, "addressType", ADDRESS_TYPES)
    endpoints = obj.get("endpoints") or []
    if len(endpoints) > 1000:
        causes.append(Cause.too_many("endpoints", len(endpoints), 1000))
    for i, endpoint in enumerate(endpoints):
        p = f"endpoints[{i}]"
        addresses = endpoint.get("addresses") or []
        if not addresses:
            causes.append(Cause.required(f"{p}.addresses", "must contain at least 1 address"))
        elif len(addresses) > 100:
            causes.append(Cause.too_many(f"{p}.addresses", len(addresses), 100))
        if address_type in ADDRESS_TYPES:
            for j, address in enumerate(addresses):
                causes += [Cause.invalid(f"{p}.addresses[{j}]", address, m)
                           for m in _endpoint_address(str(address), address_type)]
        if endpoint.get("nodeName"):
            causes += [Cause.invalid(f"{p}.nodeName", endpoint["nodeName"], m)
                       for m in names.dns1123_subdomain(endpoint["nodeName"])]
    ports = obj.get("ports") or []
    if len(ports) > 100:
        causes.append(Cause.too_many("ports", len(ports), 100))
    port_names: set[str] = set()
    for i, port in enumerate(ports):
        p = f"ports[{i}]"
        name = port.get("name") or ""
        if name:
            causes += [Cause.invalid(f"{p}.name", name, m) for m in names.dns1123_label(name)]
        if name in port_names:
            causes.append(Cause.duplicate(f"{p}.name", name))
        port_names.add(name)
        if port.get("port") is not None:
            causes += [Cause.invalid(f"{p}.port", port["port"], m)
                       for m in names.port_number(port["port"])]
        causes += _supported(port.get("protocol"), f"{p}.protocol", PROTOCOLS)
    if old is not None and old.get("addressType") != address_type:
        causes.append(Cause.invalid("addressType", address_type, IMMUTABLE))
    return causes


# --- networking -----------------------------------------------------------------------------

PATH_TYPES = ["Exact", "ImplementationSpecific", "Prefix"]


def _ingress_backend(backend, path: str) -> list[Cause]:
    if not isinstance(backend, dict):
        return [Cause.required(path)]
    service, resource = backend.get("service"), backend.get("resource")
    if service is not None and resource is not None:
        return [Cause.invalid(path, "", "cannot set both service and resource backends")]
    if service is None and resource is None:
        return [Cause.invalid(path, "", "one backend (service or resource) must be specified")]
    if resource is not None:
        return [] if resource.get("kind") and resource.get("name") else [
            Cause.required(f"{path}.resource", "kind and name are required")]
    causes = []
    name = service.get("name") or ""
    if not name:
        causes.append(Cause.required(f"{path}.service.name"))
    else:
        causes += [Cause.invalid(f"{path}.service.name", name, m) for m in names.dns1035_label(name)]
    port = service.get("port") or {}
    has_name, has_number = bool(port.get("name")), port.get("number") is not None
    if has_name and has_number:
        causes.append(Cause.invalid(f"{path}.service.port", port,
                                    "cannot set both port name & port number"))
    elif has_name:
        causes += [Cause.invalid(f"{path}.service.port.name", port["name"], m)
                   for m in names.iana_svc_name(port["name"])]
    elif has_number:
        causes += [Cause.invalid(f"{path}.service.port.number", port["number"], m)
                   for m in names.port_number(port["number"])]
    else:
        causes.append(Cause.required(f"{path}.service.port", "port name or number is required"))
    return causes


def _ingress(obj: dict, old: dict | None) -> list[Cause]:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [Cause.required("spec")]
    causes = []
    rules = spec.get("rules") or []
    if not rules and spec.get("defaultBackend") is None:
        causes.append(Cause.invalid("spec.rules", rules,
                                    "either `defaultBackend` or `rules` must be specified"))
    if spec.get("defaultBackend") is not None:
        causes += _ingress_backend(spec["defaultBackend"], "spec.defaultBackend")
    if spec.get("ingressClassName"):
        causes += [Cause.invalid("spec.ingressClassName", spec["ingressClassName"], m)
                   for m in names.dns1123_subdomain(spec["ingressClassName"])]
    for i, rule in enumerate(rules):
        p = f"spec.rules[{i}]"
        host = rule.get("host") or ""
        if host:
            if names.is_ip(host):
                causes.append(Cause.invalid(f"{p}.host", host, "must be a DNS name, not an IP address"))
            elif host.startswith("*"):
                causes += [Cause.invalid(f"{p}.host", host, m)
                           for m in names.wildcard_dns1123_subdomain(host)]
            else:
                causes += [Cause.invalid(f"{p}.host", host, m) for m in names.dns1123_subdomain(host)]
        http = rule.get("http")
        if http is None:
            continue
        paths = http.get("paths") or []
        if not paths:
            causes.append(Cause.required(f"{p}.http.paths"))
        for j, http_path in enumerate(paths):
            pp = f"{p}.http.paths[{j}]"
            path_type = http_path.get("pathType")
            if not path_type:
                causes.append(Cause.required(f"{pp}.pathType", "pathType must be specified"))
            elif path_type not in PATH_TYPES:
                causes.append(Cause.not_supported(f"{pp}.pathType", path_type, PATH_TYPES))
            value = http_path.get("path") or ""
            if path_type in ("Exact", "Prefix"):
                if not value.startswith("/"):
                    causes.append(Cause.invalid(f"{pp}.path", value, "must be an absolute path"))
                elif "//" in value:
                    causes.append(Cause.invalid(f"{pp}.path", value, "must not contain '//'"))
            elif value and not value.startswith("/"):
                causes.append(Cause.invalid(f"{pp}.path", value, "must be an absolute path"))
            causes += _ingress_backend(http_path.get("backend"), f"{pp}.backend")
    for i, tls in enumerate(spec.get("tls") or []):
        for j, host in enumerate(tls.get("hosts") or []):
            check = names.wildcard_dns1123_subdomain if host.startswith("*") else names.dns1123_subdomain
            causes += [Cause.invalid(f"spec.tls[{i}].hosts[{j}]", host, m) for m in check(host)]
    return causes


def _ingress_class(obj: dict, old: dict | None) -> list[Cause]:
    controller = (obj.get("spec") or {}).get("controller") or ""
    causes = []
    if not controller:
        causes.append(Cause.required("spec.controller"))
    elif len(controller) > 250:
        causes.append(Cause.too_long("spec.controller", 250))
    elif "/" not in controller or names.dns1123_subdomain(controller.split("/", 1)[0]):
        causes.append(Cause.invalid("spec.controller", controller,
                                    "must be a domain-prefixed path (such as \"acme.io/foo\")"))
    if old is not None and (old.get("spec") or {}).get("controller") != controller:
        causes.append(Cause.invalid("spec.controller", controller, IMMUTABLE))
    return causes


def _network_policy_port(port, path: str) -> list[Cause]:
    causes = _supported(port.get("protocol"), f"{path}.protocol", PROTOCOLS, required=False)
    value = port.get("port")
    if value is not None:
        causes += _port_or_name(value, f"{path}.port")
    end_port = port.get("endPort")
    if end_port is not None:
        if not isinstance(value, int):
            causes.append(Cause.required(f"{path}.port", "must be specified when endPort is"
                                         " specified" if value is None else
                                         "must be a numerical port when endPort is specified"))
        else:
            causes += [Cause.invalid(f"{path}.endPort", end_port, m)
                       for m in names.port_number(end_port)]
            if isinstance(end_port, int) and end_port < value:
                causes.append(Cause.invalid(f"{path}.endPort", end_port,
                                            "must be greater than or equal to `port`"))
    return causes


def _network_policy_peer(peer, path: str) -> list[Cause]:
    selectors = [k for k in ("podSelector", "namespaceSelector", "ipBlock") if peer.get(k) is not None]
    causes = []
    if not selectors:
        causes.append(Cause.required(path, "must specify a peer"))
    if "ipBlock" in selectors and len(selectors) > 1:
        causes.append(Cause.forbidden(path, "may not specify both ipBlock and another peer"))
    causes += validate_label_selector(peer.get("podSelector"), f"{path}.podSelector")
    causes += validate_label_selector(peer.get("namespaceSelector"), f"{path}.namespaceSelector")
    block = peer.get("ipBlock")
    if block is not None:
        cidr = block.get("cidr") or ""
        if not cidr:
            causes.append(Cause.required(f"{path}.ipBlock.cidr"))
            return causes
        errs = names.cidr(cidr)
        causes += [Cause.invalid(f"{path}.ipBlock.cidr", cidr, m) for m in errs]
        for i, exc in enumerate(block.get("except") or []):
            exc_errs = names.cidr(exc)
            causes += [Cause.invalid(f"{path}.ipBlock.except[{i}]", exc, m) for m in exc_errs]
            if not errs and not exc_errs:
                outer = ipaddress.ip_network(cidr, strict=False)
                inner = ipaddress.ip_network(exc, strict=False)
                if inner.version != outer.version or not inner.subnet_of(outer) or inner == outer:
                    causes.append(Cause.invalid(f"{path}.ipBlock.except[{i}]", exc,
                                                "must be a strict subset of `cidr`"))
    return causes


def _network_policy(obj: dict, old: dict | None) -> list[Cause]:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [Cause.required("spec")]
    causes = validate_label_selector(spec.get("podSelector") or {}, "spec.podSelector")
    types = spec.get("policyTypes") or []
    if len(types) > 2:
        causes.append(Cause.invalid("spec.policyTypes", types, "may not specify more than two"
                                    " policyTypes"))
    for i, t in enumerate(types):
        causes += _supported(t, f"spec.policyTypes[{i}]", ["Ingress", "Egress"])
    for direction, peers in (("ingress", "from"), ("egress", "to")):
        for i, rule in enumerate(spec.get(direction) or []):
            p = f"spec.{direction}[{i}]"
            for j, port in enumerate((rule or {}).get("ports") or []):
                causes += _network_policy_port(port, f"{p}.ports[{j}]")
            for j, peer in enumerate((rule or {}).get(peers) or []):
                causes += _network_policy_peer(peer, f"{p}.{peers}[{j}]")
    return causes


# --- configuration --------------------------------------------------------------------------

def _keys(data, path: str) -> list[Cause]:
    causes = []
    for key in data or {}:
        causes += [Cause.invalid(path, key, m) for m in names.config_map_key(key)]
    return causes


def _immutable_data(obj: dict, old: dict | None, keys: tuple[str, ...]) -> list[Cause]:
    if old is None or not old.get("immutable"):
        return []
    causes = []
    if not obj.get("immutable"):
        causes.append(Cause.forbidden("immutable", "field is immutable when `immutable` is set"))
    for key in keys:
        if obj.get(key) != old.get(key):
            causes.append(Cause.forbidden(key, "field is immutable when `immutable` is set"))
    return causes


def _config_map(obj: dict, old: dict | None) -> list[Cause]:
    data, binary = obj.get("data") or {}, obj.get("binaryData") or {}
    causes = _keys(data, "data") + _keys(binary, "binaryData")
    for key in data:
        if key in binary:
            causes.append(Cause.invalid("data", key, "duplicate of key present in binaryData"))
    size = sum(len(k) + len(str(v).encode()) for k, v in data.items())
    size += sum(len(k) + len(str(v)) * 3 // 4 for k, v in binary.items())
    if size > CONFIG_MAP_MAX_SIZE:
        causes.append(Cause.too_long("", CONFIG_MAP_MAX_SIZE))
    for key, value in binary.items():
        causes += _base64(value, f"binaryData[{key}]")
    return causes + _immutable_data(obj, old, ("data", "binaryData"))


def _base64(value, path: str) -> list[Cause]:
    try:
        base64.b64decode(str(value), validate=True)
    except (binascii.Error, ValueError) as e:
        return [Cause.invalid(path, "<value omitted>", f"illegal base64 data: {e}")]
    return []


SECRET_REQUIRED_KEYS = {
    "kubernetes.io/dockerconfigjson": (".dockerconfigjson",),
    "kubernetes.io/dockercfg": (".dockercfg",),
    "kubernetes.io/tls": ("tls.crt", "tls.key"),
    "kubernetes.io/basic-auth": (),
    "kubernetes.io/ssh-auth": ("ssh-privatekey",),
}


def _secret(obj: dict, old: dict | None) -> list[Cause]:
    data = obj.get("data") or {}
    causes = _keys(data, "data")
    total = 0
    for key, value in data.items():
        causes += _base64(value, f"data[{key}]")
        total += len(str(value)) * 3 // 4
    if total > CONFIG_MAP_MAX_SIZE:
        causes.append(Cause.too_long("data", CONFIG_MAP_MAX_SIZE))
    secret_type = obj.get("type") or "Opaque"
    for key in SECRET_REQUIRED_KEYS.get(secret_type, ()):
        if key not in data:
            causes.append(Cause.required(f"data[{key}]"))
    if secret_type == "kubernetes.io/service-account-token":
        annotations = (obj.get("metadata") or {}).get("annotations") or {}
        if not annotations.get("kubernetes.io/service-account.name"):
            causes.append(Cause.required("metadata.annotations[kubernetes.io/service-account.name]"))
    if old is not None and (old.get("type") or "Opaque") != secret_type:
        causes.append(Cause.invalid("type", secret_type, IMMUTABLE))
    return causes + _immutable_data(obj, old, ("data",))


def _namespace(obj: dict, old: dict | None) -> list[Cause]:
    causes = []
    for i, finalizer in enumerate((obj.get("spec") or {}).get("finalizers") or []):
        causes += [Cause.invalid(f"spec.finalizers[{i}]", finalizer, m)
                   for m in names.qualified_name(str(finalizer))]
    return causes


def _node(obj: dict, old: dict | None) -> list[Cause]:
    spec = obj.get("spec") or {}
    causes = []
    for i, cidr in enumerate(spec.get("podCIDRs") or []):
        causes += [Cause.invalid(f"spec.podCIDRs[{i}]", cidr, m) for m in names.cidr(cidr)]
    if spec.get("podCIDR") and spec.get("podCIDRs") and spec["podCIDRs"][0] != spec["podCIDR"]:
        causes.append(Cause.invalid("spec.podCIDRs", spec["podCIDRs"],
                                    "first value must match `podCIDR`"))
    for i, taint in enumerate(spec.get("taints") or []):
        p = f"spec.taints[{i}]"
        causes += [Cause.invalid(f"{p}.key", taint.get("key"), m)
                   for m in names.qualified_name(str(taint.get("key") or ""))]
        causes += _supported(taint.get("effect"), f"{p}.effect",
                             ["NoSchedule", "PreferNoSchedule", "NoExecute"])
    if old is not None:
        old_cidrs = (old.get("spec") or {}).get("podCIDRs")
        if old_cidrs and spec.get("podCIDRs") != old_cidrs:
            causes.append(Cause.forbidden("spec.podCIDRs", "node updates may not change podCIDR"
                                          " except from \"\" to valid"))
    return causes


def _limit_range(obj: dict, old: dict | None) -> list[Cause]:
    causes = []
    for i, item in enumerate((obj.get("spec") or {}).get("limits") or []):
        p = f"spec.limits[{i}]"
        causes += _supported(item.get("type"), f"{p}.type",
                             ["Container", "PersistentVolumeClaim", "Pod"])
        parsed = {}
        for key in ("max", "min", "default", "defaultRequest", "maxLimitRequestRatio"):
            parsed[key], errs = _resource_list(item.get(key), f"{p}.{key}")
            causes += errs
        if item.get("type") == "Pod":
            for key in ("default", "defaultRequest"):
                if parsed[key]:
                    causes.append(Cause.forbidden(f"{p}.{key}", "may not be specified when `type`"
                                                  " is 'Pod'"))
        for name, low in parsed["min"].items():
            high = parsed["max"].get(name)
            if high is not None and low > high:
                causes.append(Cause.invalid(f"{p}.min[{name}]", str(low),
                                            f"min value {low} is greater than max value {high}"))
        for key in ("default", "defaultRequest"):
            for name, value in parsed[key].items():
                low, high = parsed["min"].get(name), parsed["max"].get(name)
                if low is not None and value < low:
                    causes.append(Cause.invalid(f"{p}.{key}[{name}]", str(value),
                                                f"min value {low} is greater than {key} value"
                                                f" {value}"))
                if high is not None and value > high:
                    causes.append(Cause.invalid(f"{p}.{key}[{name}]", str(value),
                                                f"{key} value {value} is greater than max value"
                                                f" {high}"))
        for name, request in parsed["defaultRequest"].items():
            limit = parsed["default"].get(name)
            if limit is not None and request > limit:
                causes.append(Cause.invalid(f"{p}.defaultRequest[{name}]", str(request),
                                            f"default request value {request} is greater than"
                                            f" default limit value {limit}"))
    return causes


QUOTA_SCOPES = ["Terminating", "NotTerminating", "BestEffort", "NotBestEffort", "PriorityClass",
                "CrossNamespacePodAffinity", "VolumeAttributesClass"]


def _resource_quota(obj: dict, old: dict | None) -> list[Cause]:
    spec = obj.get("spec") or {}
    hard = spec.get("hard") or {}
    _, causes = _resource_list(hard, "spec.hard")
    for name in hard:
        causes += [Cause.invalid("spec.hard", name, m) for m in names.qualified_name(name)]
    for i, scope in enumerate(spec.get("scopes") or []):
        causes += _supported(scope, f"spec.scopes[{i}]", QUOTA_SCOPES)
    for key in ("hard", "used"):
        causes += _resource_list((obj.get("status") or {}).get(key), f"status.{key}")[1]
    return causes


# --- RBAC and coordination ------------------------------------------------------------------

def _policy_rules(rules, path: str, namespaced: bool) -> list[Cause]:
    causes = []
    for i, rule in enumerate(rules or []):
        p = f"{path}[{i}]"
        if not rule.get("verbs"):
            causes.append(Cause.required(f"{p}.verbs", "verbs must contain at least one value"))
        resources, urls = rule.get("resources"), rule.get("nonResourceURLs")
        if urls:
            if namespaced:
                causes.append(Cause.invalid(f"{p}.nonResourceURLs", urls, "namespaced rules cannot"
                                            " apply to non-resource URLs"))
            if rule.get("apiGroups") or rule.get("resources") or rule.get("resourceNames"):
                causes.append(Cause.invalid(f"{p}.nonResourceURLs", urls, "rules cannot apply to"
                                            " both regular resources and non-resource URLs"))
            continue
        if not resources:
            causes.append(Cause.required(f"{p}.resources", "resource rules must supply at least"
                                         " one resource"))
        if not rule.get("apiGroups"):
            causes.append(Cause.required(f"{p}.apiGroups", "resource rules must supply at least"
                                         " one api group"))
    return causes


def _role(obj: dict, old: dict | None) -> list[Cause]:
    return _policy_rules(obj.get("rules"), "rules", namespaced=True)


def _cluster_role(obj: dict, old: dict | None) -> list[Cause]:
    causes = _policy_rules(obj.get("rules"), "rules", namespaced=False)
    aggregation = obj.get("aggregationRule")
    if aggregation is not None:
        selectors = aggregation.get("clusterRoleSelectors") or []
        if not selectors:
            causes.append(Cause.required("aggregationRule.clusterRoleSelectors"))
        for i, s in enumerate(selectors):
            causes += validate_label_selector(s, f"aggregationRule.clusterRoleSelectors[{i}]")
    return causes


RBAC_GROUP = "rbac.authorization.k8s.io"


def _role_binding(obj: dict, old: dict | None, cluster: bool = False) -> list[Cause]:
    role_ref = obj.get("roleRef") or {}
    causes = []
    if role_ref.get("apiGroup") != RBAC_GROUP:
        causes.append(Cause.not_supported("roleRef.apiGroup", role_ref.get("apiGroup"), [RBAC_GROUP]))
    kinds = ["ClusterRole"] if cluster else ["Role", "ClusterRole"]
    causes += _supported(role_ref.get("kind"), "roleRef.kind", kinds)
    name = role_ref.get("name") or ""
    if not name:
        causes.append(Cause.required("roleRef.name"))
    else:
        causes += [Cause.invalid("roleRef.name", name, m) for m in names.path_segment_name(name)]
    for i, subject in enumerate(obj.get("subjects") or []):
        p = f"subjects[{i}]"
        kind = subject.get("kind")
        causes += _supported(kind, f"{p}.kind", ["ServiceAccount", "User", "Group"])
        if not subject.get("name"):
            causes.append(Cause.required(f"{p}.name"))
        if kind == "ServiceAccount":
            if subject.get("apiGroup"):
                causes.append(Cause.not_supported(f"{p}.apiGroup", subject["apiGroup"], [""]))
            if cluster and not subject.get("namespace"):
                causes.append(Cause.required(f"{p}.namespace"))
        elif kind in ("User", "Group") and subject.get("apiGroup") != RBAC_GROUP:
            causes.append(Cause.not_supported(f"{p}.apiGroup", subject.get("apiGroup"), [RBAC_GROUP]))
    if old is not None and old.get("roleRef") != obj.get("roleRef"):
        causes.append(Cause.invalid("roleRef", role_ref, "cannot change roleRef"))
    return causes


def _cluster_role_binding(obj: dict, old: dict | None) -> list[Cause]:
    return _role_binding(obj, old, cluster=True)


def _lease(obj: dict, old: dict | None) -> list[Cause]:
    spec = obj.get("spec") or {}
    causes = []
    duration = spec.get("leaseDurationSeconds")
    if duration is not None and (not isinstance(duration, int) or duration <= 0):
        causes.append(Cause.invalid("spec.leaseDurationSeconds", duration, "must be greater than 0"))
    causes += _nonnegative(spec.get("leaseTransitions"), "spec.leaseTransitions")
    return causes


def _service_account(obj: dict, old: dict | None) -> list[Cause]:
    causes = []
    for i, ref in enumerate(obj.get("imagePullSecrets") or []):
        if not ref.get("name"):
            causes.append(Cause.required(f"imagePullSecrets[{i}].name"))
    return causes


def _event(obj: dict, old: dict | None) -> list[Cause]:
    involved = obj.get("involvedObject") or {}
    namespace = (obj.get("metadata") or {}).get("namespace")
    if involved.get("namespace") and namespace and involved["namespace"] != namespace:
        return [Cause.invalid("involvedObject.namespace", involved["namespace"],
                              "does not match event.namespace")]
    return []


_BY_KIND = {
    "Pod": _pod,
    "Binding": _binding,
    "Deployment": _deployment,
    "ReplicaSet": _workload_common,
    "Scale": _scale,
    "Service": _service,
    "Endpoints": _endpoints,
    "EndpointSlice": _endpoint_slice,
    "Ingress": _ingress,
    "IngressClass": _ingress_class,
    "NetworkPolicy": _network_policy,
    "ConfigMap": _config_map,
    "Secret": _secret,
    "Namespace": _namespace,
    "Node": _node,
    "LimitRange": _limit_range,
    "ResourceQuota": _resource_quota,
    "Role": _role,
    "ClusterRole": _cluster_role,
    "RoleBinding": _role_binding,
    "ClusterRoleBinding": _cluster_role_binding,
    "Lease": _lease,
    "ServiceAccount": _service_account,
    "Event": _event,
}
