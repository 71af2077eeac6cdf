"""The informer's local cache: objects by `namespace/name` key, with secondary indexes.

As client-go's `cache.Indexer`: an index function maps an object to the values it is found
under (`index_by_field("spec.nodeName")` puts a pod under its node's name), and `by_index`
answers "every pod on node-1" without a scan. The cache is touched only from the event loop,
so it needs no locks; callers must treat returned objects as read-only (they are shared).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

from cluster.api import selectors

NAMESPACE_INDEX = "namespace"

IndexFunc = Callable[[dict], Iterable[str]]


@dataclass(frozen=True)
class DeletedFinalStateUnknown:
    """An object that was deleted while the watch was down: a relist no longer had it, so its
    final state is unknown and `obj` is the last state the cache saw."""

    key: str
    obj: dict


def meta_namespace_key(obj: dict | DeletedFinalStateUnknown) -> str:
    """`namespace/name`, or `name` for a cluster-scoped object (client-go's MetaNamespaceKeyFunc)."""
    if isinstance(obj, DeletedFinalStateUnknown):
        return obj.key
    meta = obj["metadata"]
    ns = meta.get("namespace")
    return f"{ns}/{meta['name']}" if ns else meta["name"]


def split_key(key: str) -> tuple[str, str]:
    """(namespace, name) of a key; namespace "" for a cluster-scoped object."""
    ns, sep, name = key.partition("/")
    return (ns, name) if sep else ("", ns)


def index_by_namespace(obj: dict) -> list[str]:
    ns = obj["metadata"].get("namespace")
    return [ns] if ns else []


def index_by_field(path: str) -> IndexFunc:
    """An index function over a dotted field path, e.g. "spec.nodeName"; unset values are not indexed."""
    parts = path.split(".")

    def index(obj: dict) -> list[str]:
        value = obj
        for part in parts:
            if not isinstance(value, dict):
                return []
            value = value.get(part)
        return [str(value)] if value not in (None, "") else []

    index.__name__ = f"index_by_{path}"
    return index


class Indexer:
    """Objects by key plus named indexes; `add`/`update`/`delete` keep the indexes current."""

    def __init__(self, indexers: dict[str, IndexFunc] | None = None,
                 key_func: Callable[[dict], str] = meta_namespace_key):
        self.key_func = key_func
        self._items: dict[str, dict] = {}
        self._funcs: dict[str, IndexFunc] = {}
        self._indices: dict[str, dict[str, set[str]]] = {}
        self.add_indexers(indexers or {})

    def add_indexers(self, indexers: dict[str, IndexFunc]) -> None:
        for name, func in indexers.items():
            if name in self._funcs:
                raise ValueError(f"index {name!r} already exists")
            self._funcs[name] = func
            index = self._indices[name] = {}
            for key, obj in self._items.items():
                for value in func(obj):
                    index.setdefault(value, set()).add(key)

    def has_index(self, name: str) -> bool:
        return name in self._funcs

    def _unindex(self, key: str, obj: dict) -> None:
        for name, func in self._funcs.items():
            index = self._indices[name]
            for value in func(obj):
                keys = index.get(value)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del index[value]

    def _index(self, key: str, obj: dict) -> None:
        for name, func in self._funcs.items():
            index = self._indices[name]
            for value in func(obj):
                index.setdefault(value, set()).add(key)

    def add(self, obj: dict) -> None:
        key = self.key_func(obj)
        old = self._items.get(key)
        if old is not None:
            self._unindex(key, old)
        self._items[key] = obj
        self._index(key, obj)

    update = add

    def delete(self, obj: dict | DeletedFinalStateUnknown) -> None:
        self.delete_key(obj.key if isinstance(obj, DeletedFinalStateUnknown) else self.key_func(obj))

    def delete_key(self, key: str) -> None:
        old = self._items.pop(key, None)
        if old is not None:
            self._unindex(key, old)

    def replace(self, objs: Iterable[dict]) -> None:
        self._items.clear()
        for index in self._indices.values():
            index.clear()
        for obj in objs:
            self.add(obj)

    def get_by_key(self, key: str) -> dict | None:
        return self._items.get(key)

    def get(self, obj: dict) -> dict | None:
        return self._items.get(self.key_func(obj))

    def list_keys(self) -> list[str]:
        return list(self._items)

    def list(self, namespace: str | None = None, label_selector: str = "") -> list[dict]:
        """Every object, or those in `namespace` and/or matching a label selector string."""
        if namespace is not None and NAMESPACE_INDEX in self._funcs:
            objs = self.by_index(NAMESPACE_INDEX, namespace)
        elif namespace is not None:
            objs = [o for o in self._items.values() if o["metadata"].get("namespace") == namespace]
        else:
            objs = list(self._items.values())
        if label_selector:
            sel = selectors.parse_label_selector(label_selector)
            objs = [o for o in objs if sel.matches(o["metadata"].get("labels"))]
        return objs

    def index_keys(self, index_name: str, value: str) -> list[str]:
        return sorted(self._index_named(index_name).get(value, ()))

    def by_index(self, index_name: str, value: str) -> list[dict]:
        """The objects an index function put under `value`, in key order."""
        return [self._items[k] for k in self.index_keys(index_name, value)]

    def index_values(self, index_name: str) -> list[str]:
        return list(self._index_named(index_name))

    def _index_named(self, index_name: str) -> dict[str, set[str]]:
        try:
            return self._indices[index_name]
        except KeyError:
            raise KeyError(f"index {index_name!r} does not exist; known: "
                           + (", ".join(self._funcs) or "none")) from None

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: str) -> bool:
        return key in self._items
