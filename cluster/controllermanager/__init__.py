"""The controller manager: the pure decisions of `cluster.controllers` run against the API
server, each as a `cluster.client.Controller` fed by informers of one SharedInformerFactory.

One module per controller wires its informers, keys and writes (`new(ctx) -> Controller`);
`manager.ControllerManager` starts the chosen ones; `python -m cluster.controllermanager
--kubeconfig PATH` runs them until SIGINT or SIGTERM.
"""
