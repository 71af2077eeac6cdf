"""JSON echo servers: the ingress-conformance echoserver and the default echo of other images.

The echoserver follows kubernetes-sigs/ingress-controller-conformance images/echoserver: every
path but /health answers a JSON document of the request (path, host, method, proto, headers)
and of its context read from the environment (NAMESPACE, INGRESS_NAME, SERVICE_NAME, and
POD_NAME as gateway-api's echo-basic adds). The default echo answers any image that has no
command with the pod, namespace and client address, so a manifest of an arbitrary image still
gets a server on each declared containerPort that says who answered.
"""

from netsim.containers import http1
from netsim.containers.apps import App
from netsim.containers.context import Listener
from netsim.containers.golike import go_json, sorted_map


def echoserver(spec, ctx):
    env = ctx.env

    def handle(request):
        if request.path == "/health":
            return http1.Response("OK")
        ctx.print(f"Echoing back request made to {request.target} to client ({request.remote_addr})")
        document = {
            "path": request.target,
            "host": request.host,
            "method": request.method,
            "proto": request.version,
            "headers": sorted_map(request.header_map()),
            "namespace": env.get("NAMESPACE", ""),
            "ingress": env.get("INGRESS_NAME", ""),
            "service": env.get("SERVICE_NAME", ""),
            "pod": env.get("POD_NAME", ""),
        }
        return http1.Response(go_json(document, indent=" "), content_type="application/json",
                              headers=[("X-Content-Type-Options", "nosniff")])

    listeners = [Listener("TCP", p.port, lambda: http1.HTTPProtocol(handle, ctx))
                 for p in spec.ports]
    return App(listeners,
               started=lambda: ctx.print(f"Starting server, listening on port {spec.options['port']}"))


def echo(spec, ctx):
    def handle(request):
        ctx.log(f"{request.method} {request.target} from {request.remote_addr}")
        document = {
            "pod": ctx.pod,
            "namespace": ctx.namespace,
            "node": ctx.node,
            "hostname": ctx.hostname,
            "client": request.remote_addr,
            "server": http1.host_port(request.local),
            "host": request.host,
            "method": request.method,
            "path": request.target,
            "proto": request.version,
            "headers": sorted_map(request.header_map()),
        }
        return http1.Response(go_json(document) + "\n", content_type="application/json")

    listeners = [Listener("TCP", p.port, lambda: http1.HTTPProtocol(handle, ctx))
                 for p in spec.ports]
    ports = ", ".join(str(p.port) for p in spec.ports) or "no ports (idle)"
    return App(listeners, started=lambda: ctx.log(f"echo: serving pod {ctx.namespace}/{ctx.pod} on {ports}"))
