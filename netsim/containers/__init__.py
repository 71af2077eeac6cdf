"""Containers: what runs inside a pod.

A container is either a real process started in the pod's network and UTS namespaces
(`process`), or a built-in equivalent of a well-known test image (`images` decides which):
agnhost's serve-hostname, netexec, pause and connect, the ingress-conformance echoserver, and a
JSON echo server on the declared ports of any other image without a command. Built-in servers of
every pod of a node live in one resident asyncio process (`resident`) that opens each pod's
sockets inside the pod's namespace; `python -m netsim.containers` runs the same handlers as a
standalone process.
"""
