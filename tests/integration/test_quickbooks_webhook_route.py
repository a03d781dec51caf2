"""QuickBooks deliveries through the real webhook route (``POST /accounting-webhooks/quickbooks``): the
sandbox's signed CloudEvents (Intuit's current shape) and legacy notifications are accepted, queued and
synced; a wrongly signed one is refused with 401 and queues nothing."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any, Literal

import pytest

from closeloop import runtime, webhook_api
from closeloop.models import AccountingWorkMessage, Customer
from closeloop.rules import FieldRules
from closeloop.sync.accounting_changes import AccountingChangeSync
from closeloop.sync.contacts import ContactSync
from closeloop.vendors.quickbooks.adapter import QuickBooksAccounting
from closeloop_local import events as sample_events
from closeloop_local.sandboxes.base import SandboxServer
from closeloop_local.sandboxes.quickbooks import QuickBooksDriver, QuickBooksSandbox
from closeloop_local.sandboxes.quickbooks import serve as serve_quickbooks
from tests.fakes import MemoryStore, WritableCrm, events_for, ref
from tests.sandbox_adapters import qbo_books, signed

ACME = ref("company", "1")
PATH = "/accounting-webhooks/quickbooks"


class Queues:
    """The work queues, in memory: what the route enqueued."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def send(self, pipeline: str, body: str, delay_seconds: int = 0) -> None:
        self.sent.append((pipeline, body))


@pytest.fixture
def qbo() -> Iterator[tuple[QuickBooksSandbox, SandboxServer]]:
    sandbox, server = serve_quickbooks()
    yield sandbox, server
    server.stop()


def route_to(
    sandbox: QuickBooksSandbox, server: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> tuple[QuickBooksAccounting, Queues]:
    """The route's runtime: QuickBooks on the sandbox, queues that record, an in-memory replay store."""
    books = qbo_books(sandbox, server.url)
    queues = Queues()
    deliveries = MemoryStore()  # the route remembers queued deliveries (replay protection)
    monkeypatch.setattr(runtime, "accounting", lambda: books)
    monkeypatch.setattr(runtime, "queues", lambda: queues)
    monkeypatch.setattr(runtime, "store", lambda: deliveries)
    return books, queues


def route_event(headers: dict[str, str], body: bytes) -> dict[str, Any]:
    """An API Gateway (HTTP API 2.0) request to the accounting webhook route, shaped as the sample events."""
    event: dict[str, Any] = copy.deepcopy(sample_events.load("webhook_contacts_v3.json"))
    event["routeKey"] = event["requestContext"]["routeKey"] = "POST /accounting-webhooks/{system}"
    event["rawPath"] = event["requestContext"]["http"]["path"] = PATH
    event["pathParameters"] = {"system": "quickbooks"}
    event["headers"] = {"content-type": "application/json", **{k.lower(): v for k, v in headers.items()}}
    event["body"] = body.decode()
    return event


@pytest.mark.parametrize("payload_format", ["cloudevents", "legacy"])
def test_a_signed_delivery_is_accepted_queued_and_synced(
    qbo: tuple[QuickBooksSandbox, SandboxServer],
    monkeypatch: pytest.MonkeyPatch,
    payload_format: Literal["cloudevents", "legacy"],
) -> None:
    sandbox, server = qbo
    books, queues = route_to(sandbox, server, monkeypatch)
    # Given a CRM company synced to a QuickBooks customer
    crm, store = WritableCrm(customers={}), MemoryStore()
    crm.customers[ACME] = crm_company = Customer(ref=ACME, name="Acme Ltd", email="ap@acme.test")
    contacts = ContactSync(crm, books, store, owner="w")
    created = contacts.sync(ACME, events_for(ACME))
    assert created.accounting_id
    # And the app's webhook (in the chosen shape) pointed at an address that records what it is sent
    sandbox.webhooks.subscribe("http://127.0.0.1:9/unreachable", payload_format=payload_format)
    sandbox.webhooks.flush()  # the create's own notification goes nowhere
    # When finance renames the customer in QuickBooks and the window closes
    QuickBooksDriver(sandbox).edit_customer(created.accounting_id, name="Acme Rockets Limited")
    sandbox.webhooks.flush()
    delivery = sandbox.webhooks.deliveries[-1]
    body = str(delivery["body"]).encode()
    assert isinstance(json.loads(body), list) == (payload_format == "cloudevents")
    # And that signed delivery reaches the route
    response = webhook_api.app.resolve(route_event(dict(delivery["headers"]), body), None)
    # Then it is accepted with an empty body, and the change is queued for the accounting pipeline
    assert (response["statusCode"], response["body"]) == (200, "")
    [(pipeline, message)] = queues.sent
    work = AccountingWorkMessage.model_validate_json(message)
    assert pipeline == "contacts"
    assert [(e.resource, e.resource_id, e.kind) for e in work.events] == [
        ("customer", created.accounting_id, "changed")
    ]
    # And syncing it reads the customer back: finance renamed a field the CRM owns, so it is a conflict
    changes = AccountingChangeSync(crm, books, store, FieldRules.load(None))
    [outcome] = [changes.sync(e) for e in work.events]
    assert (outcome.action, outcome.fields, outcome.ref) == ("conflict", ("name",), ACME)
    assert crm.customers[ACME].name == crm_company.name


def test_a_wrongly_signed_delivery_is_refused_with_401_and_queues_nothing(
    qbo: tuple[QuickBooksSandbox, SandboxServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox, server = qbo
    books, queues = route_to(sandbox, server, monkeypatch)
    body = json.dumps(
        [
            {
                "specversion": "1.0",
                "id": "evt-1",
                "source": "intuit.app",
                "type": "qbo.customer.updated.v1",
                "time": "2026-03-01T10:42:19Z",
                "intuitentityid": "1",
                "intuitaccountid": sandbox.realm_id,
            }
        ]
    ).encode()
    for signature in (signed("not-the-verifier-token", body), ""):
        response = webhook_api.app.resolve(route_event({"intuit-signature": signature}, body), None)
        assert response["statusCode"] == 401
    assert queues.sent == []
    # And the same body signed with the verifier token is accepted
    good = signed(sandbox.webhooks.verifier_token, body)
    assert webhook_api.app.resolve(route_event({"intuit-signature": good}, body), None)["statusCode"] == 200
    assert len(queues.sent) == 1
