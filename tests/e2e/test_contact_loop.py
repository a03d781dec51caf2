"""End to end over HTTP: HubSpot sandbox -> local stack (API + SQS + real handlers) -> Xero sandbox."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from closeloop.models import CrmRef
from closeloop_local.sandboxes.hubspot import signed_batch_headers
from tests.stack_fixtures import Loop

pytestmark = pytest.mark.e2e


def company(object_id: object) -> CrmRef:
    return CrmRef(crm="hubspot", object_type="company", object_id=str(object_id))


def named(loop: Loop, name: str) -> list[dict[str, Any]]:
    return [c for c in loop.active_xero_contacts() if c.get("Name") == name]


def test_company_and_contact_created_in_hubspot_appear_in_xero_once(loop: Loop) -> None:
    # Given a company with its primary contact created in HubSpot
    acme = loop.hubspot.create_object("companies", {"name": "Acme Anvils Ltd", "city": "London"})
    loop.hubspot.create_object(
        "contacts",
        {"firstname": "Ann", "lastname": "Archer", "email": "ann@anvils.test"},
        associations=[{"to_type": "companies", "to_id": acme["id"], "primary": True}],
    )
    # When HubSpot delivers its webhooks and the workers finish
    loop.settle()
    # Then Xero holds one contact for the company, with the primary person's email, stamped and mapped
    (contact,) = named(loop, "Acme Anvils Ltd")
    assert contact["EmailAddress"] == "ann@anvils.test"
    assert contact["ContactNumber"] == f"hubspot-company-{acme['id']}"
    mapping = loop.store.get_mapping(company(acme["id"]), "xero")
    assert mapping is not None
    assert mapping.accounting_id == contact["ContactID"]
    assert loop.store.list_audit(company(acme["id"]))[0].action == "created"


def test_same_signed_batch_five_times_and_five_times_concurrently_leaves_one_contact(loop: Loop) -> None:
    # Given a new company whose creation batch HubSpot delivered once
    globo = loop.hubspot.create_object("companies", {"name": "Globochem"})
    loop.settle()
    delivery = next(d for d in reversed(loop.hubspot.deliveries) if str(globo["id"]) in d["body"])
    # When the same signed batch arrives 5 more times in a row and 5 times at once
    with httpx.Client(timeout=10) as client:
        sequential = [
            client.post(delivery["url"], content=delivery["body"], headers=delivery["headers"]) for _ in range(5)
        ]
        with ThreadPoolExecutor(max_workers=5) as pool:
            concurrent = list(
                pool.map(
                    lambda _: client.post(delivery["url"], content=delivery["body"], headers=delivery["headers"]),
                    range(5),
                )
            )
    loop.stack.drain(timeout=60)
    # Then every delivery was accepted and Xero still has exactly one contact
    assert {r.status_code for r in sequential + concurrent} == {200}
    assert len(named(loop, "Globochem")) == 1
    creates = [r for r in loop.xero.state.calls("PUT", "/api.xro/2.0/Contacts") if b"Globochem" in r.body]
    assert len(creates) == 1


def test_a_replayed_signed_delivery_is_accepted_but_calls_no_vendor(loop: Loop) -> None:
    # Given a company whose creation batch was delivered, queued and synced
    replayco = loop.hubspot.create_object("companies", {"name": "Replayco"})
    loop.settle()
    delivery = next(d for d in reversed(loop.hubspot.deliveries) if str(replayco["id"]) in d["body"])
    hubspot_calls, xero_calls = len(loop.hubspot.state.requests), len(loop.xero.state.requests)
    # When an attacker (or a late retry) sends the same signed delivery again
    response = httpx.post(delivery["url"], content=delivery["body"], headers=delivery["headers"], timeout=10)
    loop.stack.drain(timeout=30)
    # Then it is answered 200, and nothing was queued: neither HubSpot nor Xero was called again
    assert response.status_code == 200
    assert (len(loop.hubspot.state.requests), len(loop.xero.state.requests)) == (hubspot_calls, xero_calls)


def test_existing_xero_name_is_matched_not_duplicated_and_nothing_loops(loop: Loop) -> None:
    # Given finance already entered the customer in Xero under its legal name
    existing = loop.xero.seed_contact(Name="Initech LLC", EmailAddress="ap@initech.test")
    # When sales creates it in HubSpot with a slightly different name
    initech = loop.hubspot.create_object("companies", {"name": "Initech"})
    loop.settle()
    # Then it is matched to the existing contact: no create, no second contact
    assert [c["ContactID"] for c in loop.active_xero_contacts() if "Initech" in str(c["Name"])] == [
        existing["ContactID"]
    ]
    assert not [r for r in loop.xero.state.calls("PUT", "/api.xro/2.0/Contacts") if b"Initech" in r.body]
    audit = loop.store.list_audit(company(initech["id"]))
    assert audit[0].action == "matched"
    assert "normalised name" in audit[0].detail


def test_exact_name_taken_and_unseen_by_search_is_refused_once_then_linked(loop: Loop) -> None:
    # Given Xero holds "Hooli" but its search does not return it (searchTerm misses: e.g. indexing lag)
    loop.xero.seed_contact(Name="Hooli")
    loop.xero.state.faults.clear()
    hooli = loop.hubspot.create_object("companies", {"name": "Hooli"})
    loop.xero.state.faults.append(_empty_search_fault())
    loop.settle()
    # Then one create was refused with Xero's 400 and the contact was linked, not retried
    puts = [r for r in loop.xero.state.calls("PUT", "/api.xro/2.0/Contacts") if b"Hooli" in r.body]
    assert [r.status for r in puts] == [400]
    assert len(named(loop, "Hooli")) == 1
    assert loop.store.get_mapping(company(hooli["id"]), "xero") is not None


def _empty_search_fault() -> Any:
    from closeloop_local.sandboxes.base import Fault

    return Fault("/api.xro/2.0/Contacts", 200, times=3, method="GET", body={"Contacts": []})


def test_edit_in_hubspot_sends_only_the_changed_field(loop: Loop) -> None:
    umbrella = loop.hubspot.create_object("companies", {"name": "Umbrella Corp", "city": "Raccoon City"})
    loop.settle()
    loop.hubspot.update_object("companies", umbrella["id"], {"city": "Paris"})
    loop.settle()
    audit = loop.store.list_audit(company(umbrella["id"]))
    assert [a.action for a in audit] == ["created", "updated"]
    assert audit[1].changes == {"address.city": {"before": "Raccoon City", "after": "Paris"}}
    update = loop.xero.state.calls("POST")[-1]
    assert b"Umbrella" not in update.body


def test_nameless_company_is_a_failed_sync_with_its_reason(loop: Loop) -> None:
    before = len(loop.xero.state.calls("PUT"))
    nameless = loop.hubspot.create_object("companies", {"city": "Nowhere"})
    loop.settle()
    failure = loop.store.get_failed_sync(company(nameless["id"]))
    assert failure is not None
    assert "no name" in failure.reason
    assert len(loop.xero.state.calls("PUT")) == before


@pytest.mark.parametrize("case", ["forged", "stale", "future", "missing"])
def test_bad_signatures_get_401_and_cause_no_vendor_call(loop: Loop, case: str) -> None:
    body = json.dumps([_event(4242)]).encode()
    now = int(time.time() * 1000)
    secret = {"forged": "not-the-secret"}.get(case, loop.hubspot.client_secret)
    timestamp = {"stale": now - 6 * 60 * 1000, "future": now + 6 * 60 * 1000}.get(case, now)
    headers = signed_batch_headers(secret, loop.contacts_url, body, timestamp, "v3")
    if case == "missing":
        headers = {"Content-Type": "application/json"}
    hubspot_calls, xero_calls = len(loop.hubspot.state.requests), len(loop.xero.state.requests)
    response = httpx.post(loop.contacts_url, content=body, headers=headers, timeout=10)
    loop.stack.drain(timeout=30)
    assert response.status_code == 401
    assert "message" in response.json()
    assert (len(loop.hubspot.state.requests), len(loop.xero.state.requests)) == (hubspot_calls, xero_calls)


def test_the_path_secret_route_reaches_the_same_verification(loop: Loop) -> None:
    # Given the contacts route with a last path segment (the route Pipedrive and SugarCRM URLs use)
    url = f"{loop.contacts_url}/some-segment"
    body = json.dumps([_event(4343)]).encode()
    signed = signed_batch_headers(loop.hubspot.client_secret, url, body, int(time.time() * 1000), "v3")
    # When HubSpot's signature is made over that URL, it is accepted; made over another URL, it is refused
    assert httpx.post(url, content=body, headers=signed, timeout=10).status_code == 200
    elsewhere = signed_batch_headers(loop.hubspot.client_secret, loop.contacts_url, body, int(time.time() * 1000), "v3")
    assert httpx.post(url, content=body, headers=elsewhere, timeout=10).status_code == 401
    loop.stack.drain(timeout=30)


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"{not json", 400),
        (b'{"an": "object"}', 400),
        (json.dumps([{"eventId": "x"}]).encode(), 400),
        (b"\xff" * 10, 400),
    ],
)
def test_malformed_but_signed_bodies_get_400_and_nothing_is_enqueued(loop: Loop, body: bytes, status: int) -> None:
    headers = signed_batch_headers(loop.hubspot.client_secret, loop.contacts_url, body, int(time.time() * 1000), "v3")
    hubspot_calls = len(loop.hubspot.state.requests)
    response = httpx.post(loop.contacts_url, content=body, headers=headers, timeout=10)
    loop.stack.drain(timeout=30)
    assert response.status_code == status
    assert response.json()["message"]
    assert len(loop.hubspot.state.requests) == hubspot_calls


def _event(object_id: int) -> dict[str, Any]:
    return {
        "eventId": object_id,
        "subscriptionId": 1,
        "portalId": 62515,
        "occurredAt": int(time.time() * 1000),
        "subscriptionType": "company.propertyChange",
        "attemptNumber": 0,
        "objectId": object_id,
    }


def test_vendor_outage_outliving_retries_lands_in_the_dlq_and_replays_once_fixed(loop: Loop) -> None:
    from closeloop_local.sandboxes.base import Fault

    sqs = loop.stack._client("sqs")  # the stack's own client on its AWS endpoint
    dlq_url = loop.stack.resources["ContactDLQ"]
    queue_url = loop.stack.resources["ContactQueue"]
    # Given HubSpot answers 503 to every read of this company (alone or in a batch), longer than any retry
    wayne = loop.hubspot.create_object("companies", {"name": "Wayne Enterprises"})
    loop.hubspot.state.faults.append(Fault(f"/crm/v3/objects/companies/{wayne['id']}", 503, times=10_000))
    loop.hubspot.state.faults.append(Fault("/crm/v3/objects/companies/batch/read", 503, times=10_000))
    try:
        # When HubSpot delivers the event (acknowledged with 200)
        loop.settle()
        # Then after maxReceiveCount the message waits in the DLQ: acknowledged, not lost, not synced
        messages = sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        assert any(str(wayne["id"]) in m["Body"] for m in messages)
        assert named(loop, "Wayne Enterprises") == []
    finally:
        loop.hubspot.state.faults.clear()
    # When the outage is over and the DLQ is redriven
    for message in messages:
        sqs.send_message(QueueUrl=queue_url, MessageBody=message["Body"])
        sqs.delete_message(QueueUrl=dlq_url, ReceiptHandle=message["ReceiptHandle"])
    loop.stack.drain(timeout=60)
    # Then the company syncs exactly once
    assert len(named(loop, "Wayne Enterprises")) == 1


def test_a_body_over_one_megabyte_is_refused_before_anything_else(loop: Loop) -> None:
    body = b"[" + b" " * (1024 * 1024) + b"]"
    headers = signed_batch_headers(loop.hubspot.client_secret, loop.contacts_url, body, int(time.time() * 1000), "v3")
    hubspot_calls = len(loop.hubspot.state.requests)
    response = httpx.post(loop.contacts_url, content=body, headers=headers, timeout=10)
    assert response.status_code == 413
    assert "larger than" in response.json()["message"]
    assert len(loop.hubspot.state.requests) == hubspot_calls
