"""kube-proxy in iptables mode for netsim nodes.

`model` turns Service and EndpointSlice objects (as the API serves them) into service ports
and endpoints, `render` lays them out as upstream kube-proxy's iptables mode does (pure),
`sync` writes a rendering into a node's network namespace with one iptables-legacy-restore
batch, `metrics` keeps the Prometheus figures of those syncs.
"""
