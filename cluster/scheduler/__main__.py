"""python -m cluster.scheduler --kubeconfig PATH [--scheduler-name NAME]"""
from __future__ import annotations

import argparse
import logging
import sys

from cluster.client.component import run_component
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

    return run_component(args.kubeconfig, lambda client: Scheduler(client, args.scheduler_name))


if __name__ == "__main__":
    sys.exit(main())
