"""Accounting-side changes through the real adapters: the sandboxes' signed deliveries are verified (and
forged or modified ones refused), parsed into AccountingEvents, and the customer polls return exactly the
customers that changed."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

import pytest
from werkzeug.wrappers import Request, Response

from closeloop.errors import ConfigurationError, WebhookRejected
from closeloop.models import AccountingEvent, CrmRef, Customer
from closeloop.ports import AccountingPort, WebhookRequest
from closeloop.vendors.quickbooks.adapter import QuickBooksAccounting
from closeloop.vendors.zohobooks.adapter import ZohoBooksAccounting
from closeloop_local.sandboxes.base import SandboxServer
from closeloop_local.sandboxes.quickbooks import QuickBooksDriver, QuickBooksSandbox
from closeloop_local.sandboxes.quickbooks import serve as serve_quickbooks
from closeloop_local.sandboxes.xero import XeroSandbox
from closeloop_local.sandboxes.xero import serve as serve_xero
from closeloop_local.sandboxes.zohobooks import ZohoBooksSandbox
from closeloop_local.sandboxes.zohobooks import serve as serve_zoho
from tests.sandbox_adapters import qbo_books, sandbox_now, signed, xero_books
from tests.sandbox_adapters import zohobooks_adapter as zoho_adapter

ROUTE = "https://hooks.example.test/webhooks/accounting"


@dataclass
class Route:
    """A stand-in for the webhook route: verify with the adapter, answer 200/401 with an empty body."""

    port: AccountingPort
    received: list[WebhookRequest] = field(default_factory=list)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        hook = WebhookRequest("POST", ROUTE, dict(request.headers.items()), request.get_data())
        status = 200
        try:
            self.port.verify_webhook(hook)
        except WebhookRejected as rejected:
            status = rejected.status
        else:
            self.received.append(hook)
        answer: Iterable[bytes] = Response(b"", status=status)(environ, start_response)
        return answer


@pytest.fixture
def route_server() -> Iterator[Callable[[AccountingPort], tuple[Route, str]]]:
    servers: list[SandboxServer] = []

    def start(port: AccountingPort) -> tuple[Route, str]:
        route = Route(port)
        server = SandboxServer(route).start()
        servers.append(server)
        return route, f"{server.url}/webhooks/accounting"

    yield start
    for server in servers:
        server.stop()


def company(name: str) -> Customer:
    return Customer(ref=CrmRef(crm="hubspot", object_type="company", object_id="1"), name=name)


# -- Xero --------------------------------------------------------------------------------------------------


@pytest.fixture
def xero() -> Iterator[tuple[XeroSandbox, SandboxServer]]:
    sandbox, server = serve_xero()
    yield sandbox, server
    server.stop()


def test_xero_deliveries_pass_intent_to_receive_verify_and_parse(
    xero: tuple[XeroSandbox, SandboxServer], route_server: Callable[[AccountingPort], tuple[Route, str]]
) -> None:
    sandbox, server = xero
    books = xero_books(sandbox, server.url)
    route, url = route_server(books)
    # Given the webhook pointed at a route that verifies with the adapter: intent to receive passes
    assert sandbox.webhooks.subscribe(url) == "OK"
    [check] = route.received
    assert books.parse_webhook(check.body) == []  # the check's empty batch is a valid, empty delivery
    route.received.clear()
    # When a contact is created in Xero and then renamed through the API, and the webhooks flush
    created = books.create_customer(company("Acme Ltd"), number="hubspot-company-1", idempotency_key="k-1")
    books.update_customer(created.id, company("Acme Limited"), ["name"], number=None, idempotency_key="k-2")
    sandbox.webhooks.flush()
    # Then the route accepted one real delivery, and it parses into the two changes of that contact
    [delivery] = route.received
    events = books.parse_webhook(delivery.body)
    assert [(e.system, e.resource, e.resource_id, e.kind) for e in events] == [
        ("xero", "customer", created.id, "created"),
        ("xero", "customer", created.id, "changed"),
    ]
    assert all(e.occurred_at.tzinfo is not None for e in events)
    # And a redelivery of the same batch gives the same dedupe keys, distinct per change
    assert [e.dedupe_key for e in books.parse_webhook(delivery.body)] == [e.dedupe_key for e in events]
    assert len({e.dedupe_key for e in events}) == 2


def test_xero_refuses_forged_and_modified_deliveries(
    xero: tuple[XeroSandbox, SandboxServer], route_server: Callable[[AccountingPort], tuple[Route, str]]
) -> None:
    sandbox, server = xero
    books = xero_books(sandbox, server.url)
    route, url = route_server(books)
    sandbox.webhooks.subscribe(url)
    sandbox.seed_contact(Name="Acme Ltd")
    sandbox.webhooks.flush()
    real = route.received[-1]
    tampered = real.body.replace(b'"CREATE"', b'"UPDATE"')
    forged_headers = {"x-xero-signature": signed("a guessed key", real.body)}
    # When the body is modified, the key guessed, or the signature left out, Then each is a 401
    for request in (
        WebhookRequest("POST", ROUTE, dict(real.headers), tampered),
        WebhookRequest("POST", ROUTE, forged_headers, real.body),
        WebhookRequest("POST", ROUTE, {"Content-Type": "application/json"}, real.body),
    ):
        with pytest.raises(WebhookRejected) as rejected:
            books.verify_webhook(request)
        assert rejected.value.status == 401
    # And without a configured key nothing is accepted
    with pytest.raises(ConfigurationError, match="XERO_WEBHOOK_KEY"):
        xero_books(sandbox, server.url, key="").verify_webhook(real)


def test_xero_parse_drops_other_tenants_and_categories_and_rejects_malformed(
    xero: tuple[XeroSandbox, SandboxServer],
) -> None:
    sandbox, server = xero
    books = xero_books(sandbox, server.url)

    def event(**overrides: str) -> dict[str, str]:
        values = {
            "resourceUrl": "https://api.xero.com/api.xro/2.0/Invoices/1",
            "resourceId": "0B6C54A9-0000-4000-8000-000000000001",
            "eventDateUtc": "2026-03-01T10:15:39.902",
            "eventType": "UPDATE",
            "eventCategory": "INVOICE",
            "tenantId": sandbox.tenant_id.upper(),
            "tenantType": "ORGANISATION",
        }
        return {**values, **overrides}

    body = {
        "events": [event(), event(tenantId="11111111-2222-3333-4444-555555555555"), event(eventCategory="CREDITNOTE")],
        "firstEventSequence": 1,
        "lastEventSequence": 3,
        "entropy": "ABCDEFGHIJKLMNOPQRST",
    }
    # When a batch mixes our invoice event with another tenant's and a credit note's
    events = books.parse_webhook(json.dumps(body).encode())
    # Then only ours is kept, as a changed invoice at the event's UTC time
    assert events == [
        AccountingEvent(
            system="xero",
            resource="invoice",
            resource_id="0b6c54a9-0000-4000-8000-000000000001",
            kind="changed",
            occurred_at=datetime(2026, 3, 1, 10, 15, 39, 902000, tzinfo=UTC),
            dedupe_key=events[0].dedupe_key,
        )
    ]
    # And malformed bodies are 400s that say what is wrong
    for bad, says in (
        (b"not json", "not valid JSON"),
        (b"[]", "JSON object"),
        (b'{"events": {}}', "events"),
        (json.dumps({"events": [event(resourceId="")]}).encode(), r"events\[0\]\.resourceId"),
        (json.dumps({"events": [event(eventDateUtc="yesterday")]}).encode(), "eventDateUtc"),
    ):
        with pytest.raises(WebhookRejected, match=says) as rejected:
            books.parse_webhook(bad)
        assert rejected.value.status == 400


def test_xero_poll_returns_exactly_the_changed_contacts_in_one_call(xero: tuple[XeroSandbox, SandboxServer]) -> None:
    sandbox, server = xero
    books = xero_books(sandbox, server.url)
    # Given three contacts, then a minute later one renamed and one archived
    ids = [sandbox.seed_contact(Name=name)["ContactID"] for name in ("Acme Ltd", "Beta Ltd", "Gamma Ltd")]
    sandbox.state.clock.advance(60)
    since = sandbox_now(sandbox.state.clock.now()) - timedelta(seconds=1)
    books.update_customer(ids[0], company("Acme Limited"), ["name"], number=None, idempotency_key="k-1")
    archived = {"Contacts": [{"ContactID": ids[2], "ContactStatus": "ARCHIVED"}]}
    books.http.request("POST", f"/Contacts/{ids[2]}", json=archived)
    sandbox.state.reset_log()
    # When the contacts changed since then are polled
    changed = list(books.iter_customers_changed_since(since))
    # Then exactly those two come back, the archived one saying so, from one filtered call
    assert sorted((c.id, c.name, c.status) for c in changed) == sorted(
        [(ids[0], "Acme Limited", "ACTIVE"), (ids[2], "Gamma Ltd", "ARCHIVED")]
    )
    [call] = sandbox.state.calls("GET", "/api.xro/2.0/Contacts")
    assert call.headers["if-modified-since"] == since.strftime("%Y-%m-%dT%H:%M:%S")


# -- QuickBooks --------------------------------------------------------------------------------------------


@pytest.fixture
def qbo() -> Iterator[tuple[QuickBooksSandbox, SandboxServer]]:
    sandbox, server = serve_quickbooks()
    yield sandbox, server
    server.stop()


class SmallCdc(QuickBooksAccounting):
    """The adapter with a CDC cap as small as the test sandbox's, so a capped answer is recognised."""

    CDC_MAX_OBJECTS = 2


@pytest.mark.parametrize("payload_format", ["cloudevents", "legacy"])
def test_quickbooks_deliveries_verify_and_parse_into_customer_invoice_and_payment_events(
    qbo: tuple[QuickBooksSandbox, SandboxServer],
    route_server: Callable[[AccountingPort], tuple[Route, str]],
    payload_format: Literal["cloudevents", "legacy"],
) -> None:
    sandbox, server = qbo
    books = qbo_books(sandbox, server.url)
    route, url = route_server(books)
    driver = QuickBooksDriver(sandbox)
    sandbox.webhooks.subscribe(url, ["Customer", "Invoice", "Payment", "Item"], payload_format)
    # Given a customer, an item, an invoice and a part payment made in the company
    customer_id = driver.seed_customer("Acme Ltd")
    driver.seed_item("SKU-1", "Widget", Decimal("10"))
    item_id = sandbox.rows("Item")[0]["Id"]
    line = {"ItemRef": {"value": item_id}, "Qty": 1, "UnitPrice": 10}
    invoice_id = sandbox.seed(
        "Invoice",
        CustomerRef={"value": customer_id},
        Line=[{"Amount": 10, "DetailType": "SalesItemLineDetail", "SalesItemLineDetail": line}],
    )["Id"]
    driver.approve_and_pay(invoice_id, Decimal("4"), date(2026, 1, 5))
    payment_id = sandbox.rows("Payment")[0]["Id"]
    # When the window closes and the notification reaches the route
    sandbox.webhooks.flush()
    [delivery] = route.received
    events = books.parse_webhook(delivery.body)
    # Then it verified, and parses into the followed entities (the Item is dropped)
    assert [(e.resource, e.resource_id, e.kind) for e in events] == [
        ("customer", customer_id, "created"),
        ("invoice", invoice_id, "created"),
        ("payment", payment_id, "created"),
        ("invoice", invoice_id, "changed"),
    ]
    assert all(e.system == "quickbooks" and e.occurred_at.utcoffset() == timedelta(0) for e in events)
    assert [e.dedupe_key for e in books.parse_webhook(delivery.body)] == [e.dedupe_key for e in events]
    # And a modified body or another token is refused
    for request in (
        WebhookRequest(
            "POST",
            ROUTE,
            dict(delivery.headers),
            delivery.body.replace(b"Create", b"Delete").replace(b"create", b"delete"),
        ),
        WebhookRequest("POST", ROUTE, {"intuit-signature": signed("guess", delivery.body)}, delivery.body),
    ):
        with pytest.raises(WebhookRejected) as rejected:
            books.verify_webhook(request)
        assert rejected.value.status == 401


def test_quickbooks_parse_keeps_only_our_realm_and_rejects_malformed(
    qbo: tuple[QuickBooksSandbox, SandboxServer],
) -> None:
    sandbox, server = qbo
    books = qbo_books(sandbox, server.url)

    def notification(realm: str, **entity: str) -> dict[str, Any]:
        values = {"name": "Customer", "id": "7", "operation": "Update", "lastUpdated": "2026-03-01T02:42:19-0800"}
        return {"realmId": realm, "dataChangeEvent": {"entities": [{**values, **entity}]}}

    body = {"eventNotifications": [notification("123"), notification(sandbox.realm_id, operation="Merge")]}
    # When one notification is another company's
    events = books.parse_webhook(json.dumps(body).encode())
    # Then only ours is kept, its time in UTC, a merge as "other"
    assert [(e.resource_id, e.kind, e.occurred_at) for e in events] == [
        ("7", "other", datetime(2026, 3, 1, 10, 42, 19, tzinfo=UTC))
    ]
    for bad, says in (
        (b"\xff", "UTF-8"),
        (b'{"eventNotifications": 1}', "eventNotifications"),
        (json.dumps({"eventNotifications": [{"dataChangeEvent": {}}]}).encode(), "realmId"),
        (json.dumps({"eventNotifications": [notification(sandbox.realm_id, id="")]}).encode(), r"\.id"),
        (
            json.dumps({"eventNotifications": [notification(sandbox.realm_id, lastUpdated="soon")]}).encode(),
            "lastUpdated",
        ),
    ):
        with pytest.raises(WebhookRejected, match=says) as rejected:
            books.parse_webhook(bad)
        assert rejected.value.status == 400


def cloud_event(realm: str, **values: Any) -> dict[str, Any]:
    """One CloudEvent as Intuit sends it (the SDKs' sample payload, with our realm and entity)."""
    event = {
        "specversion": "1.0",
        "id": "d1a3aedd-9670-41bf-a4f9-c148a1cc4e03",
        "source": "intuit.dsnBgbseACLLRZNxo2dfc4evmEJdxde58xeeYcZliOU=",
        "type": "qbo.customer.updated.v1",
        "time": "2026-03-01T10:42:19.034359333Z",
        "intuitentityid": "7",
        "intuitaccountid": realm,
    }
    return {**event, **values}


def test_quickbooks_cloudevents_keep_only_our_realm_and_followed_types_and_reject_malformed(
    qbo: tuple[QuickBooksSandbox, SandboxServer],
) -> None:
    sandbox, server = qbo
    realm = sandbox.realm_id
    books = qbo_books(sandbox, server.url, clock=lambda: datetime(2026, 3, 2, tzinfo=UTC))
    body = [
        cloud_event("123"),  # another company
        cloud_event(realm, type="qbo.class.created.v1"),  # an entity we do not follow
        cloud_event(realm, type="payroll.employee.updated.v1"),  # not a QuickBooks Online event at all
        cloud_event(realm, type="qbo.invoice.created.v1", intuitentityid="130"),
        cloud_event(realm, type="qbo.payment.voided.v1", intuitentityid=88),
        cloud_event(realm, type="qbo.customer.merged.v1"),
        cloud_event(realm, type="qbo.invoice.emailed.v2", intuitentityid="130", time=None, id="evt-9"),
    ]
    # When the delivery is parsed
    events = books.parse_webhook(json.dumps(body).encode())
    # Then our realm's customer, invoice and payment events remain, mapped as the legacy operations are
    assert [(e.resource, e.resource_id, e.kind) for e in events] == [
        ("invoice", "130", "created"),
        ("payment", "88", "changed"),
        ("customer", "7", "other"),
        ("invoice", "130", "other"),
    ]
    assert events[0].occurred_at == datetime(2026, 3, 1, 10, 42, 19, 34359, tzinfo=UTC)
    # And each event is de-duplicated on its CloudEvents id (two changes of one record in one timestamp are two
    # events; a redelivery is the same event), whether or not it carries a time (then it is timed now)
    assert events[0].dedupe_key == f"quickbooks:invoice:130:create:event:{body[3]['id']}"
    assert events[3].occurred_at == datetime(2026, 3, 2, tzinfo=UTC)
    assert events[3].dedupe_key == "quickbooks:invoice:130:emailed:event:evt-9"
    twin = cloud_event(realm, type="qbo.invoice.created.v1", intuitentityid="130", time="2026-03-01T10:42:19Z")
    other = {**twin, "id": "evt-other"}
    keys = [e.dedupe_key for e in books.parse_webhook(json.dumps([twin, other]).encode())]
    assert len(set(keys)) == 2
    assert books.parse_webhook(b"[]") == []
    for bad, says in (
        (b"1", "CloudEvents"),
        (json.dumps(["event"]).encode(), r"\[0\]: expected an object"),
        (json.dumps([cloud_event(realm, type=None)]).encode(), r"\[0\]\.type"),
        (json.dumps([cloud_event(realm, intuitentityid="")]).encode(), "intuitentityid"),
        (
            json.dumps([{k: v for k, v in cloud_event(realm).items() if k != "intuitaccountid"}]).encode(),
            "intuitaccountid",
        ),
        (json.dumps([cloud_event(realm, time="soon")]).encode(), r"\.time"),
        (json.dumps([cloud_event(realm, time=None, id=None)]).encode(), "'id'"),
    ):
        with pytest.raises(WebhookRejected, match=says) as rejected:
            books.parse_webhook(bad)
        assert rejected.value.status == 400


def _qbo_changes(sandbox: QuickBooksSandbox, books: QuickBooksAccounting) -> tuple[datetime, set[tuple[str, str]]]:
    """Three customers, then a minute later one renamed, one made inactive and one new: (since, expected)."""
    driver = QuickBooksDriver(sandbox)
    ids = [driver.seed_customer(name) for name in ("Acme Ltd", "Beta Ltd", "Gamma Ltd")]
    sandbox.state.clock.advance(60)
    since = sandbox_now(sandbox.state.clock.now())
    books.update_customer(ids[0], company("Acme Limited"), ["name"], number=None, idempotency_key="k-1")
    gamma = next(row for row in sandbox.rows("Customer") if row["Id"] == ids[2])
    sandbox.seed("Customer", DisplayName="Delta Ltd")
    deactivate = {"Id": ids[2], "SyncToken": gamma["SyncToken"], "sparse": True, "Active": False}
    books.http.request(
        "POST", f"/v3/company/{sandbox.realm_id}/customer", params={"minorversion": "75"}, json=deactivate
    )
    new_id = sandbox.rows("Customer")[-1]["Id"]
    sandbox.state.reset_log()
    return since, {(ids[0], "ACTIVE"), (ids[2], "ARCHIVED"), (new_id, "ACTIVE")}


def test_quickbooks_poll_uses_one_cdc_call_and_returns_exactly_the_changed_customers(
    qbo: tuple[QuickBooksSandbox, SandboxServer],
) -> None:
    sandbox, server = qbo
    books = qbo_books(sandbox, server.url)
    since, expected = _qbo_changes(sandbox, books)
    # When the customers changed since then are polled
    changed = {(c.id, c.status) for c in books.iter_customers_changed_since(since)}
    # Then exactly the renamed, deactivated and new ones come back, from one CDC call
    assert changed == expected
    assert [(c.path.rsplit("/", 1)[-1], c.query.split("&")[0]) for c in sandbox.state.requests] == [
        ("cdc", "entities=Customer")
    ]


@pytest.mark.parametrize("why", ["beyond the CDC look-back", "CDC answer at its cap"])
def test_quickbooks_poll_falls_back_to_a_paged_query(why: str) -> None:
    sandbox, server = serve_quickbooks(QuickBooksSandbox(cdc_limit=2))
    try:
        far_future = sandbox_now(sandbox.state.clock.now()) + timedelta(days=40)
        clock = (lambda: far_future) if why.startswith("beyond") else None
        books = qbo_books(sandbox, server.url, clock=clock, cls=SmallCdc)
        since, expected = _qbo_changes(sandbox, books)
        # When the poll cannot trust CDC
        changed = {(c.id, c.status) for c in books.iter_customers_changed_since(since)}
        # Then the LastUpdatedTime query (inactive customers included) finds the same customers
        assert changed == expected
        assert sandbox.state.calls("GET", "*/query")
    finally:
        server.stop()


# -- Zoho Books --------------------------------------------------------------------------------------------


@pytest.fixture
def zoho() -> Iterator[tuple[ZohoBooksSandbox, SandboxServer]]:
    sandbox, server = serve_zoho(ZohoBooksSandbox(minute_limit=10_000, day_limit=100_000))
    yield sandbox, server
    server.stop()


class SmallPages(ZohoBooksAccounting):
    """Two contacts a page, so that stopping early shows in the number of list calls."""

    PAGE_SIZE = 2


def test_zoho_has_no_webhooks(zoho: tuple[ZohoBooksSandbox, SandboxServer]) -> None:
    books: ZohoBooksAccounting = zoho_adapter(zoho[0], zoho[1].url)
    # When anything arrives for Zoho Books, Then it is a 404 that says changes are polled
    for call in (
        lambda: books.verify_webhook(WebhookRequest("POST", ROUTE, {}, b"{}")),
        lambda: books.parse_webhook(b"{}"),
    ):
        with pytest.raises(WebhookRejected, match="no webhooks; changes are polled") as rejected:
            call()
        assert rejected.value.status == 404


def test_zoho_poll_returns_exactly_the_changed_customers_read_in_full(
    zoho: tuple[ZohoBooksSandbox, SandboxServer],
) -> None:
    sandbox, server = zoho
    books = zoho_adapter(sandbox, server.url, cls=SmallPages)
    # Given six contacts, then a minute later one renamed, one made inactive and a vendor added
    names = ("Acme Ltd", "Beta Ltd", "Gamma Ltd", "Delta Ltd", "Epsilon Ltd", "Zeta Ltd")
    ids = [sandbox.seed_contact(contact_name=name)["contact_id"] for name in names]
    sandbox.state.clock.advance(60)
    since = sandbox_now(sandbox.state.clock.now())
    books.update_customer(ids[0], company("Acme Limited"), ["name"], number=None, idempotency_key="k-1")
    sandbox.seed_contact(contact_name="Supplies Co", contact_type="vendor")
    books.http.request("POST", f"/contacts/{ids[2]}/inactive", params={"organization_id": sandbox.organization_id})
    sandbox.state.reset_log()
    # When the customers changed since then are polled
    changed = list(books.iter_customers_changed_since(since))
    # Then exactly those two come back (the vendor is no customer), each read in full
    assert sorted((c.id, c.name, c.status) for c in changed) == sorted(
        [(ids[0], "Acme Limited", "ACTIVE"), (ids[2], "Gamma Ltd", "ARCHIVED")]
    )
    paths = [r.path for r in sandbox.state.requests]
    assert paths.count("/books/v3/contacts") == 2  # of 4 pages: the walk stops at the first older row
    assert sorted(p for p in paths if p != "/books/v3/contacts") == sorted(
        f"/books/v3/contacts/{i}" for i in (ids[0], ids[2])
    )
