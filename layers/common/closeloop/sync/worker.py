"""Queue worker logic: one SQS message holds the events of one webhook delivery for one pipeline.

Events about the same CRM object are coalesced (the object is fetched back once, in its current state).
Each object group runs at most once per distinct set of events (``once``: the idempotency store), so a
redelivered message only redoes the groups that did not finish. A retriable failure of any group fails
the message (it comes back after the visibility timeout, then goes to the DLQ); a record-level failure is
kept as a failed sync by the pipeline; a setup failure (disconnected account) alerts a person.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict
from typing import Any, Protocol

from aws_lambda_powertools import Logger

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

    def _sync(self, ref: CrmRef, events: list[SyncEvent]) -> dict[str, Any]:
        outcome = self.pipeline.sync(ref, events)
        result = asdict(outcome)
        result["ref"] = str(outcome.ref)
        return result
