"""Running a control-plane component as a process: one client from a kubeconfig, the
component's `run()` until SIGINT or SIGTERM, and a clear exit when the kubeconfig is bad."""
from __future__ import annotations

import asyncio
import signal

from cluster.client.kubeconfig import KubeconfigError
from cluster.client.rest import Client


def run_component(kubeconfig: str, make) -> int:
    """`make(client)` returns the component; its `run()` is awaited until a signal cancels it."""

    async def run() -> None:
        try:
            client = Client.from_kubeconfig(kubeconfig)
        except (KubeconfigError, OSError) as e:
            raise SystemExit(f"error: --kubeconfig {kubeconfig}: {e}")
        async with client:
            task = asyncio.create_task(make(client).run())
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, task.cancel)
            try:
                await task
            except asyncio.CancelledError:
                pass

    asyncio.run(run())
    return 0
