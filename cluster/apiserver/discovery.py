"""Discovery documents: /version, /api, /apis, /api/v1, /apis/GROUP/VERSION, and the aggregated
form (apidiscovery.k8s.io v2 and v2beta1 `APIGroupDiscoveryList`) that kubectl asks for first,
all built from the resource registry."""

import platform

from cluster.api.resources import groups, in_group_version

# The Kubernetes API version this server speaks (kubectl warns when more than one minor apart).
MAJOR, MINOR = "1", "37"

# Subresources with their own kind and verbs; the rest share the parent's kind.
_SUBRESOURCE_VERBS = {
    "status": ("get", "patch", "update"),
    "scale": ("get", "patch", "update"),
    "binding": ("create",),
    "eviction": ("create",),
    "finalize": ("update",),
    "log": ("get",),
}
_SUBRESOURCE_KIND = {
    "scale": ("autoscaling", "v1", "Scale"),
    "binding": ("", "v1", "Binding"),
    "eviction": ("policy", "v1", "Eviction"),
}


def version():
    return {"major": MAJOR, "minor": MINOR, "gitVersion": f"v{MAJOR}.{MINOR}.0-netsim",
            "gitCommit": "", "gitTreeState": "clean", "buildDate": "1970-01-01T00:00:00Z",
            "goVersion": "python" + platform.python_version(), "compiler": "cpython",
            "platform": f"linux/{platform.machine()}"}


def api_versions(server_address):
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]}


def _group_doc(group, versions):
    gvs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"name": group, "versions": gvs, "preferredVersion": gvs[0]}


def api_group_list():
    return {"kind": "APIGroupList", "apiVersion": "v1",
            "groups": [_group_doc(g, vs) for g, vs in groups().items() if g]}


def api_group(group):
    versions = groups().get(group)
    if not group or not versions:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group_doc(group, versions)}


def api_resource_list(group, version):
    """APIResourceList of GROUP/VERSION, or None if it is not served."""
    resources = in_group_version(group, version)
    if not resources:
        return None
    out = []
    for r in resources:
        out.append({"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced,
                    "kind": r.kind, "verbs": list(r.verbs),
                    **({"shortNames": list(r.short_names)} if r.short_names else {}),
                    **({"categories": list(r.categories)} if r.categories else {})})
        for sub in r.subresources:
            sgroup, sversion, skind = _SUBRESOURCE_KIND.get(sub, (r.group, r.version, r.kind))
            entry = {"name": f"{r.plural}/{sub}", "singularName": "", "namespaced": r.namespaced,
                     "kind": skind, "verbs": list(_SUBRESOURCE_VERBS.get(sub, ("get",)))}
            if (sgroup, sversion) != (r.group, r.version):
                entry["group"], entry["version"] = sgroup, sversion
            out.append(entry)
    return {"kind": "APIResourceList", "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version, "resources": out}


def aggregated(legacy, version="v2"):
    """APIGroupDiscoveryList of the core group (legacy=True, for /api) or of the named groups."""
    items = []
    for group, versions in groups().items():
        if bool(group) == legacy:
            continue
        vdocs = []
        for v in versions:
            resources = []
            for r in in_group_version(group, v):
                doc = {"resource": r.plural,
                       "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
                       "scope": "Namespaced" if r.namespaced else "Cluster",
                       "singularResource": r.singular, "verbs": list(r.verbs)}
                if r.short_names:
                    doc["shortNames"] = list(r.short_names)
                if r.categories:
                    doc["categories"] = list(r.categories)
                subs = []
                for sub in r.subresources:
                    sgroup, sversion, skind = _SUBRESOURCE_KIND.get(sub, (r.group, r.version, r.kind))
                    subs.append({"subresource": sub,
                                 "responseKind": {"group": sgroup, "version": sversion, "kind": skind},
                                 "verbs": list(_SUBRESOURCE_VERBS.get(sub, ("get",)))})
                if subs:
                    doc["subresources"] = subs
                resources.append(doc)
            vdocs.append({"version": v, "resources": resources, "freshness": "Current"})
        items.append({"metadata": {"name": group, "creationTimestamp": None}, "versions": vdocs})
    return {"kind": "APIGroupDiscoveryList", "apiVersion": f"apidiscovery.k8s.io/{version}",
            "metadata": {}, "items": items}


def aggregated_content_type(version):
    return f"application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList"
