"""CRM catch-up: changes no webhook announced are found by polling and queued like webhook events.

Some CRMs never retry a webhook (SugarCRM's logic hooks), and any CRM can drop one. Each scheduled run
asks the CRM for companies, contacts and deals modified since the stored watermark (minus an overlap for
clock skew and late commits) and sends them to the same work queues as the webhook route, 100 events a
message. The pipelines fetch every object back in its current state, so an object whose change a webhook
already delivered is simply found unchanged. The first run only sets the watermark: history is for
``closeloop backfill``, not for the poller.

A vendor's 429 (``RateLimited``, after the HTTP client's own waits) does not fail a scheduled run: the run
stops, hands on what it read, keeps its watermark where it was so the next run reads the rest again, and says
why in ``CatchUpResult.deferred``. Any other error still fails the run (with the watermark where it was).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from closeloop.errors import RateLimited
from closeloop.models import PIPELINE_OF, AccountingCustomer, Pipeline, SyncEvent, WorkMessage
from closeloop.ports import AccountingPort, CrmPort
from closeloop.sync.ingest import WorkQueues

WATERMARK = "crm-changes"
#: Re-read this much before the watermark: the CRM's clock and commit order are not ours.
OVERLAP = timedelta(minutes=5)
EVENTS_PER_MESSAGE = 100


class Watermarks(Protocol):
    def get_watermark(self, name: str) -> datetime | None: ...

    def put_watermark(self, name: str, value: datetime) -> None: ...


@dataclass(frozen=True)
class CatchUpResult:
    """One run: ``deferred`` says why it stopped early and left the rest to the next run ("" when it did not)."""

    since: datetime | None
    queued: dict[str, int]
    watermark: datetime
    complete: bool
    deferred: str = ""


def deferral(error: RateLimited) -> str:
    """What a run that a vendor's 429 stopped reports (no body: it may carry personal data)."""
    why = error.problem or "429"
    return f"rate limited by {error.vendor or 'the vendor'} ({why}): the rest is read again by the next run"


class CatchUp:
    """One catch-up pass; ``max_events`` bounds a run (the rest waits for the next one, nothing skipped)."""

    def __init__(
        self,
        crm: CrmPort,
        queues: WorkQueues,
        store: Watermarks,
        *,
        max_events: int = 5000,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.crm = crm
        self.queues = queues
        self.store = store
        self.max_events = max_events
        self.clock = clock

    def run(self) -> CatchUpResult:
        started = self.clock()
        mark = self.store.get_watermark(WATERMARK)
        if mark is None:
            self.store.put_watermark(WATERMARK, started)
            return CatchUpResult(None, {}, started, complete=True)
        since = mark - OVERLAP
        pending: dict[Pipeline, list[SyncEvent]] = defaultdict(list)
        queued: dict[str, int] = defaultdict(int)
        latest = since
        complete = True
        deferred = ""
        try:
            for count, event in enumerate(self.crm.iter_changes_since(since), start=1):
                pipeline = PIPELINE_OF.get(event.ref.object_type)
                if pipeline is not None:
                    pending[pipeline].append(event)
                    if len(pending[pipeline]) == EVENTS_PER_MESSAGE:
                        self._send(pipeline, pending.pop(pipeline), queued)
                latest = max(latest, event.occurred_at)
                if count >= self.max_events:
                    complete = False
                    break
        except RateLimited as exc:
            complete, deferred = False, deferral(exc)
        for pipeline, events in pending.items():
            self._send(pipeline, events, queued)
        # A complete pass covered everything up to when it started; a cut-short one only what it read. A
        # rate-limited one keeps its mark: the CRM lists its changes per object type, so the types it did not
        # reach (or finish) may hold changes older than the latest one read.
        watermark = mark if deferred else max(mark, started if complete else latest)
        self.store.put_watermark(WATERMARK, watermark)
        return CatchUpResult(since, dict(queued), watermark, complete, deferred)

    def _send(self, pipeline: Pipeline, events: list[SyncEvent], queued: dict[str, int]) -> None:
        self.queues.send(pipeline, WorkMessage(pipeline=pipeline, events=events).model_dump_json())
        queued[pipeline] += len(events)


ACCOUNTING_WATERMARK = "accounting-customers"


class RecordChanges(Protocol):
    def sync_record(self, customer: AccountingCustomer) -> object: ...


class AccountingCatchUp:
    """Accounting customers changed since the watermark, handled as they are read (every system's catch-up,
    and the only change feed of one without webhooks): no queue and no second read of each record. The
    first run only sets the watermark.

    A record whose change fails for good is kept as a failed sync by ``sync_record`` and the run goes on (the
    watermark moves past it); a ``RetriableError`` stops the run with the watermark where it was, so the next
    run reads that record (and the ones after it) again: a ``RateLimited`` one ends the run as ``deferred``,
    any other is raised."""

    def __init__(
        self,
        accounting: AccountingPort,
        changes: RecordChanges,
        store: Watermarks,
        *,
        max_events: int = 5000,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.accounting = accounting
        self.changes = changes
        self.store = store
        self.max_events = max_events
        self.clock = clock

    def run(self) -> CatchUpResult:
        started = self.clock()
        mark = self.store.get_watermark(ACCOUNTING_WATERMARK)
        if mark is None:
            self.store.put_watermark(ACCOUNTING_WATERMARK, started)
            return CatchUpResult(None, {}, started, complete=True)
        since = mark - OVERLAP
        handled = 0
        complete = True
        deferred = ""
        try:
            for customer in self.accounting.iter_customers_changed_since(since):
                self.changes.sync_record(customer)
                handled += 1
                if handled >= self.max_events:
                    complete = False
                    break
        except RateLimited as exc:
            complete, deferred = False, deferral(exc)
        # Customers carry no modification time in the port: a cut-short run keeps its watermark (and re-reads).
        watermark = started if complete else mark
        self.store.put_watermark(ACCOUNTING_WATERMARK, watermark)
        return CatchUpResult(since, {"accounting": handled} if handled else {}, watermark, complete, deferred)
