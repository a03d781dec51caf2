"""The Zoho Books adapter against the Zoho Books sandbox over HTTP: every port method, tokens, limits, quirks."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from closeloop.errors import (
    AuthRevoked,
    ConfigurationError,
    Conflict,
    IntegrationError,
    NotFound,
    RateLimited,
    Unavailable,
    ValidationFailed,
)
from closeloop.models import Address, CrmRef, Customer, InvoiceDraft, InvoiceLine, Person
from closeloop.oauth import RefreshingTokens, TokenGrant
from closeloop.paging import PagingLoop
from closeloop.vendors.zohobooks.adapter import ZohoBooksAccounting
from closeloop.vendors.zohobooks.client import refresh_with_zoho
from closeloop_local.sandboxes.base import Fault, SandboxServer
from closeloop_local.sandboxes.zohobooks import TAXES, ZohoBooksDriver, ZohoBooksSandbox, serve
from tests.fakes import MemoryStore
from tests.sandbox_adapters import zohobooks_adapter as adapter

VAT20 = next(tax_id for tax_id, (_, rate) in TAXES.items() if rate == Decimal("20"))
API = "/books/v3"


@pytest.fixture
def sandbox() -> Iterator[tuple[ZohoBooksSandbox, SandboxServer]]:
    zoho, server = serve(ZohoBooksSandbox(minute_limit=10_000, day_limit=100_000))
    yield zoho, server
    server.stop()


@pytest.fixture
def books(sandbox: tuple[ZohoBooksSandbox, SandboxServer]) -> ZohoBooksAccounting:
    return adapter(sandbox[0], sandbox[1].url)


def acme(**kw: object) -> Customer:
    values: dict[str, object] = {
        "ref": CrmRef(crm="hubspot", object_type="company", object_id="1000001"),
        "name": "Acme Ltd",
        "email": "ann@acme.test",
        "phone": "+44 20 7946 0000",
        "tax_number": "GB123456789",
        "first_name": "Ann",
        "last_name": "Archer",
        "address": Address(line1="1 Long Lane", city="London", postal_code="EC1A 9HF", country="United Kingdom"),
        "people": (Person(crm_id="52", first_name="Bob", last_name="Baker", email="bob@acme.test"),),
    }
    values.update(kw)
    return Customer(**values)


def api_calls(zoho: ZohoBooksSandbox, method: str = "*", path: str = f"{API}/*") -> int:
    return len(zoho.state.calls(method, path))


# -- customers --------------------------------------------------------------------------------------------


def test_create_then_find_by_number_tax_email_and_name(
    sandbox: tuple[ZohoBooksSandbox, SandboxServer], books: ZohoBooksAccounting
) -> None:
    zoho, _ = sandbox
    # When a customer is created
    created = books.create_customer(acme(), number="hubspot-company-1000001", idempotency_key="k-1")
    # Then Zoho holds it with the stamp in the unique custom field, the primary person and the other people
    stored = zoho.contacts()[0]
    assert stored["cf_closeloop_ref"] == "hubspot-company-1000001"
    assert stored["vat_reg_no"] == "GB123456789"
    assert [p["email"] for p in stored["contact_persons"]] == ["ann@acme.test", "bob@acme.test"]
    assert created.fields["address.city"] == "London"
    assert created.fields["people"] == "Bob|Baker|bob@acme.test"
    # And each lookup finds it
    assert [c.id for c in books.find_customers(number="hubspot-company-1000001")] == [created.id]
    assert [c.id for c in books.find_customers(tax_number="gb 123456789")] == [created.id]
    assert [c.id for c in books.find_customers(email="ANN@acme.test")] == [created.id]
    assert created.id in [c.id for c in books.find_customers(name="ACME LIMITED")]
    assert books.get_customer(created.id) == created


def test_inactive_or_missing_customers_are_none(
    sandbox: tuple[ZohoBooksSandbox, SandboxServer], books: ZohoBooksAccounting
) -> None:
    zoho, _ = sandbox
    contact_id = str(zoho.seed_contact(contact_name="Old Co", status="inactive")["contact_id"])
    zoho.contacts_by_id[contact_id]["status"] = "inactive"
    assert books.get_customer(contact_id) is None
    assert books.get_customer("460999999999999") is None
    assert books.find_customers(name="Old Co") == []


def test_a_repeated_create_upserts_instead_of_duplicating(
    sandbox: tuple[ZohoBooksSandbox, SandboxServer], books: ZohoBooksAccounting
) -> None:
    zoho, _ = sandbox
    # Given a create whose answer was lost (a crash before the mapping was written)
    first = books.create_customer(acme(), number="hubspot-company-1000001", idempotency_key="k-1")
    # When the worker creates it again
    second = books.create_customer(acme(), number="hubspot-company-1000001", idempotency_key="k-1")
    # Then it is the same contact, through Zoho's upsert headers
    assert second.id == first.id
    assert len(zoho.contacts()) == 1
    put = zoho.state.calls("PUT", f"{API}/contacts")[-1]
    assert put.headers["x-unique-identifier-key"] == "cf_closeloop_ref"
    assert put.headers["x-unique-identifier-value"] == "hubspot-company-1000001"
    assert put.headers["x-upsert"] == "true"
    assert put.headers["authorization"].startswith("Zoho-oauthtoken ")
    assert parse_qs(put.query)["organization_id"] == [zoho.organization_id]


def test_duplicate_name_is_a_conflict_not_a_retry(
    sandbox: tuple[ZohoBooksSandbox, SandboxServer], books: ZohoBooksAccounting
) -> None:
    zoho, _ = sandbox
    zoho.seed_contact(contact_name="Acme Ltd")
    with pytest.raises(Conflict):
        books.create_customer(acme(), number="hubspot-company-1", idempotency_key="k-2")
    assert api_calls(zoho, "PUT", f"{API}/contacts") == 1


def test_create_customers_returns_each_records_own_result(
    sandbox: tuple[ZohoBooksSandbox, SandboxServer], books: ZohoBooksAccounting
) -> None:
    zoho, _ = sandbox
    zoho.seed_contact(contact_name="Taken Ltd")
    pairs = [
        (acme(), "hubspot-company-1000001"),
        (acme(name="Taken Ltd", ref=CrmRef(crm="hubspot", object_type="company", object_id="2")), "hubspot-company-2"),
        (acme(name="Third", ref=CrmRef(crm="hubspot", object_type="company", object_id="3")), "hubspot-company-3"),
    ]
    # When three are created, one of them with a taken name
    results = books.create_customers(pairs, idempotency_key="batch-1")
    # Then each input has its result, in order: the taken name is that record's Conflict
    assert [type(r).__name__ for r in results] == ["AccountingCustomer", "Conflict", "AccountingCustomer"]
    assert len(zoho.contacts()) == 3


def test_find_customers_any_reads_a_small_organisation_once(
    sandbox: tuple[ZohoBooksSandbox, SandboxServer], books: ZohoBooksAccounting
) -> None:
    zoho, _ = sandbox
    a = books.create_customer(acme(), number="hubspot-company-1", idempotency_key="k")
    b = zoho.seed_contact(contact_name="Beta GmbH", contact_persons=[{"email": "ap@beta.test"}])
    zoho.seed_contact(contact_name="Unrelated")
    zoho.state.reset_log()
    # When four values are matched at once
    found = books.find_customers_any(
        numbers=["hubspot-company-1"], emails=["AP@beta.test"], names=["nobody"], tax_numbers=["XX1"]
    )
    # Then one page of contacts was read (cheaper than four lookups) and the two hits read in full
    assert sorted(c.id for c in found) == sorted([a.id, str(b["contact_id"])])
    assert api_calls(zoho, "GET", f"{API}/contacts") == 1
    assert api_calls(zoho, "GET", f"{API}/contacts/*") == 2


def test_find_customers_any_falls_back_to_lookups_in_a_large_organisation(
    sandbox: tuple[ZohoBooksSandbox, SandboxServer],
) -> None:
    zoho, server = sandbox

    class SmallPages(ZohoBooksAccounting):
        PAGE_SIZE = 2

    books = adapter(zoho, server.url, cls=SmallPages)
    for n in range(7):
        zoho.seed_contact(contact_name=f"Customer {n}")
    target = zoho.seed_contact(contact_name="Zed", contact_persons=[{"email": "z@zed.test"}])
    zoho.state.reset_log()
    # When two emails are matched in an organisation of four pages
    found = books.find_customers_any(emails=["z@zed.test", "none@x.test"])
    # Then two pages were tried, then one lookup per value
    assert [c.id for c in found] == [target["contact_id"]]
    lists = [parse_qs(r.query) for r in zoho.state.calls("GET", f"{API}/contacts")]
    assert [q.get("email") for q in lists] == [None, None, ["z@zed.test"], ["none@x.test"]]


def test_update_writes_only_the_named_fields_and_keeps_finances_entries(
    sandbox: tuple[ZohoBooksSandbox, SandboxServer], books: ZohoBooksAccounting
) -> None:
    zoho, _ = sandbox
    created = books.create_customer(acme(), number="n-1", idempotency_key="k-3")
    # Given finance changed the billing email and the street in Zoho
    contact = zoho.contacts_by_id[created.id]
    contact["contact_persons"][0]["email"] = "billing@acme.test"
    contact["billing_address"]["address"] = "2 Short St"
    # When the CRM changes the phone and the city
    updated = books.update_customer(
        created.id,
        acme(name="Renamed", phone="+1 555", address=Address(line1="9 Other", city="Leeds")),
        ["phone", "address.city"],
        number=None,
        idempotency_key="k-4",
    )
    # Then only those were written: name, email and street are finance's still
    assert (updated.name, updated.fields["phone"], updated.fields["address.city"]) == ("Acme Ltd", "+1 555", "Leeds")
    assert (updated.email, updated.fields["address.line1"]) == ("billing@acme.test", "2 Short St")
    assert updated.fields["people"] == "Bob|Baker|bob@acme.test"
    body = json.loads(zoho.state.calls("PUT", f"{API}/contacts/*")[-1].body)
    assert "contact_name" not in body
    # And a number stamp is written to the unique custom field
    stamped = books.update_customer(created.id, acme(), [], number="hubspot-company-9", idempotency_key="k-5")
    assert stamped.number == "hubspot-company-9"


# -- tokens, limits, errors -------------------------------------------------------------------------------


def test_token_is_cached_and_refreshed_once_after_a_401(sandbox: tuple[ZohoBooksSandbox, SandboxServer]) -> None:
    zoho, server = sandbox
    store = MemoryStore()
    books = adapter(zoho, server.url, store)
    books.find_customers(name="x")
    books.find_customers(name="y")
    assert len(zoho.state.calls("POST", "/oauth/v2/token")) == 1
    # Given Zoho expires the token early
    zoho.expire_access_tokens()
    # When the adapter calls again, it gets a 401, refreshes once, and retries
    books.find_customers(name="z")
    state = store.get_token("zohobooks")
    assert state is not None
    assert len(zoho.state.calls("POST", "/oauth/v2/token")) == 2
    # And the refresh token did not rotate
    assert state.refresh_token == zoho.initial_refresh_token


def test_revoked_refresh_token_or_client_raises_auth_revoked(sandbox: tuple[ZohoBooksSandbox, SandboxServer]) -> None:
    zoho, server = sandbox
    zoho.revoke_refresh_tokens()
    with pytest.raises(AuthRevoked, match="invalid_code"):
        adapter(zoho, server.url).find_customers(name="x")
    # A client secret Zoho no longer knows is the same: a person must reconnect
    with pytest.raises(AuthRevoked, match="invalid_client"):
        refresh_with_zoho(server.url, lambda: zoho.client_id, lambda: "rotated")(zoho.initial_refresh_token)


def test_throttled_refresh_is_rate_limited(sandbox: tuple[ZohoBooksSandbox, SandboxServer]) -> None:
    zoho, server = sandbox
    # Given ten tokens minted elsewhere in the last ten minutes
    for _ in range(10):
        adapter(zoho, server.url).find_customers(name="x")
    # Then the eleventh refresh is refused, and retriable
    with pytest.raises(RateLimited) as info:
        adapter(zoho, server.url).find_customers(name="x")
    assert info.value.problem == "token"


def test_minute_limit_is_rate_limited_without_burning_calls() -> None:
    zoho, server = serve(ZohoBooksSandbox(minute_limit=2))
    try:
        books = adapter(zoho, server.url)
        books.find_customers(email="a@x.test")
        books.find_customers(email="b@x.test")
        # When the minute's allowance is used up
        with pytest.raises(RateLimited) as info:
            books.find_customers(email="c@x.test")
        # Then it waits no retries in-process (the window is a rolling minute) and says so
        assert info.value.problem == "minute"
        assert info.value.retry_after == 60
        assert api_calls(zoho) == 3
    finally:
        server.stop()


def test_daily_cap_is_not_retried() -> None:
    zoho, server = serve(ZohoBooksSandbox(day_limit=1))
    try:
        books = adapter(zoho, server.url)
        books.find_customers(email="a@x.test")
        with pytest.raises(RateLimited) as info:
            books.find_customers(email="b@x.test")
        assert info.value.problem == "day"
        assert api_calls(zoho) == 2
    finally:
        server.stop()


def test_wrong_organization_is_a_configuration_error(sandbox: tuple[ZohoBooksSandbox, SandboxServer]) -> None:
    zoho, server = sandbox
    with pytest.raises(ConfigurationError, match="6041"):
        adapter(zoho, server.url, organization="999").find_customers(name="x")


def test_outages_are_retried(sandbox: tuple[ZohoBooksSandbox, SandboxServer], books: ZohoBooksAccounting) -> None:
    zoho, _ = sandbox
    zoho.state.faults.append(Fault(f"{API}/contacts", 503, times=2, method="GET"))
    assert books.find_customers(name="x") == []
    assert api_calls(zoho, "GET", f"{API}/contacts") == 3


# -- items and invoices -----------------------------------------------------------------------------------


@pytest.fixture
def customer_id(sandbox: tuple[ZohoBooksSandbox, SandboxServer]) -> str:
    zoho, _ = sandbox
    driver = ZohoBooksDriver(zoho)
    driver.seed_item("WIDGET", "Widget", Decimal("19.99"))
    driver.seed_item("GADGET", "Gadget", Decimal("45.50"))
    return driver.seed_customer("Acme Ltd", email="ap@acme.test")


def draft(customer_id: str, reference: str = "hubspot-deal-3000001 Big deal", **kw: Any) -> InvoiceDraft:
    today = date.today()
    values: dict[str, Any] = {
        "customer_id": customer_id,
        "reference": reference,
        "currency": "GBP",
        "lines": (
            InvoiceLine(
                item_code="widget",
                description="Widgets",
                quantity=Decimal("3"),
                unit_amount=Decimal("19.99"),
                tax_type=VAT20,
                discount_rate=Decimal("10"),
            ),
            InvoiceLine(item_code="GADGET", description="Gadget", quantity=Decimal("1"), unit_amount=Decimal("0.3333")),
        ),
        "issue_date": today,
        "due_date": today + timedelta(days=30),
    }
    values.update(kw)
    return InvoiceDraft(**values)


def test_get_items_matches_skus_case_insensitively(
    sandbox: tuple[ZohoBooksSandbox, SandboxServer], books: ZohoBooksAccounting, customer_id: str
) -> None:
    found = books.get_items(["widget", "GADGET", "NOPE"])
    assert sorted(found) == ["GADGET", "widget"]
    assert found["widget"].unit_price == Decimal("19.99")
    assert api_calls(sandbox[0], "GET", f"{API}/items") == 1


def test_create_invoice_sends_exact_decimals_and_marks_authorised_ones_sent(
    sandbox: tuple[ZohoBooksSandbox, SandboxServer], books: ZohoBooksAccounting, customer_id: str
) -> None:
    zoho, _ = sandbox
    # When an AUTHORISED invoice is created
    invoice = books.create_invoice(draft(customer_id, status="AUTHORISED"), idempotency_key="i-1")
    # Then the body carried the draft's decimals exactly, the SKU as item id and the tax id
    body = zoho.state.calls("PUT", f"{API}/invoices")[-1].body.decode()
    assert '"rate":0.3333' in body
    assert '"discount":"10%"' in body
    assert f'"tax_id":"{VAT20}"' in body
    # And Zoho's totals come back exact: 53.97 + 0.33 before tax, 10.79 tax
    assert (invoice.sub_total, invoice.total_tax, invoice.total) == (
        Decimal("54.30"),
        Decimal("10.79"),
        Decimal("65.09"),
    )
    assert invoice.status == "AUTHORISED"
    assert zoho.invoices()[0]["status"] == "sent"
    assert invoice.url.endswith(f"/app/{zoho.organization_id}#/invoices/{invoice.id}")
    assert invoice.reference == "hubspot-deal-3000001 Big deal"


def test_a_repeated_invoice_create_is_the_same_invoice(
    sandbox: tuple[ZohoBooksSandbox, SandboxServer], books: ZohoBooksAccounting, customer_id: str
) -> None:
    zoho, _ = sandbox
    first = books.create_invoice(draft(customer_id), idempotency_key="i-1")
    second = books.create_invoice(draft(customer_id), idempotency_key="i-1")
    assert second.id == first.id
    assert len(zoho.invoices()) == 1
    assert zoho.invoices()[0]["cf_closeloop_deal"] == "hubspot-deal-3000001"


def test_find_invoice_by_the_deal_key_survives_a_rename_and_skips_void(
    sandbox: tuple[ZohoBooksSandbox, SandboxServer], books: ZohoBooksAccounting, customer_id: str
) -> None:
    zoho, server = sandbox
    created = books.create_invoice(draft(customer_id), idempotency_key="i-1")
    # The deal was renamed since: its key still finds the invoice
    found = books.find_invoice("hubspot-deal-3000001 Renamed deal")
    assert found is not None and found.id == created.id
    assert books.find_invoice("hubspot-deal-42 Other") is None
    # Once voided, the invoice is no longer the deal's
    raw = zoho.invoices_by_id[created.id]
    raw["status"] = "void"
    assert books.find_invoice("hubspot-deal-3000001 Big deal") is None
    assert books.get_invoice(created.id) is not None
    assert books.get_invoice("460999999999999") is None


def test_invoice_refusals_are_validation_failures(books: ZohoBooksAccounting, customer_id: str) -> None:
    unknown_sku = draft(
        customer_id,
        lines=(InvoiceLine(item_code="NOPE", description="?", quantity=Decimal(1), unit_amount=Decimal(1)),),
    )
    with pytest.raises(ValidationFailed, match="NOPE"):
        books.create_invoice(unknown_sku, idempotency_key="i-2")
    bad_tax = draft(
        customer_id,
        lines=(
            InvoiceLine(
                item_code="WIDGET", description="w", quantity=Decimal(1), unit_amount=Decimal(1), tax_type="123"
            ),
        ),
    )
    with pytest.raises(ValidationFailed, match="tax_id"):
        books.create_invoice(bad_tax, idempotency_key="i-3")


def test_send_invoice_emails_through_zoho(
    sandbox: tuple[ZohoBooksSandbox, SandboxServer], books: ZohoBooksAccounting, customer_id: str
) -> None:
    zoho, _ = sandbox
    invoice = books.create_invoice(draft(customer_id, status="AUTHORISED"), idempotency_key="i-1")
    books.send_invoice(invoice.id)
    assert zoho.emails[0]["to"] == ["ap@acme.test"]
    # A customer without an email cannot be sent one
    lonely = ZohoBooksDriver(zoho).seed_customer("Lonely Ltd")
    other = books.create_invoice(draft(lonely, reference="hubspot-deal-2 X"), idempotency_key="i-2")
    with pytest.raises(ValidationFailed):
        books.send_invoice(other.id)


def test_changed_since_reads_only_the_changes_newest_first(
    sandbox: tuple[ZohoBooksSandbox, SandboxServer], books: ZohoBooksAccounting, customer_id: str
) -> None:
    zoho, _ = sandbox
    driver = ZohoBooksDriver(zoho)
    # Given 250 invoices, then, later, payments on three of them
    made = [
        books.create_invoice(
            draft(customer_id, reference=f"hubspot-deal-{n}", status="AUTHORISED"), idempotency_key="x"
        )
        for n in range(250)
    ]
    everything = list(books.iter_invoices_changed_since(None))
    zoho.state.clock.advance(300)
    since = datetime.fromtimestamp(zoho.state.clock.now(), UTC)
    for invoice in made[:3]:
        driver.approve_and_pay(invoice.id, Decimal("10"), date.today())
    zoho.state.reset_log()
    # When the changes since then are read
    changed = list(books.iter_invoices_changed_since(since))
    # Then only the three come back, with the payment, from one call
    assert sorted(i.id for i in changed) == sorted(i.id for i in made[:3])
    assert all(i.amount_paid == Decimal("10") and i.last_payment_date == date.today() for i in changed)
    assert api_calls(zoho, "GET", f"{API}/invoices") == 1
    # And every invoice was read when there was no watermark, over two pages
    assert len({i.id for i in everything}) == 250


def test_iter_invoices_reads_the_issue_date_window(
    sandbox: tuple[ZohoBooksSandbox, SandboxServer], books: ZohoBooksAccounting, customer_id: str
) -> None:
    zoho, _ = sandbox
    jan = books.create_invoice(
        draft(customer_id, reference="hubspot-deal-1", issue_date=date(2026, 1, 31), due_date=date(2026, 3, 1)),
        idempotency_key="a",
    )
    books.create_invoice(
        draft(customer_id, reference="hubspot-deal-2", issue_date=date(2026, 2, 1), due_date=date(2026, 3, 1)),
        idempotency_key="b",
    )
    window = list(books.iter_invoices(date(2026, 1, 1), date(2026, 2, 1)))
    assert [i.id for i in window] == [jan.id]
    query = parse_qs(zoho.state.calls("GET", f"{API}/invoices")[-1].query)
    assert (query["date_start"], query["date_end"]) == (["2026-01-01"], ["2026-01-31"])


# -- undocumented list filters, never trusted blindly ------------------------------------------------------


class OneRowPages(ZohoBooksAccounting):
    """One row a page, so that get_items falls back to its per-SKU lookups."""

    PAGE_SIZE = 1


def test_lookups_by_undocumented_filters_find_nothing_rather_than_an_unrelated_record() -> None:
    # Given an organisation that ignores the cf_ and sku list filters (answers every row)
    zoho, server = serve(ZohoBooksSandbox(minute_limit=10_000, day_limit=100_000, ignore_undocumented_filters=True))
    try:
        books = adapter(zoho, server.url)
        driver = ZohoBooksDriver(zoho)
        driver.seed_item("WIDGET", "Widget", Decimal("19.99"))
        driver.seed_item("GADGET", "Gadget", Decimal("45.50"))
        first = books.create_customer(acme(), number="hubspot-company-1", idempotency_key="k-1")
        second = books.create_customer(acme(name="Beta Ltd"), number="hubspot-company-2", idempotency_key="k-2")
        invoice = books.create_invoice(draft(first.id), idempotency_key="i-1")
        other = books.create_invoice(draft(second.id, "hubspot-deal-4000002 Other deal"), idempotency_key="i-2")
        # When customers are looked up by a number nobody has, and by each number
        # Then nothing, and exactly the stamped customer, come back
        assert books.find_customers(number="hubspot-company-9") == []
        assert [c.id for c in books.find_customers(number="hubspot-company-2")] == [second.id]
        # And an invoice lookup for a deal without one finds nothing; each deal finds its own
        assert books.find_invoice("hubspot-deal-5000003 Not invoiced") is None
        found = books.find_invoice("hubspot-deal-4000002 Other deal")
        assert found is not None and found.id == other.id
        mine = books.find_invoice("hubspot-deal-3000001 Big deal")
        assert mine is not None and mine.id == invoice.id
        # And a SKU lookup keeps only that SKU's item
        paged = adapter(zoho, server.url, cls=OneRowPages)
        assert [row["sku"] for row in paged._item_rows("gadget")] == ["GADGET"]
        assert paged._item_rows("NOPE") == []
        assert sorted(paged.get_items(["GADGET"])) == ["GADGET"]
    finally:
        server.stop()


# -- paging and error bodies, over a scripted transport ---------------------------------------------------


def offline_books(handler: Callable[[httpx.Request], httpx.Response]) -> ZohoBooksAccounting:
    """The adapter over a mock transport (scripted answers); tokens come without a call."""
    tokens = RefreshingTokens(
        "zohobooks",
        MemoryStore(),
        seed=lambda fresh: "refresh-token",
        refresh=lambda token: TokenGrant(access_token="access", expires_in=3600, refresh_token=token),
        write_back=lambda token: None,
    )
    return ZohoBooksAccounting(
        base_url="https://www.zohoapis.test",
        tokens=tokens,
        organization_id=lambda: "org-1",
        transport=httpx.MockTransport(handler),
        sleep=lambda s: None,
    )


def contact_rows(*ids: str) -> list[dict[str, Any]]:
    return [{"contact_id": i, "contact_name": f"Co {i}", "contact_type": "customer"} for i in ids]


def test_a_list_that_answers_a_page_already_read_is_a_paging_loop() -> None:
    # Given Zoho answering pages A, B, then A again, each saying there are more
    pages = {1: contact_rows("1", "2"), 2: contact_rows("3"), 3: contact_rows("1", "2"), 4: contact_rows("4")}
    asked: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        page = int(request.url.params["page"])
        asked.append(page)
        body = {"code": 0, "message": "success", "contacts": pages[page], "page_context": {"has_more_page": True}}
        return httpx.Response(200, json=body)

    # When every active contact is read
    with pytest.raises(PagingLoop) as caught:
        offline_books(handler)._active_contacts({})
    # Then the walk stops at the repeated page (never reading on) and says which list looped
    assert asked == [1, 2, 3]
    assert caught.value.message.startswith("GET /contacts: zohobooks repeated the paging position")


def test_page_size_and_page_numbers_are_sent_until_has_more_page_is_false() -> None:
    seen: list[dict[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(dict(request.url.params))
        page = int(request.url.params["page"])
        more = page < 3
        rows = contact_rows(str(page))
        return httpx.Response(200, json={"code": 0, "contacts": rows, "page_context": {"has_more_page": more}})

    rows = offline_books(handler)._active_contacts({"email": "a@x.test"})
    assert [row["contact_id"] for row in rows] == ["1", "2", "3"]
    assert [(q["page"], q["per_page"], q["email"], q["organization_id"]) for q in seen] == [
        (str(n), "200", "a@x.test", "org-1") for n in (1, 2, 3)
    ]


@pytest.mark.parametrize(
    ("status", "code", "error"),
    [
        (200, 3062, Conflict),  # a name taken, answered with HTTP 200
        (400, 1001, Conflict),
        (200, 1002, NotFound),
        (404, 9999, NotFound),
        (200, 4, ValidationFailed),  # any other non-zero code on a 200 is a refusal
        (400, 6041, ConfigurationError),
        (503, 1002, Unavailable),  # an outage stays an outage whatever its body says
    ],
)
def test_a_non_zero_code_is_the_typed_error_its_code_means(
    status: int, code: int, error: type[IntegrationError]
) -> None:
    # Given Zoho refusing a write with {"code": N, "message": ...}
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json={"code": code, "message": f"Refused for ann@acme.test (#{code})"})

    # When a contact is upserted
    with pytest.raises(IntegrationError) as caught:
        offline_books(handler).create_customer(acme(), number="hubspot-company-1", idempotency_key="k")
    # Then the error is the one the code means, carries Zoho's code, and no personal data
    assert type(caught.value) is error
    assert caught.value.status == status
    assert f"[{code}]" in caught.value.message
    assert "ann@acme.test" not in caught.value.message
