"""The contract every store keeps: a revisioned key-value map with compare-and-swap and watch.

It is etcd's model, the one the Kubernetes API server is written against: every change gets
the next global revision (which becomes the object's resourceVersion), a key remembers the
revision of its last change (its mod revision), updates and deletes can be made conditional on
it, and the history of changes can be watched from any revision not yet compacted.

After `compact(C)` the store can still be read as it was at revision C (etcd's rule) and
replays the changes after C: a list at revision R and a watch after revision R both fail with
`Compacted` when R < C.
"""

import abc
import dataclasses
from collections.abc import AsyncIterator


@dataclasses.dataclass
class Event:
    """One change to one key, as a watch reports it."""

    type: str  # "ADDED" | "MODIFIED" | "DELETED"
    key: str
    value: bytes  # the new value; for DELETED the last value before the deletion
    revision: int  # the revision of this change
    prev_value: bytes | None = None  # the value before this change; None for ADDED


class StoreError(Exception):
    """A store could not do what was asked; the message says why."""


class KeyExists(StoreError):
    """create() on a key that already exists."""

    def __init__(self, key: str):
        super().__init__(f"key {key!r} already exists")
        self.key = key


class KeyNotFound(StoreError):
    """update() or delete() on a key that does not exist."""

    def __init__(self, key: str):
        super().__init__(f"key {key!r} not found")
        self.key = key


class Conflict(StoreError):
    """A compare-and-swap failed: the key changed since the caller read it."""

    def __init__(self, key: str, expected_revision: int, current_revision: int):
        super().__init__(
            f"key {key!r} was modified: expected revision {expected_revision}, "
            f"it is at {current_revision}; read it again and retry")
        self.key = key
        self.expected_revision = expected_revision
        self.current_revision = current_revision


class Compacted(StoreError):
    """A watch or list asked for history older than the compacted revision."""

    def __init__(self, requested_revision: int, compact_revision: int):
        super().__init__(
            f"revision {requested_revision} has been compacted (oldest available: "
            f"{compact_revision}); list again to get a current revision")
        self.requested_revision = requested_revision
        self.compact_revision = compact_revision


class FutureRevision(StoreError):
    """A list or compaction named a revision the store has not reached yet."""

    def __init__(self, requested_revision: int, current_revision: int):
        super().__init__(
            f"revision {requested_revision} is in the future (current revision: "
            f"{current_revision})")
        self.requested_revision = requested_revision
        self.current_revision = current_revision


class Store(abc.ABC):
    """A revisioned key-value store; keys are Kubernetes-style `/registry/<resource>/...`."""

    @abc.abstractmethod
    async def create(self, key: str, value: bytes) -> int:
        """Create `key`; return the revision of the creation. KeyExists if it exists."""

    @abc.abstractmethod
    async def get(self, key: str) -> tuple[bytes, int] | None:
        """Return (value, mod revision) of `key`, or None if it does not exist."""

    @abc.abstractmethod
    async def list(self, prefix: str, limit: int = 0, start_after: str = "",
                   revision: int = 0) -> tuple[list[tuple[str, bytes, int]], int]:
        """Return ([(key, value, mod revision)...], revision the list was read at).

        Keys under `prefix` in key order, only those after `start_after` (a continue token's
        last key), at most `limit` of them (0: all). `revision` > 0 reads the store as it was
        at that revision, so the pages of one paginated list are consistent.
        """

    @abc.abstractmethod
    async def update(self, key: str, value: bytes, expected_revision: int) -> int:
        """Replace `key` if its mod revision is `expected_revision`; return the new revision.

        KeyNotFound if the key does not exist, Conflict if it was modified since.
        """

    @abc.abstractmethod
    async def delete(self, key: str, expected_revision: int = 0) -> tuple[bytes, int]:
        """Delete `key`, if `expected_revision` > 0 only if that is its mod revision.

        Returns (the deleted value, the revision of the deletion).
        """

    @abc.abstractmethod
    async def current_revision(self) -> int:
        """The revision of the latest change."""

    @abc.abstractmethod
    def watch(self, prefix: str, after_revision: int) -> AsyncIterator[Event]:
        """Every change under `prefix` with revision > `after_revision`, in order, then live.

        Raises Compacted on the first iteration if that history is gone. Closing the
        iterator (aclose) or cancelling the task iterating it stops the watch.
        """

    @abc.abstractmethod
    async def compact(self, revision: int) -> None:
        """Forget history older than `revision`; compacting to an older revision is a no-op."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release the store; running watches end."""


def prefix_end(prefix: str) -> str:
    """The smallest key greater than every key starting with `prefix` ("" if unbounded)."""
    stripped = prefix.rstrip("\U0010ffff")
    if not stripped:
        return ""
    following = ord(stripped[-1]) + 1
    if 0xD800 <= following <= 0xDFFF:
        following = 0xE000  # surrogates are not characters and have no UTF-8 encoding
    return stripped[:-1] + chr(following)
