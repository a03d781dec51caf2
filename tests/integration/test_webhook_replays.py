"""Replays: a validly signed delivery sent again is accepted but queued once (DynamoStore on moto, real adapters).

A captured HubSpot batch, Xero notification or Pipedrive event replayed within the retry window queues nothing
(so the worker calls no vendor for it); a delivery whose queueing failed is not remembered, so the sender's
retry gets through. Through the webhook routes, the replay store is built only for a delivery whose signature
holds: a wrongly signed request (anyone on the internet) builds no DynamoDB or SQS client.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator
from typing import Any, cast

import boto3
import pytest
from moto import mock_aws

from closeloop import runtime, webhook_api
from closeloop.oauth import RefreshingTokens
from closeloop.ports import WebhookRequest
from closeloop.store import DynamoStore
from closeloop.sync.ingest import CLAIM_WINDOW, REPLAY_WINDOW, delivery_digest, ingest, ingest_accounting
from closeloop.vendors.hubspot.adapter import HubSpotCrm
from closeloop.vendors.xero.adapter import XeroAccounting
from closeloop_local import events as sample_events
from closeloop_local.sandboxes.hubspot import signed_batch_headers

SECRET = "hubspot-client-secret"
URI = "https://hooks.example.test/webhooks/hubspot/contacts"
XERO_KEY = "xero-webhook-key"
TENANT = "6a7d8c0e-0000-4000-8000-000000000001"


@pytest.fixture
def store() -> Iterator[DynamoStore]:
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(
            TableName="sync",
            AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in ("PK", "SK")],
            KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"}, {"AttributeName": "SK", "KeyType": "RANGE"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield DynamoStore("sync", client)


class Queues:
    def __init__(self, fail: int = 0) -> None:
        self.sent: list[tuple[str, str]] = []
        self.fail = fail

    def send(self, pipeline: str, body: str, delay_seconds: int = 0) -> None:
        if self.fail:
            self.fail -= 1
            raise ConnectionError("SQS unreachable")
        self.sent.append((pipeline, body))


def hubspot_batch(attempt: int = 0) -> list[dict[str, Any]]:
    return [
        {
            "eventId": 100 + n,
            "subscriptionId": 7,
            "portalId": 62515,
            "occurredAt": 1_765_000_000_000 + n,
            "subscriptionType": "company.creation",
            "attemptNumber": attempt,
            "objectId": 1000 + n,
        }
        for n in range(2)
    ]


def hubspot_delivery(attempt: int = 0, secret: str = SECRET) -> WebhookRequest:
    body = json.dumps(hubspot_batch(attempt)).encode()
    headers = signed_batch_headers(secret, URI, body, int(time.time() * 1000), "v3")
    return WebhookRequest("POST", URI, headers, body)


def test_a_replayed_hubspot_delivery_is_accepted_and_queued_once(store: DynamoStore) -> None:
    # Given a signed HubSpot batch that was queued
    crm, queues = HubSpotCrm(client_secret=SECRET), Queues()
    delivery = hubspot_delivery()
    first = ingest(crm, queues, delivery, store)
    # When the same signed delivery is replayed, and HubSpot retries it with a new attempt number and signature
    again = ingest(crm, queues, delivery, store)
    retried = ingest(crm, queues, hubspot_delivery(attempt=1), store)
    # Then all were accepted, but only the first queued a message (the worker calls vendors only for that one)
    assert (first.replayed, again.replayed, retried.replayed) == (False, True, True)
    assert first.accepted == {"contacts": 2}
    assert len(queues.sent) == 1


def test_a_delivery_whose_queueing_failed_gets_through_when_retried(store: DynamoStore) -> None:
    # Given SQS fails on the first delivery
    crm, queues = HubSpotCrm(client_secret=SECRET), Queues(fail=1)
    delivery = hubspot_delivery()
    with pytest.raises(ConnectionError):
        ingest(crm, queues, delivery, store)
    # When HubSpot retries it
    retried = ingest(crm, queues, delivery, store)
    # Then the retry is queued (the failed attempt was not remembered), and a further replay is not
    assert not retried.replayed
    assert len(queues.sent) == 1
    assert ingest(crm, queues, delivery, store).replayed
    assert len(queues.sent) == 1


def test_a_delivery_whose_function_died_between_claim_and_send_gets_through_after_the_claim_lapses(
    store: DynamoStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a function that claimed a delivery and was killed before it sent anything (no except ran)
    crm, queues = HubSpotCrm(client_secret=SECRET), Queues()
    delivery = hubspot_delivery()
    keys = [event.dedupe_key for event in crm.parse_webhook(delivery.body)]
    assert store.claim_delivery("hubspot", delivery_digest(keys), int(CLAIM_WINDOW.total_seconds()))
    # When HubSpot retries it once the claim window has passed
    later = time.time() + CLAIM_WINDOW.total_seconds() + 1
    monkeypatch.setattr(time, "time", lambda: later)
    retried = ingest(crm, queues, delivery, store)
    # Then the retry is queued, and from then on it is remembered for the whole replay window
    assert not retried.replayed
    assert len(queues.sent) == 1
    item = store._get(f"DELIVERY#hubspot#{delivery_digest(keys)}", "DELIVERY")
    assert item is not None and int(item["expires_at"]) - later >= 24 * 3600


def xero_delivery(events: list[dict[str, str]], key: str = XERO_KEY) -> WebhookRequest:
    body = json.dumps({"events": events, "firstEventSequence": 1, "lastEventSequence": len(events)}).encode()
    signature = base64.b64encode(hmac.new(key.encode(), body, hashlib.sha256).digest()).decode()
    return WebhookRequest("POST", URI, {"x-xero-signature": signature}, body)


def xero() -> XeroAccounting:
    return XeroAccounting(
        base_url="https://api.xero.test",
        tokens=cast(RefreshingTokens, None),  # never used: verifying and parsing call nothing
        tenant_id=lambda: TENANT,
        webhook_key=lambda: XERO_KEY,
    )


def xero_contact_event() -> dict[str, str]:
    return {
        "resourceUrl": "https://api.xero.com/api.xro/2.0/Contacts/717f2bfc-c6d4-41fd-b238-3f2f0c0cf777",
        "resourceId": "717f2bfc-c6d4-41fd-b238-3f2f0c0cf777",
        "eventDateUtc": "2026-12-01T10:00:00.000",
        "eventType": "UPDATE",
        "eventCategory": "CONTACT",
        "tenantId": TENANT,
        "tenantType": "ORGANISATION",
    }


def test_a_replayed_xero_notification_queues_nothing_but_intent_to_receive_checks_always_pass(
    store: DynamoStore,
) -> None:
    # Given a signed Xero notification for one contact
    queues, delivery = Queues(), xero_delivery([xero_contact_event()])
    # When it arrives three times
    counts = [ingest_accounting(xero(), queues, delivery, store) for _ in range(3)]
    # Then it was queued once; the replays were accepted and queued nothing
    assert counts == [1, 0, 0]
    assert len(queues.sent) == 1
    # And Xero's intent-to-receive check (no events) passes every time, remembering nothing
    assert [ingest_accounting(xero(), queues, xero_delivery([]), store) for _ in range(2)] == [0, 0]


def test_a_delivery_record_lasts_at_least_the_retry_window_and_expires_after(store: DynamoStore) -> None:
    # Given a delivery claimed now
    assert store.claim_delivery("crm", "abc", int(REPLAY_WINDOW.total_seconds()))
    # Then it is a replay while recorded, and claimable again once its record has expired (TTL may lag)
    assert not store.claim_delivery("crm", "abc", 60)
    item = store._get("DELIVERY#crm#abc", "DELIVERY")
    assert item is not None
    assert int(item["expires_at"]) - time.time() >= 24 * 3600
    assert store.claim_delivery("crm", "other", -1)
    assert store.claim_delivery("crm", "other", 60)


# -- through the webhook routes ------------------------------------------------------------------------------


@pytest.fixture
def configured(monkeypatch: pytest.MonkeyPatch) -> None:
    """The webhook functions' runtime as deployed: HubSpot and Xero keys, queues and the sync table named."""
    for key in ("CREDENTIALS_SECRET_ID", "WEBHOOK_KEYS_SECRET_ID"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("CRM_PROVIDER", "hubspot")
    monkeypatch.setenv("ACCOUNTING_PROVIDER", "xero")
    monkeypatch.setenv("HUBSPOT_CLIENT_SECRET", SECRET)
    monkeypatch.setenv("XERO_WEBHOOK_KEY", XERO_KEY)
    monkeypatch.setenv("XERO_TENANT_ID", TENANT)
    monkeypatch.setenv("WEBHOOK_BASE_URL", "https://hooks.example.test")
    monkeypatch.setenv("CONTACT_QUEUE_URL", "https://sqs.us-east-1.amazonaws.com/123456789012/contacts")
    monkeypatch.setenv("DEAL_QUEUE_URL", "https://sqs.us-east-1.amazonaws.com/123456789012/deals")
    monkeypatch.setenv("SYNC_TABLE", "sync")


def route_event(path: str, delivery: WebhookRequest, **parameters: str) -> dict[str, Any]:
    """``delivery`` as API Gateway (HTTP API 2.0) hands it to the webhook function at ``path``."""
    event = sample_events.load("webhook_contacts_v3.json")
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["pathParameters"] = parameters
    event["headers"] = {"content-type": "application/json", **{k.lower(): v for k, v in delivery.headers.items()}}
    event["body"] = delivery.body.decode()
    return event


def crm_route(key: str = SECRET) -> dict[str, Any]:
    """A HubSpot batch signed with ``key``, to ``POST /webhooks/hubspot/contacts``."""
    return route_event("/webhooks/hubspot/contacts", hubspot_delivery(secret=key), crm="hubspot")


def accounting_route(key: str = XERO_KEY) -> dict[str, Any]:
    """A Xero notification signed with ``key``, to ``POST /accounting-webhooks/xero``."""
    return route_event("/accounting-webhooks/xero", xero_delivery([xero_contact_event()], key), system="xero")


ROUTES: dict[str, Callable[..., dict[str, Any]]] = {"crm": crm_route, "accounting": accounting_route}


@pytest.mark.usefixtures("configured")
@pytest.mark.parametrize("route", sorted(ROUTES))
def test_a_wrongly_signed_delivery_builds_neither_the_replay_store_nor_any_aws_client(
    route: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the deployed runtime, where building the store or any AWS client fails the test
    def must_not_build(*args: Any, **kwargs: Any) -> Any:
        pytest.fail("a refused request built the replay store or an AWS client")

    monkeypatch.setattr(runtime, "store", must_not_build)
    monkeypatch.setattr(boto3, "client", must_not_build)
    monkeypatch.setattr(boto3, "resource", must_not_build)
    # When a delivery signed with the wrong key reaches the route
    response = webhook_api.resolve(ROUTES[route](key="not-our-key"), None)
    # Then it is refused, having built nothing
    assert response["statusCode"] == 401


@pytest.mark.usefixtures("configured")
@pytest.mark.parametrize("route", sorted(ROUTES))
def test_a_correctly_signed_delivery_replayed_to_the_route_is_queued_once(
    route: str, store: DynamoStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the route's queues in memory and its replay store on moto
    queues, built = Queues(), []

    def build_store() -> DynamoStore:
        built.append(store)
        return store

    monkeypatch.setattr(runtime, "queues", lambda: queues)
    monkeypatch.setattr(runtime, "store", build_store)
    delivery = ROUTES[route]()
    # When the same signed delivery arrives twice
    answers = [webhook_api.resolve(delivery, None)["statusCode"] for _ in range(2)]
    # Then both are accepted, it is queued once, and the replay check did reach the store
    assert answers == [200, 200]
    assert len(queues.sent) == 1
    assert built
