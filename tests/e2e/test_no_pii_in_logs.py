"""Security: an end-to-end run with planted PII writes none of it to any log."""

from __future__ import annotations

import logging

import pytest

from tests.stack_fixtures import Loop

pytestmark = pytest.mark.e2e

PII = {
    "email": "zelda.quartermain@pii-canary.test",
    "phone": "+44 7700 900123",
    "tax_number": "GB987654321",
    "street": "77 Canary Wharf Lane",
    "postcode": "E14 5AB",
}


def test_planted_pii_never_reaches_the_logs(
    loop: Loop, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    # Every logger at INFO, as deployed (LogLevel INFO). botocore at DEBUG prints request bodies, PII
    # included, whatever any application does: never run it at DEBUG in production.
    caplog.set_level(logging.INFO)
    # Given a company and contact full of personal data, one of them malformed so errors are logged too
    company = loop.hubspot.create_object(
        "companies",
        {"name": "Canary Holdings", "phone": PII["phone"], "address": PII["street"], "zip": PII["postcode"]},
    )
    loop.hubspot.create_object(
        "contacts",
        {"firstname": "Zelda", "lastname": "Q", "email": PII["email"], "phone": PII["phone"]},
        associations=[{"to_type": "companies", "to_id": company["id"], "primary": True}],
    )
    loop.hubspot.create_object("contacts", {"email": "not-an-email@", "phone": PII["phone"]})
    loop.hubspot.update_object("companies", company["id"], {"address": PII["street"] + " 2"})
    # When everything syncs (webhooks, workers, Xero lookups by email and tax number)
    loop.settle()
    assert [c for c in loop.active_xero_contacts() if c["Name"] == "Canary Holdings"]
    # Then no captured output or log record carries any of it
    out, err = capfd.readouterr()
    logged = out + err + "\n".join(r.getMessage() + str(r.__dict__) for r in caplog.records)
    for kind, value in PII.items():
        assert value not in logged, kind
        assert value.replace(" ", "%20") not in logged, kind
        assert value.replace("@", "%40") not in logged, kind
