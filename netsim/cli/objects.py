"""`netsim apply -f`, `netsim delete -f` and `netsim get`: a cluster's objects through its API
server, with kubectl's output where a user compares the two (`pod/web created`, the server's
Table columns, `-o wide|json|yaml`)."""

import json
import os
import sys

import yaml

from cluster.api.errors import APIError
from netsim import lab as labmod

from . import cluster, kube
from .pods import unreachable
from .errors import UserError

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


def read_files(paths):
    """[(where, object)] of every manifest in PATHS (files, directories of them, or `-`)."""
    items = []
    for path in paths:
        if path != "-" and os.path.isdir(path):
            files = sorted(os.path.join(path, f) for f in os.listdir(path) if f.endswith(MANIFEST_SUFFIXES))
        else:
            files = [path]
        for f in files:
            try:
                found = labmod.read_manifests("<stdin>", sys.stdin) if f == "-" else labmod.read_manifests(f)
            except OSError as e:
                raise UserError(f"-f {f}: cannot read it: {e.strerror or e}")
            except yaml.YAMLError as e:
                raise UserError(f"-f {f}: not valid YAML: {e}")
            except labmod.LabError as e:
                raise UserError(f"{e} (fix the manifest and run the command again)")
            items += [(f"{m['source']}: {m['field']}", m["object"]) for m in found]
    if not items:
        raise UserError(f"no objects found in {', '.join(paths)}: expected Kubernetes manifests (YAML or JSON).")
    return items


def _client(args):
    st = cluster.resolve_cluster(args.name)
    plan = cluster.load_plan(st)
    return kube.connect(plan["controlPlane"]["kubeconfig"]), st


def _display(res, name):
    return f"{res.singular}{'.' + res.group if res.group else ''}/{name}"


def cmd_apply(args, ui):
    items = read_files(args.filename)
    client, st = _client(args)

    async def go():
        async with client:
            return await kube.apply_all(client, items)

    try:
        done = kube.run(go())
    except APIError as e:
        raise unreachable(st, e) if e.code == 503 else UserError(str(e))
    for _, res, obj, result in done:
        print(f"{_display(res, obj['metadata']['name'])} {result}")
    return 0


def cmd_delete(args, ui):
    items = read_files(args.filename)
    client, st = _client(args)

    async def go():
        async with client:
            return await kube.delete_all(client, items)

    failed = 0
    for ref, error in kube.run(go()):
        kind, _, name = ref.partition(" ")
        if error is None:
            print(f'{kind.lower()} "{name.rpartition("/")[2]}" deleted')
        elif error.code == 503:
            raise unreachable(st, error)
        else:
            failed += 1
            ui.error(f"Error from server ({error.reason}): {error.message}")
    return 1 if failed else 0


def _rows(table, wide, with_namespace, prefix):
    cols = [c for c in table.get("columnDefinitions") or [] if wide or not c.get("priority")]
    keep = [i for i, c in enumerate(table.get("columnDefinitions") or []) if wide or not c.get("priority")]
    header = (["NAMESPACE"] if with_namespace else []) + [c["name"].upper() for c in cols]
    rows = []
    for row in table.get("rows") or []:
        cells = [row["cells"][i] for i in keep]
        if prefix and cells:
            cells[0] = prefix + str(cells[0])
        meta = (row.get("object") or {}).get("metadata") or {}
        rows.append(([meta.get("namespace", "")] if with_namespace else []) + cells)
    return header, rows


def _print_table(header, rows):
    text = [[str(c) if c is not None else "<none>" for c in r] for r in [header] + rows]
    widths = [max(len(r[i]) for r in text) for i in range(len(header))]
    for r in text:
        print("   ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


def cmd_get(args, ui):
    kinds = [kube.resolve_kind(k) for k in args.kind.split(",") if k]
    if args.resource_name and len(kinds) > 1:
        raise UserError("a resource name needs exactly one kind: `netsim get pod NAME`.")
    client, st = _client(args)
    output = args.output or "table"

    async def go():
        async with client:
            return [await kube.get(client, res, args.resource_name or "", args.namespace, args.all_namespaces,
                                   args.selector or "", table=output in ("table", "wide")) for res in kinds]

    try:
        answers = kube.run(go())
    except APIError as e:
        if e.code == 503:
            raise unreachable(st, e)
        raise UserError(f"Error from server ({e.reason}): {e.message}")
    if output in ("json", "yaml"):
        objects = []
        for res, doc in zip(kinds, answers):
            for obj in doc.get("items", [doc]) if "items" in doc else [doc]:
                objects.append({"apiVersion": res.api_version, "kind": res.kind, **obj})
        out = objects[0] if args.resource_name else {"apiVersion": "v1", "kind": "List", "items": objects,
                                                      "metadata": {"resourceVersion": ""}}
        if output == "json":
            print(json.dumps(out, indent=4))
        else:
            sys.stdout.write(yaml.safe_dump(out, sort_keys=False))
        return 0
    printed = False
    for res, table in zip(kinds, answers):
        with_ns = args.all_namespaces and res.namespaced
        prefix = f"{_display(res, '')}" if len(kinds) > 1 else ""
        header, rows = _rows(table, output == "wide", with_ns, prefix)
        if not rows:
            continue
        if printed:
            print()
        _print_table(header, rows)
        printed = True
    if not printed:
        where = "" if args.all_namespaces or not any(r.namespaced for r in kinds) else \
            f" in {args.namespace or client.namespace} namespace"
        ui.err.print(f"No resources found{where}.")
    return 0


def add_parsers(sub):
    p = sub.add_parser("apply", help="create or update objects from manifests: netsim apply -f FILE")
    p.add_argument("--name", help="cluster name (default: the only cluster up)")
    p.add_argument("-f", "--filename", action="append", required=True,
                   help="a manifest file, a directory of them, or - for stdin (repeatable)")
    p.set_defaults(fn=cmd_apply)

    p = sub.add_parser("delete", help="delete the objects of manifests: netsim delete -f FILE")
    p.add_argument("--name", help="cluster name (default: the only cluster up)")
    p.add_argument("-f", "--filename", action="append", required=True)
    p.set_defaults(fn=cmd_delete)

    p = sub.add_parser("get", help="list objects as kubectl does: netsim get pods -A -o wide")
    p.add_argument("--name", help="cluster name (default: the only cluster up)")
    p.add_argument("kind", metavar="KIND", help="pods, svc, deploy, nodes, endpointslices, ... (comma-separated)")
    p.add_argument("resource_name", metavar="NAME", nargs="?")
    p.add_argument("-n", "--namespace")
    p.add_argument("-A", "--all-namespaces", action="store_true")
    p.add_argument("-l", "--selector")
    p.add_argument("-o", "--output", choices=["wide", "json", "yaml"])
    p.set_defaults(fn=cmd_get)
