"""Helpers tests share that are not fixtures of one test module: external servers to run."""
