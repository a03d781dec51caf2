"""payment_poller: invoice payments and customer balances from accounting back to the CRM (scheduled)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from closeloop import runtime

logger = Logger()


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    result = runtime.payment_poller().run()
    summary = asdict(result) | {"status_changes": len(result.status_changes), "watermark": str(result.watermark)}
    logger.info("payments polled", extra=summary)
    return summary
