"""The control plane: API objects, API server, stores, controllers, scheduler, kubelet.

Empty until the control-plane issues land; `netsim up` realizes a lab's Pods directly for now.
"""
