"""Worker: groups events per object, retries what is retriable, parks messages on a setup failure."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from closeloop.errors import AuthRevoked, Unavailable
from closeloop.models import CrmRef, SyncEvent, WorkMessage
from closeloop.sync.contacts import Outcome
from closeloop.sync.worker import PARK_SECONDS, Worker
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
