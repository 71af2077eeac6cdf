"""TEMPORARY adapter while cluster.api's validation, patch, selectors and tables land; removed
before this work is finished. Selectors other than empty ones are refused, not emulated."""

import types



def _table(res, objs, include_object="Metadata", list_rv=""):
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": list_rv},
            "columnDefinitions": [{"name": "Name", "type": "string", "format": "name", "description": "", "priority": 0}],
            "rows": [{"cells": [o["metadata"]["name"]], "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]}} for o in objs]}


tables = types.SimpleNamespace(table=_table)
