"""Webhook ingestion: verify, validate, split by pipeline, enqueue — and answer within the CRM's budget.

No vendor is called here and nothing is synced: the route only has to prove the request is authentic and
well-formed and hand it to SQS, so HubSpot's 5-second budget holds however slow the accounting side is.

Replays: a captured, validly signed delivery sent again (by an attacker, or by the vendor retrying one we
answered) is answered as accepted but queues nothing, for ``REPLAY_WINDOW`` after it was first queued. A
delivery is known by the digest of its events' dedupe keys (the vendor's event id where it gives one:
HubSpot ``eventId``, Pipedrive ``meta.id``; otherwise the record, change and time it names), so a vendor
retry with a new attempt number or timestamp is still the same delivery. The record is claimed for
``CLAIM_WINDOW`` before the messages are sent, released when sending fails, and made to last the replay
window only once they are sent: so the vendor's retry of a delivery we could not queue gets through, even
when the function died between the claim and the send (the claim lapses by itself).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Protocol

from aws_lambda_powertools import Logger

from closeloop.errors import WebhookRejected
from closeloop.models import PIPELINE_OF, AccountingWorkMessage, Pipeline, SyncEvent, WorkMessage
from closeloop.ports import AccountingPort, CrmPort, WebhookRequest

MAX_BODY_BYTES = 1024 * 1024
#: How long a queued delivery is remembered: longer than any sender's retry window (HubSpot and Xero retry
#: for 24 h, Pipedrive for about 3 min, SugarCRM never), so neither a retry nor a replay is queued twice.
REPLAY_WINDOW = timedelta(hours=25)
#: How long a claim holds before its messages are known to be queued: longer than a webhook function may run
#: (10 s), short enough that a sender's retry after a crash between claim and send is queued.
CLAIM_WINDOW = timedelta(seconds=60)


logger = Logger(child=True)


class WorkQueues(Protocol):
    def send(self, pipeline: Pipeline, body: str, delay_seconds: int = 0) -> None:
        """Enqueue one work message for ``pipeline`` (visible after ``delay_seconds``)."""


class Deliveries(Protocol):
    """Remembers the webhook deliveries already queued (a conditional write with a time to live)."""

    def claim_delivery(self, sender: str, digest: str, ttl_seconds: int) -> bool:
        """Record delivery ``digest`` from ``sender``; False when it is already recorded (a replay)."""

    def remember_delivery(self, sender: str, digest: str, ttl_seconds: int) -> None:
        """Keep the claim on delivery ``digest`` for ``ttl_seconds`` from now (its messages are queued)."""

    def release_delivery(self, sender: str, digest: str) -> None:
        """Forget delivery ``digest`` (its messages could not be queued: the sender's retry must get through)."""


@dataclass(frozen=True)
class IngestResult:
    accepted: dict[str, int] = field(default_factory=dict)
    ignored: int = 0
    replayed: bool = False


def delivery_digest(dedupe_keys: Sequence[str]) -> str:
    """The identity of a delivery: sha256 over its events' dedupe keys (stable across the sender's retries)."""
    return hashlib.sha256("\n".join(sorted(set(dedupe_keys))).encode("utf-8")).hexdigest()


def _queue_once(
    deliveries: Deliveries | None, sender: str, dedupe_keys: Sequence[str], send_all: Callable[[], None]
) -> bool:
    """Run ``send_all`` unless this delivery was already queued; False for a replay (nothing sent)."""
    if deliveries is None or not dedupe_keys:
        send_all()  # a delivery without events queues nothing: there is nothing to replay
        return True
    digest = delivery_digest(dedupe_keys)
    if not deliveries.claim_delivery(sender, digest, int(CLAIM_WINDOW.total_seconds())):
        return False
    try:
        send_all()
    except BaseException:
        deliveries.release_delivery(sender, digest)
        raise
    try:
        deliveries.remember_delivery(sender, digest, int(REPLAY_WINDOW.total_seconds()))
    except Exception as exc:  # noqa: BLE001 - queued already: at worst a late replay is queued again
        # The messages are queued, so the sender must not see a failure. The claim lapses after CLAIM_WINDOW;
        # a replay after that is queued again and the workers' idempotency makes it a no-op.
        logger.warning("could not remember a queued delivery", extra={"error": type(exc).__name__})
    return True


def ingest(
    crm: CrmPort, queues: WorkQueues, request: WebhookRequest, deliveries: Deliveries | None = None
) -> IngestResult:
    """Accept one webhook delivery, queued once (see the module docstring on replays).

    Raises WebhookRejected (413, 401, 400) before anything is enqueued; a queue error propagates, with the
    delivery not recorded, so the sender's retry is queued.
    """
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

    def send_all() -> None:
        for pipeline, batch in by_pipeline.items():
            queues.send(pipeline, WorkMessage(pipeline=pipeline, events=batch).model_dump_json())

    keys = [e.dedupe_key for batch in by_pipeline.values() for e in batch]
    if not _queue_once(deliveries, crm.name, keys, send_all):
        return IngestResult(ignored=ignored, replayed=True)
    return IngestResult(accepted={p: len(b) for p, b in by_pipeline.items()}, ignored=ignored)


def raise_if_wrong_crm(crm: CrmPort, path_crm: str) -> None:
    if path_crm != crm.name:
        raise WebhookRejected(404, f"no webhook route for CRM {path_crm!r}")


#: Accounting-side changes travel on the contacts queue (the contact worker applies them).
ACCOUNTING_PIPELINE: Pipeline = "contacts"
EVENTS_PER_MESSAGE = 100


def ingest_accounting(
    accounting: AccountingPort, queues: WorkQueues, request: WebhookRequest, deliveries: Deliveries | None = None
) -> int:
    """Accept an accounting system's change notification; returns how many events were queued (0 for a replay).

    Raises WebhookRejected (413, 401, 400, 404) before anything is enqueued. An authentic delivery without
    events (Xero's intent-to-receive check) queues nothing and is accepted, as often as it comes.
    """
    if len(request.body) > MAX_BODY_BYTES:
        raise WebhookRejected(413, f"body larger than {MAX_BODY_BYTES} bytes")
    accounting.verify_webhook(request)
    events = accounting.parse_webhook(request.body)

    def send_all() -> None:
        for start in range(0, len(events), EVENTS_PER_MESSAGE):
            message = AccountingWorkMessage(events=events[start : start + EVENTS_PER_MESSAGE])
            queues.send(ACCOUNTING_PIPELINE, message.model_dump_json())

    if not _queue_once(deliveries, accounting.name, [e.dedupe_key for e in events], send_all):
        return 0
    return len(events)
