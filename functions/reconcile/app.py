"""reconcile: the monthly reconciliation report (won deals vs invoices vs payments) to S3, link to SNS.

The schedule sends ``{"job": "reconcile"}`` on the 1st: that reconciles the month just ended. A manual
run may name a month: ``{"month": "2026-10"}`` (``closeloop report --month 2026-10``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from closeloop import runtime

logger = Logger()


def previous_month(now: datetime) -> str:
    return (now.replace(day=1) - timedelta(days=1)).strftime("%Y-%m")


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    runtime.telemetry()  # vendor 429s and retries are counted (embedded metrics: no flush to wait for)
    month = str(event.get("month") or previous_month(datetime.now(UTC)))
    result = runtime.monthly_report(month)
    logger.info("reconciliation published", extra={"month": month, "discrepancies": result["discrepancies"]})
    return result
