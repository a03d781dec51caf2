"""The sandbox's recurring invoices, purchase orders and vendor contacts held against the contract written from
Zoho's pages (operations.json: Recurring Invoices, Purchase Order, Contacts). No adapter sends these yet: the
requests are the ones an adapter would send, so both sides of every exchange are checked."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from closeloop_local.sandboxes.base import Exchange, recording
from closeloop_local.sandboxes.zohobooks import ZohoBooksSandbox, serve
from tests.contracts.contract import load
from tests.zohobooks_sandbox_client import VAT20, Books


def _exchanges() -> list[Exchange]:
    """A vendor, a purchase order's life and a recurring invoice's life, refusals included."""
    with recording() as recorder:
        zoho, server = serve(ZohoBooksSandbox(minute_limit=10_000, day_limit=100_000))
        try:
            books = Books(zoho, server.url)
            today = datetime.fromtimestamp(zoho.state.clock.now(), UTC).date()
            customer = zoho.seed_contact(contact_name="Acme Ltd")
            item = zoho.seed_item(
                sku="W", name="Widget", rate="12.5", purchase_rate="4", item_type="sales_and_purchases"
            )
            vendor = books.call("POST", "/contacts", {"contact_name": "Supplies Co", "contact_type": "vendor"}).json()
            books.call("POST", "/contacts", {"contact_name": "Supplies Co", "contact_type": "vendor"})
            books.call("GET", "/contacts", params={"contact_type": "vendor"})
            line = {"item_id": item["item_id"], "quantity": 3, "rate": 4, "account_id": "982000000000567"}
            order_body = {
                "vendor_id": vendor["contact"]["contact_id"],
                "reference_number": "deal 7",
                "line_items": [line],
            }
            order = books.call("POST", "/purchaseorders", order_body).json()["purchaseorder"]
            books.call("POST", "/purchaseorders", {**order_body, "vendor_id": customer["contact_id"]})
            pid = order["purchaseorder_id"]
            books.call("GET", "/purchaseorders", params={"reference_number": "deal 7"})
            books.call("GET", f"/purchaseorders/{pid}")
            books.call("PUT", f"/purchaseorders/{pid}", {"line_items": [{**line, "quantity": 5, "tax_id": VAT20}]})
            books.call("POST", f"/purchaseorders/{pid}/status/billed")
            books.call("POST", f"/purchaseorders/{pid}/status/open")
            books.call("POST", f"/purchaseorders/{pid}/status/billed")
            other = books.call("POST", "/purchaseorders", order_body).json()["purchaseorder"]["purchaseorder_id"]
            books.call("POST", f"/purchaseorders/{other}/status/cancelled")
            books.call("DELETE", f"/purchaseorders/{other}")
            books.call("GET", "/purchaseorders/404")
            profile_body = {
                "recurrence_name": "Deal 7 monthly",
                "customer_id": customer["contact_id"],
                "recurrence_frequency": "months",
                "repeat_every": 1,
                "start_date": today.isoformat(),
                "end_date": (today + timedelta(days=365)).isoformat(),
                "reference_number": "deal 7",
                "currency_code": "GBP",
                "payment_terms": 14,
                "line_items": [{"item_id": item["item_id"], "rate": 12.5, "quantity": 2, "tax_id": VAT20}],
            }
            profile = books.call("POST", "/recurringinvoices", profile_body).json()["recurring_invoice"]
            books.call("POST", "/recurringinvoices", profile_body)
            rid = profile["recurring_invoice_id"]
            books.call("GET", "/recurringinvoices", params={"recurrence_name": "Deal 7 monthly"})
            books.call("GET", f"/recurringinvoices/{rid}")
            books.call("PUT", f"/recurringinvoices/{rid}", {"end_date": (today + timedelta(days=730)).isoformat()})
            books.call("POST", f"/recurringinvoices/{rid}/status/stop")
            books.call("POST", f"/recurringinvoices/{rid}/status/resume")
            books.call("POST", f"/recurringinvoices/{rid}/status/resume")
            zoho.run_recurring(today)
            books.call("GET", "/invoices", params={"recurring_invoice_id": rid})
            books.call("DELETE", f"/recurringinvoices/{rid}")
            books.call("GET", f"/recurringinvoices/{rid}")
        finally:
            server.stop()
    return [e for e in recorder.exchanges if e.path.startswith("/books/v3/")]


def test_every_schedule_purchase_and_vendor_exchange_follows_zoho_s_pages() -> None:
    # Given the exchanges of a vendor, a purchase order's and a recurring invoice's life
    exchanges = _exchanges()
    contract = load("zohobooks")
    operations = {op.name for e in exchanges if (op := contract.operation(e.method, e.path)) is not None}
    assert {o for o in operations if "recurringinvoices" in o or "purchaseorders" in o} == {
        "GET /books/v3/recurringinvoices",
        "POST /books/v3/recurringinvoices",
        "GET /books/v3/recurringinvoices/{recurring_invoice_id}",
        "PUT /books/v3/recurringinvoices/{recurring_invoice_id}",
        "DELETE /books/v3/recurringinvoices/{recurring_invoice_id}",
        "POST /books/v3/recurringinvoices/{recurring_invoice_id}/status/stop",
        "POST /books/v3/recurringinvoices/{recurring_invoice_id}/status/resume",
        "GET /books/v3/purchaseorders",
        "POST /books/v3/purchaseorders",
        "GET /books/v3/purchaseorders/{purchaseorder_id}",
        "PUT /books/v3/purchaseorders/{purchaseorder_id}",
        "DELETE /books/v3/purchaseorders/{purchaseorder_id}",
        "POST /books/v3/purchaseorders/{purchaseorder_id}/status/open",
        "POST /books/v3/purchaseorders/{purchaseorder_id}/status/billed",
        "POST /books/v3/purchaseorders/{purchaseorder_id}/status/cancelled",
    }
    assert {"POST /books/v3/contacts", "GET /books/v3/contacts", "GET /books/v3/invoices"} <= operations
    # When each is held against the contract
    violations = [str(v) for exchange in exchanges for v in contract.check(exchange)]
    # Then none departs from it: the refusals too are Zoho's error envelope
    assert violations == []
    assert {e.status for e in exchanges} == {200, 201, 400, 404}


def _check(path: str, body: object, answer: object, status: int = 201) -> list[str]:
    exchange = Exchange(
        host="127.0.0.1:1",
        method="POST",
        path=path,
        query="",
        headers={"content-type": "application/json"},
        body=json.dumps(body).encode(),
        status=status,
        response_headers={"content-type": "application/json"},
        response_body=json.dumps(answer).encode(),
    )
    return [v.message for v in load("zohobooks").check(exchange)]


def test_a_profile_without_a_frequency_or_with_an_unknown_one_is_a_violation() -> None:
    path = "/books/v3/recurringinvoices"
    good = {
        "recurrence_name": "n",
        "customer_id": "1",
        "recurrence_frequency": "weeks",
        "line_items": [{"item_id": "1"}],
    }
    answer = {
        "code": 0,
        "message": "ok",
        "recurring_invoice": {"recurring_invoice_id": "1", "recurrence_name": "n", "status": "active"},
    }
    assert _check(path, good, answer) == []
    assert any("recurrence_frequency" in m for m in _check(path, {**good, "recurrence_frequency": None}, answer))
    assert _check(path, {k: v for k, v in good.items() if k != "recurrence_frequency"}, answer)
    assert _check(path, {**good, "recurrence_frequency": "fortnights"}, answer)
    assert _check(path, {**good, "every": 2}, answer)
    paused = {"recurring_invoice_id": "1", "recurrence_name": "n", "status": "paused"}
    assert _check(path, good, {**answer, "recurring_invoice": paused})


def test_a_purchase_order_without_a_vendor_or_lines_is_a_violation() -> None:
    path = "/books/v3/purchaseorders"
    good = {"vendor_id": "1", "line_items": [{"item_id": "1", "rate": 4, "quantity": 1, "account_id": "2"}]}
    answer = {
        "code": 0,
        "message": "ok",
        "purchaseorder": {"purchaseorder_id": "1", "purchaseorder_number": "PO-1", "status": "draft"},
    }
    assert _check(path, good, answer) == []
    assert _check(path, {"line_items": good["line_items"]}, answer)
    assert _check(path, {**good, "line_items": []}, answer)
    assert _check(path, {**good, "supplier": "x"}, answer)
    assert _check(path, good, {"code": 0, "message": "ok", "purchaseorder": {"purchaseorder_id": "1"}})
