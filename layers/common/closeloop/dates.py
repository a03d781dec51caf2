"""Dates and times as vendors write them, read leniently: ISO 8601 timestamps and calendar days.

Every adapter reads vendor timestamps the same way: ISO 8601 with ``Z``, ``+05:30`` or ``+0530`` (Zoho writes
the last), a naive one taken as UTC, and anything absent or unreadable as None (the caller decides what a
missing time means). Vendor-only formats stay with their adapter (Xero's .NET ``/Date(ms+zone)/``).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

#: The ISO 8601 shape ``fromisoformat`` leaves out: fields without their zero padding (``2024-5-1T9:05:00+0530``).
_UNPADDED = "%Y-%m-%dT%H:%M:%S%z"


def parse_timestamp(value: Any) -> datetime | None:
    """An ISO 8601 timestamp as an aware datetime in the offset it was written in (naive: UTC); None when
    ``value`` is not a non-blank string or not a timestamp."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    try:
        stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        try:
            stamp = datetime.strptime(text, _UNPADDED)
        except ValueError:
            return None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def parse_utc(value: Any) -> datetime | None:
    """``parse_timestamp`` moved to UTC (for comparing and storing); None when it is None."""
    stamp = parse_timestamp(value)
    return stamp.astimezone(UTC) if stamp else None


def parse_day(value: Any) -> date | None:
    """The calendar day an ISO 8601 date or timestamp starts with (``2024-05-01``, ``2024-05-01T10:00:00Z``:
    the day as written, no zone conversion); None when ``value`` is not a non-blank string or not a date."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        return date.fromisoformat(value.strip()[:10])
    except ValueError:
        return None
