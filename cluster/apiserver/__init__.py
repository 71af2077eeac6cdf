"""The Kubernetes API server: REST over a store (JSON only), discovery and OpenAPI, watch,
authentication, RBAC authorization and admission.

`build_app(store, authenticator=..., authorizer=..., admission=...)` is the aiohttp application;
`Server(store_url, listen, kubeconfig_path=..., token_file=...)` runs one (start/stop), and
`serve(...)` runs one in the foreground.
"""

from .app import build_app
from .serve import Server, serve, write_kubeconfig

__all__ = ["Server", "build_app", "serve", "write_kubeconfig"]
