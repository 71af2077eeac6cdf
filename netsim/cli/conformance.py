"""`netsim cni conformance`: run the CNI conformance suite against a plugin executable and print
the report. Exit status: 0 when no case failed, 1 when one did, 2 when the suite could not run
(a bad --plugin, --conf or --cni-version)."""

import sys


def add_cni_parser(cni):
    """Sub-commands of `netsim cni` (the parser CNI)."""
    sub = cni.add_subparsers(dest="cni_cmd", required=True, metavar="COMMAND")
    p = sub.add_parser("conformance", help="check a CNI plugin against the spec, clause by clause",
                       description="Runs the plugin as a container runtime would, in namespaces the suite "
                                   "creates and removes, and reports each SPEC.md clause as pass, fail or skip.")
    p.add_argument("--plugin", required=True, metavar="PATH", help="the plugin executable")
    p.add_argument("--conf", metavar="FILE", help=".conf, .json or .conflist naming the plugin's type "
                                                  "(default: a bridge-style conf with host-local IPAM)")
    p.add_argument("--cni-version", metavar="V", help="spec version to test (default: the newest the "
                                                      "plugin claims, capped by the conf's)")
    p.add_argument("-o", "--output", choices=["text", "json"], default="text")
    p.set_defaults(fn=cmd_conformance)


def cmd_conformance(args, ui):
    from cni.conformance import ConformanceError, run_suite

    try:
        report = run_suite(args.plugin, conf=args.conf, cni_version=args.cni_version)
    except ConformanceError as e:
        ui.error(str(e))
        return 2
    # Plain text: the evidence holds brackets (iptables counters, JSON) that markup would eat.
    sys.stdout.write(report.dumps() + "\n" if args.output == "json" else report.render_text())
    return report.exit_code()
