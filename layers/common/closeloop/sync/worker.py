"""Queue worker logic for ``crm_events`` work messages: the CRM events of one webhook delivery (or catch-up
pass) for one pipeline.

Events about the same CRM object are coalesced (the object is fetched back once, in its current state).
Each object group runs at most once per distinct set of events (``once``: the idempotency store), so a
redelivered message only redoes the groups that did not finish. A retriable failure of any group fails
the message (it comes back after the visibility timeout, then goes to the DLQ); a record-level failure is
kept as a failed sync by the pipeline; a setup failure (disconnected account) alerts a person.

A rate limit is nobody's failure: the vendor said when to come back. The groups it stopped (and those not
tried yet, which would meet the same limit) are re-queued as a message of their own, carrying only their
events, delayed by the vendor's Retry-After; the groups that finished stay done and the original message
is acknowledged. No receive count is spent, so a burst bigger than the vendor's budget drains at the
budget's pace instead of into the DLQ.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict
from typing import Any, Protocol

from aws_lambda_powertools import Logger

from closeloop.errors import RateLimited, RetriableError, SetupError
from closeloop.models import CrmRef, SyncEvent, UnreadableMessage, WorkMessage, read_work_message
from closeloop.telemetry import NO_TELEMETRY, Telemetry

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
#: SQS's longest DelaySeconds; a longer wait is served in steps (``WorkMessage.not_before``).
MAX_DELAY_SECONDS = 900
#: The wait after a 429 that did not say how long (QuickBooks and Zoho Books send no Retry-After).
RATE_LIMIT_DELAY_SECONDS = 60


class Worker:
    """Runs a pipeline over the events of work messages.

    ``park(pipeline, body, delay)`` re-queues a message for later (a fresh copy: its receive count
    starts again): a setup failure (a revoked connection) is nobody's record's fault, so its messages
    wait for the fix instead of burning their receive count into the DLQ; rate-limited work waits for
    the vendor's Retry-After. ``alert_due(kind)`` says whether to alert now (once an hour, not per
    message). ``now`` is the clock of ``WorkMessage.not_before`` and of the delays (seconds).
    ``telemetry`` counts each record synced (``RecordsSynced``) or kept as a failed sync (``FailedSyncs``)
    when its work runs (not when a redelivery finds it done), and traces each object's sync as a span.
    """

    def __init__(
        self,
        pipeline: Pipeline,
        alerts: Alerts,
        once: Once = run_directly,
        *,
        park: Callable[[str, str, int], None] | None = None,
        alert_due: Callable[[str], bool] = lambda kind: True,
        now: Callable[[], float] = time.time,
        telemetry: Telemetry = NO_TELEMETRY,
    ) -> None:
        self.pipeline = pipeline
        self.alerts = alerts
        self.once = once
        self.park = park
        self.alert_due = alert_due
        self.now = now
        self.telemetry = telemetry

    def handle_message(self, body: str) -> list[dict[str, Any]]:
        """Process one message body. Raises the first RetriableError/SetupError after trying every group,
        UnreadableMessage for a body that is no ``crm_events`` work message.

        With ``park``, a RateLimited group and the groups after it are re-queued (see the module docstring)
        instead of raised.
        """
        return self._handle(body, crm_events(body))

    def _handle(self, body: str, message: WorkMessage) -> list[dict[str, Any]]:
        if self._parked_until_due(message):
            return []
        results: list[dict[str, Any]] = []
        pending: Exception | None = None
        groups = list(group_events(message.events).items())
        for index, (ref, events) in enumerate(groups):
            key = {"ref": str(ref), "events": sorted(e.dedupe_key for e in events)}
            try:
                with self.telemetry.span("sync record", span_annotations([ref])):
                    result = self.once(key, lambda ref=ref, events=events: self._sync(ref, events))  # type: ignore[misc]
            except RateLimited as exc:
                if self.park is None:
                    logger.warning("sync will be retried", extra={"ref": str(ref), "error": str(exc)})
                    pending = pending or exc
                    continue
                self._requeue(message, [e for _, rest in groups[index:] for e in rest], exc)
                break
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

        An unreadable body is retried until the DLQ keeps it; the others as ``sync_batch`` says.
        """
        readable: list[tuple[str, str, WorkMessage]] = []
        failed: list[str] = []
        for message_id, body in messages:
            try:
                readable.append((message_id, body, crm_events(body)))
            except UnreadableMessage as exc:
                logger.error("unreadable work message", extra={"message_id": message_id, "error": str(exc)})
                failed.append(message_id)
        return failed + list(self.sync_batch(readable))

    def sync_batch(self, messages: Sequence[tuple[str, str, WorkMessage]]) -> dict[str, Exception]:
        """Process ``(message_id, body, message)`` triples together; return the messages to retry, each
        with its reason.

        A pipeline with ``sync_many`` (bulk reads and writes) gets every object of the batch in one call,
        events of the same object merged across messages; others run message by message. A message is
        retried when any of its objects met a retriable error (objects that did finish are found unchanged
        on the next try); a setup failure parks every message and alerts once.
        """
        bulk = getattr(self.pipeline, "sync_many", None)
        if bulk is None:
            return {
                message_id: error
                for message_id, body, message in messages
                if (error := self._try_message(body, message)) is not None
            }
        failed: dict[str, Exception] = {}
        readable = [m for m in messages if not self._parked_until_due(m[2])]
        groups: dict[CrmRef, dict[str, SyncEvent]] = {}
        for _, _, message in readable:
            for event in message.events:
                groups.setdefault(event.ref, {})[event.dedupe_key] = event
        try:
            with self.telemetry.span("sync records", span_annotations(groups)):
                results = bulk({ref: list(events.values()) for ref, events in groups.items()}) if groups else {}
        except SetupError as exc:
            self._park_all(readable, exc)
            return failed
        limited = {ref: r for ref, r in results.items() if isinstance(r, RateLimited)} if self.park else {}
        if limited:
            self._requeue_limited(readable, groups, limited)
        for message_id, _, message in readable:
            errors = [
                results[e.ref]
                for e in message.events
                if isinstance(results.get(e.ref), RetriableError) and e.ref not in limited
            ]
            if errors:
                logger.warning("message will be retried", extra={"message_id": message_id, "error": str(errors[0])})
                failed[message_id] = errors[0]
        for ref, result in results.items():
            if not isinstance(result, Exception):
                outcome = asdict(result)
                outcome["ref"] = str(ref)
                logger.info("synced", extra=outcome)
                self._count(ref, outcome["action"])
        return failed

    def _requeue_limited(
        self,
        readable: list[tuple[str, str, WorkMessage]],
        groups: dict[CrmRef, dict[str, SyncEvent]],
        limited: dict[CrmRef, RateLimited],
    ) -> None:
        """Re-queue the rate-limited objects of a batch (their merged events), one message per pipeline,
        after the longest wait any of them was given."""
        by_pipeline: dict[str, tuple[WorkMessage, dict[CrmRef, None]]] = {}
        for _, _, message in readable:
            for event in message.events:
                if event.ref in limited:
                    by_pipeline.setdefault(message.pipeline, (message, {}))[1][event.ref] = None
        longest = max(limited.values(), key=lambda exc: exc.retry_after or 0.0)
        for first, refs in by_pipeline.values():
            self._requeue(first, [event for ref in refs for event in groups[ref].values()], longest)

    def _requeue(self, message: WorkMessage, events: list[SyncEvent], exc: RateLimited) -> None:
        """Send ``events`` (only those) as a message of their own, due when the vendor said to come back."""
        assert self.park is not None  # noqa: S101 - callers check
        wait = exc.retry_after if exc.retry_after and exc.retry_after > 0 else RATE_LIMIT_DELAY_SECONDS
        delay = max(1, math.ceil(wait))
        rest = message.model_copy(
            update={"events": events, "not_before": self.now() + delay if delay > MAX_DELAY_SECONDS else None}
        )
        self.park(message.pipeline, rest.model_dump_json(), min(delay, MAX_DELAY_SECONDS))
        logger.warning(
            "rate limited: the rest of the message is re-queued",
            extra={"events": len(events), "delay_seconds": delay, "problem": exc.problem, "vendor": exc.vendor},
        )

    def _parked_until_due(self, message: WorkMessage) -> bool:
        """A message back before its ``not_before`` (a wait longer than SQS can delay) is parked again."""
        if message.not_before is None or self.park is None:
            return False
        left = message.not_before - self.now()
        if left <= 0:
            return False
        self.park(message.pipeline, message.model_dump_json(), min(max(1, math.ceil(left)), MAX_DELAY_SECONDS))
        return True

    def _park_all(self, readable: Sequence[tuple[str, str, WorkMessage]], exc: SetupError) -> None:
        logger.error("integration needs attention", extra={"error": str(exc)})
        if self.alert_due(type(exc).__name__):
            self.alerts.alert("Closeloop needs attention", f"{type(exc).__name__}: {exc}")
        if self.park is None:
            raise exc
        for _, body, message in readable:
            self.park(message.pipeline, body, PARK_SECONDS)
        logger.warning("batch parked until the integration is fixed", extra={"messages": len(readable)})

    def _try_message(self, body: str, message: WorkMessage) -> Exception | None:
        try:
            self._handle(body, message)
        except RetriableError as exc:
            logger.warning("message will be retried", extra={"error": str(exc)[:300]})
            return exc
        return None

    def _sync(self, ref: CrmRef, events: list[SyncEvent]) -> dict[str, Any]:
        outcome = self.pipeline.sync(ref, events)
        result = asdict(outcome)
        result["ref"] = str(outcome.ref)
        self._count(ref, result["action"])
        return result

    def _count(self, ref: CrmRef, action: str) -> None:
        if action == "failed":
            self.telemetry.sync_failed()
        else:
            self.telemetry.record_synced(ref.object_type, action)


def span_annotations(refs: Iterable[CrmRef]) -> dict[str, str | int]:
    """What a sync span is found by: the CRM, the object type(s), the object id when there is one (ids only)."""
    refs = list(refs)
    annotations: dict[str, str | int] = {
        "crm": ",".join(sorted({ref.crm for ref in refs})),
        "object_type": ",".join(sorted({ref.object_type for ref in refs})),
        "records": len(refs),
    }
    if len(refs) == 1:
        annotations["object_id"] = refs[0].object_id
    return annotations


def crm_events(body: str) -> WorkMessage:
    """The ``crm_events`` work message in ``body``; raises UnreadableMessage for any other body."""
    message = read_work_message(body)
    if not isinstance(message, WorkMessage):
        raise UnreadableMessage(f"a {message.kind} message is not for the CRM events worker")
    return message
