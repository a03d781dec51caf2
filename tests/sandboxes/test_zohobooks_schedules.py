"""ZohoBooksSandbox's recurring invoices, purchase orders and vendor contacts over real HTTP, as Zoho's pages
describe them (zoho.com/books/api/v3/recurring-invoices, /purchase-order, /contacts), and the daily run that
makes a recurring invoice's child invoices."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from closeloop_local.sandboxes.base import SandboxServer
from closeloop_local.sandboxes.schedules import add_months
from closeloop_local.sandboxes.zohobooks import ZohoBooksDriver, ZohoBooksSandbox, serve
from tests.zohobooks_sandbox_client import VAT20, Books, decimal_json

DAY = 86_400


@pytest.fixture
def sandbox() -> Iterator[tuple[ZohoBooksSandbox, SandboxServer]]:
    zoho, server = serve(ZohoBooksSandbox(minute_limit=10_000, day_limit=100_000))
    yield zoho, server
    server.stop()


@pytest.fixture
def books(sandbox: tuple[ZohoBooksSandbox, SandboxServer]) -> Books:
    return Books(sandbox[0], sandbox[1].url)


def _today(zoho: ZohoBooksSandbox) -> date:
    return datetime.fromtimestamp(zoho.state.clock.now(), UTC).date()


def _profile(books: Books, name: str = "Deal 7 monthly", **fields: Any) -> dict[str, Any]:
    customer = books.zoho.seed_contact(contact_name=f"Acme {name}")
    item = books.zoho.seed_item(sku=f"SUP-{name}", name=f"Support {name}", rate="100")
    return {
        "recurrence_name": name,
        "customer_id": customer["contact_id"],
        "recurrence_frequency": "months",
        "repeat_every": 1,
        "start_date": _today(books.zoho).isoformat(),
        "reference_number": "closeloop deal 7",
        "payment_terms": 30,
        "line_items": [{"item_id": item["item_id"], "rate": 100, "quantity": 2, "tax_id": VAT20}],
        **fields,
    }


def _create(books: Books, body: dict[str, Any]) -> dict[str, Any]:
    reply = books.call("POST", "/recurringinvoices", body)
    assert reply.status_code == 201, reply.text
    profile: dict[str, Any] = decimal_json(reply)["recurring_invoice"]
    return profile


# ---- recurring invoices ------------------------------------------------------------------------------------


def test_a_recurring_invoice_is_created_read_and_listed_with_its_next_date_and_totals(books: Books) -> None:
    # Given a monthly profile starting today
    today = _today(books.zoho)
    profile = _create(books, _profile(books))
    # Then Zoho's fields come back: active, next invoice today, totals with the 20% tax, the reference kept
    assert (profile["status"], profile["next_invoice_date"], profile["last_sent_date"]) == (
        "active",
        today.isoformat(),
        "",
    )
    assert (profile["recurrence_frequency"], profile["repeat_every"], profile["end_date"]) == ("months", 1, "")
    assert (profile["sub_total"], profile["tax_total"], profile["total"]) == (
        Decimal("200.00"),
        Decimal("40.00"),
        Decimal("240.00"),
    )
    assert profile["reference_number"] == "closeloop deal 7"
    assert profile["child_entity_type"] == "invoice"
    # And it reads back whole, and lists as a summary row (no lines) with a page_context
    got = decimal_json(books.call("GET", f"/recurringinvoices/{profile['recurring_invoice_id']}"))
    assert got["recurring_invoice"] == profile
    listed = decimal_json(books.call("GET", "/recurringinvoices"))
    assert [r["recurring_invoice_id"] for r in listed["recurring_invoices"]] == [profile["recurring_invoice_id"]]
    assert "line_items" not in listed["recurring_invoices"][0]
    assert listed["page_context"]["has_more_page"] is False


def test_the_list_filters_by_name_customer_and_status_and_pages(books: Books) -> None:
    # Given three profiles, one stopped
    ids = [_create(books, _profile(books, f"Deal {n} monthly"))["recurring_invoice_id"] for n in (1, 2, 3)]
    books.call("POST", f"/recurringinvoices/{ids[1]}/status/stop")
    customer_of_3 = decimal_json(books.call("GET", f"/recurringinvoices/{ids[2]}"))["recurring_invoice"]

    def listed(**params: str) -> list[str]:
        body = decimal_json(books.call("GET", "/recurringinvoices", params=params))
        return [r["recurring_invoice_id"] for r in body["recurring_invoices"]]

    # Then each filter Zoho publishes narrows the list
    assert listed(recurrence_name="deal 1 MONTHLY") == [ids[0]]
    assert sorted(listed(recurrence_name_contains="monthly")) == sorted(ids)
    assert listed(recurrence_name_startswith="Deal 3") == [ids[2]]
    assert listed(customer_id=customer_of_3["customer_id"]) == [ids[2]]
    assert listed(status="stopped") == [ids[1]]
    assert sorted(listed(filter_by="Status.Active")) == sorted([ids[0], ids[2]])
    assert listed(search_text="acme deal 2") == [ids[1]]
    assert listed(sort_column="recurrence_name", sort_order="A") == ids
    # And pages of one carry has_more_page until the last
    pages = [
        decimal_json(books.call("GET", "/recurringinvoices", params={"per_page": "1", "page": str(p)}))
        for p in (1, 2, 3)
    ]
    assert [p["page_context"]["has_more_page"] for p in pages] == [True, True, False]
    assert sorted(r["recurring_invoice_id"] for p in pages for r in p["recurring_invoices"]) == sorted(ids)
    # And an unknown status or sort column is Zoho's invalid-value error
    for params in ({"status": "paused"}, {"sort_column": "colour"}, {"filter_by": "Status.Paused"}):
        reply = books.call("GET", "/recurringinvoices", params=params)
        assert (reply.status_code, reply.json()["code"]) == (400, 4)


def test_the_last_modified_filter_is_honoured_unless_undocumented_filters_are_ignored(books: Books) -> None:
    # Given two profiles, the second made a minute later
    first = _create(books, _profile(books, "Old"))
    books.zoho.state.clock.advance(60)
    second = _create(books, _profile(books, "New"))
    # Then last_modified_time keeps the later one (GUESSES["recurring_modified_filter"]) ...
    since = {"last_modified_time": second["last_modified_time"]}
    rows = decimal_json(books.call("GET", "/recurringinvoices", params=since))["recurring_invoices"]
    assert [r["recurring_invoice_id"] for r in rows] == [second["recurring_invoice_id"]]
    # ... and a Zoho that ignores it answers both
    books.zoho.ignore_undocumented_filters = True
    rows = decimal_json(books.call("GET", "/recurringinvoices", params=since))["recurring_invoices"]
    assert {r["recurring_invoice_id"] for r in rows} == {first["recurring_invoice_id"], second["recurring_invoice_id"]}


def test_the_daily_run_makes_one_child_invoice_per_due_day_with_the_profile_s_reference(books: Books) -> None:
    # Given a monthly profile starting today and ending after its third month
    today = _today(books.zoho)
    end = add_months(today, 2)
    profile = _create(books, _profile(books, end_date=end.isoformat()))
    pid = profile["recurring_invoice_id"]
    # When the daily run comes 40 days on
    made = books.zoho.run_recurring(today + timedelta(days=40))
    # Then two children were made (today, a month on), each an ordinary invoice naming its profile
    assert [i["date"] for i in made] == [today.isoformat(), add_months(today, 1).isoformat()]
    child = decimal_json(books.call("GET", f"/invoices/{made[0]['invoice_id']}"))["invoice"]
    assert child["recurring_invoice_id"] == pid
    assert child["reference_number"] == "closeloop deal 7"
    assert (child["status"], child["total"], child["due_date"]) == (
        "sent",
        Decimal("240.00"),
        (today + timedelta(days=30)).isoformat(),
    )
    assert child["invoice_number"].startswith("INV-")
    assert [(line["quantity"], line["rate"]) for line in child["line_items"]] == [(Decimal("2"), Decimal("100"))]
    # And GET /invoices?recurring_invoice_id finds exactly them
    rows = decimal_json(books.call("GET", "/invoices", params={"recurring_invoice_id": pid}))["invoices"]
    assert sorted(r["invoice_id"] for r in rows) == sorted(i["invoice_id"] for i in made)
    # And the profile moved on: last sent a month on, next on its end date
    after = decimal_json(books.call("GET", f"/recurringinvoices/{pid}"))["recurring_invoice"]
    assert (after["last_sent_date"], after["next_invoice_date"]) == (add_months(today, 1).isoformat(), end.isoformat())
    # When the run comes again the same day, nothing more is made; past the end, the last child and "expired"
    assert books.zoho.run_recurring(today + timedelta(days=40)) == []
    assert [i["date"] for i in books.zoho.run_recurring(end + timedelta(days=400))] == [end.isoformat()]
    after = decimal_json(books.call("GET", f"/recurringinvoices/{pid}"))["recurring_invoice"]
    assert (after["status"], after["next_invoice_date"]) == ("expired", "")
    assert [
        r["recurring_invoice_id"]
        for r in decimal_json(books.call("GET", "/recurringinvoices", params={"status": "expired"}))[
            "recurring_invoices"
        ]
    ] == [pid]


def test_the_drafts_preference_makes_draft_children_and_the_driver_runs_the_schedule(
    sandbox: tuple[ZohoBooksSandbox, SandboxServer],
) -> None:
    zoho, server = sandbox
    zoho.recurring_invoices_as_drafts = True
    books = Books(zoho, server.url)
    _create(books, _profile(books, recurrence_frequency="weeks", repeat_every=2))
    # When the driver runs the schedule 15 days on: today and two weeks on
    ids = ZohoBooksDriver(zoho).run_recurring(_today(zoho) + timedelta(days=15))
    assert len(ids) == 2
    assert {i["status"] for i in zoho.invoices()} == {"draft"}


def test_stop_holds_the_schedule_and_resume_skips_the_missed_days(books: Books) -> None:
    today = _today(books.zoho)
    pid = _create(books, _profile(books, recurrence_frequency="days", repeat_every=7))["recurring_invoice_id"]
    # When it is stopped, the run makes nothing
    reply = books.call("POST", f"/recurringinvoices/{pid}/status/stop")
    assert reply.json() == {"code": 0, "message": "The recurring invoice has been stopped."}
    assert books.zoho.run_recurring(today + timedelta(days=20)) == []
    # And stopping it again is refused (GUESSES["recurring_status_moves"])
    again = books.call("POST", f"/recurringinvoices/{pid}/status/stop")
    assert (again.status_code, again.json()["code"]) == (400, 4)
    # When it is resumed 10 days on, its next date is the first occurrence from then: day 14, not day 0 or 7
    books.zoho.state.clock.advance(10 * DAY)
    books = Books(books.zoho, books.url)  # a fresh token: the first expired after its hour
    reply = books.call("POST", f"/recurringinvoices/{pid}/status/resume")
    assert reply.json() == {"code": 0, "message": "The recurring invoice has been activated."}
    profile = decimal_json(books.call("GET", f"/recurringinvoices/{pid}"))["recurring_invoice"]
    assert (profile["status"], profile["next_invoice_date"]) == ("active", (today + timedelta(days=14)).isoformat())
    resumed = books.call("POST", f"/recurringinvoices/{pid}/status/resume")
    assert (resumed.status_code, resumed.json()["code"]) == (400, 4)


def test_an_update_changes_the_lines_and_extends_the_end_and_a_delete_keeps_the_children(books: Books) -> None:
    today = _today(books.zoho)
    body = _profile(books, end_date=today.isoformat())
    pid = _create(books, body)["recurring_invoice_id"]
    made = books.zoho.run_recurring(today)
    # When the contract is renewed: a year more, a new rate
    line = {**body["line_items"][0], "rate": 120}
    reply = books.call(
        "PUT", f"/recurringinvoices/{pid}", {"end_date": add_months(today, 12).isoformat(), "line_items": [line]}
    )
    assert reply.status_code == 200, reply.text
    profile = decimal_json(reply)["recurring_invoice"]
    # Then the schedule goes on from a month on, at the new total, its name and customer kept
    assert (profile["status"], profile["next_invoice_date"], profile["total"]) == (
        "active",
        add_months(today, 1).isoformat(),
        Decimal("288.00"),
    )
    assert profile["recurrence_name"] == body["recurrence_name"]
    # When it is deleted, it is gone and its child stays
    assert (
        books.call("DELETE", f"/recurringinvoices/{pid}").json()["message"] == "The recurring invoice has been deleted."
    )
    gone = books.call("GET", f"/recurringinvoices/{pid}")
    assert (gone.status_code, gone.json()) == (404, {"code": 1002, "message": "Recurring Invoice does not exist"})
    assert books.call("GET", f"/invoices/{made[0]['invoice_id']}").status_code == 200
    for method in ("PUT", "DELETE"):
        assert books.call(method, f"/recurringinvoices/{pid}", {} if method == "PUT" else None).status_code == 404
    assert books.call("POST", f"/recurringinvoices/{pid}/status/stop").json()["code"] == 1002


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"recurrence_name": ""}, 4031),
        ({"recurrence_name": "x" * 101}, 4),
        ({"recurrence_frequency": "fortnights"}, 4),
        ({"repeat_every": 0}, 4),
        ({"customer_id": "404"}, 4),
        ({"start_date": "2001-01-01"}, 4),
        ({"end_date": "2001-01-01"}, 4),
        ({"line_items": []}, 4),
        ({"line_items": [{"item_id": "404", "rate": 1}]}, 4),
        ({"currency_code": "JPY"}, 4),
    ],
)
def test_a_bad_create_is_refused_with_zoho_s_code_and_nothing_is_made(
    books: Books, change: dict[str, Any], code: int
) -> None:
    reply = books.call("POST", "/recurringinvoices", {**_profile(books), **change})
    assert (reply.status_code, reply.json()["code"]) == (400, code)
    assert books.zoho.recurring_invoices() == []


def test_a_taken_name_a_vendor_customer_or_a_missing_name_is_refused(books: Books) -> None:
    body = _profile(books)
    _create(books, body)
    # A second profile of the same name (any case): 1001 (GUESSES["recurring_duplicate_name"])
    dup = books.call("POST", "/recurringinvoices", {**body, "recurrence_name": body["recurrence_name"].upper()})
    assert (dup.status_code, dup.json()["code"]) == (400, 1001)
    # A vendor is no customer
    vendor = books.zoho.seed_contact(contact_name="Supplies Co", contact_type="vendor")
    refused = books.call(
        "POST", "/recurringinvoices", {**body, "recurrence_name": "V", "customer_id": vendor["contact_id"]}
    )
    assert (refused.status_code, refused.json()["message"]) == (400, "Invalid value passed for customer_id")
    missing = books.call("POST", "/recurringinvoices", {k: v for k, v in body.items() if k != "recurrence_name"})
    assert missing.json() == {"code": 4031, "message": "Please enter a name for this Recurring Invoice"}
    assert len(books.zoho.recurring_invoices()) == 1


# ---- purchase orders ---------------------------------------------------------------------------------------


def _order(books: Books, reference: str = "closeloop deal 7", **fields: Any) -> dict[str, Any]:
    vendor = books.zoho.seed_contact(contact_name=f"Supplier {reference}", contact_type="vendor")
    item = books.zoho.seed_item(
        sku=f"W-{reference}",
        name=f"Widget {reference}",
        rate="12.50",
        purchase_rate="4",
        item_type="sales_and_purchases",
    )
    return {
        "vendor_id": vendor["contact_id"],
        "reference_number": reference,
        "line_items": [{"item_id": item["item_id"], "quantity": 3, "tax_id": VAT20}],
        **fields,
    }


def _create_order(books: Books, body: dict[str, Any]) -> dict[str, Any]:
    reply = books.call("POST", "/purchaseorders", body)
    assert reply.status_code == 201, reply.text
    order: dict[str, Any] = decimal_json(reply)["purchaseorder"]
    return order


def test_a_purchase_order_is_a_numbered_draft_at_the_item_s_purchase_rate(books: Books) -> None:
    order = _create_order(books, _order(books))
    # Then it is a draft numbered PO-00001, its line at the purchase rate on the purchase account, taxed
    assert (order["status"], order["purchaseorder_number"], order["reference_number"]) == (
        "draft",
        "PO-00001",
        "closeloop deal 7",
    )
    line = order["line_items"][0]
    assert (line["rate"], line["quantity"], line["account_name"], line["item_total"]) == (
        Decimal("4.00"),
        Decimal("3"),
        "Cost of Goods Sold",
        Decimal("12.00"),
    )
    assert (order["sub_total"], order["tax_total"], order["total"]) == (
        Decimal("12.00"),
        Decimal("2.40"),
        Decimal("14.40"),
    )
    assert order["vendor_name"] == "Supplier closeloop deal 7"
    got = decimal_json(books.call("GET", f"/purchaseorders/{order['purchaseorder_id']}"))["purchaseorder"]
    assert got == order
    # And a second order takes the next number
    assert _create_order(books, _order(books, "deal 8"))["purchaseorder_number"] == "PO-00002"


def test_purchase_orders_list_by_reference_vendor_and_status_and_page(books: Books) -> None:
    ids = [_create_order(books, _order(books, f"deal {n}"))["purchaseorder_id"] for n in (1, 2, 3)]
    books.call("POST", f"/purchaseorders/{ids[2]}/status/open")
    vendor_of_2 = decimal_json(books.call("GET", f"/purchaseorders/{ids[1]}"))["purchaseorder"]["vendor_id"]

    def listed(**params: str) -> list[str]:
        body = decimal_json(books.call("GET", "/purchaseorders", params=params))
        assert all("line_items" not in row for row in body["purchaseorders"])
        return [row["purchaseorder_id"] for row in body["purchaseorders"]]

    assert listed(reference_number="deal 2") == [ids[1]]
    assert listed(reference_number="deal") == []  # exact; the variants match parts
    assert sorted(listed(reference_number_startswith="deal")) == sorted(ids)
    assert listed(vendor_id=vendor_of_2) == [ids[1]]
    assert listed(status="open") == [ids[2]]
    assert sorted(listed(filter_by="Status.Draft")) == sorted(ids[:2])
    assert listed(purchaseorder_number="PO-00001") == [ids[0]]
    assert listed(sort_column="purchaseorder_number", sort_order="A") == ids
    pages = [
        decimal_json(books.call("GET", "/purchaseorders", params={"per_page": "2", "page": str(p)})) for p in (1, 2)
    ]
    assert [len(p["purchaseorders"]) for p in pages] == [2, 1]
    assert [p["page_context"]["has_more_page"] for p in pages] == [True, False]


def test_an_order_moves_draft_open_billed_and_refuses_other_moves(books: Books) -> None:
    pid = _create_order(books, _order(books))["purchaseorder_id"]

    def move(to: str) -> tuple[int, int]:
        reply = books.call("POST", f"/purchaseorders/{pid}/status/{to}")
        return reply.status_code, reply.json()["code"]

    # billed straight from draft is refused (GUESSES["po_status_moves"]); open, then billed, are not
    assert move("billed") == (400, 4)
    assert move("open") == (200, 0)
    assert move("open") == (400, 4)
    assert move("billed") == (200, 0)
    # A billed order can be neither cancelled, edited nor deleted
    assert move("cancelled") == (400, 4)
    assert books.call("PUT", f"/purchaseorders/{pid}", {"reference_number": "x"}).status_code == 400
    assert books.call("DELETE", f"/purchaseorders/{pid}").status_code == 400
    assert decimal_json(books.call("GET", f"/purchaseorders/{pid}"))["purchaseorder"]["status"] == "billed"


def test_an_order_is_updated_cancelled_and_deleted(books: Books) -> None:
    body = _order(books)
    pid = _create_order(books, body)["purchaseorder_id"]
    line = {**body["line_items"][0], "rate": 5, "quantity": 10}
    reply = books.call("PUT", f"/purchaseorders/{pid}", {"line_items": [line], "notes": "rush"})
    updated = decimal_json(reply)["purchaseorder"]
    assert (reply.status_code, updated["total"], updated["notes"], updated["reference_number"]) == (
        200,
        Decimal("60.00"),
        "rush",
        "closeloop deal 7",
    )
    assert books.call("POST", f"/purchaseorders/{pid}/status/cancelled").status_code == 200
    assert books.call("PUT", f"/purchaseorders/{pid}", {"notes": "again"}).json()["code"] == 4
    assert books.call("DELETE", f"/purchaseorders/{pid}").json()["message"] == "The purchase order has been deleted."
    assert books.call("GET", f"/purchaseorders/{pid}").json() == {
        "code": 1002,
        "message": "Purchase order does not exist.",
    }


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"vendor_id": "404"}, 4),
        ({"line_items": []}, 4),
        ({"line_items": [{"item_id": "404"}]}, 4),
        ({"line_items": [{"name": "Freight", "rate": 10, "account_id": "404"}]}, 4),
        ({"line_items": [{"rate": 10}]}, 4),
        ({"line_items": [{"name": "Freight", "rate": 10, "quantity": 0}]}, 4),
    ],
)
def test_a_bad_purchase_order_is_refused_and_nothing_is_made(books: Books, change: dict[str, Any], code: int) -> None:
    reply = books.call("POST", "/purchaseorders", {**_order(books), **change})
    assert (reply.status_code, reply.json()["code"]) == (400, code)
    assert books.zoho.purchase_orders() == []


def test_a_customer_is_no_vendor_and_a_taken_number_is_a_duplicate(books: Books) -> None:
    customer = books.zoho.seed_contact(contact_name="Acme Ltd")
    body = _order(books)
    refused = books.call("POST", "/purchaseorders", {**body, "vendor_id": customer["contact_id"]})
    assert refused.json() == {"code": 4, "message": "Invalid value passed for vendor_id"}
    own = {"ignore_auto_number_generation": "true"}
    first = books.call("POST", "/purchaseorders", {**body, "purchaseorder_number": "PO-X"}, params=own)
    assert decimal_json(first)["purchaseorder"]["purchaseorder_number"] == "PO-X"
    dup = books.call("POST", "/purchaseorders", {**body, "purchaseorder_number": "PO-X"}, params=own)
    assert (dup.status_code, dup.json()["code"]) == (400, 1001)
    free = books.call(
        "POST", "/purchaseorders", {"vendor_id": body["vendor_id"], "line_items": [{"name": "Freight", "rate": 7.5}]}
    )
    line = decimal_json(free)["purchaseorder"]["line_items"][0]
    assert (line["item_id"], line["name"], line["rate"], line["account_id"]) == (
        "",
        "Freight",
        Decimal("7.5"),
        "982000000000567",
    )


# ---- vendors -----------------------------------------------------------------------------------------------


def test_a_vendor_is_a_contact_of_type_vendor_listed_apart_from_customers(books: Books) -> None:
    # Given a customer, and a vendor created over the API with the same name
    customer = books.zoho.seed_contact(contact_name="Acme Ltd")
    reply = books.call("POST", "/contacts", {"contact_name": "Acme Ltd", "contact_type": "vendor"})
    assert reply.status_code == 201, reply.text
    vendor = reply.json()["contact"]
    assert vendor["contact_type"] == "vendor"

    def listed(**params: str) -> list[str]:
        return [c["contact_id"] for c in books.call("GET", "/contacts", params=params).json()["contacts"]]

    # Then ?contact_type= tells them apart (GUESSES["contact_type_filter"]); unfiltered, both come
    assert listed(contact_type="vendor") == [vendor["contact_id"]]
    assert listed(contact_type="customer") == [customer["contact_id"]]
    assert sorted(listed()) == sorted([customer["contact_id"], vendor["contact_id"]])
    # And a second vendor of that name is a duplicate (3062), as a second customer is
    dup = books.call("POST", "/contacts", {"contact_name": "ACME LTD", "contact_type": "vendor"})
    assert dup.json() == {
        "code": 3062,
        "message": 'The vendor "ACME LTD" already exists. Please specify a different name.',
    }
    # And the driver sees one customer and one vendor
    driver = ZohoBooksDriver(books.zoho)
    assert [c.id for c in driver.customers()] == [customer["contact_id"]]
    assert [v.id for v in driver.vendors()] == [vendor["contact_id"]]


def test_names_unique_across_types_refuse_a_vendor_named_like_a_customer(
    sandbox: tuple[ZohoBooksSandbox, SandboxServer],
) -> None:
    zoho, server = sandbox
    zoho.contact_names_unique_across_types = True
    books = Books(zoho, server.url)
    zoho.seed_contact(contact_name="Acme Ltd")
    reply = books.call("POST", "/contacts", {"contact_name": "Acme Ltd", "contact_type": "vendor"})
    assert (reply.status_code, reply.json()["code"]) == (400, 3062)


def test_a_contact_keeps_its_type_and_a_vendor_is_invoiced_nothing(books: Books) -> None:
    vendor = books.zoho.seed_contact(contact_name="Supplies Co", contact_type="vendor")
    changed = books.call("PUT", f"/contacts/{vendor['contact_id']}", {"contact_type": "customer"})
    assert (changed.status_code, changed.json()["code"]) == (400, 4)
    bad_type = books.call("POST", "/contacts", {"contact_name": "X", "contact_type": "supplier"})
    assert bad_type.json() == {"code": 4, "message": "Invalid value passed for contact_type"}
    item = books.zoho.seed_item(sku="W", name="Widget", rate="1")
    invoice = books.call(
        "POST", "/invoices", {"customer_id": vendor["contact_id"], "line_items": [{"item_id": item["item_id"]}]}
    )
    assert invoice.json() == {"code": 4, "message": "Invalid value passed for customer_id"}
    bad_filter = books.call("GET", "/contacts", params={"contact_type": "supplier"})
    assert bad_filter.status_code == 400
