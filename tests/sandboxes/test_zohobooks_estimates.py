"""The Zoho Books sandbox's estimates over HTTP: create, get, list with filters and paging, update, the status
moves (and the refused ones), expiry, and an invoice made from an estimate marking it invoiced."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from closeloop_local.sandboxes.zohobooks import TAXES, ZohoBooksSandbox, serve
from tests.zohobooks_sandbox_client import Books, decimal_json

VAT20 = next(tax_id for tax_id, (_, rate) in TAXES.items() if rate == Decimal("20"))


@pytest.fixture
def books() -> Iterator[Books]:
    zoho, server = serve(ZohoBooksSandbox(minute_limit=10_000, day_limit=100_000))
    yield Books(zoho, server.url)
    server.stop()


def _seed(zoho: ZohoBooksSandbox, name: str = "Acme") -> tuple[str, str]:
    customer = zoho.seed_contact(contact_name=name)
    items = [i for i in zoho.items() if i["sku"] == "WIDGET"]
    item = items[0] if items else zoho.seed_item(sku="WIDGET", name="Widget", rate="19.99")
    return str(customer["contact_id"]), str(item["item_id"])


def _body(customer_id: str, item_id: str, **kw: Any) -> dict[str, Any]:
    line = {"item_id": item_id, "quantity": 3, "rate": 19.99, "discount": "10%", "tax_id": VAT20}
    return {"customer_id": customer_id, "line_items": [line], "date": "2026-01-10", "expiry_date": "2026-02-09", **kw}


def _create(books: Books, body: dict[str, Any]) -> dict[str, Any]:
    reply = books.call("POST", "/estimates", body)
    assert reply.status_code == 201, reply.text
    estimate: dict[str, Any] = decimal_json(reply)["estimate"]
    return estimate


def test_an_estimate_is_created_as_a_draft_with_exact_totals_and_read_back(books: Books) -> None:
    customer_id, item_id = _seed(books.zoho)
    # When an estimate is created with a reference and an expiry
    made = _create(books, _body(customer_id, item_id, reference_number="hubspot-quote-7", notes="Thanks"))
    # Then it is a numbered draft with Zoho's per-line totals (3 x 19.99 less 10 % = 53.97, VAT 20 % = 10.79)
    assert (made["status"], made["estimate_number"], made["expiry_date"]) == ("draft", "EST-000001", "2026-02-09")
    assert (made["sub_total"], made["tax_total"], made["total"]) == (
        Decimal("53.97"),
        Decimal("10.79"),
        Decimal("64.76"),
    )
    assert made["line_items"][0]["item_total"] == Decimal("53.97") and made["currency_code"] == "GBP"
    # And a get answers the same estimate
    read = books.call("GET", f"/estimates/{made['estimate_id']}")
    assert read.status_code == 200 and decimal_json(read)["estimate"] == made


def test_estimate_creates_and_reads_refuse_as_zoho_does(books: Books) -> None:
    customer_id, item_id = _seed(books.zoho)
    cases: list[tuple[dict[str, Any], int, int]] = [
        ({"customer_id": customer_id, "line_items": []}, 400, 4),
        (_body("999", item_id), 400, 4),
        (_body(customer_id, "999"), 400, 4),
        (_body(customer_id, item_id, expiry_date="2026-01-01"), 400, 4),  # before the estimate's date
        (_body(customer_id, item_id, expiry_date="soon"), 400, 4),
    ]
    for body, status, code in cases:
        reply = books.call("POST", "/estimates", body)
        assert (reply.status_code, reply.json()["code"]) == (status, code), body
    # And a number of our own needs ignore_auto_number_generation, and must be free (1001)
    numbered = _body(customer_id, item_id, estimate_number="Q-1")
    params = {"ignore_auto_number_generation": "true"}
    assert books.call("POST", "/estimates", numbered, params=params).status_code == 201
    taken = books.call("POST", "/estimates", numbered, params=params)
    assert (taken.status_code, taken.json()) == (400, {"code": 1001, "message": "Estimate Number already exist"})
    missing = books.call("GET", "/estimates/999")
    assert (missing.status_code, missing.json()) == (404, {"code": 1002, "message": "Estimate does not exist."})
    assert books.call("PUT", "/estimates/999", _body(customer_id, item_id)).json()["code"] == 1002
    assert books.call("POST", "/estimates/999/status/sent").json()["code"] == 1002


def test_estimates_are_listed_by_reference_customer_and_change_time_and_paged(books: Books) -> None:
    # Given five estimates of two customers, the last three made a minute later
    first, item_id = _seed(books.zoho)
    second, _ = _seed(books.zoho, "Bolt")
    _create(books, _body(first, item_id, reference_number="r1"))
    _create(books, _body(second, item_id, reference_number="r2"))
    books.zoho.state.clock.advance(60)
    later = [_create(books, _body(first, item_id, reference_number=f"r{n}")) for n in (3, 4, 5)]

    def numbers(**params: str) -> list[str]:
        reply = books.call("GET", "/estimates", params=params)
        assert reply.status_code == 200, reply.text
        return [e["estimate_number"] for e in reply.json()["estimates"]]

    # Then the adapter's filters answer the matching rows (summaries: no line items), newest first by default
    assert numbers(reference_number="r2") == ["EST-000002"]
    assert numbers(customer_id=first) == ["EST-000005", "EST-000004", "EST-000003", "EST-000001"]
    since = later[0]["last_modified_time"]
    assert numbers(last_modified_time=since, sort_column="created_time", sort_order="A") == [
        "EST-000003",
        "EST-000004",
        "EST-000005",
    ]
    rows = books.call("GET", "/estimates").json()["estimates"]
    assert all("line_items" not in row for row in rows)
    # And pages of per_page carry page_context.has_more_page
    page = books.call("GET", "/estimates", params={"per_page": "2", "page": "3"}).json()
    assert [e["estimate_number"] for e in page["estimates"]] == ["EST-000001"]
    assert page["page_context"]["has_more_page"] is False
    assert books.call("GET", "/estimates", params={"per_page": "2"}).json()["page_context"]["has_more_page"]
    assert books.call("GET", "/estimates", params={"sort_column": "balance"}).json()["code"] == 4


def test_an_update_replaces_lines_and_keeps_number_and_status(books: Books) -> None:
    customer_id, item_id = _seed(books.zoho)
    made = _create(books, _body(customer_id, item_id))
    books.call("POST", f"/estimates/{made['estimate_id']}/status/sent")
    books.zoho.state.clock.advance(5)
    # When a line and the expiry are changed
    changed = _body(customer_id, item_id, expiry_date="2099-03-01")
    changed["line_items"] = [{"item_id": item_id, "quantity": 1, "rate": 100}]
    reply = books.call("PUT", f"/estimates/{made['estimate_id']}", changed)
    assert reply.status_code == 200, reply.text
    estimate = decimal_json(reply)["estimate"]
    # Then the totals follow, the number and the sent status stay, and the change time moves
    assert (estimate["total"], estimate["expiry_date"]) == (Decimal("100.00"), "2099-03-01")
    assert (estimate["estimate_number"], estimate["status"]) == (made["estimate_number"], "sent")
    assert estimate["last_modified_time"] > made["last_modified_time"]


def test_status_moves_follow_zoho_and_the_others_are_refused(books: Books) -> None:
    customer_id, item_id = _seed(books.zoho)
    made = _create(books, _body(customer_id, item_id, expiry_date="2099-12-31"))
    path = f"/estimates/{made['estimate_id']}/status"

    def status() -> str:
        return str(books.call("GET", f"/estimates/{made['estimate_id']}").json()["estimate"]["status"])

    # A draft can be neither accepted nor declined
    for move in ("accepted", "declined"):
        refused = books.call("POST", f"{path}/{move}")
        assert (refused.status_code, refused.json()["code"]) == (400, 4)
    assert status() == "draft"
    # When it is sent, then accepted, each answer is Zoho's message
    sent = books.call("POST", f"{path}/sent")
    assert sent.json() == {"code": 0, "message": "Estimate status has been changed to Sent."}
    assert books.call("POST", f"{path}/sent").status_code == 200  # the status it has: a no-op
    accepted = books.call("POST", f"{path}/accepted")
    assert accepted.json() == {"code": 0, "message": "Estimate status has been changed to Accepted."}
    assert status() == "accepted"
    # Then an accepted estimate can be neither declined nor sent again
    for move in ("declined", "sent"):
        assert books.call("POST", f"{path}/{move}").status_code == 400
    # And a second estimate, sent then declined, reads declined
    other = _create(books, _body(customer_id, item_id))
    books.zoho.move_estimate(other["estimate_id"], "sent")
    declined = books.call("POST", f"/estimates/{other['estimate_id']}/status/declined")
    assert declined.json()["message"] == "Estimate status has been changed to Declined."


def test_a_sent_estimate_past_its_expiry_reads_expired_without_a_change_time(books: Books) -> None:
    customer_id, item_id = _seed(books.zoho)
    made = _create(books, _body(customer_id, item_id, date="2000-01-01", expiry_date="2000-01-31"))
    assert made["status"] == "draft"  # a draft does not expire
    books.zoho.move_estimate(made["estimate_id"], "sent")
    read = books.call("GET", f"/estimates/{made['estimate_id']}").json()["estimate"]
    assert read["status"] == "expired"
    assert [e["estimate_id"] for e in books.call("GET", "/estimates", params={"status": "expired"}).json()["estimates"]]
    # And the customer can still accept it
    assert books.call("POST", f"/estimates/{made['estimate_id']}/status/accepted").status_code == 200


def test_an_invoice_from_an_estimate_marks_it_invoiced_and_links_back(books: Books) -> None:
    customer_id, item_id = _seed(books.zoho)
    made = _create(books, _body(customer_id, item_id))
    books.zoho.move_estimate(made["estimate_id"], "sent")
    books.zoho.move_estimate(made["estimate_id"], "accepted")
    books.zoho.state.clock.advance(5)
    # When an invoice is created naming the estimate
    invoice_body = {**_body(customer_id, item_id), "invoiced_estimate_id": made["estimate_id"]}
    invoice_body.pop("expiry_date")
    reply = books.call("POST", "/invoices", invoice_body)
    assert reply.status_code == 201, reply.text
    invoice = reply.json()["invoice"]
    # Then the invoice carries the link and the estimate reads invoiced, its change time moved
    assert invoice["invoiced_estimate_id"] == made["estimate_id"]
    estimate = books.call("GET", f"/estimates/{made['estimate_id']}").json()["estimate"]
    assert estimate["status"] == "invoiced" and estimate["last_modified_time"] > made["last_modified_time"]
    # And an invoiced estimate takes no more status moves
    assert books.call("POST", f"/estimates/{made['estimate_id']}/status/declined").status_code == 400


def test_an_invoice_naming_a_foreign_or_unknown_estimate_is_refused_whole(books: Books) -> None:
    customer_id, item_id = _seed(books.zoho)
    other_id, _ = _seed(books.zoho, "Bolt")
    foreign = _create(books, _body(other_id, item_id))
    for estimate_id in (foreign["estimate_id"], "999"):
        body = {**_body(customer_id, item_id), "invoiced_estimate_id": estimate_id}
        body.pop("expiry_date")
        reply = books.call("POST", "/invoices", body)
        assert (reply.status_code, reply.json()["code"]) == (400, 4)
    assert books.zoho.invoices() == []
    assert books.zoho.estimates()[0]["status"] == "draft"
