"""CatchUp: CRM changes since the watermark are queued like webhook events; nothing skipped when cut short."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from closeloop.errors import IntegrationError, RateLimited, Unavailable, ValidationFailed
from closeloop.models import CrmRef, Customer, SyncEvent, WorkMessage
from closeloop.rules import FieldRules
from closeloop.sync.accounting_changes import AccountingChangeSync
from closeloop.sync.catchup import ACCOUNTING_WATERMARK, OVERLAP, WATERMARK, AccountingCatchUp, CatchUp
from closeloop.sync.contacts import ContactSync
from tests.fakes import FakeAccounting, FakeCrm, MemoryStore, events_for, ref

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


class ChangingCrm:
    name = "crm"

    def __init__(self, changes: list[SyncEvent]) -> None:
        self.changes = changes
        self.asked: list[datetime] = []

    def iter_changes_since(self, since: datetime) -> Iterator[SyncEvent]:
        self.asked.append(since)
        yield from (c for c in self.changes if c.occurred_at >= since)


class Queues:
    def __init__(self) -> None:
        self.sent: list[WorkMessage] = []

    def send(self, pipeline: str, body: str, delay_seconds: int = 0) -> None:
        self.sent.append(WorkMessage.model_validate_json(body))


def change(object_type: str, object_id: str, minutes_ago: int) -> SyncEvent:
    at = NOW - timedelta(minutes=minutes_ago)
    return SyncEvent(
        ref=ref(object_type, object_id),
        event_id=f"poll:{object_id}",
        kind="changed",
        occurred_at=at,
        source_type=f"{object_type}.poll",
        dedupe_key=f"poll:{object_type}:{object_id}:{at.timestamp()}",
    )


def test_the_first_run_only_sets_the_watermark() -> None:
    crm, queues, store = ChangingCrm([change("company", "1", 60)]), Queues(), MemoryStore()
    result = CatchUp(crm, queues, store, clock=lambda: NOW).run()  # type: ignore[arg-type]
    assert (result.since, queues.sent, crm.asked) == (None, [], [])
    assert store.get_watermark(WATERMARK) == NOW


def test_changes_since_the_watermark_reach_their_pipelines_in_messages_of_100() -> None:
    # Given a watermark 30 minutes ago, and 150 company changes, 2 contact changes and 1 deal change since
    changes = [change("company", str(n), 20) for n in range(150)]
    changes += [change("contact", "c1", 10), change("contact", "c2", 10), change("deal", "d1", 5)]
    changes.append(change("line_item", "li", 5))  # not a pipeline object: ignored
    crm, queues, store = ChangingCrm(changes), Queues(), MemoryStore()
    store.put_watermark(WATERMARK, NOW - timedelta(minutes=30))
    # When the catch-up runs
    result = CatchUp(crm, queues, store, clock=lambda: NOW).run()  # type: ignore[arg-type]
    # Then it asked from the watermark less the overlap, and queued every change once, 100 at most a message
    assert crm.asked == [NOW - timedelta(minutes=30) - OVERLAP]
    assert result.queued == {"contacts": 152, "deals": 1}
    assert [len(m.events) for m in queues.sent if m.pipeline == "contacts"] == [100, 52]
    assert store.get_watermark(WATERMARK) == NOW
    assert result.complete


def test_a_run_cut_short_moves_the_watermark_only_as_far_as_it_read() -> None:
    changes = [change("company", str(n), 50 - n) for n in range(10)]
    crm, queues, store = ChangingCrm(changes), Queues(), MemoryStore()
    store.put_watermark(WATERMARK, NOW - timedelta(hours=1))
    result = CatchUp(crm, queues, store, max_events=4, clock=lambda: NOW).run()  # type: ignore[arg-type]
    assert not result.complete
    assert store.get_watermark(WATERMARK) == changes[3].occurred_at
    # And the next run picks up from there (with the overlap), so nothing is skipped
    CatchUp(crm, queues, store, clock=lambda: NOW).run()  # type: ignore[arg-type]
    seen = {e.ref.object_id for m in queues.sent for e in m.events}
    assert seen == {str(n) for n in range(10)}


class FailingFeedCrm(ChangingCrm):
    """A CRM whose change feed breaks (retriably: ``error``) after ``good`` changes."""

    def __init__(
        self,
        changes: list[SyncEvent],
        good: int,
        error: IntegrationError | None = None,
    ) -> None:
        super().__init__(changes)
        self.good = good
        self.error = error or Unavailable("feed down", vendor="crm", status=503)

    def iter_changes_since(self, since: datetime) -> Iterator[SyncEvent]:
        self.asked.append(since)
        yield from self.changes[: self.good]
        raise self.error


def test_a_retriable_failure_mid_feed_stops_the_run_without_moving_the_watermark() -> None:
    # Given a watermark an hour ago and a CRM whose feed fails after 2 of 5 changes
    changes = [change("company", str(n), 50 - n) for n in range(5)]
    crm, queues, store = FailingFeedCrm(changes, good=2), Queues(), MemoryStore()
    mark = NOW - timedelta(hours=1)
    store.put_watermark(WATERMARK, mark)
    # When the catch-up runs, it raises (the schedule retries) and the watermark stays where it was
    with pytest.raises(Unavailable):
        CatchUp(crm, queues, store, clock=lambda: NOW).run()  # type: ignore[arg-type]
    assert store.get_watermark(WATERMARK) == mark
    # And the next run, with the feed back, queues every change
    CatchUp(ChangingCrm(changes), queues, store, clock=lambda: NOW).run()  # type: ignore[arg-type]
    assert {e.ref.object_id for m in queues.sent for e in m.events} >= {str(n) for n in range(5)}


def test_a_crm_429_mid_feed_defers_the_rest_to_the_next_run_without_moving_the_watermark() -> None:
    # Given a watermark an hour ago, and a CRM that lists recent companies, then a contact changed earlier, and
    # rate-limits the scan (HTTP 429, after the client's own waits) before it lists the contact
    changes = [change("company", "1", 5), change("company", "2", 4), change("contact", "c1", 40)]
    limited = RateLimited("POST /search failed: rate limited", vendor="crm", status=429, problem="ten_secondly")
    crm, queues, store = FailingFeedCrm(changes, good=2, error=limited), Queues(), MemoryStore()
    mark = NOW - timedelta(hours=1)
    store.put_watermark(WATERMARK, mark)
    # When the catch-up runs, the scheduled run does not fail: it queues what it read and says why it stopped
    result = CatchUp(crm, queues, store, clock=lambda: NOW).run()  # type: ignore[arg-type]
    assert (result.complete, result.queued) == (False, {"contacts": 2})
    assert "rate limited by crm (ten_secondly)" in result.deferred
    # And the watermark stays where it was (the companies' later times would skip the contact)
    assert store.get_watermark(WATERMARK) == mark
    # And the next run, the limit over, queues the contact too
    assert CatchUp(ChangingCrm(changes), queues, store, clock=lambda: NOW).run().complete  # type: ignore[arg-type]
    assert {e.ref.object_id for m in queues.sent for e in m.events} == {"1", "2", "c1"}
    assert store.get_watermark(WATERMARK) == NOW


# -- the accounting catch-up ---------------------------------------------------------------------------------


@dataclass
class RefusingCrm(FakeCrm):
    """Takes canonical field writes, except for the refs in ``refuse`` (ValidationFailed) or ``down`` (retriable)."""

    refuse: set[CrmRef] = field(default_factory=set)
    down: set[CrmRef] = field(default_factory=set)
    limited: set[CrmRef] = field(default_factory=set)
    written: list[CrmRef] = field(default_factory=list)

    def update_customer_fields(self, ref: CrmRef, values: Mapping[str, str]) -> list[str]:
        if ref in self.refuse:
            raise ValidationFailed("email: not a valid address", vendor="crm", status=400)
        if ref in self.down:
            raise Unavailable("crm down", vendor="crm", status=503)
        if ref in self.limited:
            raise RateLimited("rate limited", vendor="crm", status=429, problem="ten_secondly")
        self.written.append(ref)
        return super().update_customer_fields(ref, values)


FINANCE_OWNS_EMAIL = """
customer:
  direction: both
  source_of_truth: crm
  fields:
    email: accounting
"""


def three_linked_customers(
    refuse: frozenset[str] = frozenset(), down: frozenset[str] = frozenset()
) -> tuple[AccountingCatchUp, RefusingCrm, FakeAccounting, MemoryStore]:
    """Three CRM companies synced to accounting, then each one's billing email edited in accounting."""
    customers = {
        ref("company", n): Customer(ref=ref("company", n), name=f"Co {n}", email=f"ap@{n}.test") for n in "123"
    }
    crm = RefusingCrm(
        customers=customers, refuse={ref("company", n) for n in refuse}, down={ref("company", n) for n in down}
    )
    books, store = FakeAccounting(), MemoryStore()
    rules = FieldRules.load(FINANCE_OWNS_EMAIL)
    contacts = ContactSync(crm, books, store, owner="w", rules=rules)  # type: ignore[arg-type]
    for company in customers:
        contacts.sync(company, events_for(company))
    for record_id, record in list(books.records.items()):
        email = f"billing@{record.name[-1]}.test"
        books.records[record_id] = record.model_copy(
            update={"email": email, "fields": {**record.fields, "email": email}}
        )
    changes = AccountingChangeSync(crm, books, store, rules, clock=lambda: NOW)  # type: ignore[arg-type]
    store.put_watermark(ACCOUNTING_WATERMARK, NOW - timedelta(hours=1))
    return AccountingCatchUp(books, changes, store, clock=lambda: NOW), crm, books, store  # type: ignore[arg-type]


def test_one_accounting_change_refused_for_good_is_a_failed_sync_and_the_others_still_sync() -> None:
    # Given three edited customers, the second of which the CRM refuses for good
    catch_up, crm, _, store = three_linked_customers(refuse=frozenset("2"))
    # When the accounting catch-up runs
    result = catch_up.run()
    # Then the other two reached the CRM, and the run completed with the watermark moved on
    assert crm.written == [ref("company", "1"), ref("company", "3")]
    assert result.complete
    assert store.get_watermark(ACCOUNTING_WATERMARK) == NOW
    # And the refused one is kept as a failed sync with its reason (what the month's report lists)
    failure = store.get_failed_sync(ref("company", "2"))
    assert failure is not None
    assert failure.error_type == "ValidationFailed"
    assert "not a valid address" in failure.reason
    assert list(store.failed) == [ref("company", "2")]


def test_a_retriable_accounting_change_failure_stops_the_run_and_keeps_the_watermark() -> None:
    # Given three edited customers, the CRM unavailable for the second
    catch_up, crm, _, store = three_linked_customers(down=frozenset("2"))
    mark = store.get_watermark(ACCOUNTING_WATERMARK)
    # When the accounting catch-up runs, it raises (the schedule retries) without moving the watermark
    with pytest.raises(Unavailable):
        catch_up.run()
    assert store.get_watermark(ACCOUNTING_WATERMARK) == mark
    assert store.get_failed_sync(ref("company", "2")) is None
    # And once the CRM is back, the next run syncs the rest
    crm.down.clear()
    assert catch_up.run().complete
    assert set(crm.written) == {ref("company", n) for n in "123"}


def test_a_crm_429_on_an_accounting_change_defers_the_rest_to_the_next_run() -> None:
    # Given three edited customers, the CRM rate-limiting the write of the second
    catch_up, crm, _, store = three_linked_customers()
    crm.limited.add(ref("company", "2"))
    mark = store.get_watermark(ACCOUNTING_WATERMARK)
    # When the accounting catch-up runs, the run does not fail: it stops, deferred, with the watermark kept
    result = catch_up.run()
    assert not result.complete
    assert "rate limited by crm" in result.deferred
    assert store.get_watermark(ACCOUNTING_WATERMARK) == mark
    assert store.get_failed_sync(ref("company", "2")) is None
    # And the next run, the limit over, syncs the rest
    crm.limited.clear()
    assert catch_up.run().complete
    assert set(crm.written) == {ref("company", n) for n in "123"}
