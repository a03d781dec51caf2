"""The shared call schedules (DynamoStore) and SharedPacer over them, on moto with the template's key schema."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws

from closeloop.errors import RateLimited
from closeloop.http import RateLimit
from closeloop.pacing import Clock, SharedPacer
from closeloop.store import DynamoStore


@pytest.fixture
def client() -> Iterator[object]:
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        dynamodb.create_table(
            TableName="sync",
            AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in ("PK", "SK")],
            KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"}, {"AttributeName": "SK", "KeyType": "RANGE"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield dynamodb


class FakeClock(Clock):
    """A clock tests move by hand; sleeping moves it."""

    def __init__(self, start: float = 1_000.0) -> None:
        object.__setattr__(self, "at", start)
        object.__setattr__(self, "slept", [])

    def now(self) -> float:
        return float(self.at)  # type: ignore[attr-defined]

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)  # type: ignore[attr-defined]
        object.__setattr__(self, "at", self.at + max(0.0, seconds))  # type: ignore[attr-defined]


def test_an_idle_schedule_starts_now_and_a_busy_one_books_after_the_last_slot(client: object) -> None:
    # Given two workers (two store instances) on one organisation's schedule
    first, second = DynamoStore("sync", client), DynamoStore("sync", client)  # type: ignore[arg-type]
    # When the first books three slots a second apart and the second books right after
    a = first.book_call_slots("xero#t1", 3, 1.0, now=100.0, latest=120.0)
    b = second.book_call_slots("xero#t1", 3, 1.0, now=100.5, latest=120.0)
    # Then the first starts now and the second starts where the first's slots end
    assert (a.booked, a.at) == (True, 100.0)
    assert (b.booked, b.at) == (True, 103.0)
    # And a booking that would start after ``latest`` books nothing and says when the schedule is free
    c = first.book_call_slots("xero#t1", 3, 1.0, now=101.0, latest=105.0)
    assert (c.booked, c.at) == (False, 106.0)
    assert first.book_call_slots("xero#t1", 3, 1.0, now=101.0, latest=107.0).at == 106.0
    # And another organisation's schedule is its own
    assert first.book_call_slots("xero#t2", 3, 1.0, now=101.0, latest=107.0).at == 101.0


def test_a_429_holds_every_worker_off_until_the_vendor_said(client: object) -> None:
    store = DynamoStore("sync", client)  # type: ignore[arg-type]
    store.book_call_slots("xero#t1", 1, 1.0, now=100.0, latest=100.0)
    # When one worker is told to come back in 30 s
    store.hold_call_slots("xero#t1", 130.0)
    # Then another worker's next booking starts no earlier than that, and an earlier hold does not undo it
    DynamoStore("sync", client).hold_call_slots("xero#t1", 110.0)  # type: ignore[arg-type]
    assert DynamoStore("sync", client).book_call_slots("xero#t1", 1, 1.0, now=101.0, latest=200.0).at == 130.0  # type: ignore[arg-type]


def test_workers_taking_turns_never_share_a_slot(client: object) -> None:
    # Given eight workers, each with its own (soon stale) idea of whether the schedule is busy
    stores = [DynamoStore("sync", client) for _ in range(8)]  # type: ignore[arg-type]
    booked: list[float] = []
    # When they book in turns, some while the schedule is idle and some while it is booked ahead
    for round_ in range(5):
        for store in stores:
            booking = store.book_call_slots("xero#t1", 2, 1.0, now=100.0 + round_ * 20, latest=10_000.0)
            assert booking.booked
            booked.extend((booking.at, booking.at + 1.0))
    # Then no slot is handed out twice, and every booking starts where the one before ended or later
    assert len(set(booked)) == len(booked) == 80
    assert booked == sorted(booked)


def test_the_pacer_spaces_calls_books_several_at_once_and_defers_long_waits(client: object) -> None:
    # Given a pacer for Xero's 60 calls a minute on a clock the test controls
    clock = FakeClock()
    store = DynamoStore("sync", client)  # type: ignore[arg-type]
    pacer = SharedPacer(store, lambda: "xero#t1", RateLimit(per_minute=60, concurrent=5), vendor="xero", clock=clock)
    # When it sends six calls
    started = clock.now()
    for _ in range(6):
        pacer.acquire()
    # Then they went 60 / (60 x 95 %) s apart, and the store was written once per three calls
    assert clock.now() - started == pytest.approx(5 * pacer.spacing)
    assert pacer.bookings == 2
    # And when the schedule is booked far ahead by others, the pacer does not wait: it says when to come back
    store.hold_call_slots("xero#t1", clock.now() + 45)
    with pytest.raises(RateLimited) as raised:
        pacer.acquire()
    assert raised.value.retry_after is not None
    assert 44 <= raised.value.retry_after <= 46
    assert raised.value.problem == "paced"


def test_the_pacer_stops_before_the_invocation_deadline(client: object) -> None:
    clock = FakeClock()
    store = DynamoStore("sync", client)  # type: ignore[arg-type]
    pacer = SharedPacer(store, lambda: "xero#t1", RateLimit(per_minute=60), clock=clock, deadline=lambda: 1_000.0 + 2.5)
    sent = 0
    with pytest.raises(RateLimited):
        for _ in range(10):
            pacer.acquire()
            sent += 1
    # Slots at 0, 1.05 and 2.1 s fit before the deadline; the fourth (3.16 s) does not
    assert sent == 3
