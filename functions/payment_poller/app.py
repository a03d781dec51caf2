"""payment_poller (scheduled): payments and balances back to the CRM, then the CRM catch-up poll.

The catch-up queues CRM changes no webhook announced (SugarCRM never retries a hook; any CRM can drop one).
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
    try:
        result = runtime.payment_poller().run()
        summary = asdict(result) | {"status_changes": len(result.status_changes), "watermark": str(result.watermark)}
        logger.info("payments polled", extra=summary)
    finally:
        caught = runtime.crm_catch_up().run()
        summary["catch_up"] = {"queued": caught.queued, "watermark": str(caught.watermark), "complete": caught.complete}
        logger.info("CRM changes caught up", extra=summary["catch_up"])
    return summary
