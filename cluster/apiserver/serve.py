"""Running an API server: open the store, create the admin token and kubeconfig on first start,
install the bootstrap RBAC policy, keep the RBAC cache, compact history, and listen.

    server = Server("sqlite:///var/lib/netsim/apiserver/state.db", "127.0.0.1:6443",
                    kubeconfig_path=".../kubeconfig", token_file=".../tokens.csv")
    await server.start(); ...; await server.stop()

`serve(...)` does the same in the foreground until SIGINT or SIGTERM.
"""

import asyncio
import base64
import contextlib
import os
import signal

import yaml
from aiohttp import web

from cluster.api import errors
from cluster.auth.authn import ADMIN_USER, build_authenticator, ensure_admin_token
from cluster.auth.policy import bootstrap_policy
from cluster.auth.rbac import RBACAuthorizer
from cluster.api.resources import by_kind
from cluster.store import compact_periodically, open_store

from .app import REGISTRY, build_app
from .rbac_cache import RBACCache
from .registry import Options
from .services import (DEFAULT_NODE_PORT_RANGE, DEFAULT_SERVICE_CIDR, ServiceAllocators,
                       ensure_kubernetes_service)
from .tls import ensure_serving_cert, server_context


SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
SHUTDOWN_GRACE_S = 1.0


def parse_listen(listen):
    """(host, port) of HOST:PORT; ValueError naming the expected form."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"--listen {listen!r}: expected HOST:PORT, e.g. 127.0.0.1:6443 (port 0: any free port)")
    return host.strip("[]") or "127.0.0.1", int(port)


def kubeconfig_doc(server_url, token, name, ca_cert):
    with open(ca_cert, "rb") as f:
        ca_data = base64.b64encode(f.read()).decode()
    return {"apiVersion": "v1", "kind": "Config", "preferences": {},
            "clusters": [{"name": name, "cluster": {"server": server_url,
                                                    "certificate-authority-data": ca_data}}],
            "users": [{"name": f"{name}-{ADMIN_USER}", "user": {"token": token}}],
            "contexts": [{"name": name, "context": {"cluster": name, "user": f"{name}-{ADMIN_USER}",
                                                    "namespace": "default"}}],
            "current-context": name}


def write_kubeconfig(path, server_url, token, name, ca_cert):
    """Write an admin kubeconfig (mode 0600: it holds a cluster-admin token)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(kubeconfig_doc(server_url, token, name, ca_cert), f, sort_keys=False)
    os.replace(tmp, path)


def _admission():
    """(chain, AdmissionRequest) of cluster.admission's default plugins."""
    from cluster import admission
    return admission.default_chain(), admission.AdmissionRequest


class Server:
    """One API server: its store, HTTP listener and background tasks."""

    def __init__(self, store_url, listen="127.0.0.1:6443", *, kubeconfig_path, token_file,
                 name="apiserver", anonymous=False, compact_interval=300.0, admission=True,
                 service_cidr=DEFAULT_SERVICE_CIDR, node_port_range=DEFAULT_NODE_PORT_RANGE):
        self.store_url = store_url
        self.host, self.port = parse_listen(listen)
        self.kubeconfig_path = kubeconfig_path
        self.token_file = token_file
        self.name = name
        self.anonymous = anonymous
        self.compact_interval = compact_interval
        self.use_admission = admission
        ServiceAllocators(service_cidr, node_port_range)  # a bad option fails here, named
        self.service_cidr, self.node_port_range = service_cidr, node_port_range
        self.store = None
        self.url = ""
        self.cert = ""
        self._runner = None
        self._rbac = None
        self._tasks = []

    async def start(self):
        self.store = await open_store(self.store_url)
        try:
            token = ensure_admin_token(self.token_file)
            self._rbac = RBACCache(self.store)
            chain, request_type = _admission() if self.use_admission else (None, None)
            app = build_app(self.store, authenticator=build_authenticator(self.token_file, self.anonymous),
                            authorizer=RBACAuthorizer(self._rbac), admission=chain,
                            admission_request=request_type)
            app[REGISTRY].services = await ServiceAllocators.load(
                self.store, self.service_cidr, self.node_port_range)
            await self._bootstrap(app[REGISTRY])
            await self._rbac.start()
            # handler_cancellation: a watch whose client left stops at once, not at its next event.
            # shutdown_timeout: requests finish in milliseconds, but open watches would hold a
            # graceful stop for aiohttp's default 60 s; they are cancelled, as a crash would.
            self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True,
                                         shutdown_timeout=SHUTDOWN_GRACE_S)
            await self._runner.setup()
            self.cert, key = ensure_serving_cert(os.path.dirname(os.path.abspath(self.token_file)), self.host)
            site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True,
                               ssl_context=server_context(self.cert, key))
            await site.start()
            host, port = self._runner.addresses[0][:2]
            self.port = port
            shown = f"[{host}]" if ":" in host else host
            self.url = f"https://{shown}:{port}"
            await ensure_kubernetes_service(app[REGISTRY], port)
            if self.kubeconfig_path:
                write_kubeconfig(self.kubeconfig_path, self.url, token, self.name, self.cert)
            self._tasks.append(asyncio.create_task(
                compact_periodically(self.store, interval=self.compact_interval)))
        except BaseException:
            await self.stop()
            raise
        return self

    async def _bootstrap(self, registry):
        """Create what a new cluster starts with and is missing: the system namespaces (as
        kube-apiserver's system-namespaces controller does) and the default ClusterRoles and
        bindings (its RBAC post-start hook)."""
        namespaces = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
                      for name in SYSTEM_NAMESPACES]
        for obj in namespaces + bootstrap_policy():
            res = by_kind(obj["apiVersion"], obj["kind"])
            if await registry.store.get(res.key("", obj["metadata"]["name"])) is not None:
                continue
            try:
                await registry.create(res, "", obj, Options({}))
            except errors.APIError as e:
                if e.code != 409:
                    raise

    async def stop(self):
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._rbac is not None:
            await self._rbac.stop()
        if self.store is not None:
            await self.store.close()
            self.store = None


def serve(store_url, listen, kubeconfig_path, token_file, *, name="apiserver", ready=None, **kw):
    """Run an API server in the foreground until SIGINT/SIGTERM; `ready(server)` once it listens."""

    async def main():
        server = Server(store_url, listen, kubeconfig_path=kubeconfig_path, token_file=token_file,
                        name=name, **kw)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await server.start()
        try:
            if ready:
                ready(server)
            await stop.wait()
        finally:
            await server.stop()

    asyncio.run(main())
