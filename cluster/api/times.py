"""metav1.Time and metav1.MicroTime on the wire: RFC 3339 in UTC with a `Z`."""
from __future__ import annotations

from datetime import datetime, timezone


def parse_time(text: str | None) -> datetime | None:
    """An RFC 3339 timestamp (`2024-05-01T10:00:00Z`, with or without fractions), or None."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def format_time(t: datetime) -> str:
    """metav1.Time's wire form: seconds precision, UTC, `Z`."""
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_micro_time(t: datetime) -> str:
    """metav1.MicroTime's wire form (Lease renewTime, Event eventTime)."""
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
