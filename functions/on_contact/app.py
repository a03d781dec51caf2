"""on_contact: the contacts webhook route (verify, validate, enqueue) and the contacts queue worker.

The worker takes its SQS batch whole: the customers of up to ten webhook deliveries are matched and
created with the accounting system's bulk calls (see ``ContactSync.sync_many``), and only the messages
whose objects must be retried are reported back as failures (``ReportBatchItemFailures``).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from closeloop import runtime
from closeloop.models import message_pipeline
from closeloop.webhook_api import resolve

logger = Logger()


@logger.inject_lambda_context(log_event=False)  # never the event: it may hold a URL secret
def webhook_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return resolve(event, context)


@logger.inject_lambda_context
def worker_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, list[dict[str, str]]]:
    # Imported here: the webhook function shares this module and must not pay for them at its cold start.
    from closeloop.sync.accounting_changes import handle_accounting_messages  # noqa: PLC0415
    from closeloop.sync.backfill import handle_backfill_messages  # noqa: PLC0415

    runtime.register_lambda_context(context)
    messages = [(str(r["messageId"]), str(r.get("body") or "")) for r in event.get("Records") or []]
    accounting = [m for m in messages if message_pipeline(m[1]) == "accounting"]
    backfill = [m for m in messages if message_pipeline(m[1]) == "backfill"]
    messages = [m for m in messages if message_pipeline(m[1]) not in ("accounting", "backfill")]
    try:
        failed = handle_accounting_messages(runtime.accounting_changes(), accounting) if accounting else []
        failed += (
            handle_backfill_messages(runtime.contact_backfill(), backfill, runtime.park_contacts) if backfill else []
        )
        failed += runtime.contact_worker().handle_batch(messages) if messages else []
    except Exception:
        # Not one record's fault that we know of: every message comes back, and the DLQ keeps repeat offenders.
        logger.exception("contact batch failed", extra={"messages": len(messages)})
        failed = [message_id for message_id, _ in [*accounting, *backfill, *messages]]
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in failed]}
