"""netsim: a Kubernetes networking data plane emulated with real kernel objects.

The substrate package owns network namespaces, links, addresses, routes, sysctls, processes
in a namespace and the ledger of every kernel object a cluster creates; the lab model and its
planner (pure) and realizer; probes. It never imports `cni`, `cluster`, `proxy` or `netsim.cli`.
"""
