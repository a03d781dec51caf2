"""payment_poller: payment status and balances back to the CRM.

Declared in template.yaml with its schedule disabled: this version does not implement it yet.
Invoking it by hand says so instead of pretending to succeed.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

logger = Logger()


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    raise NotImplementedError("payment_poller is not available in this version (its schedule is disabled)")
