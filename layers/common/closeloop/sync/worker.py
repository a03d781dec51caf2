"""Queue worker logic: one SQS message holds the events of one webhook delivery for one pipeline.

Events about the same CRM object are coalesced (the object is fetched back once, in its current state).
Each object group runs at most once per distinct set of events (``once``: the idempotency store), so a
redelivered message only redoes the groups that did not finish. A retriable failure of any group fails
the message (it comes back after the visibility timeout, then goes to the DLQ); a record-level failure is
kept as a failed sync by the pipeline; a setup failure (disconnected account) alerts a person.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict
from typing import Any, Protocol

from aws_lambda_powertools import Logger
from pydantic import ValidationError

from closeloop.errors import RetriableError, SetupError
from closeloop.models import CrmRef, SyncEvent, WorkMessage

logger = Logger(child=True)

Once = Callable[[dict[str, Any], Callable[[], dict[str, Any]]], dict[str, Any]]


class Pipeline(Protocol):
    def sync(self, ref: CrmRef, events: Iterable[SyncEvent]) -> Any: ...


class Alerts(Protocol):
    def alert(self, subject: str, message: str) -> None: ...


def run_directly(key: dict[str, Any], work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """A ``once`` without an idempotency store (unit tests, one-off runs)."""
    return work()


def group_events(events: Iterable[SyncEvent]) -> dict[CrmRef, list[SyncEvent]]:
    groups: dict[CrmRef, list[SyncEvent]] = {}
    for event in events:
        groups.setdefault(event.ref, []).append(event)
    return groups


#: How long a message waits before it is tried again while the integration is disconnected.
PARK_SECONDS = 900


class Worker:
    """Runs a pipeline over the events of work messages.

    ``park(pipeline, body, delay)`` re-queues a message for later: a setup failure (a revoked
    connection) is nobody's record's fault, so its messages wait for the fix instead of burning their
    receive count into the DLQ. ``alert_due(kind)`` says whether to alert now (once an hour, not per
    message).
    """

    def __init__(
        self,
        pipeline: Pipeline,
        alerts: Alerts,
        once: Once = run_directly,
        *,
        park: Callable[[str, str, int], None] | None = None,
        alert_due: Callable[[str], bool] = lambda kind: True,
    ) -> None:
        self.pipeline = pipeline
        self.alerts = alerts
        self.once = once
        self.park = park
        self.alert_due = alert_due

    def handle_message(self, body: str) -> list[dict[str, Any]]:
        """Process one message body. Raises the first RetriableError/SetupError after trying every group."""
        message = WorkMessage.model_validate_json(body)
        results: list[dict[str, Any]] = []
        pending: Exception | None = None
        for ref, events in group_events(message.events).items():
            key = {"ref": str(ref), "events": sorted(e.dedupe_key for e in events)}
            try:
                result = self.once(key, lambda ref=ref, events=events: self._sync(ref, events))  # type: ignore[misc]
            except RetriableError as exc:
                logger.warning("sync will be retried", extra={"ref": str(ref), "error": str(exc)})
                pending = pending or exc
                continue
            except SetupError as exc:
                logger.error("integration needs attention", extra={"ref": str(ref), "error": str(exc)})
                if self.alert_due(type(exc).__name__):
                    self.alerts.alert("Closeloop needs attention", f"{type(exc).__name__}: {exc}")
                if self.park is None:
                    raise
                # Kept, not failed: a fresh copy waits PARK_SECONDS; finished groups are skipped on return.
                self.park(message.pipeline, body, PARK_SECONDS)
                logger.warning("message parked until the integration is fixed", extra={"ref": str(ref)})
                return results
            logger.info("synced", extra=result)
            results.append(result)
        if pending is not None:
            raise pending
        return results

    def handle_batch(self, messages: Sequence[tuple[str, str]]) -> list[str]:
        """Process ``(message_id, body)`` pairs together; return the ids of the messages to retry.

        A pipeline with ``sync_many`` (bulk reads and writes) gets every object of the batch in one call,
        events of the same object merged across messages; others run message by message. A message is
        retried when any of its objects met a retriable error (objects that did finish are found unchanged
        on the next try); an unreadable body is retried until the DLQ keeps it; a setup failure parks every
        message and alerts once.
        """
        bulk = getattr(self.pipeline, "sync_many", None)
        if bulk is None:
            return [message_id for message_id, body in messages if not self._try_message(body)]
        readable, failed = self._read(messages)
        groups: dict[CrmRef, dict[str, SyncEvent]] = {}
        for _, _, message in readable:
            for event in message.events:
                groups.setdefault(event.ref, {})[event.dedupe_key] = event
        try:
            results = bulk({ref: list(events.values()) for ref, events in groups.items()}) if groups else {}
        except SetupError as exc:
            self._park_all(readable, exc)
            return failed
        for message_id, _, message in readable:
            errors = [results[e.ref] for e in message.events if isinstance(results.get(e.ref), RetriableError)]
            if errors:
                logger.warning("message will be retried", extra={"message_id": message_id, "error": str(errors[0])})
                failed.append(message_id)
        for ref, result in results.items():
            if not isinstance(result, Exception):
                outcome = asdict(result)
                outcome["ref"] = str(ref)
                logger.info("synced", extra=outcome)
        return failed

    @staticmethod
    def _read(messages: Sequence[tuple[str, str]]) -> tuple[list[tuple[str, str, WorkMessage]], list[str]]:
        """The readable messages, and the ids of the unreadable ones (retried until the DLQ keeps them)."""
        readable: list[tuple[str, str, WorkMessage]] = []
        failed: list[str] = []
        for message_id, body in messages:
            try:
                readable.append((message_id, body, WorkMessage.model_validate_json(body)))
            except ValidationError as exc:
                logger.error("unreadable work message", extra={"message_id": message_id, "error": str(exc)[:300]})
                failed.append(message_id)
        return readable, failed

    def _park_all(self, readable: list[tuple[str, str, WorkMessage]], exc: SetupError) -> None:
        logger.error("integration needs attention", extra={"error": str(exc)})
        if self.alert_due(type(exc).__name__):
            self.alerts.alert("Closeloop needs attention", f"{type(exc).__name__}: {exc}")
        if self.park is None:
            raise exc
        for _, body, message in readable:
            self.park(message.pipeline, body, PARK_SECONDS)
        logger.warning("batch parked until the integration is fixed", extra={"messages": len(readable)})

    def _try_message(self, body: str) -> bool:
        try:
            self.handle_message(body)
        except (RetriableError, ValidationError) as exc:
            logger.warning("message will be retried", extra={"error": str(exc)[:300]})
            return False
        return True

    def _sync(self, ref: CrmRef, events: list[SyncEvent]) -> dict[str, Any]:
        outcome = self.pipeline.sync(ref, events)
        result = asdict(outcome)
        result["ref"] = str(outcome.ref)
        return result
