"""Every request the adapters sent in the pair loop, every answer the sandboxes gave and every webhook the
CRM sandboxes sent, held against the vendor's published contract (see contract.py)."""

from __future__ import annotations

import pytest

from tests.contracts.contract import Violation, load
from tests.contracts.recorded import Recorded

pytestmark = pytest.mark.e2e


def _report(violations: list[Violation]) -> str:
    unique = sorted({str(v) for v in violations})
    return f"{len(unique)} contract violations:\n" + "\n".join(unique[:60])


@pytest.mark.parametrize("side", ["crm", "books"])
def test_every_exchange_follows_the_vendors_contract(recorded: Recorded, side: str) -> None:
    # Given the exchanges the pair loop made with one vendor's sandbox
    vendor = recorded.crm if side == "crm" else recorded.books
    exchanges = recorded.exchanges[vendor]
    assert exchanges, f"the pair loop made no request to {vendor}"
    contract = load(vendor)
    # When each is held against the vendor's contract
    violations = [v for exchange in exchanges for v in contract.check(exchange)]
    # Then none departs from it, and every allowance in allow.json is still needed
    assert not violations, _report(violations)
    stale = [a for a in contract.allowances if a.where != "webhook" and not a.used]
    assert not stale, f"allow.json entries no longer needed: {stale}"


def test_every_crm_webhook_follows_the_vendors_contract(recorded: Recorded) -> None:
    # Given the webhooks the CRM sandbox sent in the pair loop
    assert recorded.crm_webhooks, f"{recorded.crm} sent no webhook"
    contract = load(recorded.crm)
    # Then each body matches the vendor's published webhook payload
    violations = [v for hook in recorded.crm_webhooks for v in contract.check_webhook("event", hook.body)]
    assert not violations, _report(violations)
