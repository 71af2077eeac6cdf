"""Reading a kubeconfig: the server URL, bearer token and CA of its current (or a named) context.

Only what netsim's API server needs is read: `server`, `certificate-authority-data` or
`certificate-authority`, `insecure-skip-tls-verify`, and a user's `token` or `tokenFile`.
Relative file paths resolve against the kubeconfig's directory, as kubectl resolves them.
"""
from __future__ import annotations

import base64
import os
from dataclasses import dataclass

import yaml


class KubeconfigError(ValueError):
    """A kubeconfig that cannot be used; the message names the file, the field and what is expected."""


@dataclass(frozen=True)
class Connection:
    """Where and how to reach an API server."""

    url: str
    token: str = ""
    ca_data: str = ""  # PEM text of the CA that signed the server's certificate
    insecure: bool = False
    namespace: str = "default"


def _named(doc: dict, section: str, name: str, path: str) -> dict:
    for entry in doc.get(section) or []:
        if entry.get("name") == name:
            return entry.get(section[:-1]) or {}
    known = ", ".join(repr(e.get("name")) for e in doc.get(section) or []) or "none"
    raise KubeconfigError(f"kubeconfig {path}: {section}: no entry named {name!r} (known: {known})")


def _read_relative(path: str, file: str) -> str:
    full = file if os.path.isabs(file) else os.path.join(os.path.dirname(os.path.abspath(path)), file)
    with open(full) as f:
        return f.read()


def load(path: str, context: str | None = None) -> Connection:
    """The Connection of `context` (default: current-context) in the kubeconfig at `path`."""
    try:
        with open(path) as f:
            doc = yaml.safe_load(f) or {}
    except OSError as e:
        raise KubeconfigError(f"kubeconfig {path}: cannot read it: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise KubeconfigError(f"kubeconfig {path}: not valid YAML: {e}") from None
    name = context or doc.get("current-context")
    if not name:
        raise KubeconfigError(f"kubeconfig {path}: current-context is empty; name a context")
    ctx = _named(doc, "contexts", name, path)
    cluster = _named(doc, "clusters", ctx.get("cluster", ""), path)
    user = _named(doc, "users", ctx.get("user", ""), path) if ctx.get("user") else {}
    url = cluster.get("server", "")
    if not url.startswith(("https://", "http://")):
        raise KubeconfigError(f"kubeconfig {path}: clusters[{ctx.get('cluster')!r}].server: {url!r} "
                              "is not a URL; expected e.g. https://127.0.0.1:6443")
    ca = ""
    if cluster.get("certificate-authority-data"):
        try:
            ca = base64.b64decode(cluster["certificate-authority-data"]).decode()
        except (ValueError, UnicodeDecodeError):
            raise KubeconfigError(
                f"kubeconfig {path}: clusters[{ctx.get('cluster')!r}].certificate-authority-data: "
                "expected base64 of a PEM certificate") from None
    elif cluster.get("certificate-authority"):
        ca = _read_relative(path, cluster["certificate-authority"])
    token = user.get("token", "")
    if not token and user.get("tokenFile"):
        token = _read_relative(path, user["tokenFile"]).strip()
    if not token and (user.get("client-certificate") or user.get("client-certificate-data")):
        raise KubeconfigError(f"kubeconfig {path}: users[{ctx.get('user')!r}]: client certificates "
                              "are not supported by netsim's client; give the user a token")
    return Connection(url.rstrip("/"), token, ca, bool(cluster.get("insecure-skip-tls-verify")),
                      ctx.get("namespace") or "default")
