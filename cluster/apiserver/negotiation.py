"""Media types: what a client may send (JSON, the three JSON patch types) and what it may ask
for (JSON objects, meta.k8s.io Tables, PartialObjectMetadata, aggregated discovery).

Protobuf, CBOR and server-side apply (`application/apply-patch+yaml`) are not served: a body
in those types gets 415 and an Accept header naming only those gets 406, each with a message
that says what this server speaks.
"""

import json

from cluster.api import errors

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
PATCH_TYPES = (MERGE_PATCH, STRATEGIC_PATCH, JSON_PATCH)

# Appended to every 415: what to do instead.
NOT_SERVED = ("; protobuf, CBOR and server-side apply (application/apply-patch+yaml) are not "
              "supported by this server: send JSON (kubectl: `create -f FILE` or `apply` without "
              "--server-side)")

# Response forms a client can ask for in Accept.
OBJECT, TABLE, PARTIAL, DISCOVERY_V2, DISCOVERY_V2BETA1 = "object", "table", "partial", "v2", "v2beta1"


def tables():
    """cluster.api.tables, or None while it is not installed: Table requests then fall back to
    the next type the client accepts (kubectl then shows NAME and AGE only)."""
    try:
        from cluster.api import tables as module
    except ImportError:
        return None
    return module


def media_type(header):
    """The bare type of a Content-Type header value, lower case, parameters dropped."""
    return header.split(";", 1)[0].strip().lower()


def _params(item):
    parts = [p.strip() for p in item.split(";")]
    params = {}
    for p in parts[1:]:
        key, _, value = p.partition("=")
        params[key.strip().lower()] = value.strip()
    return parts[0].lower(), params


def accepted(header):
    """The first response form in Accept that this server can produce, or raise 406.

    Accept lists alternatives in preference order (kubectl sends Table first, then plain JSON).
    An absent or wildcard Accept gets JSON objects.
    """
    if not header:
        return OBJECT
    for item in header.split(","):
        mtype, params = _params(item)
        if mtype not in (JSON, "*/*", "application/*"):
            continue
        as_ = params.get("as", "")
        group = params.get("g", "")
        if not as_:
            return OBJECT
        if as_ == "Table" and group == "meta.k8s.io" and params.get("v") in ("v1", "v1beta1"):
            if tables() is not None:
                return TABLE
            continue
        if as_ in ("PartialObjectMetadata", "PartialObjectMetadataList") and group == "meta.k8s.io":
            return PARTIAL
        if as_ == "APIGroupDiscoveryList" and group == "apidiscovery.k8s.io":
            if params.get("v") == "v2":
                return DISCOVERY_V2
            if params.get("v") == "v2beta1":
                return DISCOVERY_V2BETA1
    raise errors.not_acceptable(header)


def unsupported(content_type):
    err = errors.unsupported_media_type(content_type)
    err.message += NOT_SERVED
    return err


def decode_body(content_type, body, allowed=(JSON,)):
    """The JSON document of a request body whose Content-Type is one of `allowed`."""
    mtype = media_type(content_type or JSON)
    if mtype not in allowed:
        raise unsupported(content_type)
    if not body:
        raise errors.bad_request("the request body is empty: send a JSON object")
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise errors.bad_request(f"the request body is not valid JSON: {e}")


_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def dumps(doc):
    """Compact JSON bytes (the wire form of every response)."""
    return _encoder.encode(doc).encode()
