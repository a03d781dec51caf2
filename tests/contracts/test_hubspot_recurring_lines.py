"""HubSpot recurring line items: what the adapter asks for and what the sandbox answers, held against HubSpot's
published contract (operations.json: the batch read, and ``LineItemRecurringProperties`` for the billing
frequency, the ISO-8601 term and the start date the line items guide describes), and read into LineItem's
recurring terms. The pair loop makes no recurring line, so this drives the calls itself."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

from closeloop.errors import ValidationFailed
from closeloop.vendors.hubspot.adapter import HubSpotCrm
from closeloop_local.sandboxes.base import recording
from closeloop_local.sandboxes.hubspot import HubSpotSandbox, serve
from tests.contracts.contract import load

OPERATIONS = Path(__file__).resolve().parent / "hubspot" / "operations.json"


def _adapter(hubspot: HubSpotSandbox, url: str) -> HubSpotCrm:
    return HubSpotCrm(
        client_secret=hubspot.client_secret,
        access_token=hubspot.access_token,
        base_url=url,
        sleep=lambda s: None,
        portal_id=hubspot.portal_id,
    )


def test_recurring_line_items_are_read_as_published_and_into_their_terms() -> None:
    with recording() as recorder:
        hubspot, server = serve(HubSpotSandbox())
        try:
            crm = _adapter(hubspot, server.url)
            deal = hubspot.create_object(
                "deals",
                {"dealname": "Contract", "pipeline": "default", "dealstage": "closedwon", "closedate": "2026-03-10"},
            )
            monthly = {"recurringbillingfrequency": "monthly", "hs_recurring_billing_period": "P12M"}
            quarterly = {"recurringbillingfrequency": "quarterly", "hs_recurring_billing_period": "P2Y"}
            biweekly = {"recurringbillingfrequency": "biweekly", "hs_recurring_billing_period": "P26W"}
            lines = [
                {
                    "name": "Hosting",
                    "hs_sku": "HOST",
                    "price": "50",
                    **monthly,
                    "hs_recurring_billing_start_date": "2026-04-01",
                },
                {"name": "Support", "hs_sku": "SUP", "price": "300", **quarterly, "hs_billing_start_delay_months": "1"},
                {"name": "Backups", "hs_sku": "BAK", "price": "5", **biweekly},
                {"name": "Setup", "hs_sku": "SET", "price": "500"},
            ]
            for properties in lines:
                hubspot.create_object("line_items", properties, [{"to_type": "deals", "to_id": deal["id"]}])
            read = crm.get_deal(str(deal["id"]))
            # a term that is not whole billing periods is a failed read naming the line
            bad = hubspot.create_object(
                "deals", {"dealname": "Bad", "pipeline": "default", "dealstage": "closedwon", "closedate": "2026-03-10"}
            )
            hubspot.create_object(
                "line_items",
                {
                    "name": "Odd",
                    "hs_sku": "ODD",
                    "recurringbillingfrequency": "quarterly",
                    "hs_recurring_billing_period": "P5M",
                },
                [{"to_type": "deals", "to_id": bad["id"]}],
            )
            with pytest.raises(ValidationFailed, match="not a whole number of quarterly billing periods"):
                crm.get_deal(str(bad["id"]))
        finally:
            server.stop()
    assert read is not None
    terms = {
        line.name: (line.recurring_frequency, line.recurring_start, line.recurring_periods) for line in read.line_items
    }
    assert terms == {
        "Hosting": ("monthly", date(2026, 4, 1), 12),
        "Support": ("quarterly", date(2026, 4, 10), 8),  # the close date + the 1-month delay
        "Backups": ("fortnightly", None, 13),
        "Setup": (None, None, None),
    }
    # Every exchange follows HubSpot's operations, and every line item answered carries the published formats
    contract = load("hubspot")
    violations = sorted({str(v) for exchange in recorder.exchanges for v in contract.check(exchange)})
    assert not violations, "\n".join(violations)
    schema = json.loads(OPERATIONS.read_text())["$defs"]["LineItemRecurringProperties"]
    validator = Draft202012Validator(schema)
    reads = [e for e in recorder.exchanges if e.path == "/crm/v3/objects/line_items/batch/read"]
    asked = {name for e in reads for name in json.loads(e.body)["properties"]}
    assert set(schema["properties"]) <= asked
    answered = [r["properties"] for e in reads for r in json.loads(e.response_body)["results"]]
    assert len(answered) == 5
    problems = [error.message for props in answered for error in validator.iter_errors(props)]
    assert not problems, problems
    # and the sandbox offers exactly the published billing frequencies
    options = [o["value"] for o in hubspot._properties["line_items"]["recurringbillingfrequency"]["options"]]  # noqa: SLF001
    assert [None, "", *options] == schema["properties"]["recurringbillingfrequency"]["enum"]
