"""Finance's own edits of a customer through each accounting driver (``edit_customer``): only the named fields
change, and the production adapter sees the edit the way it sees any other change: by reading the customer,
in its changed-since poll and, where the vendor has them, in a signed webhook."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from werkzeug.wrappers import Request, Response

from closeloop.errors import WebhookRejected
from closeloop.models import AccountingEvent
from closeloop.ports import AccountingPort, WebhookRequest
from closeloop_local.sandboxes.base import SandboxServer
from closeloop_local.sandboxes.drivers import AccountingDriver, SeenCustomer
from closeloop_local.sandboxes.quickbooks import QuickBooksDriver
from closeloop_local.sandboxes.quickbooks import serve as serve_quickbooks
from closeloop_local.sandboxes.xero import XeroDriver
from closeloop_local.sandboxes.xero import serve as serve_xero
from closeloop_local.sandboxes.zohobooks import ZohoBooksDriver, ZohoBooksSandbox
from closeloop_local.sandboxes.zohobooks import serve as serve_zoho
from tests.sandbox_adapters import qbo_books, sandbox_now, xero_books
from tests.sandbox_adapters import zohobooks_adapter as zoho_adapter

NEW_NAME = "Acme Limited"
NEW_EMAIL = "billing@acme.test"
NEW_PHONE = "+64 9 555 0100"


@dataclass
class Route:
    """A webhook endpoint on loopback that verifies with the adapter (200, or the rejection's status)."""

    port: AccountingPort
    received: list[WebhookRequest] = field(default_factory=list)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        hook = WebhookRequest("POST", request.url, dict(request.headers.items()), request.get_data())
        status = 200
        try:
            self.port.verify_webhook(hook)
        except WebhookRejected as rejected:
            status = rejected.status
        else:
            self.received.append(hook)
        answer: Iterable[bytes] = Response(b"", status=status)(environ, start_response)
        return answer

    def events(self) -> list[AccountingEvent]:
        return [event for hook in self.received for event in self.port.parse_webhook(hook.body)]


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


def seen(driver: AccountingDriver, customer_id: str) -> SeenCustomer:
    [customer] = [c for c in driver.customers() if c.id == customer_id]
    return customer


def check_edits(driver: AccountingDriver, books: AccountingPort) -> str:
    """Two customers, then a minute later finance renames one and, in a second edit, changes its email and
    phone: each edit changes only its fields, and the adapter reads and polls the new values. The edited id."""
    customer_id = driver.seed_customer("Acme Ltd", email="ap@acme.test", tax_number="GB123456789")
    other_id = driver.seed_customer("Beta Ltd", email="ap@beta.test")
    before, other = seen(driver, customer_id), seen(driver, other_id)
    state = driver.state
    state.clock.advance(60)
    since = sandbox_now(state.clock.now()) - timedelta(seconds=1)
    # When finance renames the customer, Then only its name changes
    driver.edit_customer(customer_id, name=NEW_NAME)
    assert seen(driver, customer_id) == dataclasses.replace(before, name=NEW_NAME)
    # When finance then changes its email and phone, Then the name stays and the email changes (the phone is
    # checked through the adapter: the drivers' canonical view has none)
    driver.edit_customer(customer_id, email=NEW_EMAIL, phone=NEW_PHONE)
    assert seen(driver, customer_id) == dataclasses.replace(before, name=NEW_NAME, email=NEW_EMAIL)
    assert seen(driver, other_id) == other
    # And the production adapter reads the new values
    got = books.get_customer(customer_id)
    assert got is not None
    assert (got.name, got.email) == (NEW_NAME, NEW_EMAIL)
    assert (got.fields["name"], got.fields["email"], got.fields["phone"]) == (NEW_NAME, NEW_EMAIL, NEW_PHONE)
    # And its changed-since poll finds exactly the edited customer, with the new values
    changed = list(books.iter_customers_changed_since(since))
    assert [(c.id, c.name, c.email) for c in changed] == [(customer_id, NEW_NAME, NEW_EMAIL)]
    return customer_id


def test_xero_edit_customer(route_server: Callable[[AccountingPort], tuple[Route, str]]) -> None:
    sandbox, server = serve_xero()
    try:
        driver = XeroDriver(sandbox, server.url)
        books = xero_books(sandbox, server.url)
        route, url = route_server(books)
        assert driver.subscribe_webhooks(url) == "OK"
        route.received.clear()  # the intent-to-receive check
        customer_id = check_edits(driver, books)
        # And both edits went through the API, as POST /Contacts/{id}
        posts = driver.state.calls("POST", f"/api.xro/2.0/Contacts/{customer_id}")
        assert len(posts) == 2
        # And the webhook brings the route (verified with the adapter's key) both changes of that contact
        driver.flush_webhooks()
        changes = [(e.resource, e.resource_id, e.kind) for e in route.events() if e.kind == "changed"]
        assert changes == [("customer", customer_id, "changed")] * 2
    finally:
        server.stop()


def test_quickbooks_edit_customer(route_server: Callable[[AccountingPort], tuple[Route, str]]) -> None:
    sandbox, server = serve_quickbooks()
    try:
        driver = QuickBooksDriver(sandbox)
        books = qbo_books(sandbox, server.url)
        route, url = route_server(books)
        driver.subscribe_webhooks(url)
        customer_id = check_edits(driver, books)
        # And the edits are recorded as QuickBooks records any update: a new SyncToken each, made in the UI
        [row] = [r for r in sandbox.rows("Customer") if r["Id"] == customer_id]
        assert row["SyncToken"] == "2"
        assert not sandbox.state.calls("POST", "*/customer")
        # And the notification brings the route (verified with the Verifier Token) both updates of the customer
        driver.flush_webhooks()
        changes = [(e.resource, e.resource_id, e.kind) for e in route.events() if e.kind == "changed"]
        assert changes == [("customer", customer_id, "changed")] * 2
    finally:
        server.stop()


def test_zohobooks_edit_customer() -> None:
    sandbox, server = serve_zoho(ZohoBooksSandbox(minute_limit=10_000, day_limit=100_000))
    try:
        driver = ZohoBooksDriver(sandbox)
        books = zoho_adapter(sandbox, server.url)
        customer_id = check_edits(driver, books)
        # And the contact's modification time moved past the seeding, with one primary person holding the
        # new email and phone
        [contact] = [c for c in sandbox.contacts() if c["contact_id"] == customer_id]
        assert contact["last_modified_time"] > contact["created_time"]
        [person] = contact["contact_persons"]
        assert (person["email"], person["phone"], person["is_primary_contact"]) == (NEW_EMAIL, NEW_PHONE, True)
    finally:
        server.stop()
