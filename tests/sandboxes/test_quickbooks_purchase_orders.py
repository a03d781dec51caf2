"""QuickBooksSandbox's Vendor and PurchaseOrder over real HTTP: vendors created, read and queried by
DisplayName (unique across customers, vendors and employees), purchase orders created with their vendor,
AP account, item lines and DocNumber, read, queried by DocNumber and MetaData.LastUpdatedTime, replayed by
requestid, and refused as Intuit documents."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from closeloop_local.sandboxes.quickbooks import QuickBooksDriver, Record, serve
from tests.quickbooks_sandbox_client import Qbo, code_of, exact


@pytest.fixture
def books() -> Iterator[Qbo]:
    sandbox, server = serve()
    client = Qbo(sandbox, server).login()
    yield client
    client.http.close()
    server.stop()


def _vendor(books: Qbo, name: str = "Acme Supplies") -> str:
    reply = books.call("POST", "vendor", {"DisplayName": name})
    assert reply.status_code == 200, reply.text
    return str(reply.json()["Vendor"]["Id"])


def _item(books: Qbo) -> str:
    QuickBooksDriver(books.sandbox).seed_item("ANVIL", "Anvil", Decimal("60"))
    return str(books.sandbox.rows("Item")[-1]["Id"])


def _line(item_id: str, qty: str = "2", price: str = "35.50") -> dict[str, Any]:
    return {
        "DetailType": "ItemBasedExpenseLineDetail",
        "Amount": str(Decimal(qty) * Decimal(price)),
        "ItemBasedExpenseLineDetail": {"ItemRef": {"value": item_id}, "Qty": qty, "UnitPrice": price},
    }


def _order(books: Qbo, vendor_id: str, item_id: str, **fields: Any) -> dict[str, Any]:
    reply = books.call("POST", "purchaseorder", {"VendorRef": {"value": vendor_id}, "Line": [_line(item_id)], **fields})
    assert reply.status_code == 200, reply.text
    order: dict[str, Any] = exact(reply)["PurchaseOrder"]
    return order


def test_a_vendor_is_created_read_and_found_by_display_name(books: Qbo) -> None:
    # Given a vendor created by DisplayName
    vendor_id = _vendor(books, "Acme Supplies Ltd")
    # When it is read and queried by a DisplayName word
    read = books.call("GET", f"vendor/{vendor_id}").json()["Vendor"]
    found = books.query("select * from Vendor where DisplayName LIKE '%Acme%'").json()["QueryResponse"]
    # Then both answer it, active
    assert read["DisplayName"] == "Acme Supplies Ltd" and read["Active"] is True
    assert [v["Id"] for v in found["Vendor"]] == [vendor_id]


def test_a_vendor_name_taken_by_a_customer_or_a_vendor_is_6240(books: Qbo) -> None:
    # Given a customer "Northwind" and a vendor "Acme"
    QuickBooksDriver(books.sandbox).seed_customer("Northwind")
    _vendor(books, "Acme")
    # When vendors are created with those names (any case)
    as_customer = books.call("POST", "vendor", {"DisplayName": "northwind"})
    as_vendor = books.call("POST", "vendor", {"DisplayName": "ACME"})
    # Then QBO refuses both: DisplayName is unique across customers, vendors and employees
    assert (as_customer.status_code, code_of(as_customer)) == (400, "6240")
    assert (as_vendor.status_code, code_of(as_vendor)) == (400, "6240")


def test_a_purchase_order_is_created_open_with_the_ap_account_and_totals_and_read_back(books: Qbo) -> None:
    # Given a vendor and an item
    vendor_id, item_id = _vendor(books), _item(books)
    # When a purchase order is created without APAccountRef or POStatus
    made = _order(books, vendor_id, item_id, DocNumber="PO-1", PrivateNote="hubspot-deal-1-po-acme")
    # Then it is Open (QBO has no draft), credited to the company's only A/P account, its line numbered and
    # priced, its TotalAmt the lines' sum; a read answers the same
    assert made["POStatus"] == "Open"
    assert made["APAccountRef"] == {"value": "33", "name": "Accounts Payable (A/P)"}
    assert made["VendorRef"] == {"value": vendor_id, "name": "Acme Supplies"}
    assert made["TotalAmt"] == Decimal("71.00")
    line = made["Line"][0]
    assert line["Id"] == "1" and line["ItemBasedExpenseLineDetail"]["ItemRef"] == {"value": item_id, "name": "ANVIL"}
    assert line["ItemBasedExpenseLineDetail"]["UnitPrice"] == Decimal("35.50")
    assert made["CurrencyRef"] == {"value": "USD"} and made["PrivateNote"] == "hubspot-deal-1-po-acme"
    read = exact(books.call("GET", f"purchaseorder/{made['Id']}"))["PurchaseOrder"]
    assert read == made


def test_purchase_orders_are_queried_by_doc_number_and_last_updated_time(books: Qbo) -> None:
    # Given two purchase orders
    vendor_id, item_id = _vendor(books), _item(books)
    first = _order(books, vendor_id, item_id, DocNumber="PO-1")
    _order(books, vendor_id, item_id, DocNumber="PO-2")
    # When they are queried by DocNumber, by LastUpdatedTime, and by a field QBO does not filter on
    by_doc = books.query("select * from PurchaseOrder where DocNumber = 'PO-1'").json()["QueryResponse"]
    stamp = first["MetaData"]["LastUpdatedTime"]
    by_time = books.query(f"select * from PurchaseOrder where MetaData.LastUpdatedTime >= '{stamp}'").json()
    by_note = books.query("select * from PurchaseOrder where PrivateNote = 'x'")
    # Then the DocNumber finds the one, the time both, and PrivateNote is refused (4001)
    assert [o["DocNumber"] for o in by_doc["PurchaseOrder"]] == ["PO-1"]
    assert len(by_time["QueryResponse"]["PurchaseOrder"]) == 2
    assert (by_note.status_code, code_of(by_note)) == (400, "4001")


def test_a_purchase_order_create_is_replayed_by_requestid(books: Qbo) -> None:
    # Given a vendor and an item
    vendor_id, item_id = _vendor(books), _item(books)
    body = {"VendorRef": {"value": vendor_id}, "Line": [_line(item_id)], "DocNumber": "PO-9"}
    # When the same create is sent twice with one requestid
    first = books.call("POST", "purchaseorder", body, requestid="po-key-1")
    again = books.call("POST", "purchaseorder", body, requestid="po-key-1")
    # Then the second answers the first purchase order and none is added
    assert first.status_code == again.status_code == 200
    assert again.json()["PurchaseOrder"]["Id"] == first.json()["PurchaseOrder"]["Id"]
    assert len(books.sandbox.rows("PurchaseOrder")) == 1


def test_a_duplicate_or_too_long_doc_number_is_refused(books: Qbo) -> None:
    # Given a purchase order PO-1
    vendor_id, item_id = _vendor(books), _item(books)
    _order(books, vendor_id, item_id, DocNumber="PO-1")
    body = {"VendorRef": {"value": vendor_id}, "Line": [_line(item_id)]}
    # When another takes PO-1, and one a 22-character DocNumber
    duplicate = books.call("POST", "purchaseorder", {**body, "DocNumber": "PO-1"})
    too_long = books.call("POST", "purchaseorder", {**body, "DocNumber": "x" * 22})
    # Then QBO refuses them (6140, 2050); an invoice may still use PO-1 (each form numbers on its own)
    assert (duplicate.status_code, code_of(duplicate)) == (400, "6140")
    assert (too_long.status_code, code_of(too_long)) == (400, "2050")


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"VendorRef": None}, "2020"),
        ({"VendorRef": {"value": "999"}}, "610"),
        ({"APAccountRef": {"value": "7"}}, "2500"),
        ({"POStatus": "Draft"}, "2500"),
        ({"Line": []}, "6000"),
        ({"CurrencyRef": {"value": "EUR"}}, "6000"),
        ({"TxnDate": "2026-13-01"}, "2040"),
        ({"PrivateNote": "n" * 4001}, "2050"),
    ],
    ids=["no-vendor", "unknown-vendor", "not-payables", "draft", "no-lines", "other-currency", "bad-date", "long-note"],
)
def test_a_purchase_order_is_refused_as_intuit_documents(books: Qbo, change: dict[str, Any], code: str) -> None:
    # Given a vendor and an item
    vendor_id, item_id = _vendor(books), _item(books)
    body = {"VendorRef": {"value": vendor_id}, "Line": [_line(item_id)], **change}
    # When a purchase order breaking one rule is created
    reply = books.call("POST", "purchaseorder", {k: v for k, v in body.items() if v is not None})
    # Then QBO refuses it with the documented code, and nothing is stored
    assert (reply.status_code, code_of(reply)) == (400, code)
    assert books.sandbox.rows("PurchaseOrder") == []


def test_a_line_whose_amount_is_not_qty_times_price_or_names_no_item_is_refused(books: Qbo) -> None:
    # Given a vendor and an item
    vendor_id, item_id = _vendor(books), _item(books)
    wrong = {**_line(item_id), "Amount": "70"}
    sales = {"DetailType": "SalesItemLineDetail", "Amount": "1", "SalesItemLineDetail": {"ItemRef": {"value": item_id}}}
    # When lines with a wrong Amount, an unknown item and a sales detail are sent
    answers = [
        books.call("POST", "purchaseorder", {"VendorRef": {"value": vendor_id}, "Line": [line]})
        for line in (wrong, _line("999"), sales)
    ]
    # Then QBO refuses each: 6070, 610, 2500
    assert [code_of(a) for a in answers] == ["6070", "610", "2500"]


def test_a_sent_ap_account_is_kept_and_several_payables_need_one(books: Qbo) -> None:
    # Given a company with a second A/P account
    vendor_id, item_id = _vendor(books), _item(books)
    second = dict(books.sandbox.tables["Account"]["33"].data, Id="34", Name="A/P (EUR)")
    books.sandbox.tables["Account"]["34"] = Record(second, 99, 0.0, 0.0)
    body = {"VendorRef": {"value": vendor_id}, "Line": [_line(item_id)]}
    # When a purchase order names none, then one names the second
    implied = books.call("POST", "purchaseorder", body)
    named = books.call("POST", "purchaseorder", {**body, "APAccountRef": {"value": "34"}})
    # Then QBO cannot imply one among two (2020), and keeps the one named
    assert (implied.status_code, code_of(implied)) == (400, "2020")
    assert named.json()["PurchaseOrder"]["APAccountRef"] == {"value": "34", "name": "A/P (EUR)"}


def test_a_purchase_order_is_closed_by_a_sparse_update_at_its_sync_token(books: Qbo) -> None:
    # Given an open purchase order
    vendor_id, item_id = _vendor(books), _item(books)
    made = _order(books, vendor_id, item_id, DocNumber="PO-1")
    # When it is closed at its SyncToken, then again at the stale one
    closed = books.call(
        "POST", "purchaseorder", {"Id": made["Id"], "SyncToken": "0", "sparse": True, "POStatus": "Closed"}
    )
    stale = books.call(
        "POST", "purchaseorder", {"Id": made["Id"], "SyncToken": "0", "sparse": True, "POStatus": "Open"}
    )
    # Then it is Closed with its DocNumber kept, and the stale write is 5010
    assert closed.json()["PurchaseOrder"]["POStatus"] == "Closed"
    assert closed.json()["PurchaseOrder"]["DocNumber"] == "PO-1"
    assert (stale.status_code, code_of(stale)) == (400, "5010")


def test_a_category_line_needs_an_active_account(books: Qbo) -> None:
    # Given a vendor
    vendor_id = _vendor(books)

    def category(account: dict[str, str] | None) -> dict[str, Any]:
        detail = {"AccountRef": account} if account else {}
        return {
            "DetailType": "AccountBasedExpenseLineDetail",
            "Amount": "12.50",
            "AccountBasedExpenseLineDetail": detail,
        }

    # When category lines name no account, an unknown one, and Cost of Goods Sold
    answers = [
        books.call("POST", "purchaseorder", {"VendorRef": {"value": vendor_id}, "Line": [category(account)]})
        for account in (None, {"value": "999"}, {"value": "80"})
    ]
    # Then the first two are refused (2020, 2500) and the third kept with the account's name and its amount
    assert [a.status_code for a in answers] == [400, 400, 200]
    assert [code_of(a) for a in answers[:2]] == ["2020", "2500"]
    made = exact(answers[2])["PurchaseOrder"]
    assert made["Line"][0]["AccountBasedExpenseLineDetail"]["AccountRef"] == {
        "value": "80",
        "name": "Cost of Goods Sold",
    }
    assert made["TotalAmt"] == Decimal("12.50")
