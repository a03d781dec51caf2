"""on_deal_won: the deals webhook route (verify, validate, enqueue) and the deals queue worker.

The route is live: deal events are authenticated and queued on the deals queue. Invoice generation
(won deal -> invoice) is not part of this version: the worker's event source is declared disabled in
template.yaml, so queued deal events wait in the queue (14 days) rather than fail.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from closeloop.webhook_api import app

logger = Logger()


@logger.inject_lambda_context
def webhook_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)


@logger.inject_lambda_context
def worker_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    raise NotImplementedError("won deal -> invoice is not available in this version (its event source is disabled)")
