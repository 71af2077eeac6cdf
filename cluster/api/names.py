"""Syntax checks of names, labels, keys and addresses, worded as apimachinery's `util/validation`.

Each check returns a list of problem strings (empty when the value is valid), as upstream's
`IsDNS1123Subdomain` and friends do; callers wrap them in field Causes.
"""
from __future__ import annotations

import ipaddress
import re


def regex_error(message: str, fmt: str, *examples: str) -> str:
    if examples:
        message += " (e.g. " + " or ".join(f"'{e}', " for e in examples)
        message += f"regex used for validation is '{fmt}')"
    else:
        message += f" (regex used for validation is '{fmt}')"
    return message


def max_len_error(length: int) -> str:
    return f"must be no more than {length} characters"


DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_SUBDOMAIN_FMT = DNS1123_LABEL_FMT + r"(\." + DNS1123_LABEL_FMT + ")*"
DNS1035_LABEL_FMT = "[a-z]([-a-z0-9]*[a-z0-9])?"
QUALIFIED_NAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
LABEL_VALUE_FMT = "(" + QUALIFIED_NAME_FMT + ")?"
CONFIG_KEY_FMT = "[-._a-zA-Z0-9]+"
WILDCARD_DNS1123_SUBDOMAIN_FMT = r"\*\." + DNS1123_SUBDOMAIN_FMT

_DNS1123_LABEL = re.compile(DNS1123_LABEL_FMT)
_DNS1123_SUBDOMAIN = re.compile(DNS1123_SUBDOMAIN_FMT)
_DNS1035_LABEL = re.compile(DNS1035_LABEL_FMT)
_QUALIFIED_NAME = re.compile(QUALIFIED_NAME_FMT)
_LABEL_VALUE = re.compile(LABEL_VALUE_FMT)
_CONFIG_KEY = re.compile(CONFIG_KEY_FMT)
_WILDCARD = re.compile(WILDCARD_DNS1123_SUBDOMAIN_FMT)
_IANA_SVC = re.compile("[-a-z0-9]+")


def dns1123_label(value: str) -> list[str]:
    errs = []
    if len(value) > 63:
        errs.append(max_len_error(63))
    if not _DNS1123_LABEL.fullmatch(value):
        errs.append(regex_error("a lowercase RFC 1123 label must consist of lower case alphanumeric"
                                " characters or '-', and must start and end with an alphanumeric"
                                " character", DNS1123_LABEL_FMT, "my-name", "123-abc"))
    return errs


def dns1123_subdomain(value: str) -> list[str]:
    errs = []
    if len(value) > 253:
        errs.append(max_len_error(253))
    if not _DNS1123_SUBDOMAIN.fullmatch(value):
        errs.append(regex_error("a lowercase RFC 1123 subdomain must consist of lower case"
                                " alphanumeric characters, '-' or '.', and must start and end with"
                                " an alphanumeric character", DNS1123_SUBDOMAIN_FMT, "example.com"))
    return errs


def dns1035_label(value: str) -> list[str]:
    errs = []
    if len(value) > 63:
        errs.append(max_len_error(63))
    if not _DNS1035_LABEL.fullmatch(value):
        errs.append(regex_error("a DNS-1035 label must consist of lower case alphanumeric characters"
                                " or '-', start with an alphabetic character, and end with an"
                                " alphanumeric character", DNS1035_LABEL_FMT, "my-name", "abc-123"))
    return errs


def wildcard_dns1123_subdomain(value: str) -> list[str]:
    errs = []
    if len(value) > 253:
        errs.append(max_len_error(253))
    if not _WILDCARD.fullmatch(value):
        errs.append(regex_error("a wildcard DNS-1123 subdomain must start with '*.', followed by a"
                                " valid DNS subdomain, which must consist of lower case alphanumeric"
                                " characters, '-' or '.' and end with an alphanumeric character",
                                WILDCARD_DNS1123_SUBDOMAIN_FMT, "*.example.com"))
    return errs


def path_segment_name(value: str) -> list[str]:
    """Names that become one URL path segment (RBAC objects): upstream's ValidatePathSegmentName."""
    if value in (".", ".."):
        return [f"may not be '{value}'"]
    errs = []
    for bad in ("/", "%"):
        if bad in value:
            errs.append(f"may not contain '{bad}'")
    return errs


def qualified_name(value: str) -> list[str]:
    """Label and annotation keys: an optional DNS subdomain prefix and a name part."""
    errs = []
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs.append("prefix part " + "must be non-empty")
        else:
            errs.extend("prefix part " + e for e in dns1123_subdomain(prefix))
    else:
        return [regex_error("a qualified name must consist of alphanumeric characters, '-', '_' or"
                            " '.', and must start and end with an alphanumeric character",
                            QUALIFIED_NAME_FMT, "MyName", "my.name", "123-abc")
                + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"]
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > 63:
        errs.append("name part " + max_len_error(63))
    if name and not _QUALIFIED_NAME.fullmatch(name):
        errs.append("name part " + regex_error(
            "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with"
            " an alphanumeric character", QUALIFIED_NAME_FMT, "MyName", "my.name", "123-abc"))
    return errs


def label_value(value: str) -> list[str]:
    errs = []
    if len(value) > 63:
        errs.append(max_len_error(63))
    if not _LABEL_VALUE.fullmatch(value):
        errs.append(regex_error("a valid label must be an empty string or consist of alphanumeric"
                                " characters, '-', '_' or '.', and must start and end with an"
                                " alphanumeric character", LABEL_VALUE_FMT,
                                "MyValue", "my_value", "12345"))
    return errs


def config_map_key(value: str) -> list[str]:
    errs = []
    if len(value) > 253:
        errs.append(max_len_error(253))
    if not _CONFIG_KEY.fullmatch(value):
        errs.append(regex_error("a valid config key must consist of alphanumeric characters, '-',"
                                " '_' or '.'", CONFIG_KEY_FMT, "key.name", "KEY_NAME", "key-name"))
    if value in (".", ".."):
        errs.append(f"must not be '{value}'")
    elif value.startswith(".."):
        errs.append("must not start with '..'")
    return errs


def env_var_name(value: str) -> list[str]:
    """Environment variable names: printable ASCII other than '=' (relaxed validation, GA in 1.34)."""
    if not value or any(c == "=" or not (" " <= c <= "~") for c in value):
        return ["a valid environment variable name must consist only of printable ASCII characters"
                " other than '='"]
    return []


def iana_svc_name(value: str) -> list[str]:
    """Named ports: at most 15 characters, lowercase alphanumerics and single inner hyphens."""
    errs = []
    if len(value) > 15:
        errs.append(max_len_error(15))
    if not _IANA_SVC.fullmatch(value):
        errs.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if "--" in value:
        errs.append("must not contain consecutive hyphens")
    if not re.search("[a-z]", value):
        errs.append("must contain at least one letter (a-z)")
    if value.startswith("-") or value.endswith("-"):
        errs.append("must not begin or end with a hyphen")
    return errs


def port_number(value) -> list[str]:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        return ["must be between 1 and 65535, inclusive"]
    return []


def ip_address(value: str) -> list[str]:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return ["must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"]
    return []


def ip_family_address(value: str, version: int) -> list[str]:
    try:
        ok = ipaddress.ip_address(value).version == version
    except ValueError:
        ok = False
    return [] if ok else [f"must be a valid IPv{version} address"]


def cidr(value: str) -> list[str]:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        return ["must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"]
    return []


def is_ip(value: str) -> bool:
    return not ip_address(value)
