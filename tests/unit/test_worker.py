"""Worker: groups events per object, retries what is retriable, parks messages on a setup failure."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from closeloop.errors import AuthRevoked, RateLimited, Unavailable
from closeloop.models import BackfillWorkMessage, CrmRef, SyncEvent, UnreadableMessage, WorkMessage
from closeloop.sync.contacts import Outcome
from closeloop.sync.worker import MAX_DELAY_SECONDS, PARK_SECONDS, RATE_LIMIT_DELAY_SECONDS, Worker
from tests.fakes import events_for, ref


class Pipeline:
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.calls: list[tuple[CrmRef, int]] = []

    def sync(self, ref_: CrmRef, events: Iterable[SyncEvent]) -> Outcome:
        self.calls.append((ref_, len(list(events))))
        if self.error is not None:
            raise self.error
        return Outcome(ref_, "created", "acc-1")


class Alerts:
    def __init__(self) -> None:
        self.sent: list[str] = []

    def alert(self, subject: str, message: str) -> None:
        self.sent.append(message)


def body(*refs: CrmRef) -> str:
    events = [e for r in refs for e in events_for(r, count=2)]
    return WorkMessage(pipeline="contacts", events=events).model_dump_json()


def test_events_about_one_object_are_synced_once_per_message() -> None:
    pipeline = Pipeline()
    results = Worker(pipeline, Alerts()).handle_message(body(ref("company", "1"), ref("company", "2")))
    assert pipeline.calls == [(ref("company", "1"), 2), (ref("company", "2"), 2)]
    assert [r["action"] for r in results] == ["created", "created"]


def test_a_retriable_failure_fails_the_message_after_trying_every_object() -> None:
    pipeline = Pipeline(Unavailable("down"))
    with pytest.raises(Unavailable):
        Worker(pipeline, Alerts()).handle_message(body(ref("company", "1"), ref("company", "2")))
    assert len(pipeline.calls) == 2


def test_a_revoked_connection_parks_the_message_and_alerts_once() -> None:
    # Given Xero refuses our refresh token (someone disconnected the app)
    parked: list[tuple[str, str, int]] = []
    alerts = Alerts()
    due = iter([True, False])
    worker = Worker(
        Pipeline(AuthRevoked("invalid_grant")),
        alerts,
        park=lambda pipeline, text, delay: parked.append((pipeline, text, delay)),
        alert_due=lambda kind: next(due),
    )
    message = body(ref("company", "1"))
    # When two messages meet it
    worker.handle_message(message)
    worker.handle_message(message)
    # Then both are kept for later (not failed towards the DLQ), and a person is told once
    assert parked == [("contacts", message, PARK_SECONDS)] * 2
    assert len(alerts.sent) == 1
    assert "AuthRevoked" in alerts.sent[0]


def test_without_parking_a_setup_failure_fails_the_message() -> None:
    with pytest.raises(AuthRevoked):
        Worker(Pipeline(AuthRevoked("invalid_grant")), Alerts()).handle_message(body(ref("company", "1")))


def test_a_malformed_message_is_refused(monkeypatch: Any) -> None:
    with pytest.raises(ValueError):
        Worker(Pipeline(), Alerts()).handle_message('{"pipeline": "contacts", "events": [{"nope": 1}]}')


def test_a_work_message_of_another_kind_is_refused_and_nothing_syncs() -> None:
    # Given a backfill chunk that reached the CRM events worker (the deals queue, say)
    pipeline = Pipeline()
    chunk = BackfillWorkMessage(run_id="r", refs=[ref("deal", "1")]).model_dump_json()
    # Then it is refused with its reason, and the pipeline never ran
    with pytest.raises(UnreadableMessage, match="a backfill_chunk message is not for the CRM events worker"):
        Worker(pipeline, Alerts()).handle_message(chunk)
    assert Worker(pipeline, Alerts()).handle_batch([("m1", chunk)]) == ["m1"]
    assert pipeline.calls == []


class BulkPipeline(Pipeline):
    """A pipeline with ``sync_many``: results chosen per ref; a SetupError for the whole batch."""

    def __init__(self, errors: dict[CrmRef, Exception] | None = None, setup: Exception | None = None) -> None:
        super().__init__()
        self.errors = errors or {}
        self.setup = setup
        self.batches: list[dict[CrmRef, int]] = []

    def sync_many(self, groups: dict[CrmRef, list[SyncEvent]]) -> dict[CrmRef, Any]:
        self.batches.append({r: len(e) for r, e in groups.items()})
        if self.setup is not None:
            raise self.setup
        return {r: self.errors.get(r, Outcome(r, "created", "acc-1")) for r in groups}


def test_a_batch_reaches_the_bulk_pipeline_in_one_call_with_events_merged_across_messages() -> None:
    # Given two messages that both carry events about company 1 (the same events redelivered, and more)
    pipeline = BulkPipeline()
    one, two = ref("company", "1"), ref("company", "2")
    # When the batch is handled
    failed = Worker(pipeline, Alerts()).handle_batch([("m1", body(one)), ("m2", body(one, two))])
    # Then the pipeline saw each object once, duplicate events merged, and no message failed
    assert pipeline.batches == [{one: 2, two: 2}]
    assert failed == []


def test_only_messages_holding_a_retriable_object_are_retried_and_bad_bodies_go_to_the_dlq_path() -> None:
    one, two = ref("company", "1"), ref("company", "2")
    pipeline = BulkPipeline(errors={two: Unavailable("down")})
    failed = Worker(pipeline, Alerts()).handle_batch([("m1", body(one)), ("m2", body(two)), ("m3", "{not json")])
    assert failed == ["m3", "m2"]


def test_a_setup_failure_parks_every_message_of_the_batch_and_alerts_once() -> None:
    pipeline = BulkPipeline(setup=AuthRevoked("invalid_grant"))
    alerts = Alerts()
    parked: list[tuple[str, int]] = []
    worker = Worker(pipeline, alerts, park=lambda p, b, d: parked.append((p, d)))
    failed = worker.handle_batch([("m1", body(ref("company", "1"))), ("m2", body(ref("company", "2")))])
    assert failed == []
    assert parked == [("contacts", PARK_SECONDS), ("contacts", PARK_SECONDS)]
    assert len(alerts.sent) == 1


def test_a_pipeline_without_sync_many_runs_message_by_message() -> None:
    pipeline = Pipeline(Unavailable("down"))
    failed = Worker(pipeline, Alerts()).handle_batch([("m1", body(ref("company", "1")))])
    assert failed == ["m1"]


class LimitedAfter(Pipeline):
    """Syncs ``ok`` objects, then the vendor says 429 (Retry-After ``retry_after``) for the rest."""

    def __init__(self, ok: int, retry_after: float | None = 30.0) -> None:
        super().__init__()
        self.ok = ok
        self.retry_after = retry_after

    def sync(self, ref_: CrmRef, events: Iterable[SyncEvent]) -> Outcome:
        if len(self.calls) >= self.ok:
            self.calls.append((ref_, -1))
            raise RateLimited("429", retry_after=self.retry_after, problem="minute", vendor="books")
        return super().sync(ref_, events)


def parked_events(parked: list[tuple[str, str, int]]) -> list[list[str]]:
    return [sorted({e.ref.object_id for e in WorkMessage.model_validate_json(b).events}) for _, b, _ in parked]


def test_a_rate_limit_requeues_only_the_unfinished_objects_with_the_vendors_delay() -> None:
    # Given a delivery about four objects, and a vendor that answers 429 "come back in 30 s" after two
    parked: list[tuple[str, str, int]] = []
    pipeline = LimitedAfter(ok=2)
    worker = Worker(pipeline, Alerts(), park=lambda p, b, d: parked.append((p, b, d)))
    refs = [ref("deal", str(n)) for n in range(1, 5)]
    # When the message is handled
    results = worker.handle_message(body(*refs))
    # Then it is acknowledged (nothing raised: no receive count spent), the two finished objects stay done,
    # and one fresh message carries only the events of objects 3 and 4 (not tried again here), due in 30 s
    assert [r["ref"] for r in results] == [str(refs[0]), str(refs[1])]
    assert len(pipeline.calls) == 3
    assert [(p, d) for p, _, d in parked] == [("contacts", 30)]
    assert parked_events(parked) == [["3", "4"]]
    assert len(WorkMessage.model_validate_json(parked[0][1]).events) == 4


def test_without_retry_after_the_requeue_waits_a_minute_and_without_parking_the_message_fails() -> None:
    parked: list[tuple[str, str, int]] = []
    Worker(
        LimitedAfter(ok=0, retry_after=None), Alerts(), park=lambda p, b, d: parked.append((p, b, d))
    ).handle_message(body(ref("deal", "1")))
    assert [d for _, _, d in parked] == [RATE_LIMIT_DELAY_SECONDS]
    with pytest.raises(RateLimited):
        Worker(LimitedAfter(ok=0), Alerts()).handle_message(body(ref("deal", "1")))


def test_a_wait_longer_than_sqs_can_delay_is_served_by_parking_again() -> None:
    # Given a vendor that says "come back in an hour" (longer than SQS's 900 s maximum delay)
    clock = [1_000.0]
    parked: list[tuple[str, str, int]] = []
    worker = Worker(
        LimitedAfter(ok=0, retry_after=3600),
        Alerts(),
        park=lambda p, b, d: parked.append((p, b, d)),
        now=lambda: clock[0],
    )
    worker.handle_message(body(ref("deal", "1")))
    assert parked[-1][2] == MAX_DELAY_SECONDS
    requeued = parked[-1][1]
    assert WorkMessage.model_validate_json(requeued).not_before == 4_600.0
    # When it comes back after 900 s
    clock[0] += 900
    assert worker.handle_message(requeued) == []
    # Then it is parked again, untouched, for the rest of the hour (the pipeline was not called again)
    assert parked[-1] == ("contacts", requeued, MAX_DELAY_SECONDS)
    assert len(worker.pipeline.calls) == 1  # type: ignore[attr-defined]
    # And once due, it runs
    clock[0] = 4_600.0
    with pytest.raises(RateLimited):
        Worker(LimitedAfter(ok=0), Alerts(), now=lambda: clock[0]).handle_message(requeued)


def test_in_a_batch_rate_limited_objects_are_requeued_and_their_messages_acknowledged() -> None:
    # Given three messages: one fully synced, one with a rate-limited object, one with an outage
    one, two, three, four = (ref("company", str(n)) for n in range(1, 5))
    limited = RateLimited("429", retry_after=12, problem="minute")
    pipeline = BulkPipeline(errors={two: limited, three: limited, four: Unavailable("down")})
    parked: list[tuple[str, str, int]] = []
    worker = Worker(pipeline, Alerts(), park=lambda p, b, d: parked.append((p, b, d)))
    # When the batch is handled
    failed = worker.handle_batch([("m1", body(one)), ("m2", body(one, two, three)), ("m3", body(four))])
    # Then only the outage spends a receive count; the rate-limited objects travel on in one message
    assert failed == ["m3"]
    assert [(p, d) for p, _, d in parked] == [("contacts", 12)]
    assert parked_events(parked) == [["2", "3"]]
