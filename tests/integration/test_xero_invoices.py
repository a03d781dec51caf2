"""The Xero adapter's items, invoices and payments against the Xero sandbox over HTTP.

Totals are Xero's (the sandbox rounds tax per line like Xero); the adapter must send the draft's decimals
exactly and read Xero's numbers back without passing through float.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from closeloop.errors import Conflict, ValidationFailed
from closeloop.http import Fault
from closeloop.models import AccountingCustomer, CrmRef, Customer, InvoiceDraft, InvoiceLine
from closeloop.oauth import RefreshingTokens, TokenGrant
from closeloop.paging import PagingLoop
from closeloop.vendors.xero.adapter import XeroAccounting
from closeloop.vendors.xero.client import element_fault, xero_fault
from closeloop.wire import dumps_exact
from closeloop_local.sandboxes.base import LoggedRequest, SandboxServer
from closeloop_local.sandboxes.xero import XeroSandbox, serve
from tests.fakes import MemoryStore
from tests.sandbox_adapters import xero_adapter as adapter

API = "/api.xro/2.0"
DEAL_URL = "https://app.hubspot.com/contacts/1234/record/0-3/3000001"


@pytest.fixture
def sandbox() -> Iterator[tuple[XeroSandbox, SandboxServer]]:
    # Limits high enough for the paging tests' seeding; the rate limits have their own tests.
    xero, server = serve(XeroSandbox(minute_limit=10_000, day_limit=100_000, concurrent_limit=50))
    yield xero, server
    server.stop()


@pytest.fixture
def books(sandbox: tuple[XeroSandbox, SandboxServer]) -> XeroAccounting:
    xero, server = sandbox
    return adapter(xero, server.url)


@pytest.fixture
def xero(sandbox: tuple[XeroSandbox, SandboxServer]) -> XeroSandbox:
    return sandbox[0]


@pytest.fixture
def customer_id(xero: XeroSandbox) -> str:
    return str(xero.seed_contact(Name="Acme Ltd", EmailAddress="ap@acme.test")["ContactID"])


def seed_catalogue(xero: XeroSandbox) -> None:
    xero.seed_item(
        Code="WIDGET", Name="Widget", SalesDetails={"UnitPrice": "19.99", "AccountCode": "200", "TaxType": "OUTPUT2"}
    )
    xero.seed_item(
        Code="GADGET", Name="Gadget", SalesDetails={"UnitPrice": "45.50", "AccountCode": "200", "TaxType": "OUTPUT2"}
    )
    xero.seed_item(Code="ADVICE", Name="Advice", SalesDetails={"UnitPrice": "120", "AccountCode": "260"})


def line(code: str, quantity: str, unit: str, tax_type: str = "OUTPUT2", **kw: Any) -> InvoiceLine:
    return InvoiceLine(
        item_code=code,
        description=f"{code} for the deal",
        quantity=Decimal(quantity),
        unit_amount=Decimal(unit),
        tax_type=tax_type,
        **kw,
    )


def draft(customer_id: str, *lines: InvoiceLine, **kw: Any) -> InvoiceDraft:
    values: dict[str, Any] = {
        "customer_id": customer_id,
        "reference": "hubspot-deal-3000001 Big deal",
        "currency": "NZD",
        "lines": lines,
        "status": "AUTHORISED",
        "issue_date": date(2030, 2, 1),
        "due_date": date(2030, 3, 3),
        "url": DEAL_URL,
    }
    values.update(kw)
    return InvoiceDraft(**values)


def query(request: LoggedRequest) -> dict[str, list[str]]:
    return parse_qs(request.query)


def pay(books: XeroAccounting, invoice_id: str, amount: str, on: str) -> None:
    """Record a payment into the sandbox's bank account 090 (a BANK account: the only kind Xero accepts)."""
    payment = {"Invoice": {"InvoiceID": invoice_id}, "Account": {"Code": "090"}, "Date": on, "Amount": Decimal(amount)}
    books.http.request(
        "PUT", "/Payments", content=dumps_exact({"Payments": [payment]}), headers={"Content-Type": "application/json"}
    )


# ---- items --------------------------------------------------------------------------------------------------


def test_get_items_maps_sales_details_and_chunks_the_codes(xero: XeroSandbox, books: XeroAccounting) -> None:
    # Given three items, one priced at 4 dp and one whose code has a double quote
    seed_catalogue(xero)
    xero.seed_item(Code='A"B', Name="Quoted", SalesDetails={"UnitPrice": "0.3333", "TaxType": "NONE"})
    asked = ["widget", "GADGET", 'A"B', *(f"MISSING-{n:03d}" for n in range(117))]

    # When the adapter asks for 120 codes
    items = books.get_items(asked)

    # Then it made three calls of at most 50 codes, and found the three that exist, keyed as asked
    calls = xero.state.calls("GET", f"{API}/Items")
    assert len(calls) == 3
    assert all(query(c)["where"][0].count("Code==") <= 50 for c in calls)
    assert all(query(c)["unitdp"] == ["4"] for c in calls)
    assert set(items) == {"widget", "GADGET", 'A"B'}
    widget = items["widget"]
    assert (widget.code, widget.name, widget.unit_price) == ("WIDGET", "Widget", Decimal("19.99"))
    assert (widget.account_code, widget.tax_type) == ("200", "OUTPUT2")
    assert items['A"B'].unit_price == Decimal("0.3333")
    assert items["GADGET"].tax_type == "OUTPUT2"


def test_get_items_with_no_codes_makes_no_call(xero: XeroSandbox, books: XeroAccounting) -> None:
    # When nothing is asked for, Then nothing is fetched
    assert books.get_items([]) == {}
    assert xero.state.calls("GET", f"{API}/Items") == []


# ---- create ---------------------------------------------------------------------------------------------


def test_create_with_three_item_lines_and_tax_has_xeros_totals_to_the_cent(
    xero: XeroSandbox, books: XeroAccounting, customer_id: str
) -> None:
    # Given items in Xero and a draft with three lines: 15% GST, a 10% discount, and a line without tax
    seed_catalogue(xero)
    lines = (
        line("WIDGET", "3", "19.99"),  # 59.97, GST 8.9955 -> 9.00
        line("GADGET", "2", "45.50", discount_rate=Decimal("10")),  # 81.90, GST 12.285 -> 12.29
        line("ADVICE", "1.5", "120.00", tax_type="NONE", account_code="260"),  # 180.00, no GST
    )

    # When the invoice is created
    invoice = books.create_invoice(draft(customer_id, *lines), idempotency_key="deal-3000001-invoice")

    # Then Xero's totals come back as exact Decimals
    assert (invoice.sub_total, invoice.total_tax, invoice.total) == (
        Decimal("321.87"),
        Decimal("21.29"),
        Decimal("343.16"),
    )
    assert (invoice.amount_paid, invoice.amount_due) == (Decimal(0), Decimal("343.16"))
    assert all(isinstance(v, Decimal) for v in (invoice.sub_total, invoice.total_tax, invoice.total))
    # And the rest of the invoice is mapped
    assert invoice.number == "INV-0001"
    assert (invoice.status, invoice.customer_id, invoice.currency) == ("AUTHORISED", customer_id, "NZD")
    assert (invoice.issue_date, invoice.due_date) == (date(2030, 2, 1), date(2030, 3, 3))
    assert invoice.reference == "hubspot-deal-3000001 Big deal"
    assert invoice.url == f"https://go.xero.com/AccountsReceivable/View.aspx?InvoiceID={invoice.id}"
    assert invoice.updated_at is not None and invoice.updated_at.tzinfo is not None
    assert invoice.last_payment_date is None
    # And the sandbox holds what was drafted, with the link back to the deal
    stored = xero.invoices()[0]
    assert (stored["Type"], stored["Url"], stored["LineAmountTypes"]) == ("ACCREC", DEAL_URL, "Exclusive")
    assert [(li["ItemCode"], li["LineAmount"], li["TaxAmount"]) for li in stored["LineItems"]] == [
        ("WIDGET", Decimal("59.97"), Decimal("9.00")),
        ("GADGET", Decimal("81.90"), Decimal("12.29")),
        ("ADVICE", Decimal("180.00"), Decimal("0.00")),
    ]
    # And the request was the documented create: PUT with summarizeErrors, unitdp=4 and the key
    put = xero.state.calls("PUT", f"{API}/Invoices")[0]
    assert query(put) == {"summarizeErrors": ["true"], "unitdp": ["4"]}
    assert put.headers["idempotency-key"] == "deal-3000001-invoice"
    assert put.headers["content-type"] == "application/json"
    assert b'"UnitAmount":120.00' in put.body  # the draft's decimal literal, as a float would not be (120.0)
    sent = json.loads(put.body, parse_float=Decimal)["Invoices"][0]
    assert sent["Contact"] == {"ContactID": customer_id}
    assert (sent["Date"], sent["DueDate"], sent["CurrencyCode"], sent["Status"]) == (
        "2030-02-01",
        "2030-03-03",
        "NZD",
        "AUTHORISED",
    )
    assert sent["LineItems"][1]["DiscountRate"] == Decimal("10")
    assert "DiscountRate" not in sent["LineItems"][0]
    assert sent["LineItems"][2]["AccountCode"] == "260" and "AccountCode" not in sent["LineItems"][0]

    # And reading it back by id gives the same invoice
    assert books.get_invoice(invoice.id) == invoice


def test_money_is_exact_three_times_33_33_with_gst(xero: XeroSandbox, books: XeroAccounting, customer_id: str) -> None:
    # Given lines whose amounts have no exact binary float: 3 x 33.33 and a 4-dp unit price
    xero.seed_item(Code="HOURS", Name="Hours", SalesDetails={"AccountCode": "200", "TaxType": "OUTPUT2"})
    lines = (line("HOURS", "3", "33.33"), line("HOURS", "3", "0.3333"))

    # When the invoice is created
    invoice = books.create_invoice(draft(customer_id, *lines), idempotency_key="k-exact")

    # Then the body carried the decimal literals (not 33.329999… or a 2-dp rounding of 0.3333)
    body = xero.state.calls("PUT", f"{API}/Invoices")[0].body
    assert b'"Quantity":3,"UnitAmount":33.33' in body
    assert b'"UnitAmount":0.3333' in body
    # And Xero's per-line rounding comes back to the cent: 99.99 + GST 15.00, 1.00 + GST 0.15
    assert invoice.sub_total == Decimal("100.99")
    assert invoice.total_tax == Decimal("15.15")
    assert invoice.total == Decimal("116.14")
    assert invoice.total == invoice.sub_total + invoice.total_tax


def test_idempotency_key_replay_returns_the_same_invoice_and_creates_no_second(
    xero: XeroSandbox, books: XeroAccounting, customer_id: str
) -> None:
    # Given an invoice created with a key
    seed_catalogue(xero)
    the_draft = draft(customer_id, line("WIDGET", "1", "19.99"))
    first = books.create_invoice(the_draft, idempotency_key="closeloop-abc")

    # When the same create is retried with the same key (a lost response, a redelivery)
    again = books.create_invoice(the_draft, idempotency_key="closeloop-abc")

    # Then Xero replays the first answer: one invoice, two requests
    assert again.id == first.id and again.number == first.number
    assert len(xero.invoices()) == 1
    assert len(xero.state.calls("PUT", f"{API}/Invoices")) == 2


def test_unknown_item_code_is_validation_failed_naming_it(
    xero: XeroSandbox, books: XeroAccounting, customer_id: str
) -> None:
    # Given one known and one unknown item code
    seed_catalogue(xero)
    bad = draft(customer_id, line("WIDGET", "1", "19.99"), line("NOPE-X", "1", "5.00"))

    # When the invoice is created, Then Xero's reason names the code and nothing is created
    with pytest.raises(ValidationFailed) as info:
        books.create_invoice(bad, idempotency_key="k-bad")
    assert "NOPE-X" in str(info.value)
    assert info.value.status == 400 and info.value.vendor == "xero"
    assert xero.invoices() == []
    # And a 400 is not retried
    assert len(xero.state.calls("PUT", f"{API}/Invoices")) == 1


# ---- find, get ------------------------------------------------------------------------------------------


def test_find_invoice_by_reference_skips_a_voided_one(
    xero: XeroSandbox, books: XeroAccounting, customer_id: str
) -> None:
    # Given an invoice for a deal whose name has double quotes, and another deal's invoice
    seed_catalogue(xero)
    reference = 'hubspot-deal-7 The "Big" one'
    voided = books.create_invoice(
        draft(customer_id, line("WIDGET", "1", "1"), reference=reference), idempotency_key="a"
    )
    books.create_invoice(
        draft(customer_id, line("WIDGET", "1", "2"), reference="hubspot-deal-8 x"), idempotency_key="b"
    )
    assert books.find_invoice(reference) == books.get_invoice(voided.id)

    # When that invoice is voided in Xero
    books.http.request("POST", f"/Invoices/{voided.id}", json={"InvoiceID": voided.id, "Status": "VOIDED"})

    # Then it is no longer found by reference, though it can still be read by id
    assert books.find_invoice(reference) is None
    voided_now = books.get_invoice(voided.id)
    assert voided_now is not None and voided_now.status == "VOIDED"

    # And a new invoice for the same deal is the one found
    remade = books.create_invoice(
        draft(customer_id, line("WIDGET", "1", "1"), reference=reference), idempotency_key="c"
    )
    found = books.find_invoice(reference)
    assert found is not None and found.id == remade.id
    lookup = query(xero.state.calls("GET", f"{API}/Invoices")[-1])
    assert lookup["where"] == ['Type=="ACCREC"&&Reference=="hubspot-deal-7 The ""Big"" one"']
    assert lookup["Statuses"] == ["DRAFT,SUBMITTED,AUTHORISED,PAID"] and lookup["page"] == ["1"]


def test_get_invoice_of_an_unknown_id_is_none(books: XeroAccounting) -> None:
    # When Xero answers 404 (a plain-text page, not JSON), Then the invoice simply does not exist
    assert books.get_invoice("8a3c1f5e-0000-4000-8000-000000000000") is None


# ---- listing ----------------------------------------------------------------------------------------------


def seed_invoices(books: XeroAccounting, customer_id: str, count: int) -> list[str]:
    """``count`` draft invoices in one PUT (a batch, like a busy organisation's history)."""
    batch = [
        {
            "Type": "ACCREC",
            "Contact": {"ContactID": customer_id},
            "Reference": f"old-{n}",
            "LineItems": [{"Description": "x", "Quantity": 1, "UnitAmount": 10, "AccountCode": "200"}],
        }
        for n in range(count)
    ]
    response = books.http.request("PUT", "/Invoices", json={"Invoices": batch})
    return [row["InvoiceID"] for row in response.json()["Invoices"]]


def test_changed_since_costs_one_call_per_page_of_changes(
    xero: XeroSandbox, books: XeroAccounting, customer_id: str
) -> None:
    # Given 250 invoices
    ids = seed_invoices(books, customer_id, 250)

    # When all are listed (no watermark yet)
    everything = list(books.iter_invoices_changed_since(None))

    # Then 250 come back in 1 + 2 full pages = 3 calls of 100 each
    assert len(everything) == 250 and len({i.id for i in everything}) == 250
    listing = xero.state.calls("GET", f"{API}/Invoices")
    assert [query(c)["page"] for c in listing] == [["1"], ["2"], ["3"]]
    assert all(query(c)["where"] == ['Type=="ACCREC"'] and "if-modified-since" not in c.headers for c in listing)

    # Given a watermark two minutes later, and 3 invoices changed after it
    xero.state.clock.advance(120)
    watermark = datetime.fromtimestamp(xero.state.clock.now(), UTC)
    xero.state.clock.advance(5)
    for invoice_id in ids[10:13]:
        books.http.request("POST", f"/Invoices/{invoice_id}", json={"Reference": f"changed-{invoice_id}"})

    # When the changes since the watermark are listed
    changes = books.iter_invoices_changed_since(watermark)
    before = len(xero.state.calls("GET", f"{API}/Invoices"))
    changed = list(changes)

    # Then only those 3 come back, in one call (a short first page), asked for with If-Modified-Since
    assert sorted(i.id for i in changed) == sorted(ids[10:13])
    assert all(i.updated_at is not None and i.updated_at >= watermark for i in changed)
    calls = xero.state.calls("GET", f"{API}/Invoices")[before:]
    assert len(calls) == 1
    assert calls[0].headers["if-modified-since"] == watermark.strftime("%Y-%m-%dT%H:%M:%S")


def test_changed_since_is_lazy_and_a_full_last_page_costs_one_more_call(
    xero: XeroSandbox, books: XeroAccounting, customer_id: str
) -> None:
    # Given exactly 100 invoices
    seed_invoices(books, customer_id, 100)

    # When the generator is made, Then nothing is fetched until it is iterated
    pages = books.iter_invoices_changed_since(None)
    assert xero.state.calls("GET", f"{API}/Invoices") == []
    first = next(pages)
    assert first.id and len(xero.state.calls("GET", f"{API}/Invoices")) == 1

    # And a full page means asking for the next one (empty): 1 + 1 full page = 2 calls
    assert len([first, *pages]) == 100
    assert len(xero.state.calls("GET", f"{API}/Invoices")) == 2


def test_iter_invoices_lists_one_month_by_issue_date(
    xero: XeroSandbox, books: XeroAccounting, customer_id: str
) -> None:
    # Given invoices issued on both edges of February 2030, and a voided one inside it
    seed_catalogue(xero)
    days = [date(2030, 1, 31), date(2030, 2, 1), date(2030, 2, 28), date(2030, 3, 1)]
    made = {
        day: books.create_invoice(
            draft(customer_id, line("WIDGET", "1", "10"), issue_date=day, reference=f"deal {day}"),
            idempotency_key=f"k-{day}",
        )
        for day in days
    }
    books.http.request("POST", f"/Invoices/{made[days[2]].id}", json={"Status": "VOIDED"})

    # When February is listed
    february = list(books.iter_invoices(date(2030, 2, 1), date(2030, 3, 1)))

    # Then exactly the invoices dated 1..28 February come back, the voided one too (reconcile wants it)
    assert sorted((i.issue_date, i.status) for i in february) == [
        (date(2030, 2, 1), "AUTHORISED"),
        (date(2030, 2, 28), "VOIDED"),
    ]
    call = xero.state.calls("GET", f"{API}/Invoices")[-1]
    assert query(call)["where"] == [
        'Type=="ACCREC"&&Date>=DateTime(2030, 02, 01)&&Date<DateTime(2030, 03, 01)',
    ]


# ---- payments ---------------------------------------------------------------------------------------------


def test_payments_show_as_amount_paid_due_status_and_last_payment_date(
    xero: XeroSandbox, books: XeroAccounting, customer_id: str
) -> None:
    # Given an authorised invoice of 114.99 (3 x 33.33 + 15% GST)
    xero.seed_item(Code="HOURS", Name="Hours", SalesDetails={"AccountCode": "200", "TaxType": "OUTPUT2"})
    invoice = books.create_invoice(draft(customer_id, line("HOURS", "3", "33.33")), idempotency_key="k-pay")
    assert invoice.total == Decimal("114.99")
    watermark = invoice.updated_at
    xero.state.clock.advance(5)

    # When part of it is paid into the bank account
    pay(books, invoice.id, "50.00", "2030-02-10")

    # Then the invoice shows the part paid, still AUTHORISED
    part = books.get_invoice(invoice.id)
    assert part is not None
    assert (part.amount_paid, part.amount_due, part.status) == (Decimal("50.00"), Decimal("64.99"), "AUTHORISED")
    assert part.last_payment_date == date(2030, 2, 10)

    # When the rest is paid
    pay(books, invoice.id, "64.99", "2030-02-15")

    # Then it is PAID, nothing is due, and the latest payment's date is the last payment date
    paid = books.get_invoice(invoice.id)
    assert paid is not None
    assert (paid.amount_paid, paid.amount_due, paid.status) == (Decimal("114.99"), Decimal("0.00"), "PAID")
    assert paid.last_payment_date == date(2030, 2, 15)
    # And the change shows up in the changed-since listing, with the same values
    changed = list(books.iter_invoices_changed_since(watermark))
    assert [(i.id, i.status, i.amount_due, i.last_payment_date) for i in changed] == [
        (invoice.id, "PAID", Decimal("0.00"), date(2030, 2, 15))
    ]


# ---- sending ----------------------------------------------------------------------------------------------


def test_send_invoice_emails_it_through_the_sandbox(xero: XeroSandbox, books: XeroAccounting, customer_id: str) -> None:
    # Given an authorised invoice to a contact with an email address
    seed_catalogue(xero)
    invoice = books.create_invoice(draft(customer_id, line("WIDGET", "1", "19.99")), idempotency_key="k-send")
    before = xero.state.clock.now()

    # When it is sent
    books.send_invoice(invoice.id)

    # Then Xero answered 204 to one emailInvoice request carrying the invoice's key and the empty body
    [call] = xero.state.calls("POST", f"{API}/Invoices/{invoice.id}/Email")
    assert call.status == 204
    assert call.headers["idempotency-key"] == f"closeloop-email-{invoice.id}" and call.body == b"{}"
    # And the email went to the contact's address, once, and the invoice is marked as sent
    [sent] = xero.emails()
    assert sorted(sent) == ["InvoiceID", "To", "at"]
    assert (sent["InvoiceID"], sent["To"]) == (invoice.id, ["ap@acme.test"])
    assert before <= sent["at"] <= xero.state.clock.now()
    assert xero.invoices()[0]["SentToContact"] is True
    assert books.http.request("GET", f"/Invoices/{invoice.id}").json()["Invoices"][0]["SentToContact"] is True

    # When it is sent again within Xero's 6-minute idempotency window (a retry, a redelivery)
    xero.state.clock.advance(60)
    books.send_invoice(invoice.id)

    # Then Xero replays the 204 and the customer still got one email
    assert [c.status for c in xero.state.calls("POST", f"{API}/Invoices/{invoice.id}/Email")] == [204, 204]
    assert len(xero.emails()) == 1


def test_send_invoice_of_a_draft_is_validation_failed_with_xeros_reason(
    xero: XeroSandbox, books: XeroAccounting, customer_id: str
) -> None:
    # Given a draft invoice (Xero only emails SUBMITTED, AUTHORISED or PAID ones)
    seed_catalogue(xero)
    drafted = books.create_invoice(
        draft(customer_id, line("WIDGET", "1", "19.99"), status="DRAFT"), idempotency_key="k-draft"
    )

    # When it is sent, Then the refusal is ValidationFailed with the sandbox's reason, not retried, nothing sent
    with pytest.raises(ValidationFailed, match="DRAFT") as info:
        books.send_invoice(drafted.id)
    assert info.value.status == 400 and info.value.vendor == "xero"
    assert len(xero.state.calls("POST", f"{API}/Invoices/{drafted.id}/Email")) == 1
    assert xero.emails() == []
    assert "SentToContact" not in xero.invoices()[0]


def offline_adapter(handler: Any) -> XeroAccounting:
    """The adapter over a mock transport (an exact request and a scripted refusal); tokens come without a call."""
    tokens = RefreshingTokens(
        "xero",
        MemoryStore(),
        seed=lambda fresh: "refresh-token",
        refresh=lambda token: TokenGrant(access_token="access", expires_in=1800, refresh_token="rotated"),
        write_back=lambda token: None,
    )
    return XeroAccounting(
        base_url="https://api.xero.test",
        tokens=tokens,
        tenant_id=lambda: "tenant-1",
        transport=httpx.MockTransport(handler),
        sleep=lambda s: None,
    )


def test_send_invoice_posts_the_documented_request_and_maps_a_refusal() -> None:
    # Given Xero's emailInvoice as the spec has it: 204 when sent, a 400 ValidationException when refused
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if "refused" in request.url.path:
            error = {"Type": "ValidationException", "Elements": [{"ValidationErrors": [{"Message": "No email"}]}]}
            return httpx.Response(400, json=error)
        return httpx.Response(204)

    books = offline_adapter(handler)

    # When an invoice is sent
    books.send_invoice("0e9a2c4d-1111-4222-8333-444455556666")

    # Then it was one POST to /Invoices/{id}/Email with an empty JSON body, the tenant and a stable key
    request = seen[0]
    assert (request.method, request.url.path) == (
        "POST",
        "/api.xro/2.0/Invoices/0e9a2c4d-1111-4222-8333-444455556666/Email",
    )
    assert request.content == b"{}" and request.headers["content-type"] == "application/json"
    assert request.headers["xero-tenant-id"] == "tenant-1"
    assert request.headers["idempotency-key"] == "closeloop-email-0e9a2c4d-1111-4222-8333-444455556666"

    # And a refusal is ValidationFailed with Xero's reason
    with pytest.raises(ValidationFailed, match="No email"):
        books.send_invoice("refused")


def test_a_server_that_ignores_page_is_refused_as_a_paging_loop_after_two_calls() -> None:
    # Given a Xero stand-in that answers the same full page of contacts whatever page is asked for
    pages: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        pages.append(request.url.params["page"])
        contacts = [{"ContactID": f"c-{n}", "Name": f"Contact {n}"} for n in range(XeroAccounting.PAGE_SIZE)]
        return httpx.Response(200, json={"Contacts": contacts})

    books = offline_adapter(handler)

    # When the changed contacts are read, Then the repeated page is refused as a paging loop (not read for
    # ever), after exactly the two calls that show it, and the message names the list
    with pytest.raises(PagingLoop, match="GET /Contacts: xero repeated the paging position page 3"):
        list(books.iter_customers_changed_since(datetime(2026, 1, 1, tzinfo=UTC)))
    assert pages == ["1", "2"]


def test_bulk_contact_pages_follow_the_first_page_s_page_count() -> None:
    # Given an organisation whose active contacts take 3 bulk pages (the first page says so)
    asked: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        page = request.url.params["page"]
        asked.append(page)
        rows = [{"ContactID": f"c-{page}", "Name": f"Contact {page}", "ContactStatus": "ACTIVE"}]
        return httpx.Response(200, json={"Contacts": rows, "pagination": {"page": int(page), "pageCount": 3}})

    books = offline_adapter(handler)
    books.WHERE_MAX_CHARS = 40  # type: ignore[misc]  # many filter queries: paging through is cheaper

    # When many numbers are looked up at once
    found = books.find_customers_any(numbers=[f"hubspot-company-{n}" for n in range(10)])

    # Then pages 1 to 3 were read once each, in order, and every contact on them is a candidate
    assert asked == ["1", "2", "3"]
    assert [c.id for c in found] == ["c-1", "c-2", "c-3"]


# -- one reading of Xero's error bodies ---------------------------------------------------------------------


def _validation_exception(*messages: str) -> dict[str, Any]:
    """Xero's 400 body (XS: Error / ValidationError): the messages sit in Elements[].ValidationErrors[]."""
    errors = [{"Message": message} for message in messages]
    return {"ErrorNumber": 10, "Type": "ValidationException", "Message": "A validation exception occurred",
            "Elements": [{"ValidationErrors": errors}]}  # fmt: skip


def test_xero_fault_reads_validation_exceptions_problem_details_and_nothing_else() -> None:
    # Given Xero's error bodies: a duplicate name, another rule, a reused Idempotency-Key, the plain 404 page
    taken = "The contact name Acme Ltd is already assigned to another contact."
    duplicate = httpx.Response(400, json=_validation_exception(taken))
    other = httpx.Response(400, json=_validation_exception("Invoice not of valid status for sending"))
    problem = httpx.Response(400, json={"Title": "Idempotency", "Detail": "key used for another request"})
    page = httpx.Response(404, text="The resource you're looking for cannot be found")
    # When each is read, Then a duplicate is a Conflict, another rule is left to the status (ValidationFailed),
    # a problem's Detail is its message, and a page without Xero's shape is no fault at all
    assert xero_fault(duplicate) == Fault(taken, "ValidationException", Conflict)
    assert xero_fault(other) == Fault("Invoice not of valid status for sending", "ValidationException", None)
    assert xero_fault(problem) == Fault("key used for another request", "Idempotency", None)
    assert xero_fault(page) is None
    # And an element of a 200 batch answer is a fault only when it carries errors, a ValidationFailed at least
    assert element_fault({"ContactID": "c-1", "StatusAttributeString": "OK"}) is None
    rejected = {"HasValidationErrors": True, "ValidationErrors": [{"Message": "Email address must be valid."}]}
    assert element_fault(rejected) == Fault("Email address must be valid.", "", ValidationFailed)


def test_a_refused_write_is_typed_by_the_one_fault_reading_with_xeros_words_and_request_id() -> None:
    # Given Xero refusing a contact update as a duplicate name, and a batch with one contact refused the same way
    taken = "The contact name Acme Ltd is already assigned to another contact."

    def handler(request: httpx.Request) -> httpx.Response:
        headers = {"xero-correlation-id": "corr-1"}
        if request.method == "POST":
            return httpx.Response(400, json=_validation_exception(taken), headers=headers)
        refused = {"Name": "Acme Ltd", "HasValidationErrors": True, "ValidationErrors": [{"Message": taken}]}
        return httpx.Response(200, json={"Contacts": [{"ContactID": "c-1", "Name": "Beta"}, refused]}, headers=headers)

    books = offline_adapter(handler)
    acme = Customer(ref=CrmRef(crm="hubspot", object_type="company", object_id="1"), name="Acme Ltd")
    beta = Customer(ref=CrmRef(crm="hubspot", object_type="company", object_id="2"), name="Beta")

    # When the update is sent, Then it is a Conflict naming Xero's reason, with Xero's request id and status
    with pytest.raises(Conflict, match=r"\[ValidationException\] The contact name Acme Ltd is already") as info:
        books.update_customer("c-9", acme, ["name"], number=None, idempotency_key="k-1")
    assert (info.value.status, info.value.request_id, info.value.vendor) == (400, "corr-1", "xero")

    # When the batch is sent, Then the saved contact is returned and the refused one is a Conflict of its own
    saved, refused = books.create_customers([(beta, "n-2"), (acme, "n-1")], idempotency_key="k-2")
    assert isinstance(saved, AccountingCustomer) and saved.id == "c-1"
    assert isinstance(refused, Conflict) and refused.request_id == "corr-1"
    assert refused.message.startswith("PUT /Contacts: contact 2 of 2: The contact name Acme Ltd")
