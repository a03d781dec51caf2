"""End to end over HTTP: a won HubSpot deal with a monthly 12-month line and a one-off line becomes one Xero
invoice (the one-off line only) and one Xero repeating invoice; a redelivery makes neither again; an invoice the
schedule generates shows on the deal through the payment poller; the recurring line removed and the deal synced
again ends the schedule."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.stack_fixtures import FUNCTIONS_CLOCK, Loop, running_loop

pytestmark = pytest.mark.e2e
TODAY = datetime.now(UTC).date()


@pytest.fixture(scope="module")
def approved_loop() -> Iterator[Loop]:
    """The HubSpot -> Xero loop making AUTHORISED schedules (Xero generates approved invoices from them)."""
    with running_loop({**FUNCTIONS_CLOCK, "RECURRING_SCHEDULE_STATUS": "AUTHORISED"}) as started:
        yield started


def one_off_invoices(loop: Loop, deal_id: str) -> list[dict[str, Any]]:
    return [i for i in loop.xero.invoices() if str(i.get("Reference", "")).startswith(f"hubspot-deal-{deal_id} ")]


def schedules(loop: Loop, deal_id: str) -> list[dict[str, Any]]:
    return [r for r in loop.xero.repeating_invoices() if r.get("Reference") == f"hubspot-deal-{deal_id}/monthly"]


def test_a_recurring_line_becomes_one_repeating_invoice_ended_when_the_line_goes(approved_loop: Loop) -> None:
    loop = approved_loop
    loop.stack.run_schedule("PaymentPollerFunction")  # the first run sets the watermarks (CRM catch-up, invoices)
    for code, name, price in (("HOST-E2E", "Hosting", "50.00"), ("SETUP-E2E", "Setup", "500.00")):
        loop.xero.seed_item(
            Code=code, Name=name, SalesDetails={"UnitPrice": price, "AccountCode": "200", "TaxType": "OUTPUT2"}
        )
    # Given a deal with a one-off setup line and a monthly hosting line for 12 months, starting today
    company = loop.hubspot.create_object("companies", {"name": "Hosted Ltd", "country": "NZ"})
    deal = loop.hubspot.create_object(
        "deals",
        {
            "dealname": "Hosting contract",
            "amount": "500.00",
            "dealstage": "contractsent",
            "pipeline": "default",
            "deal_currency_code": "NZD",
            "closedate": TODAY.isoformat(),
        },
        associations=[{"to_type": "companies", "to_id": company["id"], "primary": True}],
    )
    to_deal = [{"to_type": "deals", "to_id": deal["id"]}]
    loop.hubspot.create_object(
        "line_items", {"name": "Setup", "hs_sku": "SETUP-E2E", "quantity": "1", "price": "500.00"}, to_deal
    )
    hosting = loop.hubspot.create_object(
        "line_items",
        {
            "name": "Hosting",
            "hs_sku": "HOST-E2E",
            "quantity": "1",
            "price": "50.00",
            "recurringbillingfrequency": "monthly",
            "hs_recurring_billing_period": "P12M",
            "hs_recurring_billing_start_date": TODAY.isoformat(),
        },
        to_deal,
    )
    loop.settle()
    # When the deal is won
    loop.hubspot.update_object("deals", deal["id"], {"dealstage": "closedwon"})
    loop.settle()
    # Then one invoice bills the setup line only, and one approved monthly template bills hosting for 12 months
    (invoice,) = one_off_invoices(loop, deal["id"])
    assert [line["ItemCode"] for line in invoice["LineItems"]] == ["SETUP-E2E"]
    (schedule,) = schedules(loop, deal["id"])
    assert schedule["Status"] == "AUTHORISED"
    assert (schedule["Schedule"]["Unit"], schedule["Schedule"]["Period"]) == ("MONTHLY", 1)
    assert [line["ItemCode"] for line in schedule["LineItems"]] == ["HOST-E2E"]
    props = loop.hubspot.get_object("deals", deal["id"])["properties"]  # type: ignore[index]
    assert props["closeloop_schedule_ids"] == schedule["RepeatingInvoiceID"]
    assert props["closeloop_next_invoice_date"] == TODAY.isoformat()
    assert props["closeloop_annual_value"] == "600.00"

    # When the deal is delivered again (the CRM catch-up re-reads the deal the write-back modified)
    loop.stack.run_schedule("PaymentPollerFunction")
    loop.settle()
    # Then nothing is made twice
    assert len(one_off_invoices(loop, deal["id"])) == 1
    assert len(schedules(loop, deal["id"])) == 1

    # When Xero generates today's invoice from the template and the payment poller runs
    (generated_id,) = loop.xero.generate_repeating_invoices(TODAY)
    loop.stack.run_schedule("PaymentPollerFunction")
    loop.settle()
    # Then the deal shows it as its latest scheduled invoice (the one-off invoice's properties stay its own)
    generated = next(i for i in loop.xero.invoices() if i["InvoiceID"] == generated_id)
    assert generated["Reference"] == f"hubspot-deal-{deal['id']}/monthly"
    props = loop.hubspot.get_object("deals", deal["id"])["properties"]  # type: ignore[index]
    assert props["closeloop_recurring_invoice_number"] == generated["InvoiceNumber"]
    assert props["closeloop_recurring_payment_status"] == "awaiting_payment"
    assert props["closeloop_recurring_amount_due"] == "57.50"
    assert props["closeloop_invoice_number"] == invoice["InvoiceNumber"]

    # When sales removes the hosting line and the deal is synced again
    loop.hubspot.archive_object("line_items", hosting["id"])
    loop.hubspot.update_object("deals", deal["id"], {"description": "hosting cancelled"})
    loop.stack.run_schedule("PaymentPollerFunction")  # the catch-up queues the changed deal
    loop.settle()
    # Then the template is deleted in Xero (its invoice stays) and the deal no longer names a schedule
    assert schedules(loop, deal["id"]) == [] or schedules(loop, deal["id"])[0]["Status"] == "DELETED"
    assert all(r["Status"] == "DELETED" for r in loop.xero.repeating_invoices())
    assert any(i["InvoiceID"] == generated_id for i in loop.xero.invoices())
    props = loop.hubspot.get_object("deals", deal["id"])["properties"]  # type: ignore[index]
    assert props.get("closeloop_schedule_ids", "") == ""  # HubSpot clears a property written empty
