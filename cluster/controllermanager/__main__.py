"""python -m cluster.controllermanager --kubeconfig PATH [--lb-pool CIDR,...] [--controllers ...]"""
from __future__ import annotations

import argparse
import logging
import sys

from cluster.client.component import run_component
from cluster.controllers.lbpool import parse_pool

from .context import Options
from .manager import CONTROLLERS, ControllerManager, select


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m cluster.controllermanager",
                                description="Run the cluster's controllers against its API server.")
    p.add_argument("--kubeconfig", required=True, help="kubeconfig of the API server")
    p.add_argument("--lb-pool", default="",
                   help="LoadBalancer addresses: CIDRs, FIRST-LAST ranges or addresses, comma-"
                        "separated (none: LoadBalancer Services stay <pending>)")
    p.add_argument("--controllers", default="*",
                   help="* for all, or names, -name to disable: " + ", ".join(CONTROLLERS))
    p.add_argument("--node-monitor-grace-period", type=float, default=40.0, metavar="SECONDS",
                   help="a node not heard from this long is NotReady (default 40)")
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    pool = [e for e in args.lb_pool.split(",") if e.strip()]
    try:
        parse_pool(pool)
        names = select(args.controllers)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    options = Options(lb_pool=pool, node_monitor_grace=args.node_monitor_grace_period)

    return run_component(args.kubeconfig, lambda client: ControllerManager(client, options, names))


if __name__ == "__main__":
    sys.exit(main())
