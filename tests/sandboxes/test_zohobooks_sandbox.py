"""The Zoho Books sandbox on its own, over HTTP: tokens and their caps, envelopes, limits, upserts, money."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from closeloop_local.sandboxes.base import Fault, SandboxServer
from closeloop_local.sandboxes.zohobooks import ZohoBooksDriver, ZohoBooksSandbox, serve
from tests.zohobooks_sandbox_client import VAT20, Books, decimal_json, token


@pytest.fixture
def sandbox() -> Iterator[tuple[ZohoBooksSandbox, SandboxServer]]:
    zoho, server = serve(ZohoBooksSandbox(minute_limit=10_000, day_limit=100_000))
    yield zoho, server
    server.stop()


@pytest.fixture
def books(sandbox: tuple[ZohoBooksSandbox, SandboxServer]) -> Books:
    return Books(*sandbox[0:1], sandbox[1].url)


def test_refresh_grant_returns_an_hour_long_token_and_no_new_refresh_token(
    sandbox: tuple[ZohoBooksSandbox, SandboxServer],
) -> None:
    zoho, server = sandbox
    # When the refresh token is exchanged
    answer = token(zoho, server.url)
    # Then Zoho's shape comes back: a 1-hour access token, and the refresh token does not rotate
    body = answer.json()
    assert answer.status_code == 200
    assert body["expires_in"] == 3600
    assert body["token_type"] == "Bearer"
    assert body["access_token"].startswith("1000.")
    assert "refresh_token" not in body


def test_bad_client_or_revoked_refresh_token_is_an_error_field_with_http_200(
    sandbox: tuple[ZohoBooksSandbox, SandboxServer],
) -> None:
    zoho, server = sandbox
    # Given wrong client credentials, Zoho still answers 200, naming the error
    wrong_client = token(zoho, server.url, client_secret="nope")
    assert (wrong_client.status_code, wrong_client.json()) == (200, {"error": "invalid_client"})
    # Given a revoked refresh token
    zoho.revoke_refresh_tokens()
    revoked = token(zoho, server.url)
    assert (revoked.status_code, revoked.json()) == (200, {"error": "invalid_code"})


def test_eleventh_access_token_in_ten_minutes_is_access_denied(
    sandbox: tuple[ZohoBooksSandbox, SandboxServer],
) -> None:
    zoho, server = sandbox
    # Given ten access tokens minted from one refresh token
    for _ in range(10):
        assert token(zoho, server.url).status_code == 200
    # When an eleventh is asked for within ten minutes
    blocked = token(zoho, server.url)
    # Then Zoho throttles the refresh token
    assert blocked.status_code == 400
    assert blocked.json()["error"] == "Access Denied"
    # And once the ten minutes have passed it mints again
    zoho.state.clock.advance(601)
    assert token(zoho, server.url).status_code == 200


def test_thirty_live_access_tokens_per_refresh_token_the_oldest_is_evicted(
    sandbox: tuple[ZohoBooksSandbox, SandboxServer],
) -> None:
    zoho, server = sandbox
    # Given the first token minted, then thirty more (spread so the 10-per-10-minutes cap allows them)
    first = Books(zoho, server.url)
    assert first.call("GET", "/contacts").status_code == 200
    for n in range(30):
        if n % 9 == 8:
            zoho.state.clock.advance(601)
        assert token(zoho, server.url).status_code == 200
    # Then only thirty stay live, and the first one no longer works
    assert zoho.live_access_tokens() == 30
    assert first.call("GET", "/contacts").json()["code"] == 57


def test_a_user_keeps_twenty_refresh_tokens_and_gets_five_a_minute(
    sandbox: tuple[ZohoBooksSandbox, SandboxServer],
) -> None:
    zoho, server = sandbox
    # Given 19 more refresh tokens issued (five a minute), the user holds 20 with the initial one
    issued = []
    for n in range(19):
        if n and n % 5 == 0:
            zoho.state.clock.advance(61)
        issued.append(zoho.issue_refresh_token())
    assert token(zoho, server.url).status_code == 200
    # When a sixth is asked for in the same minute, it is refused
    zoho.state.clock.advance(61)
    for _ in range(5):
        issued.append(zoho.issue_refresh_token())
    with pytest.raises(ValueError, match="5 new refresh tokens a minute"):
        zoho.issue_refresh_token()
    # And the 21st evicted the oldest: the initial refresh token is dead
    assert token(zoho, server.url).json() == {"error": "invalid_code"}
    assert token(zoho, server.url, refresh_token=issued[-1]).status_code == 200


def test_every_call_needs_a_live_token_and_the_organization_id(
    sandbox: tuple[ZohoBooksSandbox, SandboxServer], books: Books
) -> None:
    zoho, server = sandbox
    # A bad token is Zoho's 401 code 57
    bad = httpx.get(
        f"{server.url}/books/v3/contacts",
        params={"organization_id": zoho.organization_id},
        headers={"Authorization": "Zoho-oauthtoken nope"},
    )
    assert (bad.status_code, bad.json()["code"]) == (401, 57)
    # A missing organization_id is code 6041
    missing = httpx.get(f"{server.url}/books/v3/contacts", headers={"Authorization": f"Zoho-oauthtoken {books.access}"})
    assert (missing.status_code, missing.json()["code"]) == (400, 6041)
    # An expired token is refused like a bad one
    zoho.state.clock.advance(3601)
    assert books.call("GET", "/contacts").status_code == 401


def test_contact_names_are_unique_case_insensitively(books: Books) -> None:
    # Given a contact
    assert books.call("POST", "/contacts", {"contact_name": "Acme Ltd"}).status_code == 201
    # When another is made with the same name in other case
    again = books.call("POST", "/contacts", {"contact_name": "ACME LTD"})
    # Then Zoho refuses with code 3062
    assert again.status_code == 400
    assert again.json()["code"] == 3062


def test_put_contacts_upserts_by_a_unique_custom_field(books: Books) -> None:
    headers = {
        "X-Unique-Identifier-Key": "cf_closeloop_ref",
        "X-Unique-Identifier-Value": "hubspot-company-1",
        "X-Upsert": "true",
    }
    # When the same upsert runs twice
    first = books.call("PUT", "/contacts", {"contact_name": "Acme"}, headers=headers)
    second = books.call("PUT", "/contacts", {"contact_name": "Acme", "notes": "again"}, headers=headers)
    # Then the first creates (201) with the field stamped, the second updates the same contact (200)
    assert first.status_code == 201
    assert second.status_code == 200
    created = first.json()["contact"]
    assert created["cf_closeloop_ref"] == "hubspot-company-1"
    assert second.json()["contact"]["contact_id"] == created["contact_id"]
    assert len(books.zoho.contacts()) == 1
    # And without X-Upsert an unknown value is "does not exist"
    other = {**headers, "X-Unique-Identifier-Value": "hubspot-company-2", "X-Upsert": "false"}
    missing = books.call("PUT", "/contacts", {"contact_name": "Beta"}, headers=other)
    assert (missing.status_code, missing.json()["code"]) == (404, 1002)
    # And the unique field refuses a second holder of the value
    duplicate = books.call(
        "POST",
        "/contacts",
        {"contact_name": "Gamma", "custom_fields": [{"api_name": "cf_closeloop_ref", "value": "hubspot-company-1"}]},
    )
    assert (duplicate.status_code, duplicate.json()["code"]) == (400, 1001)


def test_lists_page_by_200_with_has_more_page(books: Books) -> None:
    # Given 205 contacts
    for n in range(205):
        books.zoho.seed_contact(contact_name=f"Customer {n:03d}")
    # When the list is read page by page
    first = books.call("GET", "/contacts").json()
    second = books.call("GET", "/contacts", params={"page": "2", "per_page": "500"}).json()
    # Then pages hold at most 200 rows, and page_context says when more follow
    assert len(first["contacts"]) == 200
    assert first["page_context"]["has_more_page"] is True
    assert len(second["contacts"]) == 5
    assert second["page_context"]["has_more_page"] is False
    # And list rows are summaries: no contact persons or addresses
    assert "contact_persons" not in first["contacts"][0]


def test_minute_and_day_limits_answer_429_without_retry_after() -> None:
    zoho, server = serve(ZohoBooksSandbox(minute_limit=2, day_limit=3))
    try:
        books = Books(zoho, server.url)
        # Given the minute's allowance used
        assert books.call("GET", "/contacts").status_code == 200
        assert books.call("GET", "/contacts").status_code == 200
        # Then the next call is a 429 with the minute code and no Retry-After
        limited = books.call("GET", "/contacts")
        assert (limited.status_code, limited.json()["code"]) == (429, 44)
        assert "retry-after" not in limited.headers
        # Given the minute passed and the day's allowance used
        zoho.state.clock.advance(61)
        assert books.call("GET", "/contacts").status_code == 200
        daily = books.call("GET", "/contacts")
        assert (daily.status_code, daily.json()["code"]) == (429, 45)
        # And the day cap resets with the UTC day
        now = datetime.fromtimestamp(zoho.state.clock.now(), UTC)
        midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC)
        zoho.state.clock.advance((midnight - now).total_seconds() + 1)
        books.access = token(zoho, server.url).json()["access_token"]  # the hour-long token expired meanwhile
        assert books.call("GET", "/contacts").status_code == 200
    finally:
        server.stop()


def invoice_body(customer_id: str, item_id: str, **kw: Any) -> dict[str, Any]:
    line = {"item_id": item_id, "quantity": 3, "rate": 19.99, "discount": "10%", "tax_id": VAT20}
    return {"customer_id": customer_id, "line_items": [line], "date": "2026-01-10", "due_date": "2026-02-09", **kw}


@pytest.fixture
def customer_and_item(books: Books) -> tuple[str, str]:
    customer = books.zoho.seed_contact(
        contact_name="Acme", contact_persons=[{"email": "ap@acme.test", "is_primary_contact": True}]
    )
    item = books.zoho.seed_item(sku="WIDGET", name="Widget", rate="19.99")
    return str(customer["contact_id"]), str(item["item_id"])


def test_invoice_totals_are_exact_with_tax_rounded_per_line(books: Books, customer_and_item: tuple[str, str]) -> None:
    customer_id, item_id = customer_and_item
    # When an invoice of 3 x 19.99 less 10% at 20% VAT is created
    answer = books.call("POST", "/invoices", invoice_body(customer_id, item_id))
    # Then Zoho's totals come back as exact JSON numbers: 53.97 + 10.79 (10.794 rounded) = 64.76
    invoice = decimal_json(answer)["invoice"]
    assert answer.status_code == 201
    assert (invoice["sub_total"], invoice["tax_total"], invoice["total"]) == (
        Decimal("53.97"),
        Decimal("10.79"),
        Decimal("64.76"),
    )
    assert '"total": 64.76' in answer.text
    assert invoice["status"] == "draft"
    assert invoice["invoice_number"] == "INV-000001"


def test_an_unpaid_invoice_past_due_reads_overdue_without_changing_its_modified_time(
    books: Books, customer_and_item: tuple[str, str]
) -> None:
    customer_id, item_id = customer_and_item
    invoice_id = books.call("POST", "/invoices", invoice_body(customer_id, item_id)).json()["invoice"]["invoice_id"]
    books.call("POST", f"/invoices/{invoice_id}/status/sent")
    before = books.call("GET", f"/invoices/{invoice_id}").json()["invoice"]
    # When the due date passes
    due = date.fromisoformat(before["due_date"])
    today = datetime.fromtimestamp(books.zoho.state.clock.now(), UTC).date()
    books.zoho.state.clock.advance(((due - today).days + 2) * 86400 if due >= today else 0)
    after = books.call("GET", f"/invoices/{invoice_id}").json()["invoice"]
    # Then it reads overdue, but its last_modified_time did not move (the change feed will not show it)
    assert after["status"] == "overdue"
    assert after["last_modified_time"] == before["last_modified_time"]


def test_customer_payments_apply_to_invoices(books: Books, customer_and_item: tuple[str, str]) -> None:
    customer_id, item_id = customer_and_item
    invoice_id = books.call("POST", "/invoices", invoice_body(customer_id, item_id)).json()["invoice"]["invoice_id"]
    pay = {"customer_id": customer_id, "amount": 60, "date": "2026-01-20", "payment_mode": "banktransfer"}
    # A draft takes no payment
    draft = books.call(
        "POST", "/customerpayments", {**pay, "invoices": [{"invoice_id": invoice_id, "amount_applied": 60}]}
    )
    assert draft.status_code == 400
    books.call("POST", f"/invoices/{invoice_id}/status/sent")
    # When part is paid, then the rest
    books.call("POST", "/customerpayments", {**pay, "invoices": [{"invoice_id": invoice_id, "amount_applied": 60}]})
    part = decimal_json(books.call("GET", f"/invoices/{invoice_id}"))["invoice"]
    assert (part["status"], part["balance"], part["payment_made"]) == ("partially_paid", Decimal("4.76"), Decimal(60))
    # An overpayment of the balance is refused
    over = books.call(
        "POST", "/customerpayments", {**pay, "invoices": [{"invoice_id": invoice_id, "amount_applied": 5}]}
    )
    assert over.status_code == 400
    rest = {
        **pay,
        "amount": "4.76",
        "date": "2026-01-25",
        "invoices": [{"invoice_id": invoice_id, "amount_applied": "4.76"}],
    }
    assert books.call("POST", "/customerpayments", rest).status_code == 201
    paid = decimal_json(books.call("GET", f"/invoices/{invoice_id}"))["invoice"]
    # Then it is paid, with the last payment's date
    assert (paid["status"], paid["balance"], paid["last_payment_date"]) == ("paid", Decimal("0.00"), "2026-01-25")


def test_invoice_lists_filter_on_custom_fields_reference_and_last_modified_time(
    books: Books, customer_and_item: tuple[str, str]
) -> None:
    customer_id, item_id = customer_and_item
    cf = [{"api_name": "cf_closeloop_deal", "value": "hubspot-deal-1"}]
    old = books.call("POST", "/invoices", invoice_body(customer_id, item_id, custom_fields=cf, reference_number="r1"))
    books.zoho.state.clock.advance(120)
    since = datetime.fromtimestamp(books.zoho.state.clock.now(), UTC).strftime("%Y-%m-%dT%H:%M:%S%z")
    new = books.call("POST", "/invoices", invoice_body(customer_id, item_id, reference_number="r2"))
    old_id, new_id = old.json()["invoice"]["invoice_id"], new.json()["invoice"]["invoice_id"]

    def ids(**params: str) -> list[str]:
        return [row["invoice_id"] for row in books.call("GET", "/invoices", params=params).json()["invoices"]]

    assert ids(cf_closeloop_deal="hubspot-deal-1") == [old_id]
    assert ids(reference_number="r2") == [new_id]
    assert ids(last_modified_time=since) == [new_id]
    assert ids(sort_column="last_modified_time", sort_order="A") == [old_id, new_id]


def test_put_invoices_upserts_by_the_deal_key(books: Books, customer_and_item: tuple[str, str]) -> None:
    customer_id, item_id = customer_and_item
    headers = {"X-Unique-Identifier-Key": "cf_closeloop_deal", "X-Unique-Identifier-Value": "hubspot-deal-7"}
    # When the same invoice is upserted twice
    first = books.call("PUT", "/invoices", invoice_body(customer_id, item_id), headers={**headers, "X-Upsert": "true"})
    second = books.call("PUT", "/invoices", invoice_body(customer_id, item_id), headers={**headers, "X-Upsert": "true"})
    # Then one invoice exists, holding the key
    assert (first.status_code, second.status_code) == (201, 200)
    assert len(books.zoho.invoices()) == 1
    assert books.zoho.invoices()[0]["cf_closeloop_deal"] == "hubspot-deal-7"


def test_faults_apply_before_auth_and_emails_are_recorded(books: Books, customer_and_item: tuple[str, str]) -> None:
    customer_id, item_id = customer_and_item
    # Given an injected outage
    books.zoho.state.faults.append(Fault("/books/v3/invoices", 503, times=1, method="POST"))
    assert books.call("POST", "/invoices", invoice_body(customer_id, item_id)).status_code == 503
    # When the invoice (due next month) is made and emailed
    today = datetime.fromtimestamp(books.zoho.state.clock.now(), UTC).date()
    body = invoice_body(customer_id, item_id, date=today.isoformat(), due_date=(today + timedelta(days=30)).isoformat())
    invoice_id = books.call("POST", "/invoices", body).json()["invoice"]["invoice_id"]
    assert books.call("POST", f"/invoices/{invoice_id}/email", {}).status_code == 200
    # Then the email is recorded to the contact person, and emailing the draft marked it sent
    assert books.zoho.emails[0]["to"] == ["ap@acme.test"]
    assert books.zoho.invoices()[0]["status"] == "sent"


def test_driver_reads_and_pays_in_canonical_terms(books: Books, customer_and_item: tuple[str, str]) -> None:
    customer_id, item_id = customer_and_item
    driver = ZohoBooksDriver(books.zoho)
    invoice_id = books.call("POST", "/invoices", invoice_body(customer_id, item_id)).json()["invoice"]["invoice_id"]
    # When finance approves and part-pays the draft
    driver.approve_and_pay(invoice_id, Decimal("10"), date(2026, 1, 15))
    # Then the driver sees it awaiting payment with the balance
    seen = driver.invoices()[0]
    assert (seen.status, seen.amount_due, seen.lines) == (
        "AUTHORISED",
        Decimal("54.76"),
        (("WIDGET", Decimal(3), Decimal("19.99")),),
    )
    assert driver.customers()[0].email == "ap@acme.test"
    assert driver.environment("http://x")["ZOHO_BOOKS_ORGANIZATION_ID"] == books.zoho.organization_id


# -- items ------------------------------------------------------------------------------------------------


def test_items_are_created_read_and_updated_with_the_items_page_s_rules(books: Books) -> None:
    # When an item is created with a cost, as an item sold and bought
    body = {"name": "Widget", "sku": "W-1", "rate": 12.5, "purchase_rate": 4, "item_type": "sales_and_purchases"}
    created = books.call("POST", "/items", body)
    # Then Zoho answers 201 with the item: exact money, a purchase account by default
    assert created.status_code == 201
    item = decimal_json(created)["item"]
    assert (item["rate"], item["purchase_rate"], item["status"]) == (Decimal("12.50"), Decimal("4.00"), "active")
    assert item["purchase_account_id"] and item["account_id"]
    # And an update keeps what it is not sent
    updated = decimal_json(books.call("PUT", f"/items/{item['item_id']}", {"description": "Blue"}))["item"]
    assert (updated["description"], updated["name"], updated["rate"]) == ("Blue", "Widget", Decimal("12.50"))
    assert decimal_json(books.call("GET", f"/items/{item['item_id']}"))["item"] == updated
    # And a missing item is 404 code 1002
    missing = books.call("GET", "/items/460999999999999")
    assert (missing.status_code, missing.json()["code"]) == (404, 1002)


def test_item_names_and_skus_are_unique_and_lengths_and_rate_are_checked(books: Books) -> None:
    assert books.call("POST", "/items", {"name": "Widget", "sku": "W-1", "rate": 1}).status_code == 201
    refusals = [
        books.call("POST", "/items", {"name": "Other", "sku": "w-1", "rate": 1}),
        books.call("POST", "/items", {"name": "WIDGET", "sku": "W-2", "rate": 1}),
        books.call("POST", "/items", {"name": "n" * 101, "rate": 1}),
        books.call("POST", "/items", {"name": "Long", "description": "d" * 2001, "rate": 1}),
        books.call("POST", "/items", {"name": "No rate"}),
        books.call("POST", "/items", {"name": "Bad account", "rate": 1, "account_id": "1"}),
    ]
    assert [(r.status_code, r.json()["code"]) for r in refusals] == [(400, 1001)] * 2 + [(400, 4)] * 4
    assert books.call("POST", "/items", {"name": "n" * 100, "description": "d" * 2000, "rate": 1}).status_code == 201


def test_a_sales_item_keeps_no_purchase_side(books: Books) -> None:
    body = {"name": "Service", "rate": 50, "purchase_rate": 20}
    item = decimal_json(books.call("POST", "/items", body))["item"]
    assert (item["item_type"], item["purchase_rate"], item["purchase_account_id"]) == ("sales", Decimal("0.00"), "")


def test_item_lists_page_filter_and_may_answer_summaries() -> None:
    zoho, server = serve(ZohoBooksSandbox(minute_limit=10_000, day_limit=100_000, item_summaries=True))
    try:
        books = Books(zoho, server.url)
        for n in range(3):
            zoho.seed_item(sku=f"S-{n}", name=f"Item {n}", rate="1", purchase_rate="2", item_type="sales_and_purchases")
        zoho.seed_item(sku="OFF", name="Off", rate="1", status="inactive")
        page = books.call("GET", "/items", params={"filter_by": "Status.Active", "per_page": "2"}).json()
        assert [i["sku"] for i in page["items"]] == ["S-0", "S-1"] and page["page_context"]["has_more_page"]
        assert "purchase_rate" not in page["items"][0]
        found = books.call("GET", "/items", params={"search_text": "item 2"}).json()["items"]
        assert [i["sku"] for i in found] == ["S-2"]
        full = decimal_json(books.call("GET", f"/items/{page['items'][0]['item_id']}"))["item"]
        assert full["purchase_rate"] == Decimal("2.00")
    finally:
        server.stop()


def test_the_driver_seeds_an_item_once() -> None:
    zoho = ZohoBooksSandbox()
    driver = ZohoBooksDriver(zoho)
    driver.seed_item("W-1", "Widget", Decimal("10"))
    driver.seed_item("w-1", "Widget", Decimal("10"))
    assert [i["sku"] for i in zoho.items()] == ["W-1"]
