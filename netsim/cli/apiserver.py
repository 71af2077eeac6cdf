"""`netsim apiserver` (run an API server alone, in the foreground) and `netsim kubeconfig`
(print the admin kubeconfig of a running API server or cluster)."""

import os
import sys

from netsim import state as statemod

from .errors import UserError

DEFAULT_NAME = "apiserver"


def _paths(name, kubeconfig=None):
    st = statemod.ClusterState(name)
    return st, kubeconfig or st.path("kubeconfig"), st.path("tokens.csv"), st.path("apiserver.pid")


def cmd_apiserver(args, ui):
    from cluster.apiserver.serve import parse_listen, serve
    from cluster.store import StoreError

    problem = statemod.check_cluster_name(args.name)
    if problem:
        raise UserError(f"--name: {problem}")
    from cluster.apiserver.services import ServiceAllocators

    try:
        parse_listen(args.listen)
        ServiceAllocators(args.service_cidr, args.service_node_port_range)
    except ValueError as e:
        # The allocators name their option as a library does (service_cidr ...): say the flag.
        text = str(e)
        for option in ("service_cidr", "service-node-port-range"):
            if text.startswith(option):
                text = "--" + option.replace("_", "-") + text[len(option):]
        raise UserError(text)
    st, kubeconfig, token_file, pid_file = _paths(args.name, args.kubeconfig)
    os.makedirs(st.root, exist_ok=True)
    store_url = args.store or f"sqlite://{st.path('state.db')}"

    def ready(server):
        with open(pid_file, "w") as f:
            f.write(f"{os.getpid()}\n")
        ui.note(f"API server {args.name} listening on {server.url} (store {store_url})")
        ui.note(f"kubeconfig: {kubeconfig}")
        ui.note(f"  kubectl --kubeconfig {kubeconfig} get namespaces")
        sys.stdout.flush()

    try:
        serve(store_url, args.listen, kubeconfig, token_file, name=args.name, ready=ready,
              service_cidr=args.service_cidr, node_port_range=args.service_node_port_range)
    except StoreError as e:
        raise UserError(f"--store {store_url}: {e}")
    except OSError as e:
        raise UserError(f"--listen {args.listen}: cannot listen there: {e.strerror or e} "
                        "(choose another HOST:PORT)")
    finally:
        try:
            os.unlink(pid_file)
        except FileNotFoundError:
            pass
    return 0


def _running(pid_file):
    try:
        with open(pid_file) as f:
            pid = int(f.read().strip())
        os.kill(pid, 0)
        return True
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return False


def cmd_kubeconfig(args, ui):
    name = args.name
    if name is None:
        base = statemod.base_dir()
        try:
            names = sorted(e for e in os.listdir(base) if os.path.exists(os.path.join(base, e, "kubeconfig")))
        except FileNotFoundError:
            names = []
        if not names:
            raise UserError("No API server has written a kubeconfig yet: start one with "
                            "`netsim apiserver` (or name it with --name).")
        if len(names) > 1:
            raise UserError(f"Several API servers have kubeconfigs ({', '.join(names)}): choose one with --name.")
        name = names[0]
    st, kubeconfig, _, pid_file = _paths(name)
    if not os.path.exists(kubeconfig):
        raise UserError(f"No kubeconfig for {name!r} at {kubeconfig}: is `netsim apiserver --name {name}` "
                        "or a cluster of that name running?")
    if os.path.exists(st.path("apiserver.pid")) and not _running(pid_file):
        how = ("`netsim up` with the cluster's lab starts it again" if os.path.exists(st.plan)
               else f"start it with `netsim apiserver --name {name}`")
        raise UserError(f"The API server {name!r} is not running (stale {pid_file}); {how}.")
    with open(kubeconfig) as f:
        sys.stdout.write(f.read())
    return 0


def add_arguments(p):
    p.add_argument("--store", help="sqlite:///ABS/PATH.db or etcd://HOST:PORT "
                                   "(default: sqlite under the state dir)")
    p.add_argument("--listen", default="127.0.0.1:6443", help="HOST:PORT (default 127.0.0.1:6443)")
    p.add_argument("--kubeconfig", help="where to write the admin kubeconfig "
                                        "(default: $NETSIM_STATE_DIR/NAME/kubeconfig)")
    p.add_argument("--service-cidr", default="10.96.0.0/12",
                   help="Service ClusterIPs are allocated from this CIDR (default 10.96.0.0/12)")
    p.add_argument("--service-node-port-range", default="30000-32767",
                   help="NodePorts are allocated from FIRST-LAST (default 30000-32767)")
    p.add_argument("--name", default=DEFAULT_NAME, help=f"name of its state directory (default {DEFAULT_NAME})")
