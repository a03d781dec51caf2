"""The contacts queue's batches: each kind of work message to its logic, and a bad message fails alone."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import pytest

from closeloop.errors import RateLimited, Unavailable
from closeloop.models import (
    AccountingEvent,
    AccountingWorkMessage,
    BackfillWorkMessage,
    CrmRef,
    SyncEvent,
    UnreadableMessage,
    WorkMessage,
)
from closeloop.sync.accounting_changes import ChangeOutcome
from closeloop.sync.backfill import BackfillResult
from closeloop.sync.contact_queue import ContactBatch, ContactQueue
from closeloop.sync.contacts import Outcome
from closeloop.sync.worker import Worker
from tests.fakes import events_for, ref


class Contacts:
    """A bulk contacts pipeline; ``error`` is raised by the whole bulk call, ``errors`` answered per object."""

    def __init__(self, errors: dict[CrmRef, Exception] | None = None, error: Exception | None = None) -> None:
        self.errors = errors or {}
        self.error = error
        self.batches: list[set[CrmRef]] = []

    def sync(self, ref_: CrmRef, events: Iterable[SyncEvent]) -> Outcome:
        raise AssertionError("the contacts queue syncs its CRM events in bulk")

    def sync_many(self, groups: dict[CrmRef, list[SyncEvent]]) -> dict[CrmRef, Any]:
        self.batches.append(set(groups))
        if self.error is not None:
            raise self.error
        return {r: self.errors.get(r, Outcome(r, "created", "acc-1")) for r in groups}


class Changes:
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.applied: list[str] = []

    def sync(self, event: AccountingEvent) -> ChangeOutcome:
        if self.error is not None:
            raise self.error
        self.applied.append(event.resource_id)
        return ChangeOutcome(event.resource_id, "ignored")


class Backfill:
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.chunks: list[list[str]] = []

    def run_chunk(self, refs: list[CrmRef]) -> BackfillResult:
        if self.error is not None:
            raise self.error
        self.chunks.append([str(r) for r in refs])
        return BackfillResult(dry_run=False, total=len(refs), counts=Counter(link=len(refs)))


class Alerts:
    def alert(self, subject: str, message: str) -> None:
        raise AssertionError("nothing here needs a person")


def queue(
    contacts: Contacts, changes: Changes | None = None, backfill: Backfill | None = None
) -> tuple[ContactQueue, list[tuple[str, int]]]:
    parked: list[tuple[str, int]] = []
    worker = Worker(contacts, Alerts(), park=lambda pipeline, body, delay: parked.append((body, delay)))
    built = ContactQueue(
        worker,
        changes=lambda: changes or Changes(),  # type: ignore[arg-type,return-value]
        backfill=lambda: backfill or Backfill(),  # type: ignore[arg-type,return-value]
        park=lambda body, delay: parked.append((body, delay)),
    )
    return built, parked


def crm_events(*refs: CrmRef) -> str:
    return WorkMessage(pipeline="contacts", events=[e for r in refs for e in events_for(r)]).model_dump_json()


def accounting_changes(*ids: str) -> str:
    events = [
        AccountingEvent(
            system="books",
            resource="customer",
            resource_id=i,
            kind="changed",
            occurred_at=datetime(2026, 12, 1, tzinfo=UTC),
            dedupe_key=f"k{i}",
        )
        for i in ids
    ]
    return AccountingWorkMessage(events=events).model_dump_json()


def backfill_chunk(*refs: CrmRef) -> str:
    return BackfillWorkMessage(run_id="r", refs=list(refs)).model_dump_json()


def settled(batch: ContactBatch, message_ids: Iterable[str]) -> dict[str, Exception | None]:
    """Each message's fate as Powertools' batch processor sees it: what its record handler raised."""
    fates: dict[str, Exception | None] = {}
    for message_id in message_ids:
        try:
            batch.settle(message_id)
        except Exception as exc:  # noqa: BLE001 - the processor's view: any exception fails the record
            fates[message_id] = exc
        else:
            fates[message_id] = None
    return fates


def test_each_kind_in_one_batch_reaches_its_own_logic_and_the_crm_events_sync_in_one_bulk_call() -> None:
    # Given a batch of every kind of message the contacts queue carries
    contacts, changes, backfill = Contacts(), Changes(), Backfill()
    work, _ = queue(contacts, changes, backfill)
    records = [
        ("m1", crm_events(ref("company", "1"))),
        ("m2", accounting_changes("acc-7")),
        ("m3", backfill_chunk(ref("company", "3"))),
        ("m4", crm_events(ref("company", "2"), ref("company", "1"))),
    ]
    # When the batch is worked
    fates = settled(work.batch(records), [m for m, _ in records])
    # Then nothing fails, the CRM events of both messages went in one bulk call, and the others ran once each
    assert fates == dict.fromkeys(["m1", "m2", "m3", "m4"])
    assert contacts.batches == [{ref("company", "1"), ref("company", "2")}]
    assert changes.applied == ["acc-7"]
    assert backfill.chunks == [["crm/company/3"]]


def test_an_unreadable_or_unknown_message_fails_alone_with_its_reason() -> None:
    contacts, changes = Contacts(), Changes()
    work, _ = queue(contacts, changes)
    records = [
        ("poison", crm_events(ref("company", "1"))[:40]),
        ("stranger", '{"kind": "invoice_run", "events": []}'),
        ("good", crm_events(ref("company", "2"))),
        ("books", accounting_changes("acc-1")),
    ]
    fates = settled(work.batch(records), [m for m, _ in records])
    assert [m for m, fate in fates.items() if fate is not None] == ["poison", "stranger"]
    assert isinstance(fates["poison"], UnreadableMessage) and "Invalid JSON" in str(fates["poison"])
    assert isinstance(fates["stranger"], UnreadableMessage) and "invoice_run" in str(fates["stranger"])
    assert contacts.batches == [{ref("company", "2")}]
    assert changes.applied == ["acc-1"]


def test_an_accounting_message_whose_fields_are_reordered_is_still_applied() -> None:
    # Given an accounting message that does not start with its kind (the old worker sniffed the first field)
    changes = Changes()
    work, _ = queue(Contacts(), changes)
    body = accounting_changes("acc-9")
    reordered = '{"events":' + body.split('"events":', 1)[1].rstrip("}") + ',"kind":"accounting_changes"}'
    # When it is worked
    fates = settled(work.batch([("m1", reordered)]), ["m1"])
    # Then it is applied as accounting changes, not refused as unreadable CRM events
    assert fates == {"m1": None}
    assert changes.applied == ["acc-9"]


def test_only_the_message_holding_a_retriable_object_comes_back() -> None:
    one, two = ref("company", "1"), ref("company", "2")
    work, _ = queue(Contacts(errors={two: Unavailable("down")}))
    fates = settled(work.batch([("m1", crm_events(one)), ("m2", crm_events(two))]), ["m1", "m2"])
    assert fates["m1"] is None
    assert isinstance(fates["m2"], Unavailable)


def test_a_bulk_sync_that_breaks_fails_its_crm_messages_but_not_the_other_kinds() -> None:
    # Given a bulk sync that fails in a way no record explains
    changes, backfill = Changes(), Backfill()
    work, _ = queue(Contacts(error=KeyError("bug")), changes, backfill)
    records = [
        ("m1", crm_events(ref("company", "1"))),
        ("m2", accounting_changes("acc-2")),
        ("m3", backfill_chunk(ref("company", "3"))),
    ]
    # When the batch is worked
    fates = settled(work.batch(records), [m for m, _ in records])
    # Then the CRM events message comes back, and the accounting change and the backfill chunk are done
    assert isinstance(fates["m1"], KeyError)
    assert (fates["m2"], fates["m3"]) == (None, None)
    assert changes.applied == ["acc-2"]
    assert backfill.chunks == [["crm/company/3"]]


def test_a_retriable_accounting_change_or_a_short_backfill_rate_limit_fails_only_its_message() -> None:
    work, _ = queue(
        Contacts(), Changes(error=Unavailable("crm down")), Backfill(error=RateLimited("429", retry_after=5))
    )
    records = [("a", accounting_changes("acc-1")), ("b", backfill_chunk(ref("company", "3"))), ("c", crm_events())]
    fates = settled(work.batch(records), ["a", "b", "c"])
    assert isinstance(fates["a"], Unavailable)
    assert isinstance(fates["b"], RateLimited)
    assert fates["c"] is None


def test_a_backfill_chunk_meeting_a_long_rate_limit_is_parked_not_failed() -> None:
    work, parked = queue(Contacts(), backfill=Backfill(error=RateLimited("429", retry_after=3600, problem="day")))
    body = backfill_chunk(ref("company", "3"))
    assert settled(work.batch([("m1", body)]), ["m1"]) == {"m1": None}
    assert parked == [(body, 900)]


def test_an_old_backfill_body_is_parked_in_the_new_shape() -> None:
    # Given a chunk queued before messages named their kind
    work, parked = queue(Contacts(), backfill=Backfill(error=RateLimited("429", retry_after=3600, problem="day")))
    old = '{"pipeline":"backfill","run_id":"r","refs":[{"crm":"crm","object_type":"company","object_id":"3"}]}'
    # When it meets a long rate limit
    assert settled(work.batch([("m1", old)]), ["m1"]) == {"m1": None}
    # Then the copy that waits is a backfill_chunk message with the same records
    assert parked == [(backfill_chunk(ref("company", "3")), 900)]


def test_a_record_that_was_not_in_the_batch_is_refused() -> None:
    work, _ = queue(Contacts())
    with pytest.raises(UnreadableMessage):
        work.batch([]).settle("nowhere")
