"""What the workers count (CloudWatch embedded metrics, printed by Powertools) and trace (X-Ray spans).

Each test reads the embedded-metric documents the Powertools implementation prints: the counts with their own
dimensions as they happen (``single_metric``), the others when the handler's ``@metrics.log_metrics`` flushes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from decimal import Decimal
from typing import Any

import httpx
import pytest
from aws_lambda_powertools import Tracer

from closeloop import observability, telemetry
from closeloop.errors import RateLimited
from closeloop.http import RetryPolicy, VendorHttp
from closeloop.models import Address, CrmRef, Customer, Deal, Item, LineItem, SyncEvent, WorkMessage
from closeloop.observability import PowertoolsTelemetry, count_batch, metrics
from closeloop.sync.contacts import ContactSync, Outcome
from closeloop.sync.invoices import DealSync, InvoicePolicy
from closeloop.sync.worker import Worker
from tests.fakes import FakeBooks, FakeDealCrm, MemoryStore, events_for, ref


def emf_documents(text: str) -> list[dict[str, Any]]:
    """The embedded-metric-format documents among printed lines."""
    documents = []
    for line in text.splitlines():
        try:
            document = json.loads(line)
        except ValueError:
            continue
        if isinstance(document, dict) and "_aws" in document:
            documents.append(document)
    return documents


def metric(documents: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    """The documents that carry metric ``name``, each checked to be in Closeloop's namespace."""
    found = []
    for document in documents:
        (directive,) = document["_aws"]["CloudWatchMetrics"]
        if name in [m["Name"] for m in directive["Metrics"]]:
            assert directive["Namespace"] == telemetry.METRICS_NAMESPACE == "Closeloop"
            found.append(document)
    return found


def dimensions(document: dict[str, Any]) -> set[str]:
    (directive,) = document["_aws"]["CloudWatchMetrics"]
    (names,) = directive["Dimensions"]
    return set(names)


class Pipeline:
    def __init__(self, action: str) -> None:
        self.action = action

    def sync(self, ref_: CrmRef, events: object) -> Outcome:
        return Outcome(ref_, self.action, "acc-1" if self.action != "failed" else "")  # type: ignore[arg-type]


class Alerts:
    def alert(self, subject: str, message: str) -> None:
        raise AssertionError("no alert expected")


def work(*refs: CrmRef) -> str:
    return WorkMessage(pipeline="contacts", events=[e for r in refs for e in events_for(r)]).model_dump_json()


@pytest.fixture
def flushed(capsys: pytest.CaptureFixture[str]) -> Iterator[Any]:
    """Reads what was printed, after flushing the invocation's metrics as ``@metrics.log_metrics`` does."""
    metrics.clear_metrics()
    capsys.readouterr()

    def read() -> list[dict[str, Any]]:
        if metrics.metric_set:
            metrics.flush_metrics()
        return emf_documents(capsys.readouterr().out)

    yield read
    metrics.clear_metrics()


def test_a_synced_record_is_counted_by_object_type_and_action(flushed: Any) -> None:
    # Given a worker counting through Powertools, and a pipeline that creates the customer
    worker = Worker(Pipeline("created"), Alerts(), telemetry=PowertoolsTelemetry())
    # When a message about one company is handled
    worker.handle_message(work(ref("company", "1")))
    # Then one RecordsSynced is printed, by object type and action (and the service), and no failure
    documents = flushed()
    (synced,) = metric(documents, telemetry.RECORDS_SYNCED)
    assert synced[telemetry.RECORDS_SYNCED] in (1, [1])
    assert dimensions(synced) == {"ObjectType", "Action", "service"}
    assert (synced["ObjectType"], synced["Action"]) == ("company", "created")
    assert metric(documents, telemetry.FAILED_SYNCS) == []


def test_a_failed_sync_is_counted_and_not_as_synced(flushed: Any) -> None:
    # Given a pipeline that keeps the record as a failed sync
    worker = Worker(Pipeline("failed"), Alerts(), telemetry=PowertoolsTelemetry())
    # When two objects' events are handled
    worker.handle_message(work(ref("company", "1"), ref("contact", "2")))
    # Then FailedSyncs counts both in the invocation's flush, and nothing is counted as synced
    documents = flushed()
    (failed,) = metric(documents, telemetry.FAILED_SYNCS)
    assert failed[telemetry.FAILED_SYNCS] == [1, 1]
    assert metric(documents, telemetry.RECORDS_SYNCED) == []


def test_a_redelivery_that_finds_the_work_done_is_not_counted_again(flushed: Any) -> None:
    # Given an idempotency store that already holds the object's result (a redelivered message)
    done = {"ref": "crm:company:1", "action": "created", "accounting_id": "acc-1", "detail": ""}
    worker = Worker(Pipeline("created"), Alerts(), once=lambda key, run: done, telemetry=PowertoolsTelemetry())
    # When the message is handled again
    worker.handle_message(work(ref("company", "1")))
    # Then nothing new is counted
    assert flushed() == []


def test_a_bulk_batch_counts_each_object(flushed: Any) -> None:
    # Given a pipeline with bulk calls that creates one customer and fails another
    class Bulk(Pipeline):
        def sync_many(self, groups: dict[CrmRef, list[SyncEvent]]) -> dict[CrmRef, Outcome]:
            first, second = groups
            return {first: Outcome(first, "created", "a"), second: Outcome(second, "failed")}

    worker = Worker(Bulk("created"), Alerts(), telemetry=PowertoolsTelemetry())
    batch = [("m1", work(ref("company", "1"))), ("m2", work(ref("company", "2")))]
    # When the batch is handled
    assert worker.handle_batch(batch) == []
    # Then one record is counted as created and one as a failed sync
    documents = flushed()
    (synced,) = metric(documents, telemetry.RECORDS_SYNCED)
    assert synced["Action"] == "created"
    assert len(metric(documents, telemetry.FAILED_SYNCS)) == 1


def test_a_created_invoice_is_counted_once_and_not_when_found_again(flushed: Any) -> None:
    # Given a won deal with one line, and DealSync counting through Powertools
    company, deal_ref = ref("company", "1"), ref("deal", "3000001")
    crm = FakeDealCrm(customers={company: Customer(ref=company, name="Acme Ltd", address=Address(country="NZ"))})
    crm.deals[deal_ref.object_id] = Deal(
        ref=deal_ref,
        name="Big deal",
        amount=Decimal("200.00"),
        currency="NZD",
        is_won=True,
        close_date=date(2026, 11, 20),
        company=company,
        line_items=(LineItem(crm_id="1", name="Anvil", sku="ANV", quantity=Decimal(2), unit_price=Decimal(100)),),
    )
    books = FakeBooks()
    books.items["ANV"] = Item(code="ANV", tax_type="OUTPUT2")
    store = MemoryStore()
    contacts = ContactSync(crm, books, store, owner="w")
    sync = DealSync(crm, books, store, contacts, InvoicePolicy(), owner="w", telemetry=PowertoolsTelemetry())
    # When the deal is synced, then synced again (a redelivery: the invoice is found, not created)
    assert sync.sync(deal_ref, events_for(deal_ref)).action == "created"
    assert sync.sync(deal_ref, events_for(deal_ref)).action == "unchanged"
    # Then InvoicesCreated is 1 in the invocation's flush
    (created,) = metric(flushed(), telemetry.INVOICES_CREATED)
    assert created[telemetry.INVOICES_CREATED] in (1, [1])
    assert dimensions(created) == {"service"}


def _vendor(responses: list[httpx.Response]) -> VendorHttp:
    queue = list(responses)
    return VendorHttp(
        "books",
        "https://api.example.com",
        transport=httpx.MockTransport(lambda request: queue.pop(0)),
        sleep=lambda seconds: None,
        policy=RetryPolicy(max_attempts=2),
    )


@pytest.fixture
def installed() -> Iterator[None]:
    telemetry.install(PowertoolsTelemetry())
    yield
    telemetry.install(telemetry.NO_TELEMETRY)


@pytest.mark.usefixtures("installed")
def test_a_429_is_counted_with_its_retry_by_vendor(flushed: Any) -> None:
    # Given a vendor that answers 429 (Retry-After 1) and then 200
    http = _vendor([httpx.Response(429, headers={"retry-after": "1"}), httpx.Response(200, json={})])
    # When a call is made through the one HTTP client
    http.request("GET", "/things")
    # Then the 429 and the retry are each counted once, by vendor
    documents = flushed()
    (limited,) = metric(documents, telemetry.VENDOR_RATE_LIMITED)
    (retried,) = metric(documents, telemetry.VENDOR_RETRIES)
    for document in (limited, retried):
        assert dimensions(document) == {"Vendor", "service"}
        assert document["Vendor"] == "books"


@pytest.mark.usefixtures("installed")
def test_a_429_that_gives_up_is_counted_without_a_retry(flushed: Any) -> None:
    # Given a vendor that answers 429 twice, and a client allowed two attempts
    http = _vendor([httpx.Response(429), httpx.Response(429)])
    # When the call gives up
    with pytest.raises(RateLimited):
        http.request("GET", "/things")
    # Then both 429s are counted, and the one retry between them
    documents = flushed()
    assert len(metric(documents, telemetry.VENDOR_RATE_LIMITED)) == 2
    assert len(metric(documents, telemetry.VENDOR_RETRIES)) == 1


def test_without_installed_telemetry_nothing_is_printed(flushed: Any) -> None:
    # Given no telemetry installed (unit tests, the CLI)
    http = _vendor([httpx.Response(429), httpx.Response(200, json={})])
    # When a call meets a 429
    http.request("GET", "/things")
    # Then no metric is printed
    assert flushed() == []


def test_queue_lag_is_the_age_of_the_oldest_message_of_the_batch(flushed: Any) -> None:
    # Given a batch of two SQS records sent 90 s and 30 s ago, and one without attributes
    now_ms = 1_764_000_100_000.0
    records = [
        {"attributes": {"SentTimestamp": str(int(now_ms - 30_000))}},
        {"attributes": {"SentTimestamp": str(int(now_ms - 90_000))}},
        {"body": "{}"},
    ]
    # When its age is read
    # Then it is the oldest record's, in seconds; a batch that says nothing has none
    assert telemetry.oldest_message_age(records, now_ms) == 90.0
    assert telemetry.oldest_message_age([{"attributes": {}}], now_ms) is None
    # And a handler counts it as QueueLagSeconds in the invocation's flush
    count_batch({"Records": records}, PowertoolsTelemetry())
    (lag,) = metric(flushed(), telemetry.QUEUE_LAG_SECONDS)
    (directive,) = lag["_aws"]["CloudWatchMetrics"]
    assert {"Name": telemetry.QUEUE_LAG_SECONDS, "Unit": "Seconds"} in directive["Metrics"]
    # And the batch's messages are counted beside it (so a batch of unreadable messages still flushes a metric)
    assert {"Name": telemetry.MESSAGES_RECEIVED, "Unit": "Count"} in directive["Metrics"]
    assert lag[telemetry.MESSAGES_RECEIVED] in (3, [3])
    values = lag[telemetry.QUEUE_LAG_SECONDS]
    (seconds,) = values if isinstance(values, list) else [values]
    assert seconds > 1000  # sent a year before this test's clock: one large age, for the oldest record


class _Subsegment:
    def __init__(self) -> None:
        self.annotations: dict[str, object] = {}

    def put_annotation(self, key: str, value: object) -> None:
        self.annotations[key] = value


class _Provider:
    """An X-Ray recorder stand-in: records the subsegments opened and what they were annotated with."""

    def __init__(self) -> None:
        self.opened: list[tuple[str, _Subsegment]] = []

    @contextmanager
    def in_subsegment(self, name: str) -> Iterator[_Subsegment]:
        subsegment = _Subsegment()
        self.opened.append((name, subsegment))
        yield subsegment


@pytest.fixture
def tracing(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Provider]:
    """The observability tracer as in Lambda with X-Ray on, recording into a stand-in provider."""
    Tracer._reset_config()  # type: ignore[no-untyped-call]
    provider = _Provider()
    lazy = observability.LazyTracer()
    lazy._tracer = Tracer(disabled=False, auto_patch=False, provider=provider)  # type: ignore[arg-type]
    monkeypatch.setattr(observability, "tracer", lazy)
    yield provider
    Tracer._reset_config()  # type: ignore[no-untyped-call]


def test_each_record_sync_is_a_span_annotated_with_ids_and_vendor_only(tracing: _Provider, flushed: Any) -> None:
    # Given a worker tracing through Powertools, in a deployment whose accounting vendor is "books"
    worker = Worker(Pipeline("updated"), Alerts(), telemetry=PowertoolsTelemetry({"vendor": "books"}))
    # When a message about one contact is handled
    worker.handle_message(work(ref("contact", "42", crm="crm")))
    # Then its sync ran in one span, searchable by vendor, CRM, object type and id, and nothing else
    ((name, subsegment),) = tracing.opened
    assert name == "## sync record"
    assert subsegment.annotations == {
        "vendor": "books",
        "crm": "crm",
        "object_type": "contact",
        "object_id": "42",
        "records": 1,
    }
    flushed()


def test_no_tracer_is_made_until_a_traced_handler_runs() -> None:
    # Given the lazy tracer the worker handlers are decorated with
    lazy = observability.LazyTracer()
    calls: list[object] = []

    @lazy.capture_lambda_handler(capture_error=False)
    def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
        calls.append(event)
        return {"ok": True}

    # Then decorating made no tracer (the X-Ray SDK is not loaded at a cold start)
    assert lazy.active() is None
    assert lazy._tracer is None
    # When it is invoked (tests disable tracing: POWERTOOLS_TRACE_DISABLED)
    assert handler({"n": 1}, object()) == {"ok": True}
    # Then the tracer exists, disabled here, and the handler ran once
    assert lazy._tracer is not None
    assert lazy.active() is None
    assert calls == [{"n": 1}]
