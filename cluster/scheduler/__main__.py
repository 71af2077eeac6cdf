"""python -m cluster.scheduler --kubeconfig PATH [--scheduler-name NAME]"""
from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from cluster.client import Client, KubeconfigError
from cluster.scheduler.framework import SCHEDULER_NAME
from cluster.scheduler.runner import Scheduler


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m cluster.scheduler",
                                description="Bind the cluster's unscheduled pods to nodes.")
    p.add_argument("--kubeconfig", required=True, help="kubeconfig of the API server")
    p.add_argument("--scheduler-name", default=SCHEDULER_NAME,
                   help=f"the spec.schedulerName this scheduler serves (default {SCHEDULER_NAME})")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")

    async def run() -> None:
        try:
            client = Client.from_kubeconfig(args.kubeconfig)
        except (KubeconfigError, OSError) as e:
            raise SystemExit(f"error: --kubeconfig {args.kubeconfig}: {e}")
        async with client:
            task = asyncio.create_task(Scheduler(client, args.scheduler_name).run())
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, task.cancel)
            try:
                await task
            except asyncio.CancelledError:
                pass

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
