"""Webhook ingestion: verify, validate, split by pipeline, enqueue — and answer within the CRM's budget.

No vendor is called here and nothing is synced: the route only has to prove the request is authentic and
well-formed and hand it to SQS, so HubSpot's 5-second budget holds however slow the accounting side is.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Protocol

from closeloop.errors import WebhookRejected
from closeloop.models import PIPELINE_OF, AccountingWorkMessage, Pipeline, SyncEvent, WorkMessage
from closeloop.ports import AccountingPort, CrmPort, WebhookRequest

MAX_BODY_BYTES = 1024 * 1024


class WorkQueues(Protocol):
    def send(self, pipeline: Pipeline, body: str, delay_seconds: int = 0) -> None:
        """Enqueue one work message for ``pipeline`` (visible after ``delay_seconds``)."""


@dataclass(frozen=True)
class IngestResult:
    accepted: dict[str, int] = field(default_factory=dict)
    ignored: int = 0


def ingest(crm: CrmPort, queues: WorkQueues, request: WebhookRequest) -> IngestResult:
    """Accept one webhook delivery. Raises WebhookRejected (413, 401, 400) before anything is enqueued."""
    if len(request.body) > MAX_BODY_BYTES:
        raise WebhookRejected(413, f"body larger than {MAX_BODY_BYTES} bytes")
    crm.verify_webhook(request)  # before parsing: unauthenticated bytes are never interpreted
    events = crm.parse_webhook(request.body)
    by_pipeline: dict[Pipeline, list[SyncEvent]] = defaultdict(list)
    ignored = 0
    for event in events:
        pipeline = PIPELINE_OF.get(event.ref.object_type)
        if pipeline is None:
            ignored += 1
        else:
            by_pipeline[pipeline].append(event)
    for pipeline, batch in by_pipeline.items():
        queues.send(pipeline, WorkMessage(pipeline=pipeline, events=batch).model_dump_json())
    return IngestResult(accepted={p: len(b) for p, b in by_pipeline.items()}, ignored=ignored)


def raise_if_wrong_crm(crm: CrmPort, path_crm: str) -> None:
    if path_crm != crm.name:
        raise WebhookRejected(404, f"no webhook route for CRM {path_crm!r}")


#: Accounting-side changes travel on the contacts queue (the contact worker applies them).
ACCOUNTING_PIPELINE: Pipeline = "contacts"
EVENTS_PER_MESSAGE = 100


def ingest_accounting(accounting: AccountingPort, queues: WorkQueues, request: WebhookRequest) -> int:
    """Accept an accounting system's change notification; returns how many events were queued.

    Raises WebhookRejected (413, 401, 400, 404) before anything is enqueued. An authentic delivery without
    events (Xero's intent-to-receive check) queues nothing and is accepted.
    """
    if len(request.body) > MAX_BODY_BYTES:
        raise WebhookRejected(413, f"body larger than {MAX_BODY_BYTES} bytes")
    accounting.verify_webhook(request)
    events = accounting.parse_webhook(request.body)
    for start in range(0, len(events), EVENTS_PER_MESSAGE):
        message = AccountingWorkMessage(events=events[start : start + EVENTS_PER_MESSAGE])
        queues.send(ACCOUNTING_PIPELINE, message.model_dump_json())
    return len(events)
