"""What one recorded run of a pair's scenarios holds: the record the contract tests check, made by the
``recorded`` fixture (tests/contracts/conftest.py)."""

from __future__ import annotations

from dataclasses import dataclass

from closeloop_local.sandboxes.base import Exchange
from closeloop_local.sandboxes.drivers import SentWebhook


@dataclass(frozen=True)
class Recorded:
    crm: str
    books: str
    exchanges: dict[str, list[Exchange]]  # vendor -> its sandbox's exchanges, oldest first
    crm_webhooks: list[SentWebhook]
