"""Security, for every pair: an end-to-end run with planted PII writes none of it to any log."""

from __future__ import annotations

import logging
from decimal import Decimal

import pytest

from closeloop_local.pairs import Pair
from closeloop_local.sandboxes.drivers import DealLine

pytestmark = pytest.mark.e2e

PII = {"email": "yara.pendleton@pii-canary.test", "phone": "+44 7700 900456", "tax_number": "GB123454321"}


def test_planted_pii_never_reaches_the_logs(
    pair: Pair, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    # Given a company carrying an email, a tax number and (after an edit) a phone, and a won deal for it
    line = DealLine("PII-1", "Canary", Decimal(1), Decimal("5.00"))
    pair.books.seed_item(line.sku, line.name, line.unit_price)
    ref = pair.crm.create_company(
        "Canary Wharf Traders Ltd", email=PII["email"], tax_number=PII["tax_number"], country="GB"
    )
    pair.settle()
    pair.crm.update_company(ref, phone=PII["phone"])
    pair.crm.create_won_deal(ref, [line], currency=pair.books.currency)
    # When everything syncs (webhooks, workers, lookups by email and tax number, the poller)
    pair.settle()
    pair.poll()
    pair.stack.drain(timeout=60)
    assert pair.store.get_mapping(ref, pair.books.name) is not None
    # Then no captured output or log record carries any of it
    out, err = capfd.readouterr()
    logged = out + err + "\n".join(r.getMessage() + str(r.__dict__) for r in caplog.records)
    assert "synced" in logged  # the run's logs were captured: an empty capture would prove nothing
    for kind, value in PII.items():
        for form in (value, value.replace(" ", "%20"), value.replace("@", "%40"), value.replace("+", "%2B")):
            assert form not in logged, kind
