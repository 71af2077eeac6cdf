"""The REST storage of every resource over one Store: create, read, list, update, patch and
delete with upstream's semantics (server-set metadata, resourceVersion preconditions, no-op
updates that write nothing, graceful deletion, finalizers), and the subresources `status`,
`scale`, `binding`, `finalize` and `eviction`.

Objects are stored as JSON without `metadata.resourceVersion`, metadata first: the stored
revision is spliced in as the resourceVersion on the way out without parsing the object.
Nothing here knows HTTP; errors are APIErrors.
"""

import base64
import binascii
import copy
import datetime
import json

from cluster.api import errors, patch, selectors, validation
from cluster.store import Compacted, Conflict, FutureRevision, KeyExists, KeyNotFound

from . import strategy
from .negotiation import JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH, dumps

_META = b'{"metadata":{'
# Unconditional writes (PUT without resourceVersion, PATCH) retry a lost compare-and-swap.
MAX_RETRIES = 16
_PROPAGATION = ("Orphan", "Background", "Foreground")
_POLICY_FINALIZER = {"Orphan": "orphan", "Foreground": "foregroundDeletion"}


# -- stored form -----------------------------------------------------------------------------

def encode(obj):
    """Store bytes of an object: metadata first, without resourceVersion."""
    meta = obj.get("metadata") or {}
    doc = {"metadata": {k: v for k, v in meta.items() if k != "resourceVersion"}}
    for k, v in obj.items():
        if k != "metadata":
            doc[k] = v
    return dumps(doc)


def with_rv(value, revision):
    """Wire bytes of a stored object with its resourceVersion, spliced in without parsing."""
    if value.startswith(_META) and value[13:14] != b"}":
        return b'{"metadata":{"resourceVersion":"%d",%s' % (revision, value[13:])
    obj = json.loads(value)
    obj.setdefault("metadata", {})["resourceVersion"] = str(revision)
    return dumps(obj)


def decode(value, revision):
    obj = json.loads(value)
    obj.setdefault("metadata", {})["resourceVersion"] = str(revision)
    return obj


def _revision_of(obj):
    rv = (obj.get("metadata") or {}).get("resourceVersion") or ""
    return parse_rv(rv, "metadata.resourceVersion") if rv else 0


def parse_rv(text, field="resourceVersion"):
    try:
        value = int(text)
        if value < 0:
            raise ValueError
        return value
    except (TypeError, ValueError):
        raise errors.bad_request(f"{field}: Invalid value: {text!r}: must be a resourceVersion this "
                                 "server returned (a non-negative integer)")


# -- list continue tokens, upstream's shape: base64 of {"v", "rv", "start"} ------------------

def encode_continue(revision, last_key, prefix):
    doc = {"v": "meta.k8s.io/v1", "rv": revision, "start": last_key[len(prefix):] + "\x00"}
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode().rstrip("=")


def decode_continue(token, prefix):
    try:
        doc = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        revision, start = int(doc["rv"]), doc["start"]
        if doc.get("v") != "meta.k8s.io/v1" or not isinstance(start, str) or revision <= 0:
            raise ValueError
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise errors.bad_request(f"continue: Invalid value: {token!r}: not a continue token this "
                                 "server returned; start the list again without it")
    return revision, prefix + start.rstrip("\x00")


class Options:
    """Query options every write takes: dryRun, fieldValidation."""

    def __init__(self, query):
        dry = query.getall("dryRun", []) if hasattr(query, "getall") else [query.get("dryRun", "")]
        dry = [d for d in dry if d]
        for d in dry:
            if d != "All":
                raise errors.bad_request(f"dryRun: Unsupported value: {d!r}: supported values: \"All\"")
        self.dry_run = bool(dry)
        self.field_validation = query.get("fieldValidation", "") or "Warn"
        if self.field_validation not in ("Strict", "Warn", "Ignore"):
            raise errors.bad_request(
                f"fieldValidation: Unsupported value: {self.field_validation!r}: supported values: "
                "\"Ignore\", \"Warn\", \"Strict\"")


class Registry:
    """Every resource's storage over `store`; `admission` (a Chain) runs on every write."""

    def __init__(self, store, admission=None, admission_request=None):
        self.store = store
        self.admission = admission
        self._request = admission_request  # cluster.admission.AdmissionRequest when admission is on
        # cluster.apiserver.services.ServiceAllocators: Services get ClusterIPs and NodePorts
        self.services = None

    def _allocates(self, res, sub=""):
        return self.services is not None and res.kind == "Service" and not sub

    # -- reads ----------------------------------------------------------------------------------

    async def get_raw(self, res, ns, name):
        """(stored bytes, mod revision) or NotFound."""
        found = await self.store.get(res.key(ns, name))
        if found is None:
            raise errors.not_found(res, name)
        return found

    async def get(self, res, ns, name):
        value, rev = await self.get_raw(res, ns, name)
        return decode(value, rev)

    async def list(self, res, ns, query):
        """(items as wire bytes, list resourceVersion, continue token) for a LIST request."""
        label_sel = selectors.parse_label_selector(query.get("labelSelector", ""))
        field_sel = selectors.parse_field_selector(query.get("fieldSelector", ""), res)
        filtering = not (label_sel.empty() and field_sel.empty())
        try:
            limit = int(query.get("limit", "0") or 0)
        except ValueError:
            raise errors.bad_request(f"limit: Invalid value: {query.get('limit')!r}: must be an integer")
        prefix = res.prefix(ns)
        rv, rvm, token = query.get("resourceVersion", ""), query.get("resourceVersionMatch", ""), \
            query.get("continue", "")
        revision, start = 0, ""
        if token:
            if rv:
                raise errors.bad_request("specifying resource version is not allowed when using continue")
            revision, start = decode_continue(token, prefix)
        elif rvm:
            if rvm not in ("Exact", "NotOlderThan"):
                raise errors.bad_request(f"resourceVersionMatch: Unsupported value: {rvm!r}: supported "
                                         "values: \"Exact\", \"NotOlderThan\"")
            if not rv:
                raise errors.bad_request("resourceVersionMatch: Forbidden: resourceVersionMatch is "
                                         "forbidden unless resourceVersion is provided")
            if rvm == "Exact":
                if rv == "0":
                    raise errors.bad_request("resourceVersionMatch: Forbidden: resourceVersionMatch "
                                             "\"exact\" is forbidden for resourceVersion \"0\"")
                revision = parse_rv(rv)
            else:
                await self._not_older_than(parse_rv(rv))
        elif rv and rv != "0":
            # Without a match rule a non-zero resourceVersion is Exact for paginated lists.
            if limit > 0:
                revision = parse_rv(rv)
            else:
                await self._not_older_than(parse_rv(rv))
        items, last_key, at = [], "", revision
        while True:
            want = limit - len(items) if limit > 0 else 0
            try:
                page, at = await self.store.list(prefix, limit=want, start_after=start, revision=at)
            except Compacted:
                if token:
                    raise errors.gone("The provided continue parameter is too old to display a "
                                      "consistent list result. You can start a new list without "
                                      "the continue parameter.")
                raise errors.gone(f"too old resource version: {revision}: history was compacted; "
                                  "list again without resourceVersion")
            except FutureRevision as e:
                raise errors.timeout(f"Too large resource version: {revision}, current: {e.current_revision}")
            for key, value, mod in page:
                # Namespaced prefixes of all namespaces include deeper keys only of this resource.
                if filtering:
                    obj = decode(value, mod)
                    if not (label_sel.matches((obj["metadata"].get("labels") or {}))
                            and field_sel.matches(obj)):
                        continue
                    items.append(dumps(obj))
                else:
                    items.append(with_rv(value, mod))
                last_key = key
                if limit > 0 and len(items) >= limit:
                    break
            if limit <= 0 or len(page) < want or len(items) >= limit:
                exhausted = limit <= 0 or len(page) < want
                break
            start = page[-1][0]
        if limit > 0 and len(items) >= limit and not exhausted:
            more, _ = await self.store.list(prefix, limit=1, start_after=last_key, revision=at)
            cont = encode_continue(at, last_key, prefix) if more else ""
        else:
            cont = ""
        return items, at, cont

    async def _not_older_than(self, revision):
        current = await self.store.current_revision()
        if revision > current:
            raise errors.timeout(f"Too large resource version: {revision}, current: {current}")

    # -- create ---------------------------------------------------------------------------------

    def _check_body(self, res, ns, obj, name=""):
        if not isinstance(obj, dict):
            raise errors.bad_request(f"the request body must be a JSON object ({res.kind}), got "
                                     f"{type(obj).__name__}")
        kind, api_version = obj.get("kind"), obj.get("apiVersion")
        if api_version and api_version != res.api_version:
            raise errors.bad_request(f"the API version in the data ({api_version}) does not match the "
                                     f"expected API version ({res.api_version})")
        if kind and kind != res.kind:
            raise errors.bad_request(f"the kind in the data ({kind}) does not match the expected kind "
                                     f"({res.kind}) of {res.plural}")
        obj["kind"], obj["apiVersion"] = res.kind, res.api_version
        meta = obj.get("metadata")
        if meta is None:
            meta = obj["metadata"] = {}
        elif not isinstance(meta, dict):
            raise errors.bad_request("metadata: must be an object")
        if res.namespaced:
            if meta.get("namespace") and meta["namespace"] != ns:
                raise errors.bad_request(
                    f"the namespace of the provided object ({meta['namespace']}) does not match the "
                    f"namespace sent on the request ({ns})")
            meta["namespace"] = ns
        else:
            meta.pop("namespace", None)
        if name and meta.get("name") and meta["name"] != name:
            raise errors.bad_request(f"the name of the object ({meta['name']}) does not match the name "
                                     f"on the URL ({name})")
        if name:
            meta["name"] = name

    def _field_validation(self, res, obj, opts, warnings):
        if opts.field_validation == "Ignore":
            return
        unknown = validation.unknown_fields(res, obj)
        if not unknown:
            return
        texts = [f"unknown field {json.dumps(f)}" for f in unknown]
        if opts.field_validation == "Strict":
            raise errors.bad_request("strict decoding error: " + ", ".join(texts))
        warnings.extend(texts)

    def _validate(self, res, obj, old=None):
        causes = validation.validate(res, obj, old)
        if causes:
            raise errors.invalid(res.kind, obj["metadata"].get("name", ""), causes, res.group)

    async def _admit(self, operation, res, sub, ns, name, obj, old, user, dry_run):
        if self.admission is None:
            return
        req = self._request(operation=operation, resource=res, subresource=sub, namespace=ns,
                            name=name, obj=obj, old_obj=old, user=user, dry_run=dry_run)
        await self.admission.admit(req, self.context)
        return req

    async def _validate_admission(self, req, warnings):
        if req is not None:
            await self.admission.validate(req, self.context)
            warnings.extend(req.warnings)

    async def create(self, res, ns, obj, opts, user=None):
        """(created object, warnings)."""
        warnings = []
        self._check_body(res, ns, obj)
        self._field_validation(res, obj, opts, warnings)
        meta = obj["metadata"]
        for attempt in range(8):
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = strategy.generate_name(meta["generateName"])
                generated = True
            else:
                generated = False
            strategy.prepare_for_create(res, obj)
            validation.default(res, obj)
            req = await self._admit("CREATE", res, "", ns, meta.get("name", ""), obj, None, user,
                                    opts.dry_run)
            self._validate(res, obj)
            await self._validate_admission(req, warnings)
            allocation = self.services.allocate(obj) if self._allocates(res) else None
            if opts.dry_run:
                if allocation:
                    allocation.undo()
                return obj, warnings
            try:
                rev = await self.store.create(res.key(ns, meta["name"]), encode(obj))
            except BaseException as e:
                if allocation:
                    allocation.undo()
                if not isinstance(e, KeyExists):
                    raise
                if generated and attempt < 7:
                    del meta["name"]
                    continue
                raise errors.already_exists(res, meta["name"])
            meta["resourceVersion"] = str(rev)
            return obj, warnings

    # -- update and patch -----------------------------------------------------------------------

    async def update(self, res, ns, name, body, opts, user=None, sub=""):
        """PUT: (status code, object, warnings)."""
        warnings = []
        if sub == "scale":
            return await self._update_scale(res, ns, name, lambda scale: body, opts, user)
        self._check_body(res, ns, body, name)
        if not sub:
            self._field_validation(res, body, opts, warnings)
        precondition = _revision_of(body)

        def transform(current):
            new = copy.deepcopy(body)
            if not precondition:
                new["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            return new

        obj = await self._guaranteed_update(res, ns, name, transform, opts, user, sub, precondition,
                                            warnings=warnings)
        return 200, obj, warnings

    async def patch(self, res, ns, name, patch_type, doc, opts, user=None, sub=""):
        """PATCH: (status code, object, warnings)."""
        warnings = []

        def apply(current):
            if patch_type == MERGE_PATCH:
                if not isinstance(doc, dict):
                    raise errors.bad_request("a merge patch must be a JSON object")
                return patch.merge_patch(current, doc)
            if patch_type == STRATEGIC_PATCH:
                if not isinstance(doc, dict):
                    raise errors.bad_request("a strategic merge patch must be a JSON object")
                return patch.strategic_merge_patch(current, doc, res)
            if patch_type == JSON_PATCH:
                if not isinstance(doc, list):
                    raise errors.bad_request("a JSON patch must be a JSON array of operations")
                return patch.json_patch(current, doc)
            raise errors.bad_request(f"unknown patch type {patch_type}")

        if sub == "scale":
            return await self._update_scale(res, ns, name, apply, opts, user, patching=True)
        # A resourceVersion in the patch is a precondition; otherwise a lost race retries.
        precondition = 0
        if isinstance(doc, dict) and isinstance(doc.get("metadata"), dict) \
                and doc["metadata"].get("resourceVersion"):
            precondition = parse_rv(doc["metadata"]["resourceVersion"], "metadata.resourceVersion")

        def transform(current):
            new = apply(current)
            if not isinstance(new, dict):
                raise errors.bad_request("the patched object is not a JSON object")
            self._check_body(res, ns, new, name)
            if not sub:
                del warnings[:]
                self._field_validation(res, new, opts, warnings)
            return new

        obj = await self._guaranteed_update(res, ns, name, transform, opts, user, sub, precondition,
                                            warnings=warnings)
        return 200, obj, warnings

    async def _guaranteed_update(self, res, ns, name, transform, opts, user, sub, precondition,
                                 admit=True, warnings=None):
        """Read, transform, check and compare-and-swap, retrying a lost race when unconditional."""
        key = res.key(ns, name)
        for attempt in range(MAX_RETRIES):
            found = await self.store.get(key)
            if found is None:
                raise errors.not_found(res, name)
            old = decode(*found)
            rev = found[1]
            new = transform(copy.deepcopy(old))
            new_rv = _revision_of(new)
            if new_rv and new_rv != rev:
                raise errors.conflict(res, name, "the object has been modified; please apply your "
                                      "changes to the latest version and try again")
            uid = new["metadata"].get("uid")
            if uid and uid != old["metadata"].get("uid"):
                raise errors.conflict(res, name, f"Precondition failed: UID in precondition: {uid}, "
                                      f"UID in object meta: {old['metadata'].get('uid')}")
            strategy.prepare_for_update(res, new, old, sub)
            allocating = self._allocates(res, sub)
            if allocating:
                self.services.prepare_update(new, old)
            validation.default(res, new)
            req = None
            if admit:
                req = await self._admit("UPDATE", res, sub, ns, name, new, old, user, opts.dry_run)
            self._validate(res, new, old)
            if admit:
                await self._validate_admission(req, [] if warnings is None else warnings)
            new["metadata"]["resourceVersion"] = str(rev)
            if allocating:
                written = await self._write_service(key, res, name, new, old, rev, precondition, opts)
                if written is not None:
                    return written
                continue
            if new == old:
                return old  # nothing changed: nothing is written, the resourceVersion stays
            meta = new["metadata"]
            if meta.get("deletionTimestamp") and not meta.get("finalizers") \
                    and not meta.get("deletionGracePeriodSeconds"):
                # The last finalizer is gone from an object being deleted: delete it now.
                if opts.dry_run:
                    return new
                try:
                    _, drev = await self.store.delete(key, rev)
                except (Conflict, KeyNotFound):
                    if precondition:
                        raise errors.conflict(res, name, "the object has been modified; please apply "
                                              "your changes to the latest version and try again")
                    continue
                meta["resourceVersion"] = str(drev)
                return new
            if opts.dry_run:
                return new
            try:
                nrev = await self.store.update(key, encode(new), rev)
            except Conflict:
                if precondition:
                    raise errors.conflict(res, name, "the object has been modified; please apply your "
                                          "changes to the latest version and try again")
                continue
            except KeyNotFound:
                raise errors.not_found(res, name)
            meta["resourceVersion"] = str(nrev)
            return new
        raise errors.conflict(res, name, f"gave up after {MAX_RETRIES} concurrent modifications; "
                              "try again")

    async def _write_service(self, key, res, name, new, old, rev, precondition, opts):
        """The write of an updated Service, with its ClusterIP and NodePorts allocated first and
        released afterwards as the outcome says; None when a lost race should be retried."""
        allocation = self.services.allocate(new, old)
        stored = False
        try:
            if new == old:
                return old
            meta = new["metadata"]
            if opts.dry_run:
                return new
            # the last finalizer gone from a Service being deleted: delete it now
            deleting = meta.get("deletionTimestamp") and not meta.get("finalizers") \
                and not meta.get("deletionGracePeriodSeconds")
            try:
                if deleting:
                    _, nrev = await self.store.delete(key, rev)
                else:
                    nrev = await self.store.update(key, encode(new), rev)
            except (Conflict, KeyNotFound) as e:
                if precondition:
                    raise errors.conflict(res, name, "the object has been modified; please apply "
                                          "your changes to the latest version and try again")
                if isinstance(e, KeyNotFound) and not deleting:
                    raise errors.not_found(res, name)
                return None
            stored = True
            meta["resourceVersion"] = str(nrev)
            if deleting:
                self.services.deleted(old)
            else:
                self.services.written(new, old)
            return new
        finally:
            if not stored:
                allocation.undo()

    # -- scale ----------------------------------------------------------------------------------

    @staticmethod
    def scale_of(obj):
        """autoscaling/v1 Scale of a Deployment or ReplicaSet."""
        meta, spec, status = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
        selector = selectors.from_label_selector(spec.get("selector") or {})
        return {"kind": "Scale", "apiVersion": "autoscaling/v1",
                "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion",
                                                   "creationTimestamp") if k in meta},
                "spec": {"replicas": spec.get("replicas", 1)},
                "status": {"replicas": status.get("replicas", 0), "selector": str(selector)}}

    async def get_scale(self, res, ns, name):
        return self.scale_of(await self.get(res, ns, name))

    async def _update_scale(self, res, ns, name, make_scale, opts, user, patching=False):
        def transform(current):
            scale = make_scale(self.scale_of(current))
            if not isinstance(scale, dict):
                raise errors.bad_request("the Scale must be a JSON object")
            if scale.get("kind") not in (None, "Scale"):
                raise errors.bad_request(f"the kind in the data ({scale.get('kind')}) does not match the "
                                         "expected kind (Scale)")
            replicas = (scale.get("spec") or {}).get("replicas")
            if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
                raise errors.invalid("Scale", name, [errors.Cause.invalid(
                    "spec.replicas", replicas, "must be greater than or equal to 0")], "autoscaling")
            rv = (scale.get("metadata") or {}).get("resourceVersion")
            if rv and not patching:
                current["metadata"]["resourceVersion"] = rv
            current.setdefault("spec", {})["replicas"] = replicas
            return current

        obj = await self._guaranteed_update(res, ns, name, transform, opts, user, "", 0)
        return 200, self.scale_of(obj), []

    # -- binding, finalize, eviction ------------------------------------------------------------

    async def bind(self, res, ns, name, binding, opts, user=None):
        """POST pods/NAME/binding: assign the pod to a node; 409 if it already has one."""
        if not isinstance(binding, dict):
            raise errors.bad_request("the request body must be a Binding object")
        target = binding.get("target") or {}
        node = target.get("name")
        if not node:
            raise errors.invalid("Binding", name, [errors.Cause.required("target.name")])
        if target.get("kind") not in (None, "", "Node"):
            raise errors.invalid("Binding", name, [errors.Cause.not_supported(
                "target.kind", target.get("kind"), ["Node"])])
        annotations = (binding.get("metadata") or {}).get("annotations") or {}

        def transform(pod):
            if pod["metadata"].get("deletionTimestamp"):
                raise errors.conflict(res, name, "pod is being deleted, cannot be assigned to a host")
            current = (pod.get("spec") or {}).get("nodeName")
            if current:
                raise errors.conflict(res, name, f"pod {name} is already assigned to node \"{current}\"")
            pod["spec"]["nodeName"] = node
            if annotations:
                pod["metadata"].setdefault("annotations", {}).update(annotations)
            conditions = pod.setdefault("status", {}).setdefault("conditions", [])
            conditions[:] = [c for c in conditions if c.get("type") != "PodScheduled"]
            conditions.append({"type": "PodScheduled", "status": "True",
                               "lastTransitionTime": strategy.timestamp()})
            return pod

        # A binding is not a spec update: it bypasses the pod's immutability rules, as upstream.
        key = res.key(ns, name)
        for _ in range(MAX_RETRIES):
            found = await self.store.get(key)
            if found is None:
                raise errors.not_found(res, name)
            pod = transform(decode(*found))
            if opts.dry_run:
                break
            try:
                await self.store.update(key, encode(pod), found[1])
                break
            except Conflict:
                continue
        return 201, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                     "code": 201}

    # -- delete ---------------------------------------------------------------------------------

    async def delete(self, res, ns, name, options, opts, user=None):
        """DELETE with DeleteOptions: (status code, response document)."""
        options = options or {}
        preconditions = options.get("preconditions") or {}
        policy = options.get("propagationPolicy")
        if options.get("orphanDependents") is not None:
            if policy:
                raise errors.invalid("DeleteOptions", "", [errors.Cause.invalid(
                    "propagationPolicy", policy, "orphanDependents and deletionPropagation cannot "
                    "be both set")])
            policy = "Orphan" if options["orphanDependents"] else "Background"
        if policy is not None and policy not in _PROPAGATION:
            raise errors.invalid("DeleteOptions", "", [errors.Cause.not_supported(
                "propagationPolicy", policy, list(_PROPAGATION))])
        grace_req = options.get("gracePeriodSeconds")
        if grace_req is not None and (not isinstance(grace_req, int) or isinstance(grace_req, bool)):
            raise errors.bad_request(f"gracePeriodSeconds: Invalid value: {grace_req!r}: must be an integer")
        key = res.key(ns, name)
        for _ in range(MAX_RETRIES):
            found = await self.store.get(key)
            if found is None:
                raise errors.not_found(res, name)
            obj = decode(*found)
            rev = found[1]
            meta = obj["metadata"]
            if preconditions.get("uid") and preconditions["uid"] != meta.get("uid"):
                raise errors.conflict(res, name, f"Precondition failed: UID in precondition: "
                                      f"{preconditions['uid']}, UID in object meta: {meta.get('uid')}")
            if preconditions.get("resourceVersion") and preconditions["resourceVersion"] != str(rev):
                raise errors.conflict(res, name, "Precondition failed: ResourceVersion in precondition: "
                                      f"{preconditions['resourceVersion']}, ResourceVersion in object meta: "
                                      f"{rev}")
            if self.admission is not None:
                req = self._request(operation="DELETE", resource=res, subresource="", namespace=ns,
                                    name=name, obj=None, old_obj=obj, user=user, dry_run=opts.dry_run)
                await self.admission.validate(req, self.context)
            finalizers = list(meta.get("finalizers") or [])
            added = _POLICY_FINALIZER.get(policy)
            if added and added not in finalizers:
                finalizers.append(added)
            if policy == "Background":
                finalizers = [f for f in finalizers if f not in _POLICY_FINALIZER.values()]
            grace = strategy.pod_grace_period(obj, grace_req) if res.kind == "Pod" else 0
            deleting = meta.get("deletionTimestamp")
            if deleting:
                current_grace = meta.get("deletionGracePeriodSeconds") or 0
                grace = min(grace, current_grace)
            if finalizers or grace > 0 or (res.kind == "Namespace" and (obj.get("spec") or {}).get("finalizers")):
                # Graceful: mark the object and let the kubelet, a controller or a finalizer finish.
                new = copy.deepcopy(obj)
                nmeta = new["metadata"]
                if not deleting or grace < (meta.get("deletionGracePeriodSeconds") or 0):
                    when = strategy.now() + datetime.timedelta(seconds=grace)
                    nmeta["deletionTimestamp"] = strategy.timestamp(when)
                    nmeta["deletionGracePeriodSeconds"] = grace
                    if not deleting and nmeta.get("generation") is not None:
                        nmeta["generation"] += 1
                if finalizers:
                    nmeta["finalizers"] = finalizers
                if res.kind == "Namespace":
                    new.setdefault("status", {})["phase"] = "Terminating"
                if new == obj:
                    return 200, obj
                if opts.dry_run:
                    return 200, new
                try:
                    nrev = await self.store.update(key, encode(new), rev)
                except (Conflict, KeyNotFound):
                    continue
                nmeta["resourceVersion"] = str(nrev)
                return 200, new
            if opts.dry_run:
                return 200, self._deleted_response(res, obj)
            try:
                _, drev = await self.store.delete(key, rev)
            except Conflict:
                continue
            except KeyNotFound:
                raise errors.not_found(res, name)
            if self._allocates(res):
                self.services.deleted(obj)
            meta["resourceVersion"] = str(drev)
            return 200, self._deleted_response(res, obj)
        raise errors.conflict(res, name, f"gave up after {MAX_RETRIES} concurrent modifications; try again")

    @staticmethod
    def _deleted_response(res, obj):
        # Pods answer with the deleted object (upstream's ReturnDeletedObject); others with a Status.
        if res.kind == "Pod":
            return obj
        meta = obj["metadata"]
        details = {"name": meta.get("name", ""), "kind": res.plural, "uid": meta.get("uid", "")}
        if res.group:
            details["group"] = res.group
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                "details": details}

    async def delete_collection(self, res, ns, query, options, opts, user=None):
        items, rev, _ = await self.list(res, ns, {k: v for k, v in query.items()
                                                   if k in ("labelSelector", "fieldSelector")})
        deleted = []
        for value in items:
            meta = json.loads(value)["metadata"]
            try:
                _, doc = await self.delete(res, ns or meta.get("namespace"), meta["name"], options, opts, user)
            except errors.APIError as e:
                if e.code == 404:
                    continue
                raise
            deleted.append(doc if doc.get("kind") != "Status" else json.loads(value))
        return {"kind": res.list_kind, "apiVersion": res.api_version,
                "metadata": {"resourceVersion": str(rev)}, "items": deleted}

    async def evict(self, res, ns, name, eviction, opts, user=None):
        """POST pods/NAME/eviction: delete the pod with the eviction's DeleteOptions."""
        options = (eviction or {}).get("deleteOptions") or {}
        await self.delete(res, ns, name, options, opts, user)
        return 201, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                     "code": 201}

    # -- the admission plugins' view of the store ----------------------------------------------

    @property
    def context(self):
        return _AdmissionContext(self)


class _AdmissionContext:
    """What admission plugins may read and write (AdmissionContext of cluster.admission)."""

    def __init__(self, registry):
        self._registry = registry

    async def get(self, resource, namespace, name):
        found = await self._registry.store.get(resource.key(namespace, name))
        return decode(*found) if found else None

    async def list(self, resource, namespace):
        page, _ = await self._registry.store.list(resource.prefix(namespace))
        return [decode(value, mod) for _, value, mod in page]

    async def update_status(self, resource, obj):
        status = obj.get("status")

        def transform(current):
            current["status"] = status
            return current

        return await self._registry._guaranteed_update(
            resource, obj["metadata"].get("namespace", ""), obj["metadata"]["name"], transform,
            Options({}), None, "status", 0, admit=False)

