"""HubSpot webhook signatures (vendor test vectors), the 5-minute window, and batch parsing."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from closeloop.errors import WebhookRejected
from closeloop.models import SyncEvent
from closeloop.ports import WebhookRequest
from closeloop.vendors.hubspot.adapter import HubSpotCrm
from closeloop.vendors.hubspot.webhooks import signature_v1, signature_v2, signature_v3

SECRET = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy"
URI = "https://www.example.com/webhook_uri"
NOW_MS = 1_764_000_000_000


def crm(now_ms: int = NOW_MS, min_version: str = "v3") -> HubSpotCrm:
    return HubSpotCrm(client_secret=SECRET, clock=lambda: now_ms / 1000, signature_min_version=min_version)


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
    # v1 is accepted only when the deployment allows it (HUBSPOT_SIGNATURE_MIN_VERSION=v1; default v3)
    body = b'[{"eventId":1}]'
    ok = WebhookRequest(
        "POST", URI, {"X-HubSpot-Signature": signature_v1(SECRET, body), "X-HubSpot-Signature-Version": "v1"}, body
    )
    crm(min_version="v1").verify_webhook(ok)
    with pytest.raises(WebhookRejected):
        crm(min_version="v1").verify_webhook(WebhookRequest("POST", URI, {"X-HubSpot-Signature": "0" * 64}, body))


def signed(version: str, body: bytes = b"[]", secret: str = SECRET) -> WebhookRequest:
    """A delivery signed with one signature version only, as HubSpot would sign it."""
    if version == "v3":
        return v3_request(body, NOW_MS - 1000, secret=secret)
    signature = signature_v1(secret, body) if version == "v1" else signature_v2(secret, "POST", URI, body)
    return WebhookRequest("POST", URI, {"X-HubSpot-Signature": signature, "X-HubSpot-Signature-Version": version}, body)


@pytest.mark.parametrize("minimum", ["v1", "v2", "v3"])
@pytest.mark.parametrize("version", ["v1", "v2", "v3"])
def test_signatures_below_the_minimum_version_are_401_and_the_rest_verify(version: str, minimum: str) -> None:
    # Given a deployment accepting signatures from ``minimum`` up, and a correctly signed delivery
    adapter = crm(min_version=minimum)
    request = signed(version)
    # When it is verified / Then it passes exactly when its version is not below the minimum
    if int(version[1]) >= int(minimum[1]):
        adapter.verify_webhook(request)
        # and a forged signature of the same version is still refused
        with pytest.raises(WebhookRejected) as forged:
            adapter.verify_webhook(signed(version, secret="not-the-secret"))
        assert forged.value.status == 401
    else:
        with pytest.raises(WebhookRejected) as info:
            adapter.verify_webhook(request)
        assert info.value.status == 401
        assert "below the configured minimum" in info.value.message


def test_hubspot_deliveries_with_v1_and_v3_pass_a_v3_minimum_on_their_v3_signature() -> None:
    # Given what HubSpot really sends: the v1 pair and the v3 pair together
    body = b"[]"
    request = v3_request(body, NOW_MS)
    headers = {
        **request.headers,
        "X-HubSpot-Signature": signature_v1(SECRET, body),
        "X-HubSpot-Signature-Version": "v1",
    }
    # Then the default (v3) minimum accepts it
    crm().verify_webhook(dataclasses.replace(request, headers=headers))


def test_an_unknown_minimum_version_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="signature_min_version"):
        crm(min_version="v4")


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


@pytest.mark.parametrize(("object_type_id", "canonical"), [("0-1", "contact"), ("0-2", "company"), ("0-3", "deal")])
@pytest.mark.parametrize(
    ("action", "kind"),
    [
        ("creation", "created"),
        ("propertyChange", "changed"),
        ("deletion", "deleted"),
        ("merge", "merged"),
        ("restore", "restored"),
    ],
)
def test_generic_object_events_parse_exactly_as_the_typed_ones(
    object_type_id: str, canonical: str, action: str, kind: str
) -> None:
    # Given a signed delivery of a generic event and of its typed twin
    generic = event(subscriptionType=f"object.{action}", objectTypeId=object_type_id)
    typed = event(subscriptionType=f"{canonical}.{action}")
    adapter = crm()
    parsed: list[SyncEvent] = []
    for raw in (generic, typed):
        body = json.dumps([raw]).encode()
        adapter.verify_webhook(v3_request(body, NOW_MS))
        (one,) = adapter.parse_webhook(body)
        parsed.append(one)
    # Then both become the same sync event (only the vendor's own event type differs)
    generic_event, typed_event = parsed
    assert generic_event.model_dump(exclude={"source_type"}) == typed_event.model_dump(exclude={"source_type"})
    assert (str(generic_event.ref), generic_event.kind) == (f"hubspot/{canonical}/1000001", kind)
    assert generic_event.source_type == f"object.{action}"


def test_generic_association_change_is_about_the_from_object() -> None:
    raw = event(
        subscriptionType="object.associationChange",
        fromObjectTypeId="0-1",
        toObjectTypeId="0-2",
        fromObjectId=51,
        toObjectId=1000001,
        associationRemoved=False,
    )
    raw.pop("objectId")
    (parsed,) = crm().parse_webhook(json.dumps([raw]).encode())
    assert (str(parsed.ref), parsed.kind) == ("hubspot/contact/51", "associated")


def test_generic_events_of_other_object_types_are_ignored_not_errors() -> None:
    # Given tickets (0-5), a custom object (2-123), an event without a type id, and one company
    body = json.dumps(
        [
            event(subscriptionType="object.creation", objectTypeId="0-5"),
            event(eventId=101, subscriptionType="object.propertyChange", objectTypeId="2-123"),
            event(eventId=102, subscriptionType="object.deletion"),
            event(eventId=103, subscriptionType="object.creation", objectTypeId="0-2", objectId=7),
        ]
    ).encode()
    # Then only the company is kept
    assert [str(e.ref) for e in crm().parse_webhook(body)] == ["hubspot/company/7"]


@pytest.mark.parametrize(("setting", "v1_passes"), [(None, False), ("v3", False), ("v2", False), ("v1", True)])
def test_the_deployment_setting_sets_the_adapters_minimum(
    monkeypatch: pytest.MonkeyPatch, setting: str | None, v1_passes: bool
) -> None:
    from closeloop import runtime  # noqa: PLC0415

    # Given a deployment configured through the environment (the setting unset means v3)
    monkeypatch.setenv("CRM_PROVIDER", "hubspot")
    monkeypatch.setenv("HUBSPOT_CLIENT_SECRET", SECRET)
    monkeypatch.delenv("CREDENTIALS_SECRET_ID", raising=False)
    if setting is None:
        monkeypatch.delenv("HUBSPOT_SIGNATURE_MIN_VERSION", raising=False)
    else:
        monkeypatch.setenv("HUBSPOT_SIGNATURE_MIN_VERSION", setting)
    body = b"[]"
    v1 = WebhookRequest(
        "POST", URI, {"X-HubSpot-Signature": signature_v1(SECRET, body), "X-HubSpot-Signature-Version": "v1"}, body
    )
    runtime.reset()
    try:
        adapter = runtime.crm()
        # Then a v1 delivery passes only where v1 is allowed
        if v1_passes:
            adapter.verify_webhook(v1)
        else:
            with pytest.raises(WebhookRejected):
                adapter.verify_webhook(v1)
    finally:
        runtime.reset()


def test_an_unknown_minimum_in_the_environment_is_a_configuration_error() -> None:
    from closeloop.errors import ConfigurationError  # noqa: PLC0415
    from closeloop.vendors.hubspot import HubSpotSettings  # noqa: PLC0415

    with pytest.raises(ConfigurationError, match="HUBSPOT_SIGNATURE_MIN_VERSION"):
        HubSpotSettings.from_env({"HUBSPOT_SIGNATURE_MIN_VERSION": "v0"})


def test_the_adapter_modules_do_not_load_httpx_for_the_webhook_route() -> None:
    # Given a fresh interpreter, When the HubSpot adapter (with its webhooks, client and mapping) is imported
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    code = "import sys, closeloop.vendors.hubspot.adapter; print('httpx' in sys.modules)"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()

    # Then httpx is not loaded: the webhook route verifies and parses without it (a fast cold start)
    assert loaded == "False"


def hubspot_body_schema() -> dict[str, Any]:
    """The webhook API's request body schema for HubSpot deliveries, with the document's components."""
    from closeloop.webhook_api import openapi_document  # noqa: PLC0415

    document = openapi_document()
    operation = document["paths"]["/webhooks/hubspot/{pipeline}"]["post"]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    return {**schema, "components": document["components"]}


def sample_bodies() -> list[Any]:
    """The HubSpot deliveries in events/ (API Gateway events whose body is a HubSpot batch)."""
    root = Path(__file__).resolve().parents[2] / "events"
    return [json.loads(json.loads(p.read_text())["body"]) for p in sorted(root.glob("webhook_*.json"))]


def test_the_generated_body_schema_accepts_the_sample_deliveries_and_refuses_what_the_parser_refuses() -> None:
    import jsonschema  # type: ignore[import-untyped]  # noqa: PLC0415  (no stubs in the venv)

    # Given the body schema generated from HubSpotWebhookBatch, keeping every field HubSpot always sends required
    schema = hubspot_body_schema()
    validator = jsonschema.Draft202012Validator(schema)
    event_schema = schema["components"]["schemas"]["HubSpotWebhookEvent"]
    assert set(event_schema["required"]) == {"eventId", "subscriptionId", "portalId", "occurredAt", "subscriptionType"}
    assert (schema["minItems"], schema["maxItems"]) == (1, 100)

    # Then every sample delivery (and the fact sheet's example) is valid, and the parser reads it
    bodies = [*sample_bodies(), [event(), event(subscriptionType="object.propertyChange", objectTypeId="0-3")]]
    assert len(bodies) >= 4
    for body in bodies:
        validator.validate(body)
        crm().parse_webhook(json.dumps(body).encode())

    # And what the parser refuses (400), the schema refuses too
    for refused in ({"eventId": 1}, [], [event()] * 101, [{"eventId": 1}], [event(portalId="not a number")]):
        with pytest.raises(WebhookRejected):
            crm().parse_webhook(json.dumps(refused).encode())
        assert not validator.is_valid(refused), refused
