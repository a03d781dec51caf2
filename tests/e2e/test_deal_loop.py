"""End to end over HTTP: a won HubSpot deal becomes one Xero invoice; a payment flows back to the deal."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal
from io import BytesIO
from typing import Any

import httpx
import openpyxl
import pytest

from closeloop.models import CrmRef
from tests.stack_fixtures import Loop

pytestmark = pytest.mark.e2e
TODAY = datetime.now(UTC).date()

ITEMS = {
    "ANV-1": ("Anvil", "99.50"),
    "RKT-2": ("Rocket skates", "500.00"),
    "SVC-SETUP": ("Setup, per hour", "176.10"),
}


def seed_items(loop: Loop) -> None:
    existing = {i["Code"] for i in loop.xero.items()}
    for code, (name, price) in ITEMS.items():
        if code not in existing:
            loop.xero.seed_item(
                Code=code, Name=name, SalesDetails={"UnitPrice": price, "AccountCode": "200", "TaxType": "OUTPUT2"}
            )


def won_deal(
    loop: Loop, name: str, lines: list[tuple[str, str, str]], amount: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A company and a deal with line items, moved to closedwon as a rep would."""
    company = loop.hubspot.create_object("companies", {"name": f"{name} Holdings", "country": "NZ"})
    deal = loop.hubspot.create_object(
        "deals",
        {
            "dealname": name,
            "amount": amount,
            "dealstage": "contractsent",
            "pipeline": "default",
            "deal_currency_code": "NZD",
            "closedate": TODAY.isoformat(),
        },
        associations=[{"to_type": "companies", "to_id": company["id"], "primary": True}],
    )
    for sku, quantity, price in lines:
        loop.hubspot.create_object(
            "line_items",
            {"name": ITEMS[sku][0], "hs_sku": sku, "quantity": quantity, "price": price},
            associations=[{"to_type": "deals", "to_id": deal["id"]}],
        )
    loop.settle()
    loop.hubspot.update_object("deals", deal["id"], {"dealstage": "closedwon"})
    loop.settle()
    return company, deal


def invoices_for(loop: Loop, deal_id: object) -> list[dict[str, Any]]:
    return [i for i in loop.xero.invoices() if str(i.get("Reference", "")).startswith(f"hubspot-deal-{deal_id} ")]


def test_won_deal_with_three_lines_gives_one_matching_invoice_written_back(loop: Loop) -> None:
    seed_items(loop)
    # Given a deal of 3 lines (298.50 + 500.00 + 440.25 = 1238.75 before 15% GST)
    _, deal = won_deal(
        loop,
        "Roadrunner",
        [("ANV-1", "3", "99.50"), ("RKT-2", "1", "500.00"), ("SVC-SETUP", "2.5", "176.10")],
        "1238.75",
    )
    # Then Xero holds exactly one invoice with the same codes, quantities, prices, tax and total
    (invoice,) = invoices_for(loop, deal["id"])
    lines = [
        (li["ItemCode"], Decimal(str(li["Quantity"])), Decimal(str(li["UnitAmount"])), li["TaxType"])
        for li in invoice["LineItems"]
    ]
    assert lines == [
        ("ANV-1", Decimal(3), Decimal("99.50"), "OUTPUT2"),
        ("RKT-2", Decimal(1), Decimal("500.00"), "OUTPUT2"),
        ("SVC-SETUP", Decimal("2.5"), Decimal("176.10"), "OUTPUT2"),
    ]
    assert Decimal(str(invoice["SubTotal"])) == Decimal("1238.75")
    assert Decimal(str(invoice["Total"])) == Decimal(str(invoice["SubTotal"])) + Decimal(str(invoice["TotalTax"]))
    assert invoice["Type"] == "ACCREC"
    # And the invoice links back to the deal in the HubSpot account (portal id from account-info)
    assert invoice["Url"] == f"https://app.hubspot.com/contacts/{loop.hubspot.portal_id}/record/0-3/{deal['id']}"
    # And the deal carries the invoice number, link, status and amount due, with no discrepancy
    props = loop.hubspot.get_object("deals", deal["id"])["properties"]
    assert props["closeloop_invoice_number"] == invoice["InvoiceNumber"]
    assert props["closeloop_invoice_status"] == "DRAFT"
    assert Decimal(props["closeloop_amount_due"]) == Decimal(str(invoice["AmountDue"]))
    assert props.get("closeloop_sync_issue", "") == ""


def test_duplicate_concurrent_and_re_entering_won_deliveries_leave_one_invoice(loop: Loop) -> None:
    seed_items(loop)
    _, deal = won_deal(loop, "Coyote", [("ANV-1", "1", "99.50")], "99.50")
    won = next(
        d
        for d in reversed(loop.hubspot.deliveries)
        if f'"objectId":{deal["id"]}' in d["body"] and "closedwon" in d["body"]
    )
    with httpx.Client(timeout=10) as client:
        for _ in range(5):
            client.post(won["url"], content=won["body"], headers=won["headers"]).raise_for_status()
        with ThreadPoolExecutor(max_workers=5) as pool:
            list(pool.map(lambda _: client.post(won["url"], content=won["body"], headers=won["headers"]), range(5)))
    loop.stack.drain(timeout=60)
    # And the deal leaves the won stage and comes back
    loop.hubspot.update_object("deals", deal["id"], {"dealstage": "contractsent"})
    loop.hubspot.update_object("deals", deal["id"], {"dealstage": "closedwon"})
    loop.settle()
    assert len(invoices_for(loop, deal["id"])) == 1


def test_amount_difference_is_flagged_on_the_deal(loop: Loop) -> None:
    seed_items(loop)
    _, deal = won_deal(loop, "Acme Rockets", [("RKT-2", "2", "500.00")], "999.99")
    props = loop.hubspot.get_object("deals", deal["id"])["properties"]
    assert "0.01" in props["closeloop_sync_issue"]
    audit = loop.store.list_audit(CrmRef(crm="hubspot", object_type="deal", object_id=str(deal["id"])))
    assert [a.action for a in audit] == ["invoiced", "flagged"]


def test_unknown_sku_is_a_failed_sync_naming_it(loop: Loop) -> None:
    seed_items(loop)
    company = loop.hubspot.create_object("companies", {"name": "Nowhere Ltd"})
    deal = loop.hubspot.create_object(
        "deals",
        {
            "dealname": "Mystery",
            "amount": "5",
            "dealstage": "closedwon",
            "pipeline": "default",
            "deal_currency_code": "NZD",
            "closedate": TODAY.isoformat(),
        },
        associations=[{"to_type": "companies", "to_id": company["id"], "primary": True}],
    )
    loop.hubspot.create_object(
        "line_items",
        {"name": "?", "hs_sku": "NOT-A-SKU", "quantity": "1", "price": "5"},
        associations=[{"to_type": "deals", "to_id": deal["id"]}],
    )
    loop.hubspot.update_object("deals", deal["id"], {"dealstage": "closedlost"})
    loop.hubspot.update_object("deals", deal["id"], {"dealstage": "closedwon"})
    loop.settle()
    failure = loop.store.get_failed_sync(CrmRef(crm="hubspot", object_type="deal", object_id=str(deal["id"])))
    assert failure is not None
    assert "NOT-A-SKU" in failure.reason
    assert invoices_for(loop, deal["id"]) == []


def test_payment_in_xero_shows_on_the_deal_after_one_poller_run_with_calls_proportional_to_changes(loop: Loop) -> None:
    seed_items(loop)
    company, deal = won_deal(loop, "Marvin", [("ANV-1", "2", "99.50")], "199.00")
    (invoice,) = invoices_for(loop, deal["id"])
    loop.stack.run_schedule("PaymentPollerFunction")  # catch up: the watermark now stands after every invoice
    # Given finance approves the invoice and records a part payment in Xero
    loop.approve_and_pay(invoice["InvoiceID"], "100.00", "2026-11-20")
    before = len(loop.xero.state.calls("GET", "/api.xro/2.0/Invoices*"))
    # When the poller runs once
    result = loop.stack.run_schedule("PaymentPollerFunction")
    # Then the deal shows it, and the run read the changes with one call (one page of changes)
    props = loop.hubspot.get_object("deals", deal["id"])["properties"]
    assert props["closeloop_payment_status"] == "partially_paid"
    assert props["closeloop_amount_paid"] == "100.00"
    assert props["closeloop_last_payment_date"] == "2026-11-20"
    assert len(loop.xero.state.calls("GET", "/api.xro/2.0/Invoices*")) - before == 1
    assert result["deals_updated"] == 1
    company_props = loop.hubspot.get_object("companies", company["id"])["properties"]
    assert Decimal(company_props["closeloop_total_paid"]) == Decimal("100.00")


def test_the_months_report_lists_each_planted_discrepancy_once_and_its_link_downloads(loop: Loop) -> None:
    # Given the deals above (an amount difference, an unknown SKU) and an invoice finance made by hand
    seed_items(loop)
    client = loop.finance()
    try:
        contact = client.put("/api.xro/2.0/Contacts", json={"Contacts": [{"Name": "Walk-in Customer"}]}).json()
        manual = {
            "Type": "ACCREC",
            "Contact": {"ContactID": contact["Contacts"][0]["ContactID"]},
            "Date": TODAY.isoformat(),
            "DueDate": TODAY.isoformat(),
            "Reference": "counter sale",
            "LineItems": [{"ItemCode": "ANV-1", "Quantity": 1}],
            "Status": "AUTHORISED",
        }
        client.put("/api.xro/2.0/Invoices", json={"Invoices": [manual]}).raise_for_status()
    finally:
        client.close()
    # When the month is reconciled
    result = loop.stack.invoke("ReconcileFunction", {"month": TODAY.strftime("%Y-%m")})
    # Then the link downloads a workbook that lists each planted discrepancy once, with its type
    workbook = openpyxl.load_workbook(BytesIO(httpx.get(result["url"], timeout=10).content), read_only=True)
    rows = list(workbook["Discrepancies"].iter_rows(values_only=True))
    header, body = rows[0], rows[1:]
    kind = header.index("Type") if "Type" in header else 0
    found = [(str(r[kind]), " ".join(str(c) for c in r if c is not None)) for r in body]
    assert sum(1 for k, text in found if k == "amount_mismatch" and "Acme Rockets" in text) == 1
    assert sum(1 for k, text in found if k == "won_deal_without_invoice" and "Mystery" in text) == 1
    assert sum(1 for k, text in found if k == "failed_sync" and "NOT-A-SKU" in text) == 1
    assert sum(1 for k, _ in found if k == "invoice_without_deal") == 1
    assert result["keys"] == [
        f"reports/{TODAY:%Y-%m}/{n}" for n in ("discrepancies.csv", "reconciliation.xlsx", "summary.html")
    ]


def test_worker_killed_after_the_invoice_was_created_before_the_mapping_leaves_one_invoice(
    loop: Loop, monkeypatch: pytest.MonkeyPatch
) -> None:
    from closeloop.store import DynamoStore

    seed_items(loop)
    real_put = DynamoStore.put_mapping
    crashes: list[str] = []

    def crash_once_on_the_deal(self: DynamoStore, mapping: Any) -> None:
        if mapping.ref.object_type == "deal" and not crashes:
            crashes.append(mapping.ref.object_id)
            raise RuntimeError("the Lambda was killed")  # unexpected: the message comes back, nothing is done
        real_put(self, mapping)

    # Given the worker dies right after Xero answered the create (the handlers run in this process)
    monkeypatch.setattr(DynamoStore, "put_mapping", crash_once_on_the_deal)
    _, deal = won_deal(loop, "Wile E", [("ANV-1", "1", "99.50")], "99.50")
    loop.stack.drain(timeout=60)
    # Then the redelivered message found the invoice by its Reference: one invoice, mapped, written back
    assert crashes == [str(deal["id"])]
    assert len(invoices_for(loop, deal["id"])) == 1
    assert loop.store.get_mapping(CrmRef(crm="hubspot", object_type="deal", object_id=str(deal["id"])), "xero")
    assert loop.hubspot.get_object("deals", deal["id"])["properties"]["closeloop_invoice_number"]


def test_a_crashing_invocation_fails_its_batch_and_the_stack_keeps_consuming(
    loop: Loop, monkeypatch: pytest.MonkeyPatch
) -> None:
    from closeloop.store import DynamoStore

    seed_items(loop)
    real_put = DynamoStore.put_mapping
    crashes: list[str] = []

    def exit_once(self: DynamoStore, mapping: Any) -> None:
        if mapping.ref.object_type == "deal" and not crashes:
            crashes.append(mapping.ref.object_id)
            raise SystemExit(137)  # the runtime process dies mid-invocation
        real_put(self, mapping)

    monkeypatch.setattr(DynamoStore, "put_mapping", exit_once)
    _, deal = won_deal(loop, "Sam Sheepdog", [("ANV-1", "1", "99.50")], "99.50")
    loop.stack.drain(timeout=60)
    assert crashes and len(invoices_for(loop, deal["id"])) == 1
