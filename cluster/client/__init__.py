"""The client side of the API: a REST client, informers (list+watch into an indexed cache), a
rate-limited work queue of keys, and the controller pattern built on them.

`rest.Client` talks to the API server; `informer.Informer` keeps a local copy of a resource
current (Reflector -> DeltaFIFO -> Indexer + event handlers); `workqueue.WorkQueue` holds keys
to reconcile; `controller.Controller` wires them together (its docstring is the pattern every
controller and node agent follows).
"""

from .cache import (DeletedFinalStateUnknown, Indexer, index_by_field, index_by_namespace,
                    meta_namespace_key, split_key)
from .controller import Controller, owner_key
from .informer import Backoff, Informer, Reflector, SharedInformerFactory
from .kubeconfig import KubeconfigError
from .rest import Client, Unreachable, Watch
from .workqueue import ExponentialRateLimiter, WorkQueue

__all__ = ["Backoff", "Client", "Controller", "DeletedFinalStateUnknown", "ExponentialRateLimiter",
           "Indexer", "Informer", "KubeconfigError", "Reflector", "SharedInformerFactory",
           "Unreachable", "Watch", "WorkQueue", "index_by_field", "index_by_namespace",
           "meta_namespace_key", "owner_key", "split_key"]
