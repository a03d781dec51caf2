"""Vendor dates and times, read one way for every adapter (closeloop.dates)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from closeloop.dates import parse_day, parse_timestamp, parse_utc
from closeloop.vendors.xero.mapping import parse_xero_datetime

IST = timezone(timedelta(hours=5, minutes=30))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-01T10:00:00Z", datetime(2024, 5, 1, 10, tzinfo=UTC)),  # RFC 3339 (HubSpot, Pipedrive v2)
        ("2024-05-01T10:00:00+05:30", datetime(2024, 5, 1, 10, tzinfo=IST)),
        ("2024-05-01T10:00:00+0530", datetime(2024, 5, 1, 10, tzinfo=IST)),  # Zoho writes no colon
        ("2024-01-15T10:30:00-08:00", datetime(2024, 1, 15, 10, 30, tzinfo=timezone(timedelta(hours=-8)))),  # QBO
        ("2024-05-01 10:00:00", datetime(2024, 5, 1, 10, tzinfo=UTC)),  # Pipedrive v1: naive is UTC
        ("2024-05-01T10:00:00.123Z", datetime(2024, 5, 1, 10, 0, 0, 123000, tzinfo=UTC)),
        ("2024-5-1T10:00:00+0530", datetime(2024, 5, 1, 10, tzinfo=IST)),  # unpadded fields
        ("  2024-05-01T10:00:00Z ", datetime(2024, 5, 1, 10, tzinfo=UTC)),
    ],
)
def test_iso_timestamps_keep_the_offset_they_were_written_in(text: str, expected: datetime) -> None:
    stamp = parse_timestamp(text)
    assert stamp == expected
    assert stamp is not None and stamp.utcoffset() == expected.utcoffset()


@pytest.mark.parametrize("value", [None, "", "   ", "yesterday", "2024-13-01T00:00:00Z", 1714557600, b"2024-05-01"])
def test_absent_or_unreadable_timestamps_are_none(value: object) -> None:
    assert parse_timestamp(value) is None
    assert parse_utc(value) is None


def test_utc_moves_the_same_instant_to_utc() -> None:
    stamp = parse_utc("2024-05-01T03:00:00+0530")
    assert stamp == datetime(2024, 4, 30, 21, 30, tzinfo=UTC)
    assert stamp is not None and stamp.tzinfo is UTC


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-05-01", date(2024, 5, 1)),
        ("2024-05-01T23:30:00-08:00", date(2024, 5, 1)),  # the day as written, not the UTC day
        (" 2024-05-01 ", date(2024, 5, 1)),
        ("01/05/2024", None),
        ("", None),
        (None, None),
        (20240501, None),
    ],
)
def test_a_day_is_the_calendar_date_a_value_starts_with(value: object, expected: date | None) -> None:
    assert parse_day(value) == expected


def test_xero_reads_net_dates_itself_and_iso_through_the_shared_parser() -> None:
    assert parse_xero_datetime("/Date(1573755038314+0000)/") == datetime(2019, 11, 14, 18, 10, 38, 314000, tzinfo=UTC)
    assert parse_xero_datetime("2024-05-01T10:00:00") == datetime(2024, 5, 1, 10, tzinfo=UTC)
    assert parse_xero_datetime("/Date(garbage)/") is None
