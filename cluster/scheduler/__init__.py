"""The scheduler's decisions as pure functions: which node a pod goes to, or why none fits.

`framework.schedule` runs one scheduling cycle over the filters (`filters`) and scores (`scores`)
of upstream's default profile, with the FitError message and the Binding it leads to; the queue,
informers and the binding call live with the wiring.
"""
