"""The controllers' decisions as pure functions: objects in, desired objects or changes out.

Each module owns one controller's logic (upstream's `pkg/controller/<name>`); the informers,
work queues and API writes that run them live elsewhere, so everything here is tested without
a server.
"""
