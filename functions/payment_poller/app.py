"""payment_poller (scheduled): payments and balances back to the CRM, then the catch-up polls.

The CRM catch-up queues changes no webhook announced (SugarCRM never retries a hook; any CRM can drop one);
the accounting catch-up queues customers changed in the accounting system (the only change feed of Zoho
Books, which sends no webhooks), to be applied or flagged under the field rules; the quote status poll writes
the accounting quotes' statuses to their CRM quotes (no accounting system sends quote events Closeloop takes).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from closeloop import runtime

logger = Logger()


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # Independent halves: an accounting outage must not stop the CRM catch-up, nor the reverse.
    summary: dict[str, Any] = {}
    runtime.register_lambda_context(context)  # paced calls stop in time; no deadline left by another function
    runtime.telemetry()  # vendor 429s and retries are counted (embedded metrics: no flush to wait for)
    try:
        result = runtime.payment_poller().run()
        summary = asdict(result) | {"status_changes": len(result.status_changes), "watermark": str(result.watermark)}
        (logger.warning if result.deferred else logger.info)("payments polled", extra=summary)
    finally:
        # Each catch-up runs even when the other raised; the first failure is raised after both ran.
        failures: list[Exception] = []
        for name, catch_up in (
            ("catch_up", runtime.crm_catch_up),
            ("accounting_catch_up", runtime.accounting_catch_up),
            ("quote_statuses", runtime.quote_status_poll),
        ):
            try:
                caught = catch_up().run()
            except Exception as exc:  # noqa: BLE001 - re-raised below, after the other catch-up
                logger.exception("catch-up failed", extra={"source": name})
                failures.append(exc)
                continue
            summary[name] = {"queued": caught.queued, "watermark": str(caught.watermark), "complete": caught.complete}
            if caught.deferred:  # a 429: the next run reads the rest
                summary[name]["deferred"] = caught.deferred
            (logger.warning if caught.deferred else logger.info)(
                "changes caught up", extra={"source": name, **summary[name]}
            )
        if failures:
            raise failures[0]
    return summary
