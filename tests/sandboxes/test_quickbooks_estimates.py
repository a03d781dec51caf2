"""QuickBooksSandbox's Estimate over real HTTP: create, read, query and paging, sparse and full updates at the
SyncToken, TxnStatus, ExpirationDate, and an Invoice made from an estimate closing it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from closeloop_local.sandboxes.quickbooks import QuickBooksDriver, QuickBooksSandbox, serve
from tests.quickbooks_sandbox_client import Qbo, code_of, exact


@pytest.fixture
def books() -> Iterator[Qbo]:
    sandbox, server = serve()
    client = Qbo(sandbox, server).login()
    yield client
    client.http.close()
    server.stop()


def _line(qty: int = 2, price: str = "10", tax: str = "TAX") -> dict[str, Any]:
    amount = Decimal(price) * qty
    return {
        "DetailType": "SalesItemLineDetail",
        "Amount": str(amount),
        "SalesItemLineDetail": {
            "ItemRef": {"value": "1"},
            "Qty": qty,
            "UnitPrice": price,
            "TaxCodeRef": {"value": tax},
        },
    }


def _customer(sandbox: QuickBooksSandbox, name: str = "Buyer") -> str:
    driver = QuickBooksDriver(sandbox)
    if not sandbox.rows("Item"):
        driver.seed_item("WIDGET", "Widget", Decimal("10"))
    return driver.seed_customer(name, email=f"{name.lower()}@x.test")


def _estimate(books: Qbo, customer_id: str, **fields: Any) -> dict[str, Any]:
    body = {"CustomerRef": {"value": customer_id}, "Line": [_line()], **fields}
    reply = books.call("POST", "estimate", body)
    assert reply.status_code == 200, reply.text
    estimate: dict[str, Any] = exact(reply)["Estimate"]
    return estimate


def test_an_estimate_is_created_pending_with_its_totals_and_read_back(books: Qbo) -> None:
    # Given a customer and an item
    customer_id = _customer(books.sandbox)
    # When an estimate is created with a DocNumber, a note and an expiry
    made = _estimate(books, customer_id, DocNumber="Q-1", PrivateNote="hubspot-quote-7", ExpirationDate="2026-12-31")
    # Then it is Pending, with QBO's line numbering, per-line tax (TAX = 10 %) and TotalAmt, and no Balance
    assert made["TxnStatus"] == "Pending" and made["SyncToken"] == "0" and made["ExpirationDate"] == "2026-12-31"
    assert made["Line"][0]["LineNum"] == 1 and made["Line"][-1]["DetailType"] == "SubTotalLineDetail"
    assert made["TxnTaxDetail"] == {"TotalTax": Decimal("2.00")} and made["TotalAmt"] == Decimal("22.00")
    assert "Balance" not in made and made["LinkedTxn"] == []
    assert made["BillEmail"] == {"Address": "buyer@x.test"} and made["CurrencyRef"] == {"value": "USD"}
    # And a read by id answers the same estimate
    read = exact(books.call("GET", f"estimate/{made['Id']}"))["Estimate"]
    assert read == made
    assert books.sandbox.rows("Estimate") == [made]


def test_estimate_creates_refuse_what_qbo_refuses(books: Qbo) -> None:
    customer_id = _customer(books.sandbox)
    wrong_amount = _line()
    wrong_amount["Amount"] = "21"
    cases: list[tuple[dict[str, Any], str]] = [
        ({"CustomerRef": {"value": customer_id}, "Line": [wrong_amount]}, "6070"),
        ({"CustomerRef": {"value": customer_id}, "Line": []}, "6000"),  # at least one line
        ({"Line": [_line()]}, "610"),  # a customer
        ({"CustomerRef": {"value": customer_id}, "Line": [_line()], "TxnStatus": "Expired"}, "2500"),
        ({"CustomerRef": {"value": customer_id}, "Line": [_line()], "ExpirationDate": "31/12/2026"}, "2040"),
        ({"CustomerRef": {"value": customer_id}, "Line": [_line()], "DocNumber": "Q" * 22}, "2050"),
    ]
    for body, code in cases:
        reply = books.call("POST", "estimate", body)
        assert (reply.status_code, code_of(reply)) == (400, code), body
    # And a DocNumber is unique among estimates (not across invoices: each sales form has its own numbers)
    _estimate(books, customer_id, DocNumber="Q-1")
    duplicate = books.call(
        "POST", "estimate", {"CustomerRef": {"value": customer_id}, "Line": [_line()], "DocNumber": "Q-1"}
    )
    assert (duplicate.status_code, code_of(duplicate)) == (400, "6140")
    invoice = books.call(
        "POST", "invoice", {"CustomerRef": {"value": customer_id}, "Line": [_line()], "DocNumber": "Q-1"}
    )
    assert invoice.status_code == 200
    assert books.call("GET", "estimate/999").json()["Fault"]["Error"][0]["code"] == "610"


def test_estimates_are_queried_by_docnumber_customer_and_change_time_and_paged(books: Qbo) -> None:
    # Given five estimates of two customers, the last three made a minute later
    first, second = _customer(books.sandbox, "First"), _customer(books.sandbox, "Second")
    _estimate(books, first, DocNumber="Q-1")
    _estimate(books, second, DocNumber="Q-2")
    books.sandbox.state.clock.advance(60)
    later = [_estimate(books, first, DocNumber=f"Q-{n}") for n in (3, 4, 5)]
    stamp = later[0]["MetaData"]["LastUpdatedTime"]

    def ids(statement: str) -> list[str]:
        reply = books.query(statement)
        assert reply.status_code == 200, reply.text
        return [e["Id"] for e in reply.json()["QueryResponse"].get("Estimate", [])]

    # Then the filters the adapter needs answer the matching estimates
    assert ids("select * from Estimate where DocNumber = 'Q-2'") == [books.sandbox.rows("Estimate")[1]["Id"]]
    assert len(ids(f"select * from Estimate where CustomerRef = '{first}'")) == 4
    assert ids(f"select * from Estimate where MetaData.LastUpdatedTime >= '{stamp}'") == [e["Id"] for e in later]
    assert books.query("select count(*) from Estimate").json()["QueryResponse"]["totalCount"] == 5
    # And pages of STARTPOSITION/MAXRESULTS walk them in Id order, an empty page past the end
    page = books.query("select * from Estimate STARTPOSITION 3 MAXRESULTS 2").json()["QueryResponse"]
    assert (page["startPosition"], page["maxResults"]) == (3, 2)
    assert [e["DocNumber"] for e in page["Estimate"]] == ["Q-3", "Q-4"]
    assert books.query("select * from Estimate STARTPOSITION 6 MAXRESULTS 2").json()["QueryResponse"] == {}
    # But PrivateNote and TxnStatus are not filterable in QBO (4001), as for invoices
    for field in ("PrivateNote", "TxnStatus"):
        refused = books.query(f"select * from Estimate where {field} = 'x'")
        assert (refused.status_code, code_of(refused)) == (400, "4001")


def test_sparse_and_full_updates_need_the_current_synctoken_and_set_the_status(books: Qbo) -> None:
    customer_id = _customer(books.sandbox)
    made = _estimate(books, customer_id, DocNumber="Q-1", PrivateNote="note")
    # When the customer accepts it (a sparse update at the current SyncToken)
    accepted = books.call(
        "POST",
        "estimate",
        {"Id": made["Id"], "SyncToken": "0", "sparse": True, "TxnStatus": "Accepted", "AcceptedDate": "2026-11-02"},
    )
    assert accepted.status_code == 200, accepted.text
    estimate = exact(accepted)["Estimate"]
    # Then the status and date change, the rest stays, and the SyncToken moves on
    assert (estimate["TxnStatus"], estimate["AcceptedDate"], estimate["SyncToken"]) == ("Accepted", "2026-11-02", "1")
    assert (estimate["DocNumber"], estimate["PrivateNote"], estimate["TotalAmt"]) == ("Q-1", "note", Decimal("22.00"))
    # And the old SyncToken is the stale-object fault, an unknown Id 610, a status outside the enum 2500
    stale = books.call(
        "POST", "estimate", {"Id": made["Id"], "SyncToken": "0", "sparse": True, "TxnStatus": "Rejected"}
    )
    assert (stale.status_code, code_of(stale)) == (400, "5010")
    missing = books.call("POST", "estimate", {"Id": "999", "SyncToken": "0", "sparse": True})
    assert code_of(missing) == "610"
    bad = books.call("POST", "estimate", {"Id": made["Id"], "SyncToken": "1", "sparse": True, "TxnStatus": "Sent"})
    assert code_of(bad) == "2500"
    # When a full update sends new lines without the note, Then the note is cleared and the totals recomputed
    full = books.call(
        "POST",
        "estimate",
        {"Id": made["Id"], "SyncToken": "1", "CustomerRef": {"value": customer_id}, "Line": [_line(qty=3, tax="NON")]},
    )
    replaced = exact(full)["Estimate"]
    assert replaced["TotalAmt"] == Decimal("30.00") and "PrivateNote" not in replaced
    assert replaced["TxnStatus"] == "Pending"  # a full update without TxnStatus: QBO's default
    # And the UI's edit (a person rejecting it) goes through the same rules
    rejected = books.sandbox.edit("Estimate", made["Id"], TxnStatus="Rejected")
    assert (rejected["TxnStatus"], rejected["SyncToken"]) == ("Rejected", "3")


def test_an_invoice_linked_to_an_estimate_closes_it_and_is_linked_back(books: Qbo) -> None:
    # Given an accepted estimate
    customer_id = _customer(books.sandbox)
    made = _estimate(books, customer_id, TxnStatus="Accepted")
    # When an invoice is created from it (LinkedTxn to the estimate)
    body = {
        "CustomerRef": {"value": customer_id},
        "Line": [_line()],
        "LinkedTxn": [{"TxnId": made["Id"], "TxnType": "Estimate"}],
    }
    invoice = exact(books.call("POST", "invoice", body))["Invoice"]
    # Then the invoice keeps the link, and the estimate is Closed and links to the invoice, a new SyncToken
    assert invoice["LinkedTxn"] == [{"TxnId": made["Id"], "TxnType": "Estimate"}]
    closed = exact(books.call("GET", f"estimate/{made['Id']}"))["Estimate"]
    assert closed["TxnStatus"] == "Closed" and closed["SyncToken"] == "1"
    assert closed["LinkedTxn"] == [{"TxnId": invoice["Id"], "TxnType": "Invoice"}]
    # And an update of the estimate cannot drop that link (QBO keeps it)
    kept = books.call(
        "POST", "estimate", {"Id": made["Id"], "SyncToken": "1", "sparse": True, "LinkedTxn": [], "PrivateNote": "x"}
    )
    assert exact(kept)["Estimate"]["LinkedTxn"] == closed["LinkedTxn"]


def test_an_invoice_linked_to_an_unknown_or_foreign_estimate_is_refused_and_nothing_changes(books: Qbo) -> None:
    customer_id = _customer(books.sandbox)
    other = _customer(books.sandbox, "Other")
    made = _estimate(books, other)
    for link, code in ((made["Id"], "6000"), ("999", "610")):
        body = {
            "CustomerRef": {"value": customer_id},
            "Line": [_line()],
            "LinkedTxn": [{"TxnId": link, "TxnType": "Estimate"}],
        }
        reply = books.call("POST", "invoice", body)
        assert (reply.status_code, code_of(reply)) == (400, code)
    assert books.sandbox.rows("Invoice") == []
    assert books.sandbox.rows("Estimate")[0]["TxnStatus"] == "Pending"


def test_estimate_changes_reach_cdc_and_the_webhook_when_subscribed(books: Qbo) -> None:
    # Given an app subscribed to Estimate and Invoice changes (its endpoint refuses, so nothing is lost)
    books.sandbox.webhooks.subscribe("http://127.0.0.1:9/hook", ["Estimate", "Invoice"])
    customer_id = _customer(books.sandbox)
    made = _estimate(books, customer_id)
    body = {
        "CustomerRef": {"value": customer_id},
        "Line": [_line()],
        "LinkedTxn": [{"TxnId": made["Id"], "TxnType": "Estimate"}],
    }
    books.call("POST", "invoice", body)
    # When the window closes
    books.sandbox.webhooks.flush()
    # Then one CloudEvents delivery holds the estimate's create, the invoice's create and the estimate's close
    delivery = books.sandbox.webhooks.deliveries[0]
    events = [(e["type"], e["intuitentityid"]) for e in json.loads(delivery["body"])]
    invoice_id = books.sandbox.rows("Invoice")[0]["Id"]
    assert events == [
        ("qbo.estimate.created.v1", made["Id"]),
        ("qbo.invoice.created.v1", invoice_id),
        ("qbo.estimate.updated.v1", made["Id"]),
    ]
    # And CDC lists the estimate
    since = made["MetaData"]["CreateTime"]
    cdc = books.call("GET", "cdc", entities="Estimate", changedSince=since).json()
    assert [e["Id"] for e in cdc["CDCResponse"][0]["QueryResponse"][0]["Estimate"]] == [made["Id"]]
