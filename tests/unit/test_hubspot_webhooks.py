"""HubSpot webhook signatures (vendor test vectors), the 5-minute window, and batch parsing."""

from __future__ import annotations

import dataclasses
import json

import pytest

from closeloop.crm.hubspot import HubSpotCrm, signature_v1, signature_v2, signature_v3
from closeloop.errors import WebhookRejected
from closeloop.ports import WebhookRequest

SECRET = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy"
URI = "https://www.example.com/webhook_uri"
NOW_MS = 1_764_000_000_000


def crm(now_ms: int = NOW_MS) -> HubSpotCrm:
    return HubSpotCrm(client_secret=SECRET, clock=lambda: now_ms / 1000)


def test_signature_vectors_from_hubspot_sdks_and_docs() -> None:
    body = b"{'example_field':'example_value'}"
    assert signature_v1(SECRET, body) == "69fc6631a867edd4f9e9e627fc5c1148e3fbdd8b21837b6d2b8901c1fa57f750"
    batch = (
        b'[{"eventId":1,"subscriptionId":12345,"portalId":62515,"occurredAt":1564113600000,'
        b'"subscriptionType":"contact.creation","attemptNumber":0,"objectId":123,"changeSource":"CRM",'
        b'"changeFlag":"NEW","appId":54321}]'
    )
    assert signature_v1(SECRET, batch) == "232db2615f3d666fe21a8ec971ac7b5402d33b9a925784df3ca654d05f4817de"
    assert signature_v2(SECRET, "POST", URI, body) == "4fe4e3a7d3cf09db53be39d0a58130e2aaba074ec123a9e355b876a689a1c383"
    assert (
        signature_v2(SECRET, "POST", URI, b'{"example_field":"example_value"}')
        == "9569219f8ba981ffa6f6f16aa0f48637d35d728c7e4d93d0d52efaa512af7900"
    )
    assert signature_v2(SECRET, "GET", URI, b"") == "eee2dddcc73c94d699f5e395f4b9d454a069a6855fbfa152e91e88823087200e"
    assert signature_v3(SECRET, "POST", URI, body, "15000000") == "HPW73RUtKmcYoEDADG0s6MmGFWUzWJKAW07r8RDgcQw="


def v3_request(body: bytes, ts: int, uri: str = URI, secret: str = SECRET) -> WebhookRequest:
    return WebhookRequest(
        method="POST",
        uri=uri,
        headers={
            "X-HubSpot-Signature-v3": signature_v3(secret, "POST", uri, body, str(ts)),
            "X-HubSpot-Request-Timestamp": str(ts),
        },
        body=body,
    )


def test_valid_v3_signature_passes() -> None:
    crm().verify_webhook(v3_request(b"[]", NOW_MS - 1000))


@pytest.mark.parametrize(
    ("case", "request_"),
    [
        ("stale", v3_request(b"[]", NOW_MS - 5 * 60 * 1000 - 1)),
        ("future", v3_request(b"[]", NOW_MS + 5 * 60 * 1000 + 1)),
        ("forged", v3_request(b"[]", NOW_MS, secret="not-the-secret")),
        (
            "signed for another uri",
            dataclasses.replace(v3_request(b"[]", NOW_MS), uri="https://evil.example.com/webhook_uri"),
        ),
        ("no headers", WebhookRequest("POST", URI, {}, b"[]")),
        (
            "bad timestamp",
            WebhookRequest(
                "POST", URI, {"x-hubspot-signature-v3": "x", "x-hubspot-request-timestamp": "1.5e12"}, b"[]"
            ),
        ),
    ],
)
def test_bad_signatures_are_401(case: str, request_: WebhookRequest) -> None:
    with pytest.raises(WebhookRejected) as info:
        crm().verify_webhook(request_)
    assert info.value.status == 401


def test_v3_uri_escapes_are_decoded_before_hashing() -> None:
    # Given HubSpot signed the decoded form of an escaped query
    body = b"[]"
    signed_uri = "https://h.example.com/webhooks/hubspot/contacts?x=a:b"
    sig = signature_v3(SECRET, "POST", signed_uri, body, str(NOW_MS))
    request = WebhookRequest(
        "POST",
        "https://h.example.com/webhooks/hubspot/contacts?x=a%3Ab",
        {"x-hubspot-signature-v3": sig, "x-hubspot-request-timestamp": str(NOW_MS)},
        body,
    )
    crm().verify_webhook(request)


def test_v1_signature_for_legacy_subscriptions() -> None:
    body = b'[{"eventId":1}]'
    ok = WebhookRequest(
        "POST", URI, {"X-HubSpot-Signature": signature_v1(SECRET, body), "X-HubSpot-Signature-Version": "v1"}, body
    )
    crm().verify_webhook(ok)
    with pytest.raises(WebhookRejected):
        crm().verify_webhook(WebhookRequest("POST", URI, {"X-HubSpot-Signature": "0" * 64}, body))


def event(**kw: object) -> dict[str, object]:
    base: dict[str, object] = {
        "eventId": 100,
        "subscriptionId": 25,
        "portalId": 62515,
        "appId": 54321,
        "occurredAt": 1764000000000,
        "subscriptionType": "company.propertyChange",
        "attemptNumber": 0,
        "objectId": 1000001,
        "propertyName": "name",
        "propertyValue": "Acme",
        "changeSource": "CRM_UI",
        "sourceId": "userId:45678",
    }
    base.update(kw)
    return base


def test_batch_parses_into_events_with_stable_dedupe_keys() -> None:
    body = json.dumps(
        [
            event(),
            event(eventId=101, subscriptionType="contact.creation", objectId=51),
            event(subscriptionType="conversation.creation"),
        ]
    ).encode()
    events = crm().parse_webhook(body)
    assert [(str(e.ref), e.kind) for e in events] == [
        ("hubspot/company/1000001", "changed"),
        ("hubspot/contact/51", "created"),
    ]
    assert events[0].dedupe_key == "25:100:1000001:1764000000000"
    assert events[0].actor == "userId:45678"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe", "not UTF-8"),
        (b'{"eventId": 1}', "JSON array"),
        (b"[]", "empty"),
        (json.dumps([event(objectId="abc")]).encode(), "event 0: objectId"),
        (json.dumps([{"eventId": 1}]).encode(), "event 0:"),
        (json.dumps([event()] * 101).encode(), "at most 100"),
    ],
)
def test_malformed_bodies_are_400_with_a_clear_message(body: bytes, message: str) -> None:
    with pytest.raises(WebhookRejected) as info:
        crm().parse_webhook(body)
    assert info.value.status == 400
    assert message in info.value.message


def test_association_change_events_are_about_the_from_object() -> None:
    raw = event(subscriptionType="contact.associationChange", objectId=None, fromObjectId=51, toObjectId=1000001)
    raw.pop("objectId")
    raw["associationType"] = "CONTACT_TO_COMPANY"
    (parsed,) = crm().parse_webhook(json.dumps([raw]).encode())
    assert (str(parsed.ref), parsed.kind) == ("hubspot/contact/51", "associated")
