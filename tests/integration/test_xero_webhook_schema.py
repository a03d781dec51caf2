"""The Xero webhook route's body schema is generated from the model the parser reads deliveries with
(``XeroWebhookPayload``): it accepts Xero's published examples and the sandbox's real deliveries, and refuses
what the parser refuses."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from werkzeug.wrappers import Request, Response

from closeloop.errors import WebhookRejected
from closeloop.ports import WebhookRequest
from closeloop.vendors.xero.adapter import XeroAccounting
from closeloop.vendors.xero.webhooks import parse_xero_webhook
from closeloop.webhook_api import openapi_document
from closeloop_local.sandboxes.base import SandboxServer
from closeloop_local.sandboxes.xero import XeroSandbox
from closeloop_local.sandboxes.xero import serve as serve_xero
from tests.sandbox_adapters import xero_books

ROOT = Path(__file__).resolve().parents[2]
PUBLISHED = ROOT / "tests" / "contracts" / "xero" / "xero-webhooks.yaml"
ROUTE = "/accounting-webhooks/xero"
TENANT = "c2cc9b6e-9458-4c7d-93cc-f02b81b0594f"


def route_validator() -> jsonschema.protocols.Validator:
    """A validator of the route's request body, with the document's components for its $refs."""
    document = openapi_document()
    schema = document["paths"][ROUTE]["post"]["requestBody"]["content"]["application/json"]["schema"]
    resolvable = {**schema, "components": document.get("components", {})}
    return jsonschema.Draft202012Validator(resolvable)


class _TextTimes(yaml.SafeLoader):
    """YAML as JSON would have it: an unquoted timestamp stays the string Xero sends."""


_TextTimes.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def published_examples() -> list[dict[str, Any]]:
    """Every example delivery in Xero's webhooks OpenAPI (XW): the 200 answer's and the credit note's."""
    spec = yaml.load(PUBLISHED.read_text(), Loader=_TextTimes)  # a SafeLoader subclass
    contact = spec["components"]["responses"]["200WebhookDataReceivedOk"]["content"]["application/json"]["schema"]
    credit_note = spec["webhooks"]["creditNotes"]["post"]["requestBody"]["content"]["application/json"]
    return [contact["example"], credit_note["examples"]["creditNoteCreate"]["value"]]


def test_the_route_s_body_schema_is_the_parser_s_model() -> None:
    # Given the webhook API's OpenAPI document
    document = openapi_document()
    operation = document["paths"][ROUTE]["post"]
    # Then the body schema is XeroWebhookPayload's, its events described by the XeroWebhookEvent component
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    assert schema["title"] == "XeroWebhookPayload" and schema["required"] == ["events"]
    assert schema["properties"]["events"]["items"] == {"$ref": "#/components/schemas/XeroWebhookEvent"}
    event = document["components"]["schemas"]["XeroWebhookEvent"]
    assert event["required"] == ["resourceId", "eventCategory", "eventType", "eventDateUtc", "tenantId"]


def test_published_examples_and_sandbox_deliveries_are_valid_for_the_schema_and_the_parser() -> None:
    validator = route_validator()
    # Given Xero's published example deliveries, and the sandbox's intent-to-receive check and a real delivery
    sandbox, server = serve_xero()
    try:
        books = xero_books(sandbox, server.url)
        delivered = sandbox_bodies(sandbox, books)
    finally:
        server.stop()
    assert [len(json.loads(body)["events"]) for body in delivered] == [0, 2]
    for body in [json.dumps(example).encode() for example in published_examples()] + delivered:
        # Then each is valid for the route's schema, and the parser reads it
        validator.validate(json.loads(body))
        books.parse_webhook(body)
    # And the sandbox's delivery parses into its two new contacts, the published example into its event
    assert [e.kind for e in books.parse_webhook(delivered[1])] == ["created", "created"]
    [event] = parse_xero_webhook(json.dumps(published_examples()[0]).encode(), tenant_id=TENANT)
    assert (event.resource, event.resource_id, event.kind) == ("customer", EVENT["resourceId"], "changed")


def sandbox_bodies(sandbox: XeroSandbox, books: XeroAccounting) -> list[bytes]:
    """The bodies the sandbox's webhook sends that the adapter verifies: its intent-to-receive check (the
    signed one) and one delivery of two new contacts."""
    bodies: list[bytes] = []

    def route(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        hook = WebhookRequest("POST", request.url, dict(request.headers.items()), request.get_data())
        try:
            books.verify_webhook(hook)
        except WebhookRejected as rejected:
            answer: Iterable[bytes] = Response(b"", status=rejected.status)(environ, start_response)
            return answer
        bodies.append(hook.body)
        accepted: Iterable[bytes] = Response(b"", status=200)(environ, start_response)
        return accepted

    receiver = SandboxServer(route).start()
    try:
        assert sandbox.webhooks.subscribe(f"{receiver.url}/hook") == "OK"
        sandbox.seed_contact(Name="Acme Ltd")
        sandbox.seed_contact(Name="Beta Ltd")
        sandbox.webhooks.flush()
    finally:
        receiver.stop()
    return bodies


EVENT = {
    "resourceUrl": "https://api.xero.com/api.xro/2.0/Contacts/717f2bfc-c6d4-41fd-b238-3f2f0c0cf777",
    "resourceId": "717f2bfc-c6d4-41fd-b238-3f2f0c0cf777",
    "eventDateUtc": "2024-06-21T01:15:39.902",
    "eventType": "UPDATE",
    "eventCategory": "CONTACT",
    "tenantId": TENANT,
    "tenantType": "ORGANISATION",
}


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"events": {}}, "events"),
        ({}, "events: Field required"),
        ({"events": [{**EVENT, "resourceId": ""}]}, r"events\[0\]\.resourceId"),
        ({"events": [{**EVENT, "tenantId": "   "}]}, r"events\[0\]\.tenantId"),
        ({"events": [{k: v for k, v in EVENT.items() if k != "eventType"}]}, r"events\[0\]\.eventType: Field required"),
        ({"events": [{**EVENT, "eventCategory": 7}]}, r"events\[0\]\.eventCategory"),
        ({"events": ["CONTACT"]}, r"events\[0\]"),
        ({"events": [], "firstEventSequence": -1}, "firstEventSequence"),
        ({"events": [], "entropy": 12}, "entropy"),
    ],
)
def test_a_body_the_parser_refuses_the_schema_refuses(body: dict[str, Any], says: str) -> None:
    # When the parser reads a malformed delivery, Then it is a 400 saying where
    with pytest.raises(WebhookRejected, match=says) as rejected:
        parse_xero_webhook(json.dumps(body).encode(), tenant_id=TENANT)
    assert rejected.value.status == 400
    # And the route's schema refuses it too
    assert not route_validator().is_valid(body)
