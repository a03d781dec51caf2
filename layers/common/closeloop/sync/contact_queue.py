"""The contacts queue's batches: three kinds of work message, each to its own logic.

``crm_events`` messages of a batch are synced together first (the customers of up to ten webhook deliveries
are matched and created with the accounting system's bulk calls: ``Worker.sync_batch``); then each message
is settled on its own, as Powertools' batch processor hands it over: a ``crm_events`` message by what the
bulk sync said of it, an ``accounting_changes`` message or a ``backfill_chunk`` by running it. A message
that must come back raises, and only that message is reported failed; an unreadable one raises
UnreadableMessage, is retried, and reaches the DLQ after the queue's receives.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from aws_lambda_powertools import Logger

from closeloop.models import (
    AccountingWorkMessage,
    BackfillWorkMessage,
    UnreadableMessage,
    WorkMessage,
    read_work_message,
)
from closeloop.sync.accounting_changes import AccountingChangeSync, apply_accounting_changes
from closeloop.sync.backfill import ContactBackfill, run_backfill_chunk
from closeloop.sync.worker import Worker

logger = Logger(child=True)


class ContactQueue:
    """What the contacts queue's worker runs: ``batch(records)`` then ``settle`` each record.

    ``changes`` and ``backfill`` are built on first use (most batches hold only CRM events); ``park(body,
    delay)`` re-queues a message on this queue.
    """

    def __init__(
        self,
        worker: Worker,
        changes: Callable[[], AccountingChangeSync],
        backfill: Callable[[], ContactBackfill],
        park: Callable[[str, int], None],
    ) -> None:
        self.worker = worker
        self.changes = changes
        self.backfill = backfill
        self.park = park

    def batch(self, records: Sequence[tuple[str, str]]) -> ContactBatch:
        """Read every ``(message_id, body)`` record and sync the batch's CRM events together."""
        batch = ContactBatch(self)
        crm_events: list[tuple[str, str, WorkMessage]] = []
        for message_id, body in records:
            try:
                message = read_work_message(body)
            except UnreadableMessage as exc:
                logger.error("unreadable work message", extra={"message_id": message_id, "error": str(exc)})
                batch.failures[message_id] = exc
                continue
            batch.messages[message_id] = message
            if isinstance(message, WorkMessage):
                crm_events.append((message_id, body, message))
        if crm_events:
            try:
                batch.failures.update(self.worker.sync_batch(crm_events))
            except Exception as exc:  # noqa: BLE001 - kept as the failure of the messages it concerns
                # Not one message's fault that we know of: the messages of the bulk sync come back (the DLQ keeps
                # repeat offenders); the batch's other kinds of message are still worked.
                logger.exception("contact batch failed", extra={"messages": len(crm_events)})
                batch.failures.update(dict.fromkeys((message_id for message_id, _, _ in crm_events), exc))
        return batch


@dataclass
class ContactBatch:
    """One batch of the contacts queue: its messages as read, and why those that must come back must."""

    queue: ContactQueue
    messages: dict[str, WorkMessage | AccountingWorkMessage | BackfillWorkMessage] = field(default_factory=dict)
    failures: dict[str, Exception] = field(default_factory=dict)

    def settle(self, message_id: str) -> None:
        """Finish one message of the batch; raises when it must come back (unreadable, or a retriable error)."""
        if message_id in self.failures:
            raise self.failures[message_id]
        message = self.messages.get(message_id)
        if isinstance(message, AccountingWorkMessage):
            apply_accounting_changes(self.queue.changes(), message)
        elif isinstance(message, BackfillWorkMessage):
            run_backfill_chunk(self.queue.backfill(), message, self.queue.park)
        elif message is None:
            raise UnreadableMessage(f"message {message_id} is not in this batch")
        # A crm_events message not failed above was synced (or parked, or re-queued) by the bulk sync.
