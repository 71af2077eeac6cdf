"""Crash-loop backoff, as the kubelet's flowcontrol.Backoff keys it per pod and container: pure.

The first restart of a container that exited happens at once; each later one waits for the
current delay counted from when the container finished, a delay that starts at INITIAL and
doubles up to MAXIMUM. An entry not touched for twice MAXIMUM (10 minutes by default: the
container ran that long) is forgotten, so the next crash starts again at INITIAL.
"""
from __future__ import annotations

import dataclasses

INITIAL_SECONDS = 10.0
MAXIMUM_SECONDS = 300.0


@dataclasses.dataclass
class _Entry:
    delay: float
    last_update: float


class CrashLoopBackoff:
    def __init__(self, initial: float = INITIAL_SECONDS, maximum: float = MAXIMUM_SECONDS):
        if initial <= 0 or maximum < initial:
            raise ValueError(f"crash-loop backoff: initial {initial} s and maximum {maximum} s: "
                             "expected 0 < initial <= maximum")
        self.initial, self.maximum = initial, maximum
        self._entries: dict[str, _Entry] = {}

    def _expired(self, entry: _Entry, now: float) -> bool:
        return now - entry.last_update > 2 * self.maximum

    def remaining(self, key: str, finished_at: float, now: float) -> float:
        """Seconds still to wait before restarting KEY, which finished at FINISHED_AT (0: go)."""
        entry = self._entries.get(key)
        if entry is None or self._expired(entry, finished_at):
            return 0.0
        return max(0.0, entry.delay - (now - finished_at))

    def current(self, key: str) -> float:
        """The delay the last restart set (for the CrashLoopBackOff message)."""
        entry = self._entries.get(key)
        return entry.delay if entry else self.initial

    def restarted(self, key: str, now: float) -> None:
        """KEY was (re)started at NOW: the next crash waits twice as long as this one did."""
        entry = self._entries.get(key)
        if entry is None or self._expired(entry, now):
            self._entries[key] = _Entry(self.initial, now)
        else:
            entry.delay = min(entry.delay * 2, self.maximum)
            entry.last_update = now

    def forget(self, prefix: str) -> None:
        """Drop the entries of a pod (keys starting with PREFIX) once it is gone."""
        for key in [k for k in self._entries if k.startswith(prefix)]:
            del self._entries[key]
