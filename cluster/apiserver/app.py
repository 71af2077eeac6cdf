"""The aiohttp application: routes every request to discovery, OpenAPI, health or the resource
handlers, after authentication and authorization, and answers every failure with a Status.

One catch-all handler parses the path itself (as upstream's RequestInfoFactory does) instead of
a route per resource: it is both faster than aiohttp's router and the natural place for the
security checks, which every resource request passes.
"""

import asyncio
import json
import logging

from aiohttp import web

from cluster.api import errors, schema
from cluster.api.resources import lookup
from cluster.auth.rbac import forbidden as rbac_forbidden
from cluster.auth import requestinfo

from . import discovery, logs, negotiation, watch
from .negotiation import JSON, PATCH_TYPES, dumps
from .registry import Options, Registry, with_rv

log = logging.getLogger(__name__)

REGISTRY = web.AppKey("registry", Registry)

_NOT_FOUND = errors.APIError(404, "NotFound", "the server could not find the requested resource")


def _response(status, body, warnings=(), content_type=JSON):
    resp = web.Response(status=status, body=body, content_type=None)
    resp.headers["Content-Type"] = content_type
    for w in warnings:
        resp.headers.add("Warning", f'299 - {json.dumps(w)}')
    return resp


def error_response(err):
    return _response(err.code, dumps(err.status()))


class APIServer:
    """Request handling over a Registry; `authenticator`, `authorizer` and `admission` are the
    security hooks (see build_app)."""

    def __init__(self, registry, authenticator, authorizer):
        self.registry = registry
        self.authenticator = authenticator
        self.authorizer = authorizer

    # -- security ---------------------------------------------------------------------------------

    def authenticate(self, request):
        user = self.authenticator.authenticate(request.headers) if self.authenticator else None
        if user is None and self.authenticator is not None:
            raise errors.unauthorized()
        return user

    def authorize(self, user, info, query):
        if self.authorizer is None:
            return
        attrs = requestinfo.attributes(user, info, query)
        allowed, reason = self.authorizer.authorize(attrs)
        if not allowed:
            raise rbac_forbidden(attrs, reason)

    # -- non-resource endpoints -------------------------------------------------------------------

    async def handle_plain(self, request):
        """/version, /healthz, /livez, /readyz and /openapi/*: authenticated, authorized by path."""
        try:
            info = requestinfo.parse(request.method, request.path, request.query)
            user = self.authenticate(request)
            self.authorize(user, info, request.query)
            path = request.path.rstrip("/")
            if request.method != "GET":
                raise errors.APIError(405, "MethodNotAllowed", f"{request.method} is not supported on {path}")
            if path == "/version":
                return _response(200, dumps(discovery.version()))
            if path in ("/healthz", "/livez", "/readyz"):
                await self.registry.store.current_revision()
                return web.Response(text="ok", content_type="text/plain")
            if path == "/openapi/v2":
                return _response(200, dumps(schema.openapi_v2()))
            if path == "/openapi/v3":
                return _response(200, dumps(schema.openapi_v3_index()))
            if path.startswith("/openapi/v3/"):
                try:
                    body = schema.openapi_v3_bytes(path[len("/openapi/v3/"):])
                except KeyError:
                    raise _NOT_FOUND
                return _response(200, body)
            raise _NOT_FOUND
        except errors.APIError as e:
            return error_response(e)

    # -- /api and /apis ---------------------------------------------------------------------------

    async def handle(self, request):
        try:
            query = request.query
            info = requestinfo.parse(request.method, request.path, query)
            user = self.authenticate(request)
            self.authorize(user, info, query)
            if not info.resource_request:
                return self._discovery(request, info)
            res = lookup(info.group, info.version, info.resource)
            if res is None or info.parts:
                raise _NOT_FOUND
            if info.subresource and info.subresource not in res.subresources:
                raise _NOT_FOUND
            if not res.namespaced and info.namespace and res.plural != "namespaces":
                raise _NOT_FOUND
            return await self._resource(request, info, res, user)
        except errors.APIError as e:
            return error_response(e)
        except Exception:
            log.exception("internal error serving %s %s", request.method, request.path)
            return error_response(errors.internal(f"{request.method} {request.path} failed; "
                                                  "the server log has the details"))

    def _discovery(self, request, info):
        if request.method != "GET":
            raise errors.APIError(405, "MethodNotAllowed", f"{request.method} is not supported on {info.path}")
        segs = [s for s in info.path.strip("/").split("/") if s]
        if len(segs) == 1:
            form = negotiation.accepted(request.headers.get("Accept", ""))
            if form in (negotiation.DISCOVERY_V2, negotiation.DISCOVERY_V2BETA1):
                return _response(200, dumps(discovery.aggregated(segs[0] == "api", form)),
                                 content_type=discovery.aggregated_content_type(form))
            if segs[0] == "api":
                host = request.host or "127.0.0.1"
                return _response(200, dumps(discovery.api_versions(host)))
            return _response(200, dumps(discovery.api_group_list()))
        if segs[0] == "apis" and len(segs) == 2:
            doc = discovery.api_group(segs[1])
        else:
            doc = discovery.api_resource_list(info.group, info.version)
        if doc is None:
            raise _NOT_FOUND
        return _response(200, dumps(doc))

    async def _resource(self, request, info, res, user):
        # A Namespace is cluster-scoped; RequestInfo names it as its own namespace too.
        verb, sub, name = info.verb, info.subresource, info.name
        ns = info.namespace if res.namespaced else ""
        api_verb = {"watch": "watch", "get": "get", "list": "list"}.get(verb, verb)
        if not sub and api_verb not in res.verbs:
            raise errors.method_not_supported(res, api_verb)
        if res.namespaced and not ns and verb not in ("list", "watch", "deletecollection"):
            raise _NOT_FOUND
        reg = self.registry
        query = request.query
        if verb in ("get", "list", "watch"):
            form = negotiation.accepted(request.headers.get("Accept", ""))
            include = query.get("includeObject", "") or "Metadata"
            if verb == "watch":
                return await watch.serve(request, reg, res, ns, name, query, form)
            if verb == "list":
                items, rev, cont = await reg.list(res, ns, query)
                return _response(200, self._list_body(res, items, rev, cont, form, include))
            if sub == "scale":
                return _response(200, dumps(await reg.get_scale(res, ns, name)))
            if sub == "log":
                return await logs.serve(request, reg, ns, name)
            value, rev = await reg.get_raw(res, ns, name)
            if form == negotiation.OBJECT:
                return _response(200, with_rv(value, rev))
            return _response(200, self._list_body(res, [with_rv(value, rev)], 0, "", form, include,
                                                  single=True))
        opts = Options(query)
        ctype = request.headers.get("Content-Type", "")
        if verb == "create":
            body = negotiation.decode_body(ctype, await request.read())
            if sub == "binding" or res.kind == "Binding":
                pod_res = lookup("", "v1", "pods")
                target = name if sub else (body.get("metadata") or {}).get("name", "") \
                    if isinstance(body, dict) else ""
                code, doc = await reg.bind(pod_res, ns, target, body, opts, user)
                return _response(code, dumps(doc))
            if sub == "eviction":
                code, doc = await reg.evict(res, ns, name, body, opts, user)
                return _response(code, dumps(doc))
            if sub or name:
                raise errors.method_not_supported(res, "create")
            obj, warnings = await reg.create(res, ns, body, opts, user)
            return _response(201, dumps(obj), warnings)
        if verb == "update":
            if sub not in ("", "status", "scale", "finalize"):
                raise errors.method_not_supported(res, "update")
            body = negotiation.decode_body(ctype, await request.read())
            code, obj, warnings = await reg.update(res, ns, name, body, opts, user, sub)
            return _response(code, dumps(obj), warnings)
        if verb == "patch":
            if sub not in ("", "status", "scale"):
                raise errors.method_not_supported(res, "patch")
            ptype = negotiation.media_type(ctype)
            doc = negotiation.decode_body(ctype, await request.read(), allowed=PATCH_TYPES)
            code, obj, warnings = await reg.patch(res, ns, name, ptype, doc, opts, user, sub)
            return _response(code, dumps(obj), warnings)
        if verb in ("delete", "deletecollection"):
            if sub:
                raise errors.method_not_supported(res, "delete")
            options = await self._delete_options(request, ctype, query)
            if verb == "delete":
                code, doc = await reg.delete(res, ns, name, options, opts, user)
            else:
                code, doc = 200, await reg.delete_collection(res, ns, query, options, opts, user)
            return _response(code, dumps(doc))
        raise errors.method_not_supported(res, verb)

    @staticmethod
    async def _delete_options(request, ctype, query):
        raw = await request.read()
        options = negotiation.decode_body(ctype, raw) if raw.strip() else {}
        if not isinstance(options, dict):
            raise errors.bad_request("DeleteOptions must be a JSON object")
        if "gracePeriodSeconds" in query:
            try:
                options["gracePeriodSeconds"] = int(query["gracePeriodSeconds"])
            except ValueError:
                raise errors.bad_request(f"gracePeriodSeconds: Invalid value: {query['gracePeriodSeconds']!r}: "
                                         "must be an integer")
        if "propagationPolicy" in query:
            options["propagationPolicy"] = query["propagationPolicy"]
        if "orphanDependents" in query:
            options["orphanDependents"] = query["orphanDependents"] in ("true", "1")
        return options

    @staticmethod
    def _list_body(res, items, rev, cont, form, include, single=False):
        if form == negotiation.OBJECT:
            meta = {"resourceVersion": str(rev)}
            if cont:
                meta["continue"] = cont
            head = dumps({"kind": res.list_kind, "apiVersion": res.api_version, "metadata": meta})
            return head[:-1] + b',"items":[' + b",".join(items) + b"]}"
        objs = [json.loads(v) for v in items]
        if form == negotiation.TABLE:
            doc = negotiation.tables().table(res, objs, include_object=include, list_rv="" if single else str(rev))
            if cont:
                doc.setdefault("metadata", {})["continue"] = cont
            return dumps(doc)
        partial = [{"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                    "metadata": o.get("metadata", {})} for o in objs]
        if single:
            return dumps(partial[0])
        meta = {"resourceVersion": str(rev)}
        if cont:
            meta["continue"] = cont
        return dumps({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1",
                      "metadata": meta, "items": partial})


def build_app(store, *, authenticator, authorizer=None, admission=None, admission_request=None):
    """The API server's aiohttp application over `store`.

    `authenticator.authenticate(headers) -> UserInfo | None` (None: 401; an authenticator of
    None lets every request in as no user), `authorizer.authorize(attributes) -> (allowed,
    reason)` over cluster.auth's Attributes (None: everything allowed),
    `admission` a chain with async admit/validate taking `admission_request(...)` objects.
    """
    registry = Registry(store, admission, admission_request)
    server = APIServer(registry, authenticator, authorizer)
    app = web.Application(client_max_size=8 * 1024 * 1024)
    app[REGISTRY] = registry
    app[watch.STOPPING] = asyncio.Event()

    async def end_watches(app):
        # Open watches would hold a graceful stop until they time out: end them now, so that
        # clients reconnect (and resume from their resourceVersion) to the next server.
        app[watch.STOPPING].set()

    app.on_shutdown.append(end_watches)
    for path in ("/version", "/healthz", "/livez", "/readyz", "/openapi/v2", "/openapi/v3",
                 "/openapi/v3/{tail:.*}"):
        app.router.add_route("*", path, server.handle_plain)
    for path in ("/api", "/apis", "/api/", "/apis/"):
        app.router.add_route("*", path, server.handle)
    app.router.add_route("*", "/api/{tail:.*}", server.handle)
    app.router.add_route("*", "/apis/{tail:.*}", server.handle)
    app.router.add_route("*", "/{tail:.*}", server.handle_plain)  # a 404 Status, not aiohttp's text
    return app
