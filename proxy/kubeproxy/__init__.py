"""kube-proxy in iptables mode for netsim nodes.

`model` turns Service and EndpointSlice objects (as the API serves them) into service ports
and endpoints, `render` lays them out as upstream kube-proxy's iptables mode does (pure),
`sync` writes a rendering into a node's network namespace with one iptables-legacy-restore
batch, `metrics` keeps the Prometheus figures of those syncs, `agent` (run as
`python -m proxy.kubeproxy`) watches the API server and drives them for one node, `server`
serves its /metrics and /healthz.
"""
