"""on_contact: the contacts webhook route (verify, validate, enqueue) and the contacts queue worker.

The worker reads its SQS batch whole, so the customers of up to ten webhook deliveries are matched and
created with the accounting system's bulk calls (``ContactQueue.batch``); Powertools' batch processor then
settles each message on its own and reports only those that must come back (``ReportBatchItemFailures``).
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from closeloop import runtime
from closeloop.observability import count_batch, metrics, tracer
from closeloop.webhook_api import resolve

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.batch import BatchProcessor
    from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

logger = Logger()


@cache
def processor() -> BatchProcessor:
    # Imported on the worker's first batch: the batch utility loads every event data class and asyncio
    # (about 200 ms), which the webhook function, sharing this module, must not pay at its cold start.
    from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType  # noqa: PLC0415

    return BatchProcessor(event_type=EventType.SQS)


@logger.inject_lambda_context(log_event=False)  # never the event: it may hold a URL secret
def webhook_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return resolve(event, context)


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_error=False)  # exception text as trace metadata could carry PII
@metrics.log_metrics(raise_on_empty_metrics=False)
def worker_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    from aws_lambda_powertools.utilities.batch import process_partial_response  # noqa: PLC0415

    runtime.register_lambda_context(context)
    count_batch(event, runtime.telemetry())
    records = [(str(r["messageId"]), str(r.get("body") or "")) for r in event.get("Records") or []]
    batch = runtime.contact_queue().batch(records)

    def record_handler(record: SQSRecord) -> None:
        batch.settle(record.message_id)

    return process_partial_response(event=event, record_handler=record_handler, processor=processor(), context=context)
