"""The CNI contract (spec 0.1.0 to 1.1.0), netsim's bridge plugin, host-local compatible IPAM,
a libcni-style runtime and the per-node agent that serves plugin calls from a resident process.
"""
