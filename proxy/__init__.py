"""Node data-plane agents that program netfilter: kube-proxy, network policy, ingress.

Empty until the kube-proxy issue lands.
"""
