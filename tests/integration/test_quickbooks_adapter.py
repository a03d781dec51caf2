"""The QuickBooks adapter against the QuickBooks sandbox over HTTP: every port method, tokens, limits, quirks."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import httpx
import pytest

from closeloop.errors import AuthRevoked, Conflict, RateLimited, Unanswered, ValidationFailed
from closeloop.models import Address, CrmRef, Customer, InvoiceDraft, InvoiceLine
from closeloop.oauth import RefreshingTokens
from closeloop.vendors.quickbooks.adapter import QuickBooksAccounting
from closeloop.vendors.quickbooks.client import qbo_literal, refresh_with_intuit
from closeloop.vendors.quickbooks.mapping import doc_number
from closeloop_local.sandboxes.base import Fault, SandboxServer
from closeloop_local.sandboxes.quickbooks import QuickBooksDriver, QuickBooksSandbox, serve
from tests.fakes import MemoryStore

API = "/v3/company/*"


@pytest.fixture
def sandbox() -> Iterator[tuple[QuickBooksSandbox, SandboxServer]]:
    qbo, server = serve()
    yield qbo, server
    server.stop()


def adapter(
    qbo: QuickBooksSandbox,
    url: str,
    store: MemoryStore | None = None,
    cls: type[QuickBooksAccounting] = QuickBooksAccounting,
    transport: httpx.BaseTransport | None = None,
) -> QuickBooksAccounting:
    tokens = RefreshingTokens(
        "quickbooks",
        store or MemoryStore(),
        seed=lambda fresh: qbo.initial_refresh_token,
        refresh=refresh_with_intuit(url, lambda: qbo.client_id, lambda: qbo.client_secret),
        write_back=lambda token: None,
    )
    return cls(base_url=url, tokens=tokens, realm_id=lambda: qbo.realm_id, sleep=lambda s: None, transport=transport)


def acme(object_id: str = "1000001", **kw: object) -> Customer:
    values: dict[str, object] = {
        "ref": CrmRef(crm="hubspot", object_type="company", object_id=object_id),
        "name": "Acme Ltd",
        "email": "ann@acme.test",
        "phone": "+44 20 7946 0000",
        "tax_number": "GB123456789",
        "first_name": "Ann",
        "last_name": "Archer",
        "address": Address(line1="1 Long Lane", city="London", postal_code="EC1A 9HF", country="United Kingdom"),
    }
    values.update(kw)
    return Customer(**values)


def draft(customer_id: str, **kw: object) -> InvoiceDraft:
    values: dict[str, object] = {
        "customer_id": customer_id,
        "reference": "hubspot-deal-3000001 Big deal",
        "currency": "USD",
        "lines": (
            InvoiceLine(item_code="WIDGET", description="Widgets", quantity=Decimal(3), unit_amount=Decimal("33.33")),
            InvoiceLine(item_code="SETUP", description="Setup", quantity=Decimal(1), unit_amount=Decimal("100.00")),
        ),
        "issue_date": date(2026, 10, 5),
        "due_date": date(2026, 11, 4),
        "url": "https://app.hubspot.com/contacts/1/deal/3000001",
    }
    values.update(kw)
    return InvoiceDraft(**values)


def seed_items(qbo: QuickBooksSandbox) -> None:
    driver = QuickBooksDriver(qbo)
    driver.seed_item("WIDGET", "Blue widget", Decimal("33.33"))
    driver.seed_item("SETUP", "Setup fee", Decimal("100.00"))


# -- customers -------------------------------------------------------------------------------------------


def test_create_then_find_by_number_email_and_name(sandbox: tuple[QuickBooksSandbox, SandboxServer]) -> None:
    qbo, server = sandbox
    books = adapter(qbo, server.url)
    # When a customer is created
    created = books.create_customer(acme(), number="hubspot-company-1000001", idempotency_key="k-1")
    # Then QBO holds it with our stamp in MiddleName, the tax id only masked on read
    stored = qbo.rows("Customer")[0]
    assert stored["DisplayName"] == "Acme Ltd"
    assert stored["MiddleName"] == "hubspot-company-1000001"
    assert stored["PrimaryTaxIdentifier"] == "XXXXXX56789"
    assert "tax_number" not in created.fields  # masked: never compared
    assert created.fields["address.city"] == "London"
    # And each queryable lookup finds it; a tax number cannot be queried, so it costs no call
    assert [c.id for c in books.find_customers(number="hubspot-company-1000001")] == [created.id]
    assert [c.id for c in books.find_customers(email="ANN@acme.test")] == [created.id]
    assert created.id in [c.id for c in books.find_customers(name="ACME LIMITED")]
    before = len(qbo.state.calls("GET"))
    assert books.find_customers(tax_number="GB123456789") == []
    assert len(qbo.state.calls("GET")) == before
    assert books.get_customer(created.id) is not None
    assert books.get_customer("999") is None


def test_duplicate_display_name_across_vendors_is_a_conflict(sandbox: tuple[QuickBooksSandbox, SandboxServer]) -> None:
    qbo, server = sandbox
    # Given a Vendor already uses the name (DisplayName is unique across customers, vendors, employees)
    qbo.seed("Vendor", DisplayName="acme ltd")
    books = adapter(qbo, server.url)
    # When a customer with that name is created, Then QBO's 6240 is a Conflict, and is not retried
    with pytest.raises(Conflict):
        books.create_customer(acme(), number="hubspot-company-1", idempotency_key="k-2")
    assert len(qbo.state.calls("POST", f"{API}/customer")) == 1


def test_requestid_replays_a_create_instead_of_making_a_second(
    sandbox: tuple[QuickBooksSandbox, SandboxServer],
) -> None:
    qbo, server = sandbox
    books = adapter(qbo, server.url)
    # When the same create is sent twice with one idempotency key (a crash before our mapping write)
    first = books.create_customer(acme(), number="n-1", idempotency_key="closeloop-" + "a" * 64)
    second = books.create_customer(acme(), number="n-1", idempotency_key="closeloop-" + "a" * 64)
    # Then QBO answers the original response: one customer, and the requestid is a short digest
    assert first.id == second.id
    assert len(qbo.rows("Customer")) == 1
    query = qbo.state.calls("POST", f"{API}/customer")[0].query
    assert "requestid=" in query and len(query.split("requestid=")[1].split("&")[0]) == 32


def test_update_is_sparse_and_retries_once_on_a_stale_synctoken(
    sandbox: tuple[QuickBooksSandbox, SandboxServer],
) -> None:
    qbo, server = sandbox
    books = adapter(qbo, server.url)
    created = books.create_customer(acme(), number="n-1", idempotency_key="k-3")
    # Given someone else edits the customer between our read and our write (the first write is stale)
    qbo.state.faults.append(
        _stale_fault()  # answers the first update POST with QBO's 5010
    )
    # When one field is updated
    books.update_customer(
        created.id, acme(name="Renamed", phone="+1 555"), ["phone"], number=None, idempotency_key="k-4"
    )
    # Then the write is re-read and retried once, sends only that field, and leaves the name alone
    stored = qbo.rows("Customer")[0]
    assert stored["DisplayName"] == "Acme Ltd"
    assert stored["PrimaryPhone"] == {"FreeFormNumber": "+1 555"}
    body = qbo.state.calls("POST", f"{API}/customer")[-1].body
    assert b'"sparse":true' in body and b"DisplayName" not in body
    assert len(qbo.state.calls("POST", f"{API}/customer")) == 3  # create, stale, retry


def _stale_fault() -> Fault:
    body = {
        "Fault": {
            "Error": [{"Message": "Stale Object Error", "Detail": "stale", "code": "5010"}],
            "type": "ValidationFault",
        }
    }
    return Fault(f"{API}/customer", 400, times=1, method="POST", body=body)


def test_bulk_create_and_find_any_use_batch(sandbox: tuple[QuickBooksSandbox, SandboxServer]) -> None:
    qbo, server = sandbox
    qbo.seed("Employee", DisplayName="Taken Name")
    books = adapter(qbo, server.url)
    pairs = [(acme(str(i), name=f"Company {i}", email=f"c{i}@x.test"), f"hubspot-company-{i}") for i in range(32)]
    pairs.append((acme("99", name="Taken Name", email="t@x.test"), "hubspot-company-99"))
    # When 33 customers are created in bulk
    results = books.create_customers(pairs, idempotency_key="bulk-1")
    # Then two batch calls (30 + 3) made them, each result in order, the taken name as its own Conflict
    assert len(qbo.state.calls("POST", f"{API}/batch")) == 2
    assert [getattr(r, "name", None) for r in results[:32]] == [f"Company {i}" for i in range(32)]
    assert isinstance(results[32], Conflict)
    # And finding many at once answers a superset, with our numbers found
    found = books.find_customers_any(numbers=["hubspot-company-3", "hubspot-company-31"], emails=["c7@x.test"])
    assert {"hubspot-company-3", "hubspot-company-31"} <= {c.number for c in found}
    assert "c7@x.test" in {c.email for c in found}


def test_find_any_batches_queries_when_that_is_cheaper() -> None:
    # Given a company with more customers than one page holds, and few values to look for
    qbo, server = serve(QuickBooksSandbox())
    try:
        for i in range(1001):
            qbo.seed("Customer", DisplayName=f"Seeded {i}", MiddleName=f"other-{i}")
        qbo.seed("Customer", DisplayName="O'Brien & Sons", MiddleName="hubspot-company-7")
        books = adapter(qbo, server.url)
        # When looking up one number and one quoted name
        found = books.find_customers_any(numbers=["hubspot-company-7"], names=["O'Brien & Sons"])
        # Then one count query and one batch of queries answer it (not two pages of every customer)
        assert [c.name for c in found] == ["O'Brien & Sons"]
        assert len(qbo.state.calls("POST", f"{API}/batch")) == 1
        assert len(qbo.state.calls("GET", f"{API}/query")) == 1
    finally:
        server.stop()


# -- tokens and limits -----------------------------------------------------------------------------------


def test_expired_access_token_is_refreshed_once_and_rotation_is_stored() -> None:
    qbo, server = serve(QuickBooksSandbox(rotate_after=0))
    try:
        store = MemoryStore()
        books = adapter(qbo, server.url, store)
        books.find_customers(name="x")
        first = store.get_token("quickbooks")
        assert first is not None
        # Given QBO refuses the access token (expired early)
        qbo.expire_access_tokens()
        # When the adapter calls again, it gets the 401, refreshes once, and retries
        books.find_customers(name="y")
        second = store.get_token("quickbooks")
        assert second is not None
        assert second.refresh_token != first.refresh_token
        assert second.refresh_token == qbo.current_refresh_token
        assert len(qbo.state.calls("POST", "/oauth2/v1/tokens/bearer")) == 2
    finally:
        server.stop()


def test_revoked_refresh_token_raises_auth_revoked(sandbox: tuple[QuickBooksSandbox, SandboxServer]) -> None:
    qbo, server = sandbox
    qbo.revoke_refresh_tokens()
    with pytest.raises(AuthRevoked):
        adapter(qbo, server.url).find_customers(name="x")


def test_throttle_429_surfaces_as_rate_limited_without_a_long_sleep() -> None:
    qbo, server = serve(QuickBooksSandbox(minute_limit=2))
    try:
        books = adapter(qbo, server.url)
        books.find_customers(name="a")
        books.find_customers(name="b")
        # When the minute's allowance is used up, Then ThrottleExceeded means "wait 60 s": the queue retries
        with pytest.raises(RateLimited) as info:
            books.find_customers(name="c")
        assert info.value.retry_after == 60.0
    finally:
        server.stop()


# -- items and invoices ----------------------------------------------------------------------------------


def test_invoice_create_find_get_and_exact_money(sandbox: tuple[QuickBooksSandbox, SandboxServer]) -> None:
    qbo, server = sandbox
    seed_items(qbo)
    books = adapter(qbo, server.url)
    customer = books.create_customer(acme(), number="n-1", idempotency_key="k-5")
    # When the items are looked up (by Name, case-insensitively) and the invoice is created
    items = books.get_items(["widget", "SETUP", "MISSING"])
    assert set(items) == {"widget", "SETUP"} and items["SETUP"].unit_price == Decimal("100.00")
    lines = (
        InvoiceLine(
            item_code="WIDGET", description="W", quantity=Decimal(3), unit_amount=Decimal("33.33"), tax_type="TAX"
        ),
        InvoiceLine(
            item_code="SETUP", description="S", quantity=Decimal(1), unit_amount=Decimal("100.00"), tax_type="NON"
        ),
    )
    invoice = books.create_invoice(draft(customer.id, lines=lines), idempotency_key="inv-1")
    # Then it is posted (QBO has no draft), totals exact to the cent, reference and number findable
    assert invoice.status == "AUTHORISED"
    assert invoice.sub_total == Decimal("199.99") and invoice.total_tax == Decimal("10.00")
    assert invoice.total == Decimal("209.99") and invoice.amount_due == Decimal("209.99")
    assert invoice.number == "hubspot-deal-3000001"
    assert invoice.reference == "hubspot-deal-3000001 Big deal"
    stored = qbo.rows("Invoice")[0]
    assert stored["GlobalTaxCalculation"] == "TaxExcluded" and stored["DocNumber"] == "hubspot-deal-3000001"
    found = books.find_invoice("hubspot-deal-3000001 Big deal")
    assert found is not None and found.id == invoice.id
    assert books.get_invoice(invoice.id) == found
    assert books.get_invoice("424242") is None


def test_unknown_item_is_a_validation_failure_naming_it(sandbox: tuple[QuickBooksSandbox, SandboxServer]) -> None:
    qbo, server = sandbox
    books = adapter(qbo, server.url)
    customer = books.create_customer(acme(), number="n-1", idempotency_key="k-6")
    with pytest.raises(ValidationFailed, match="WIDGET"):
        books.create_invoice(draft(customer.id), idempotency_key="inv-2")
    assert qbo.state.calls("POST", f"{API}/invoice") == []


def test_second_create_for_a_deal_returns_the_first_and_a_voided_one_is_remade(
    sandbox: tuple[QuickBooksSandbox, SandboxServer],
) -> None:
    qbo, server = sandbox
    seed_items(qbo)
    books = adapter(qbo, server.url)
    customer = books.create_customer(acme(), number="n-1", idempotency_key="k-7")
    first = books.create_invoice(draft(customer.id), idempotency_key="inv-a")
    # When another worker creates the same deal's invoice with another key, Then 6140 leads back to the first
    again = books.create_invoice(draft(customer.id), idempotency_key="inv-b")
    assert again.id == first.id and len(qbo.rows("Invoice")) == 1
    # Given finance voids it (amounts zeroed, "Voided" put in front of the PrivateNote)
    qbo.void_invoice(first.id)
    voided = books.get_invoice(first.id)
    assert voided is not None and voided.status == "VOIDED" and voided.reference.startswith("hubspot-deal-3000001")
    assert books.find_invoice("hubspot-deal-3000001 Big deal") is None
    # When the deal is invoiced again, Then a new invoice is made with the same DocNumber
    remade = books.create_invoice(draft(customer.id), idempotency_key="inv-c")
    assert remade.id != first.id and remade.number == first.number
    assert books.find_invoice("hubspot-deal-3000001 Big deal") == books.get_invoice(remade.id)


def test_payment_makes_paid_and_send_emails_it(sandbox: tuple[QuickBooksSandbox, SandboxServer]) -> None:
    qbo, server = sandbox
    seed_items(qbo)
    books = adapter(qbo, server.url)
    customer = books.create_customer(acme(), number="n-1", idempotency_key="k-8")
    invoice = books.create_invoice(draft(customer.id, line_amount_types="NoTax"), idempotency_key="inv-3")
    books.send_invoice(invoice.id)
    assert qbo.emails()[0]["To"] == "ann@acme.test"
    driver = QuickBooksDriver(qbo)
    # When finance records a part payment, then the rest
    driver.approve_and_pay(invoice.id, Decimal("50.00"), date(2026, 10, 20))
    part = books.get_invoice(invoice.id)
    assert part is not None and part.status == "AUTHORISED"
    assert part.amount_paid == Decimal("50.00") and part.last_payment_date == date(2026, 10, 20)
    driver.approve_and_pay(invoice.id, part.amount_due, date(2026, 10, 25))
    paid = books.get_invoice(invoice.id)
    # Then Balance 0 with a positive total is PAID, with the latest payment's date
    assert paid is not None and paid.status == "PAID" and paid.amount_due == 0
    assert paid.last_payment_date == date(2026, 10, 25)


def test_discount_and_inclusive_tax_map_to_qbo_lines(sandbox: tuple[QuickBooksSandbox, SandboxServer]) -> None:
    qbo, server = sandbox
    seed_items(qbo)
    books = adapter(qbo, server.url)
    customer = books.create_customer(acme(), number="n-1", idempotency_key="k-9")
    lines = tuple(
        InvoiceLine(
            item_code=c, description=c, quantity=Decimal(1), unit_amount=Decimal("100"), discount_rate=Decimal(10)
        )
        for c in ("WIDGET", "SETUP")
    )
    invoice = books.create_invoice(draft(customer.id, lines=lines, line_amount_types="Inclusive"), idempotency_key="d")
    stored = qbo.rows("Invoice")[0]
    # Then one shared rate is one percent DiscountLineDetail, and inclusive amounts are TaxInclusive
    assert stored["GlobalTaxCalculation"] == "TaxInclusive"
    assert [x["DetailType"] for x in stored["Line"]][-1] == "DiscountLineDetail"
    assert invoice.total == Decimal("180.00")


def test_changed_since_uses_cdc_and_follows_payments(sandbox: tuple[QuickBooksSandbox, SandboxServer]) -> None:
    qbo, server = sandbox
    seed_items(qbo)
    books = adapter(qbo, server.url)
    customer = books.create_customer(acme(), number="n-1", idempotency_key="k-10")
    one = books.create_invoice(draft(customer.id), idempotency_key="i-1")
    books.create_invoice(draft(customer.id, reference="hubspot-deal-2 Other"), idempotency_key="i-2")
    # Given ten minutes pass, then a payment is recorded against the first invoice
    qbo.state.clock.advance(600)
    since = datetime.now(UTC) + timedelta(seconds=599)
    QuickBooksDriver(qbo).approve_and_pay(one.id, Decimal("10.00"), date(2026, 10, 6))
    # When the poller reads changes since just before the payment
    changed = list(books.iter_invoices_changed_since(since))
    # Then one CDC call answers only the paid invoice
    assert [i.id for i in changed] == [one.id]
    assert changed[0].amount_paid == Decimal("10.00")
    assert len(qbo.state.calls("GET", f"{API}/cdc")) == 1
    # And all invoices (None) and a month's by TxnDate are paged queries
    assert len(list(books.iter_invoices_changed_since(None))) == 2
    assert len(list(books.iter_invoices(date(2026, 10, 1), date(2026, 11, 1)))) == 2
    assert list(books.iter_invoices(date(2026, 11, 1), date(2026, 12, 1))) == []


class SmallCdc(QuickBooksAccounting):
    CDC_MAX_OBJECTS = 2  # the sandbox's cap below, standing in for QBO's 1,000


def test_full_cdc_answer_falls_back_to_a_paged_query() -> None:
    qbo, server = serve(QuickBooksSandbox(cdc_limit=2))
    try:
        seed_items(qbo)
        books = adapter(qbo, server.url, cls=SmallCdc)
        customer = books.create_customer(acme(), number="n-1", idempotency_key="k-11")
        since = datetime.now(UTC) - timedelta(minutes=5)
        for n in range(3):
            books.create_invoice(draft(customer.id, reference=f"hubspot-deal-{n} D"), idempotency_key=f"f-{n}")
        # When CDC answers at its cap (2 here, 1,000 in QBO), Then MetaData.LastUpdatedTime is queried instead
        assert len(list(books.iter_invoices_changed_since(since))) == 3
        assert any("LastUpdatedTime" in c.query for c in qbo.state.calls("GET", f"{API}/query"))
    finally:
        server.stop()


def test_helpers_escape_and_shorten() -> None:
    assert qbo_literal("O'Brien") == "'O\\'Brien'"
    assert doc_number("hubspot-deal-3000001 Big deal") == "hubspot-deal-3000001"
    long = doc_number("salesforce-deal-0065g00000AbCdEfGh Name")
    assert len(long) == 21 and long == doc_number("salesforce-deal-0065g00000AbCdEfGh")


class LostSendAnswers(httpx.HTTPTransport):
    """Delivers every request to the sandbox; the answers to invoice sends are lost on the way back."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if request.url.path.endswith("/send"):
            response.close()
            raise httpx.ReadTimeout("the answer was lost", request=request)
        return response


@pytest.mark.parametrize("lost", ["answer", "503"])
def test_a_send_whose_outcome_is_unknown_emails_once_and_is_not_repeated(
    sandbox: tuple[QuickBooksSandbox, SandboxServer], lost: str
) -> None:
    qbo, server = sandbox
    seed_items(qbo)
    books = adapter(qbo, server.url)
    customer = books.create_customer(acme(), number="n-1", idempotency_key="k-9")
    invoice = books.create_invoice(draft(customer.id, line_amount_types="NoTax"), idempotency_key="inv-9")
    if lost == "answer":
        # Given QBO emails the invoice but its answer never arrives
        sender, expected_emails = adapter(qbo, server.url, transport=LostSendAnswers()), 1
    else:
        # Given QBO answers 503 (it may or may not have acted on it)
        qbo.state.faults.append(Fault("*/invoice/*/send", 503))
        sender, expected_emails = books, 0
    # When the invoice is sent
    with pytest.raises(Unanswered):
        sender.send_invoice(invoice.id)
    # Then the send went out once and was not repeated
    assert len(qbo.emails()) == expected_emails
    assert len([r for r in qbo.state.requests if r.path.endswith("/send")]) == 1
