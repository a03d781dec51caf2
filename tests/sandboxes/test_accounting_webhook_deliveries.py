"""The accounting sandboxes' webhooks: Xero's signed batches and intent to receive, QuickBooks' signed
notifications per realm, and the Zoho Books contact list sorted by modification time for the poll."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

import httpx
import pytest
from werkzeug.wrappers import Request, Response

from closeloop_local.sandboxes.base import SandboxServer
from closeloop_local.sandboxes.quickbooks import QuickBooksDriver, QuickBooksSandbox
from closeloop_local.sandboxes.quickbooks import serve as serve_quickbooks
from closeloop_local.sandboxes.xero import XeroDriver, XeroSandbox
from closeloop_local.sandboxes.xero import serve as serve_xero
from closeloop_local.sandboxes.zohobooks import ZohoBooksSandbox
from tests.contracts.contract import load as load_contract

Answer = Callable[[dict[str, str], bytes], tuple[int, bytes]]


@dataclass
class Receiver:
    """A webhook endpoint on loopback: records every request, answers as ``answer`` says."""

    answer: Answer
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        headers = {k.lower(): v for k, v in request.headers.items()}
        body = request.get_data()
        self.received.append((headers, body))
        status, content = self.answer(headers, body)
        response: Iterable[bytes] = Response(content, status=status)(environ, start_response)
        return response


def hmac_b64(secret: str, body: bytes) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def checking(header: str, secret: str, body_on_success: bytes = b"") -> Answer:
    """An endpoint that checks ``header`` the vendor's way: 200 when right, 401 when wrong."""

    def answer(headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        if hmac.compare_digest(headers.get(header, ""), hmac_b64(secret, body)):
            return 200, body_on_success
        return 401, b""

    return answer


@pytest.fixture
def endpoint() -> Iterator[Callable[[Answer], tuple[Receiver, str]]]:
    servers: list[SandboxServer] = []

    def start(answer: Answer) -> tuple[Receiver, str]:
        receiver = Receiver(answer)
        server = SandboxServer(receiver).start()
        servers.append(server)
        return receiver, f"{server.url}/webhooks/accounting"

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def xero() -> Iterator[tuple[XeroSandbox, SandboxServer]]:
    sandbox, server = serve_xero()
    yield sandbox, server
    server.stop()


@pytest.fixture
def qbo() -> Iterator[tuple[QuickBooksSandbox, SandboxServer]]:
    sandbox, server = serve_quickbooks()
    yield sandbox, server
    server.stop()


# -- Xero --------------------------------------------------------------------------------------------------


def test_xero_activates_only_an_endpoint_that_passes_intent_to_receive(
    xero: tuple[XeroSandbox, SandboxServer], endpoint: Callable[[Answer], tuple[Receiver, str]]
) -> None:
    sandbox, _ = xero
    # Given an endpoint that says 200 to everything, one that answers with a body, and a correct one
    _, lax = endpoint(lambda headers, body: (200, b""))
    _, chatty = endpoint(checking("x-xero-signature", sandbox.webhooks.key, body_on_success=b'{"ok":true}'))
    right, correct = endpoint(checking("x-xero-signature", sandbox.webhooks.key))
    # When each is saved as the delivery URL
    statuses = [sandbox.webhooks.subscribe(url) for url in (lax, chatty, correct)]
    # Then only the correct one is activated
    assert statuses == ["INTENT_TO_RECEIVE_REQUIRED", "INTENT_TO_RECEIVE_REQUIRED", "OK"]
    # And the check was an empty batch, once signed right and once wrongly
    bodies = [json.loads(body) for _, body in right.received]
    assert [b["events"] for b in bodies] == [[], []]
    assert {b["firstEventSequence"] for b in bodies} == {0}
    signatures = [headers["x-xero-signature"] for headers, _ in right.received]
    assert signatures[0] == hmac_b64(sandbox.webhooks.key, right.received[0][1])
    assert signatures[1] != hmac_b64(sandbox.webhooks.key, right.received[1][1])


def test_xero_sends_nothing_while_intent_to_receive_is_required(
    xero: tuple[XeroSandbox, SandboxServer], endpoint: Callable[[Answer], tuple[Receiver, str]]
) -> None:
    sandbox, _ = xero
    receiver, lax = endpoint(lambda headers, body: (200, b""))
    sandbox.webhooks.subscribe(lax)
    seen = len(receiver.received)
    # When a contact changes under a webhook that failed the check
    sandbox.seed_contact(Name="Acme Ltd")
    # Then nothing is queued or sent
    assert sandbox.webhooks.flush() == {"attempts": 0, "succeeded": 0, "failed": 0}
    assert len(receiver.received) == seen


def test_xero_batches_signed_events_for_api_writes_seeds_and_payments(
    xero: tuple[XeroSandbox, SandboxServer], endpoint: Callable[[Answer], tuple[Receiver, str]]
) -> None:
    sandbox, server = xero
    receiver, url = endpoint(checking("x-xero-signature", sandbox.webhooks.key))
    driver = XeroDriver(sandbox, server.url)
    assert driver.subscribe_webhooks(url) == "OK"
    receiver.received.clear()
    # Given a contact seeded as in Xero's UI, then changed through the API, and an item for an invoice
    contact_id = driver.seed_customer("Acme Ltd", email="ann@acme.test")
    token = _xero_token(sandbox, server.url)
    api = httpx.Client(
        base_url=f"{server.url}/api.xro/2.0",
        headers={"Authorization": f"Bearer {token}", "xero-tenant-id": sandbox.tenant_id},
    )
    changed = api.post(f"/Contacts/{contact_id}", json={"Contacts": [{"Name": "Acme Limited"}]})
    assert changed.status_code == 200
    # When nothing is flushed yet
    # Then nothing was sent: events wait for the flush
    assert receiver.received == []
    # When the webhooks are flushed
    result = sandbox.webhooks.flush()
    # Then one signed batch carries both events, in order, with sequence numbers
    assert result == {"attempts": 1, "succeeded": 1, "failed": 0}
    [(headers, body)] = receiver.received
    assert headers["x-xero-signature"] == hmac_b64(sandbox.webhooks.key, body)
    payload = json.loads(body)
    assert [(e["eventCategory"], e["eventType"], e["resourceId"]) for e in payload["events"]] == [
        ("CONTACT", "CREATE", contact_id),
        ("CONTACT", "UPDATE", contact_id),
    ]
    assert (payload["firstEventSequence"], payload["lastEventSequence"]) == (1, 2)
    assert {e["tenantId"] for e in payload["events"]} == {sandbox.tenant_id}
    assert payload["entropy"].isalpha()
    # And the body is what Xero publishes (tests/contracts/xero: xero-webhooks.yaml, WebhookEvent)
    assert load_contract("xero").check_webhook("event", body) == []
    # When an invoice is created and paid
    invoice = api.put(
        "/Invoices",
        json={
            "Invoices": [
                {
                    "Type": "ACCREC",
                    "Contact": {"ContactID": contact_id},
                    "Status": "AUTHORISED",
                    "LineItems": [{"Description": "Work", "Quantity": 1, "UnitAmount": 100, "AccountCode": "200"}],
                }
            ]
        },
    ).json()["Invoices"][0]
    paid = api.put(
        "/Payments",
        json={"Payments": [{"Invoice": {"InvoiceID": invoice["InvoiceID"]}, "Account": {"Code": "090"}, "Amount": 40}]},
    )
    assert paid.status_code == 200
    api.close()
    sandbox.webhooks.flush()
    # Then the invoice's creation and the payment (an invoice UPDATE: Xero has no payment webhooks) follow
    events = json.loads(receiver.received[-1][1])["events"]
    assert [(e["eventCategory"], e["eventType"]) for e in events] == [("INVOICE", "CREATE"), ("INVOICE", "UPDATE")]
    assert json.loads(receiver.received[-1][1])["firstEventSequence"] == 3


def test_xero_retries_a_failed_batch_with_the_same_bytes(
    xero: tuple[XeroSandbox, SandboxServer], endpoint: Callable[[Answer], tuple[Receiver, str]]
) -> None:
    sandbox, _ = xero
    outage = {"down": False}
    check = checking("x-xero-signature", sandbox.webhooks.key)

    def flaky(headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        return (503, b"") if outage["down"] else check(headers, body)

    receiver, url = endpoint(flaky)
    sandbox.webhooks.subscribe(url)
    outage["down"] = True
    sandbox.seed_contact(Name="Acme Ltd")
    # When the endpoint is down at the first flush and back at the second
    first = sandbox.webhooks.flush()
    outage["down"] = False
    second = sandbox.webhooks.flush()
    # Then the batch failed once and was resent unchanged
    assert (first["failed"], second["succeeded"], sandbox.webhooks.pending()) == (1, 1, 0)
    assert receiver.received[-1][1] == receiver.received[-2][1]
    assert [d["attempt"] for d in sandbox.webhooks.deliveries if d["kind"] == "events"] == [1, 2]


def test_xero_control_api_and_driver_expose_the_webhook(
    xero: tuple[XeroSandbox, SandboxServer], endpoint: Callable[[Answer], tuple[Receiver, str]]
) -> None:
    sandbox, server = xero
    _, url = endpoint(checking("x-xero-signature", sandbox.webhooks.key))
    # When the webhook is configured through the control API
    answer = httpx.post(f"{server.url}/_sandbox/webhooks", json={"url": url, "categories": ["CONTACT"]}).json()
    sandbox.seed_contact(Name="Acme Ltd")
    flushed = httpx.post(f"{server.url}/_sandbox/webhooks/flush").json()
    deliveries = httpx.get(f"{server.url}/_sandbox/webhooks/deliveries").json()
    # Then it is active, delivers, and the driver hands the key to the stack and replays what was sent
    assert answer == {"status": "OK", "key": sandbox.webhooks.key}
    assert flushed["succeeded"] == 1 and deliveries["pending"] == 0
    assert [d["kind"] for d in deliveries["deliveries"]] == ["intent_to_receive", "intent_to_receive", "events"]
    driver = XeroDriver(sandbox, server.url)
    assert driver.environment(server.url)["XERO_WEBHOOK_KEY"] == sandbox.webhooks.key
    assert [w.status for w in driver.sent_webhooks()] == [200, 401, 200]


def _xero_token(sandbox: XeroSandbox, url: str) -> str:
    answer = httpx.post(
        f"{url}/connect/token",
        data={"grant_type": "refresh_token", "refresh_token": str(sandbox.current_refresh_token)},
        auth=(sandbox.client_id, sandbox.client_secret),
    )
    return str(answer.json()["access_token"])


# -- QuickBooks --------------------------------------------------------------------------------------------


def _company_changes(sandbox: QuickBooksSandbox) -> tuple[str, str, str]:
    """A customer, an item (not subscribed), an invoice and a payment: (customer, invoice, payment) ids."""
    driver = QuickBooksDriver(sandbox)
    customer_id = driver.seed_customer("Acme Ltd")
    driver.seed_item("SKU-1", "Widget", Decimal("10"))
    item_id = sandbox.rows("Item")[0]["Id"]
    invoice = sandbox.seed(
        "Invoice",
        CustomerRef={"value": customer_id},
        Line=[
            {
                "Amount": 10,
                "DetailType": "SalesItemLineDetail",
                "SalesItemLineDetail": {"ItemRef": {"value": item_id}, "Qty": 1, "UnitPrice": 10},
            }
        ],
    )
    driver.approve_and_pay(invoice["Id"], Decimal("4"), date(2026, 1, 5))
    return customer_id, invoice["Id"], sandbox.rows("Payment")[0]["Id"]


def test_quickbooks_sends_one_signed_cloudevent_per_change_by_default(
    qbo: tuple[QuickBooksSandbox, SandboxServer], endpoint: Callable[[Answer], tuple[Receiver, str]]
) -> None:
    sandbox, _ = qbo
    receiver, url = endpoint(checking("intuit-signature", sandbox.webhooks.verifier_token))
    QuickBooksDriver(sandbox).subscribe_webhooks(url)
    # Given changes made in the company
    customer_id, invoice_id, payment_id = _company_changes(sandbox)
    # When the aggregation window closes
    result = sandbox.webhooks.flush()
    # Then one signed delivery carries a JSON array of CloudEvents, one per change of a subscribed entity
    assert result == {"attempts": 1, "succeeded": 1, "failed": 0}
    [(headers, body)] = receiver.received
    assert headers["intuit-signature"] == hmac_b64(sandbox.webhooks.verifier_token, body)
    events = json.loads(body)
    assert [(e["type"], e["intuitentityid"]) for e in events] == [
        ("qbo.customer.created.v1", customer_id),
        ("qbo.invoice.created.v1", invoice_id),
        ("qbo.payment.created.v1", payment_id),
        ("qbo.invoice.updated.v1", invoice_id),
    ]
    assert all(e["specversion"] == "1.0" and e["intuitaccountid"] == sandbox.realm_id for e in events)
    assert len({e["id"] for e in events}) == len(events)
    assert all(e["time"].endswith("Z") and e["source"].startswith("intuit.") for e in events)
    # And the body is what Intuit publishes (tests/contracts/quickbooks: the CloudEvents webhook payload)
    assert load_contract("quickbooks").check_webhook("event", body) == []


def test_quickbooks_aggregates_changes_into_one_signed_notification_per_realm(
    qbo: tuple[QuickBooksSandbox, SandboxServer], endpoint: Callable[[Answer], tuple[Receiver, str]]
) -> None:
    sandbox, _ = qbo
    receiver, url = endpoint(checking("intuit-signature", sandbox.webhooks.verifier_token))
    driver = QuickBooksDriver(sandbox)
    driver.subscribe_webhooks(url)
    sandbox.webhooks.payload_format = "legacy"  # the switch back to the eventNotifications shape
    # Given a customer, an item (not subscribed), an invoice and a payment made in the company
    customer_id, invoice_id, payment_id = _company_changes(sandbox)
    # When the aggregation window closes
    result = sandbox.webhooks.flush()
    # Then one notification, signed with the verifier token, lists every change of the subscribed entities
    assert result == {"attempts": 1, "succeeded": 1, "failed": 0}
    [(headers, body)] = receiver.received
    assert headers["intuit-signature"] == hmac_b64(sandbox.webhooks.verifier_token, body)
    [notification] = json.loads(body)["eventNotifications"]
    assert notification["realmId"] == sandbox.realm_id
    entities = notification["dataChangeEvent"]["entities"]
    assert [(e["name"], e["id"], e["operation"]) for e in entities] == [
        ("Customer", customer_id, "Create"),
        ("Invoice", invoice_id, "Create"),
        ("Payment", payment_id, "Create"),
        ("Invoice", invoice_id, "Update"),
    ]
    assert all(e["lastUpdated"][-5] in "+-" for e in entities)  # the company's offset, as ``-0800``
    # And an empty window sends nothing
    assert sandbox.webhooks.flush()["attempts"] == 0


def test_quickbooks_retries_until_the_endpoint_takes_the_notification(
    qbo: tuple[QuickBooksSandbox, SandboxServer], endpoint: Callable[[Answer], tuple[Receiver, str]]
) -> None:
    sandbox, server = qbo
    answers = iter([500, 200])
    receiver, url = endpoint(lambda headers, body: (next(answers), b""))
    httpx.post(f"{server.url}/_sandbox/webhooks", json={"url": url, "entities": ["Customer"]})
    sandbox.seed("Customer", DisplayName="Acme Ltd")
    # When the first attempt fails and the next flush succeeds
    first, second = sandbox.webhooks.flush(), sandbox.webhooks.flush()
    # Then the same notification was sent twice, and the deliveries say so
    assert (first["failed"], second["succeeded"]) == (1, 1)
    assert receiver.received[0][1] == receiver.received[1][1]
    deliveries = httpx.get(f"{server.url}/_sandbox/webhooks/deliveries").json()
    assert [(d["attempt"], d["ok"]) for d in deliveries["deliveries"]] == [(1, False), (2, True)]
    assert QuickBooksDriver(sandbox).environment(server.url)["QUICKBOOKS_WEBHOOK_VERIFIER_TOKEN"] == (
        sandbox.webhooks.verifier_token
    )


def test_quickbooks_refuses_an_unknown_entity_subscription(qbo: tuple[QuickBooksSandbox, SandboxServer]) -> None:
    sandbox, _ = qbo
    # When a subscription names an entity the company does not have, Then it is refused
    with pytest.raises(ValueError, match="entities"):
        sandbox.webhooks.subscribe("http://127.0.0.1:9/hook", ["Spaceship"])


# -- Zoho Books --------------------------------------------------------------------------------------------


def test_zoho_contacts_sort_by_last_modified_time_for_the_poll() -> None:
    zoho = ZohoBooksSandbox()
    client = httpx.Client(transport=httpx.WSGITransport(app=zoho), base_url="http://zoho.local")
    token = client.post(
        "/oauth/v2/token",
        params={
            "grant_type": "refresh_token",
            "refresh_token": zoho.initial_refresh_token,
            "client_id": zoho.client_id,
            "client_secret": zoho.client_secret,
        },
    ).json()["access_token"]
    # Given two contacts, the first one changed later
    first = zoho.seed_contact(contact_name="Beta")["contact_id"]
    zoho.state.clock.advance(5)
    zoho.seed_contact(contact_name="Alpha")
    zoho.state.clock.advance(5)
    client.post(
        f"/books/v3/contacts/{first}/inactive",
        params={"organization_id": zoho.organization_id},
        headers={"Authorization": f"Zoho-oauthtoken {token}"},
    )

    def names(**params: str) -> list[str]:
        answer = client.get(
            "/books/v3/contacts",
            params={"organization_id": zoho.organization_id, **params},
            headers={"Authorization": f"Zoho-oauthtoken {token}"},
        ).json()
        return [row["contact_name"] for row in answer.get("contacts", [])] or [answer["message"]]

    # When the list is sorted by modification time, newest first, Then the changed one leads
    assert names(sort_column="last_modified_time", sort_order="D") == ["Beta", "Alpha"]
    # And the default order is still by name, and an unknown sort column is refused
    assert names() == ["Alpha", "Beta"]
    assert names(sort_column="colour") == ["Invalid value passed for sort_column"]
    client.close()
