"""The REST client: typed-by-Resource calls to a Kubernetes API server over one aiohttp session.

    async with Client.from_kubeconfig(path) as client:
        pod = await client.get(PODS, "web", "default")
        async with client.watch(PODS, "default", resource_version=rv) as events:
            async for type_, obj in events: ...

Every failure the server reports comes back as `cluster.api.errors.APIError` rebuilt from its
Status (code, reason, message, details.causes); a server that cannot be reached is
`Unreachable`, an APIError with code 503, so callers handle one exception type. Requests share
keep-alive connections and at most `max_in_flight` run at once; watches are long-lived streams
and do not count against that limit, so informers cannot starve the requests of controllers.
"""
from __future__ import annotations

import asyncio
import json
import ssl
from typing import Any

import aiohttp

from cluster.api.errors import APIError
from cluster.api.resources import Resource

from . import kubeconfig

PATCH_CONTENT_TYPES = {
    "merge": "application/merge-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "json": "application/json-patch+json",
}
SUBRESOURCES = ("status", "scale", "binding", "eviction", "finalize")


class Unreachable(APIError):
    """The API server could not be reached or the connection broke mid-request."""

    def __init__(self, url: str, cause: BaseException):
        super().__init__(503, "ServiceUnavailable", f"cannot reach the API server at {url}: "
                         f"{cause or type(cause).__name__}")


def error_from_status(code: int, body: bytes, reason: str = "") -> APIError:
    """The APIError a response carries: its Status if it is one, else the HTTP status and text."""
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    if isinstance(doc, dict) and doc.get("kind") == "Status":
        return APIError(doc.get("code") or code, doc.get("reason", ""), doc.get("message", ""),
                        doc.get("details") or {})
    text = body.decode(errors="replace").strip()[:500]
    return APIError(code, reason or "Unknown", text or f"the server answered HTTP {code}")


def _namespace_of(res: Resource, namespace: str | None, obj: dict | None, action: str) -> str | None:
    if not res.namespaced:
        return None
    ns = namespace or ((obj or {}).get("metadata") or {}).get("namespace")
    if not ns:
        raise ValueError(f"{action} {res.plural}: namespace is required for the namespaced resource "
                         f"{res.plural}; pass namespace= or set metadata.namespace")
    return ns


def _check_subresource(res: Resource, subresource: str) -> None:
    if subresource and subresource not in res.subresources:
        served = ", ".join(res.subresources) or "none"
        raise ValueError(f"subresource {subresource!r}: {res.plural} serves {served}")


class Client:
    """An API client for one server and one identity (a bearer token)."""

    def __init__(self, url: str, token: str = "", ca_data: str = "", *, insecure: bool = False,
                 namespace: str = "default", max_in_flight: int = 32, timeout: float = 30.0):
        self.url = url.rstrip("/")
        self.namespace = namespace  # the kubeconfig context's namespace, for callers that want it
        self._headers = {"Accept": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        # The kubeconfig's CA when it has one, else the system's; `insecure` skips verification.
        self._ssl: ssl.SSLContext | bool = True
        if self.url.startswith("https://"):
            self._ssl = False if insecure else ssl.create_default_context(cadata=ca_data or None)
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._in_flight = asyncio.Semaphore(max_in_flight)
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_kubeconfig(cls, path: str, context: str | None = None, **kw) -> "Client":
        conn = kubeconfig.load(path, context)
        return cls(conn.url, conn.token, conn.ca_data, insecure=conn.insecure,
                   namespace=conn.namespace, **kw)

    @property
    def session(self) -> aiohttp.ClientSession:
        # Made on first use, inside the running loop that will own it.
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=0, ssl=self._ssl, keepalive_timeout=60)
            self._session = aiohttp.ClientSession(headers=self._headers, connector=connector)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    # -- paths --------------------------------------------------------------------------------

    def path(self, res: Resource, namespace: str | None = None, name: str = "",
             subresource: str = "") -> str:
        """/api/v1/namespaces/NS/pods/NAME/SUB (parts left out when empty)."""
        base = f"/apis/{res.group}/{res.version}" if res.group else f"/api/{res.version}"
        if namespace and res.namespaced:
            base += f"/namespaces/{namespace}"
        base += f"/{res.plural}"
        if name:
            base += f"/{name}"
        if subresource:
            base += f"/{subresource}"
        return base

    # -- requests -----------------------------------------------------------------------------

    async def request(self, method: str, path: str, *, params: dict | None = None,
                      body: Any = None, content_type: str = "application/json") -> dict:
        """One request; the decoded JSON answer, or APIError."""
        data, headers = None, None
        if body is not None:
            data = json.dumps(body).encode()
            headers = {"Content-Type": content_type}
        async with self._in_flight:
            try:
                async with self.session.request(method, self.url + path, params=params, data=data,
                                                headers=headers, timeout=self._timeout) as resp:
                    raw = await resp.read()
                    status, reason = resp.status, resp.reason or ""
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as e:
                raise Unreachable(self.url, e) from e
        if status >= 400:
            raise error_from_status(status, raw, reason)
        return json.loads(raw) if raw else {}

    @staticmethod
    def _write_params(dry_run: bool, field_validation: str | None, field_manager: str | None) -> dict:
        params = {}
        if dry_run:
            params["dryRun"] = "All"
        if field_validation:
            params["fieldValidation"] = field_validation
        if field_manager:
            params["fieldManager"] = field_manager
        return params

    async def get(self, res: Resource, name: str, namespace: str | None = None, *,
                  subresource: str = "") -> dict:
        _check_subresource(res, subresource)
        ns = _namespace_of(res, namespace, None, "get")
        return await self.request("GET", self.path(res, ns, name, subresource))

    async def list(self, res: Resource, namespace: str | None = None, *, label_selector: str = "",
                   field_selector: str = "", limit: int = 0, continue_: str = "",
                   resource_version: str = "") -> dict:
        """One LIST call (one page when `limit` is set: metadata.continue names the next)."""
        params = {}
        for key, value in (("labelSelector", label_selector), ("fieldSelector", field_selector),
                           ("continue", continue_), ("resourceVersion", resource_version)):
            if value:
                params[key] = value
        if limit:
            params["limit"] = str(limit)
        return await self.request("GET", self.path(res, namespace), params=params)

    async def list_all(self, res: Resource, namespace: str | None = None, *, label_selector: str = "",
                       field_selector: str = "", page_size: int = 500) -> tuple[list[dict], str]:
        """(every item, the list's resourceVersion), read page by page at one consistent revision."""
        items, token = [], ""
        while True:
            page = await self.list(res, namespace, label_selector=label_selector,
                                   field_selector=field_selector, limit=page_size, continue_=token)
            items.extend(page.get("items") or [])
            meta = page.get("metadata") or {}
            token = meta.get("continue", "")
            if not token:
                # Every page is read at the first page's revision, so the last one names it too.
                return items, meta.get("resourceVersion", "")

    async def create(self, res: Resource, obj: dict, namespace: str | None = None, *,
                     name: str = "", subresource: str = "", dry_run: bool = False,
                     field_validation: str | None = None, field_manager: str | None = None) -> dict:
        """POST `obj`; with a subresource (binding, eviction) POST to NAME/SUB (NAME defaults to
        obj's metadata.name)."""
        _check_subresource(res, subresource)
        ns = _namespace_of(res, namespace, obj, "create")
        if subresource:
            name = name or (obj.get("metadata") or {}).get("name", "")
            if not name:
                raise ValueError(f"create {res.plural}/{subresource}: the target's name is required; "
                                 "pass name= or set metadata.name")
        return await self.request("POST", self.path(res, ns, name if subresource else "", subresource),
                                  params=self._write_params(dry_run, field_validation, field_manager),
                                  body=obj)

    async def update(self, res: Resource, obj: dict, namespace: str | None = None, *,
                     subresource: str = "", dry_run: bool = False,
                     field_validation: str | None = None, field_manager: str | None = None) -> dict:
        """PUT `obj` (its metadata.resourceVersion, if set, is the precondition: 409 Conflict)."""
        _check_subresource(res, subresource)
        ns = _namespace_of(res, namespace, obj, "update")
        name = (obj.get("metadata") or {}).get("name", "")
        if not name:
            raise ValueError(f"update {res.plural}: metadata.name is required")
        return await self.request("PUT", self.path(res, ns, name, subresource),
                                  params=self._write_params(dry_run, field_validation, field_manager),
                                  body=obj)

    async def update_status(self, res: Resource, obj: dict, namespace: str | None = None) -> dict:
        return await self.update(res, obj, namespace, subresource="status")

    async def patch(self, res: Resource, name: str, patch: Any, namespace: str | None = None, *,
                    patch_type: str = "merge", subresource: str = "", dry_run: bool = False,
                    field_validation: str | None = None, field_manager: str | None = None) -> dict:
        """PATCH with `patch_type` "merge" (RFC 7386), "strategic" or "json" (RFC 6902)."""
        if patch_type not in PATCH_CONTENT_TYPES:
            raise ValueError(f"patch_type {patch_type!r}: expected one of "
                             + ", ".join(PATCH_CONTENT_TYPES))
        _check_subresource(res, subresource)
        ns = _namespace_of(res, namespace, None, "patch")
        return await self.request("PATCH", self.path(res, ns, name, subresource),
                                  params=self._write_params(dry_run, field_validation, field_manager),
                                  body=patch, content_type=PATCH_CONTENT_TYPES[patch_type])

    async def delete(self, res: Resource, name: str, namespace: str | None = None, *,
                     grace_period_seconds: int | None = None, propagation_policy: str | None = None,
                     preconditions: dict | None = None, dry_run: bool = False) -> dict:
        """DELETE with DeleteOptions; the answer is the object (when finalizers or a grace period
        keep it) or a Success Status."""
        ns = _namespace_of(res, namespace, None, "delete")
        options: dict = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if grace_period_seconds is not None:
            options["gracePeriodSeconds"] = grace_period_seconds
        if propagation_policy:
            options["propagationPolicy"] = propagation_policy
        if preconditions:
            options["preconditions"] = preconditions
        return await self.request("DELETE", self.path(res, ns, name), body=options,
                                  params=self._write_params(dry_run, None, None))

    def watch(self, res: Resource, namespace: str | None = None, *, resource_version: str = "",
              label_selector: str = "", field_selector: str = "", allow_bookmarks: bool = True,
              timeout_seconds: int | None = None) -> "Watch":
        """A watch from `resource_version` ("" or "0": the current objects first, as ADDED)."""
        params = {"watch": "true"}
        for key, value in (("resourceVersion", resource_version), ("labelSelector", label_selector),
                           ("fieldSelector", field_selector)):
            if value:
                params[key] = value
        if allow_bookmarks:
            params["allowWatchBookmarks"] = "true"
        if timeout_seconds:
            params["timeoutSeconds"] = str(int(timeout_seconds))
        return Watch(self, self.path(res, namespace), params, resource_version, timeout_seconds)


class Watch:
    """An async iterator of (type, object) over one watch stream.

    Types are ADDED, MODIFIED, DELETED and BOOKMARK (whose object carries only a
    resourceVersion). An ERROR event raises the APIError of its Status (410 Expired when the
    resourceVersion was compacted: list again). `resource_version` is the last one seen, bookmarks
    included: the point to resume from. The iteration ends when the server closes the stream.
    """

    def __init__(self, client: Client, path: str, params: dict, resource_version: str,
                 timeout_seconds: int | None):
        self._client, self._path, self._params = client, path, params
        self.resource_version = resource_version
        # No read timeout: a quiet watch is normal; the server ends it after timeoutSeconds.
        total = timeout_seconds + 30 if timeout_seconds else None
        self._timeout = aiohttp.ClientTimeout(total=total, connect=client._timeout.total)
        self._resp: aiohttp.ClientResponse | None = None
        self._lines: list[bytes] = []
        self._partial = b""
        self._done = False

    async def __aenter__(self) -> "Watch":
        return self

    async def __aexit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._done = True
        if self._resp is not None:
            self._resp.close()
            self._resp = None

    def __aiter__(self) -> "Watch":
        return self

    async def _open(self) -> None:
        client = self._client
        try:
            self._resp = await client.session.get(client.url + self._path, params=self._params,
                                                  timeout=self._timeout)
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as e:
            self._done = True
            raise Unreachable(client.url, e) from e
        if self._resp.status >= 400:
            raw = await self._resp.read()
            status, reason = self._resp.status, self._resp.reason or ""
            self.close()
            raise error_from_status(status, raw, reason)

    async def _next_line(self) -> bytes | None:
        while not self._lines:
            try:
                chunk = await self._resp.content.readany()
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as e:
                self.close()
                raise Unreachable(self._client.url, e) from e
            if not chunk:
                return None
            lines = (self._partial + chunk).split(b"\n")
            self._partial = lines.pop()
            # Reversed, so pop() hands them out in order at O(1).
            self._lines = [line for line in reversed(lines) if line.strip()]
        return self._lines.pop()

    async def __anext__(self) -> tuple[str, dict]:
        if self._done:
            raise StopAsyncIteration
        if self._resp is None:
            await self._open()
        line = await self._next_line()
        if line is None:
            self.close()
            raise StopAsyncIteration
        event = json.loads(line)
        type_, obj = event.get("type", ""), event.get("object") or {}
        if type_ == "ERROR":
            self.close()
            raise APIError(obj.get("code") or 500, obj.get("reason", ""), obj.get("message", ""),
                           obj.get("details") or {})
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        if rv:
            self.resource_version = rv
        return type_, obj
