"""Label and field selectors: parsing the query-string forms and matching objects.

Label selectors follow apimachinery's `labels.Parse`: equality (`=`, `==`, `!=`), sets (`in`,
`notin`), existence (`key`, `!key`) and the numeric `>`/`<`; `from_label_selector` reads the
metav1.LabelSelector of a Deployment or NetworkPolicy. Field selectors support the fields
upstream registers per kind (`metadata.name`, `spec.nodeName`, `status.phase`, ...).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from cluster.api import names
from cluster.api.errors import APIError, bad_request
from cluster.api.resources import Resource

EQUALS, DOUBLE_EQUALS, NOT_EQUALS = "=", "==", "!="
IN, NOT_IN, EXISTS, DOES_NOT_EXIST, GT, LT = "in", "notin", "exists", "!", "gt", "lt"


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str
    values: tuple[str, ...] = ()

    def matches(self, labels: dict) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        op = self.operator
        if op in (EQUALS, DOUBLE_EQUALS, IN):
            return present and value in self.values
        if op in (NOT_EQUALS, NOT_IN):
            return not present or value not in self.values
        if op == EXISTS:
            return present
        if op == DOES_NOT_EXIST:
            return not present
        try:
            have, want = int(value), int(self.values[0])
        except (TypeError, ValueError):
            return False
        return have > want if op == GT else have < want

    def __str__(self) -> str:
        op = self.operator
        if op == EXISTS:
            return self.key
        if op == DOES_NOT_EXIST:
            return f"!{self.key}"
        if op in (IN, NOT_IN):
            return f"{self.key} {op} ({','.join(sorted(self.values))})"
        symbol = {GT: ">", LT: "<"}.get(op, op)
        return f"{self.key}{symbol}{self.values[0]}"


@dataclass(frozen=True)
class LabelSelector:
    """A conjunction of requirements; `nothing` selects no object (a nil metav1 selector)."""

    requirements: tuple[Requirement, ...] = ()
    nothing: bool = False

    def matches(self, labels: dict | None) -> bool:
        if self.nothing:
            return False
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    def empty(self) -> bool:
        return not self.nothing and not self.requirements

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


_TOKEN = re.compile(r"\s*(==|!=|=|>|<|!|\(|\)|,|[^\s=!<>(),]+)")


def _tokens(text: str) -> list[str]:
    tokens, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            break
        tokens.append(m.group(1))
        pos = m.end()
        if text[pos:].strip() == "":
            break
    return tokens


def _selector_error(text: str, detail: str) -> APIError:
    return bad_request(f"unable to parse requirement: {detail} (in label selector {text!r})")


def _check_key(text: str, key: str) -> None:
    errs = names.qualified_name(key)
    if errs:
        raise _selector_error(text, f"key: Invalid value: {key!r}: {'; '.join(errs)}")


def _check_value(text: str, value: str) -> None:
    errs = names.label_value(value)
    if errs:
        raise _selector_error(text, f"values[0]: Invalid value: {value!r}: {'; '.join(errs)}")


def parse_label_selector(text: str | None) -> LabelSelector:
    """The `labelSelector` query parameter; an APIError 400 names the selector when it is bad."""
    text = text or ""
    tokens = _tokens(text)
    requirements = []
    i = 0

    def peek(offset=0):
        return tokens[i + offset] if i + offset < len(tokens) else ""

    while i < len(tokens):
        if peek() == "!":
            key = peek(1)
            if not key or key in ",()=!<>":
                raise _selector_error(text, f"found '{key}', expected: identifier after '!'")
            _check_key(text, key)
            requirements.append(Requirement(key, DOES_NOT_EXIST))
            i += 2
        else:
            key = peek()
            if key in ("", ",", "(", ")", "=", "==", "!=", "<", ">"):
                raise _selector_error(text, f"found '{key}', expected: !, identifier, or 'end of"
                                      " string'")
            _check_key(text, key)
            op = peek(1)
            if op in ("", ","):
                requirements.append(Requirement(key, EXISTS))
                i += 1
            elif op in ("=", "==", "!=", ">", "<"):
                value = peek(2)
                if value in (",", "(", ")", "=", "!=", "==", "<", ">", "!"):
                    raise _selector_error(text, f"found '{value}', expected: identifier")
                if op in (">", "<"):
                    if not re.fullmatch(r"-?\d+", value):
                        raise _selector_error(text, f"for 'Gt', 'Lt' operators, the value must be"
                                              f" an integer: {value!r}")
                    requirements.append(Requirement(key, GT if op == ">" else LT, (value,)))
                else:
                    _check_value(text, value)
                    requirements.append(Requirement(key, NOT_EQUALS if op == "!=" else op, (value,)))
                i += 3 if value else 2
            elif op in ("in", "notin"):
                if peek(2) != "(":
                    raise _selector_error(text, f"found '{peek(2)}', expected: '('")
                i += 3
                values = []
                while True:
                    tok = peek()
                    if tok == ")":
                        if not values or values[-1] is None:
                            values.append("")
                        i += 1
                        break
                    if tok == ",":
                        if not values or values[-1] is None:
                            values.append("")
                        values.append(None)
                        i += 1
                        continue
                    if tok == "":
                        raise _selector_error(text, "found '', expected: ',', ')' or identifier")
                    if values and values[-1] is not None:
                        raise _selector_error(text, f"found '{tok}', expected: ',' or ')'")
                    if values:
                        values.pop()
                    values.append(tok)
                    i += 1
                vals = tuple(v for v in values if v is not None)
                for v in vals:
                    _check_value(text, v)
                requirements.append(Requirement(key, op, vals))
            else:
                raise _selector_error(text, f"found '{op}', expected: in, notin, =, ==, !=, gt,"
                                      " lt")
        if i < len(tokens):
            if peek() != ",":
                raise _selector_error(text, f"found '{peek()}', expected: ',' or 'end of string'")
            i += 1
            if i == len(tokens):
                raise _selector_error(text, "found '', expected: identifier after ','")
    return LabelSelector(tuple(requirements))


_EXPRESSION_OPERATORS = {"In": IN, "NotIn": NOT_IN, "Exists": EXISTS, "DoesNotExist": DOES_NOT_EXIST}


def from_label_selector(selector: dict | None) -> LabelSelector:
    """A metav1.LabelSelector: None selects nothing, {} selects everything."""
    if selector is None:
        return LabelSelector(nothing=True)
    requirements = [Requirement(k, EQUALS, (v,)) for k, v in
                    sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        op = _EXPRESSION_OPERATORS.get(expr.get("operator"))
        if op is None:
            raise bad_request(f"{expr.get('operator')!r} is not a valid label selector operator")
        requirements.append(Requirement(expr.get("key", ""), op, tuple(expr.get("values") or ())))
    return LabelSelector(tuple(requirements))


def selector_string(selector: dict | None) -> str:
    """A metav1.LabelSelector as kubectl prints it (`app=web,tier in (a,b)`); `<none>` when nil."""
    if selector is None:
        return "<none>"
    return str(from_label_selector(selector)) or "<none>"


# --- field selectors ------------------------------------------------------------------------

def _get(obj: dict, path: str):
    value = obj
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


COMMON_FIELDS = ("metadata.name", "metadata.namespace")
FIELDS_BY_KIND = {
    "Pod": ("spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
            "spec.hostNetwork", "status.phase", "status.podIP", "status.nominatedNodeName"),
    "Node": ("spec.unschedulable",),
    "Namespace": ("status.phase",),
    "Secret": ("type",),
    "Service": ("spec.clusterIP", "spec.type"),
    "ReplicaSet": ("status.replicas",),
    "Event": ("involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
              "involvedObject.uid", "involvedObject.apiVersion", "involvedObject.resourceVersion",
              "involvedObject.fieldPath", "reason", "reportingComponent", "source", "type"),
}


def _field_value(obj: dict, field: str) -> str:
    if field == "source":
        return _text((obj.get("source") or {}).get("component"))
    return _text(_get(obj, field))


@dataclass(frozen=True)
class FieldRequirement:
    field: str
    operator: str
    value: str

    def matches(self, obj: dict) -> bool:
        equal = _field_value(obj, self.field) == self.value
        return equal if self.operator != NOT_EQUALS else not equal


@dataclass(frozen=True)
class FieldSelector:
    requirements: tuple[FieldRequirement, ...] = ()

    def matches(self, obj: dict) -> bool:
        return all(r.matches(obj) for r in self.requirements)

    def empty(self) -> bool:
        return not self.requirements

    def value_of(self, field: str) -> str | None:
        """The value an equality term pins `field` to, or None (lets a lister narrow its scan)."""
        for r in self.requirements:
            if r.field == field and r.operator != NOT_EQUALS:
                return r.value
        return None


def _split_unescaped(text: str, sep: str) -> list[str]:
    parts, current, escaped = [], [], False
    for c in text:
        if escaped:
            current.append("\\" + c)
            escaped = False
        elif c == "\\":
            escaped = True
        elif c == sep:
            parts.append("".join(current))
            current = []
        else:
            current.append(c)
    parts.append("".join(current))
    return parts


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", r"\1", value)


def parse_field_selector(text: str | None, resource: Resource) -> FieldSelector:
    """The `fieldSelector` query parameter for one resource; 400 for fields it does not support."""
    text = text or ""
    supported = COMMON_FIELDS + FIELDS_BY_KIND.get(resource.kind, ())
    requirements = []
    for term in _split_unescaped(text, ","):
        if not term.strip():
            continue
        m = re.match(r"^([^=!]+?)(==|!=|=)(.*)$", term)
        if not m:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{term}'")
        field, op, value = m.group(1).strip(), m.group(2), m.group(3)
        if field not in supported:
            raise bad_request(f"field label not supported: {field}")
        requirements.append(FieldRequirement(field, op, _unescape(value)))
    return FieldSelector(tuple(requirements))
