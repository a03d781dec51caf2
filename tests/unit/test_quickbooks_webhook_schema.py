"""The QuickBooks webhook route's OpenAPI body schema is generated from the parser's models: it accepts what
Intuit sends (the sandbox's CloudEvents and legacy deliveries, the contract's sample) and refuses what the
parser refuses."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest

from closeloop.errors import WebhookRejected
from closeloop.vendors.quickbooks.webhooks import parse_delivery
from closeloop.webhook_api import openapi_document
from closeloop_local.sandboxes.quickbooks import cloud_event

REALM = "9341452391187452"
ENTITY = {"name": "Invoice", "id": "130", "operation": "Create", "lastUpdated": "2026-12-03T10:07:20-0800"}
LEGACY = {"eventNotifications": [{"realmId": REALM, "dataChangeEvent": {"entities": [ENTITY]}}]}
CONTRACT_SAMPLE = {  # tests/contracts/test_contract_checks.py: Intuit's CloudEvents payload
    "specversion": "1.0",
    "id": "88cd52a1-0a5e-4d2d-8a2f-2d4f1e1c1c11",
    "source": "intuit.dsnBgbseACLLRZNxo2dfc4evmEJdxde58xeeYcZliOU=",
    "type": "qbo.invoice.created.v1",
    "time": "2026-12-03T10:07:20Z",
    "intuitentityid": "6",
    "intuitaccountid": REALM,
    "data": {},
}


def body_schema() -> dict[str, Any]:
    document = openapi_document()
    operation = document["paths"]["/accounting-webhooks/quickbooks"]["post"]
    schema: dict[str, Any] = operation["requestBody"]["content"]["application/json"]["schema"]
    return {**schema, "components": document["components"]}


def parse(body: Any) -> list[Any]:
    return parse_delivery(json.dumps(body).encode(), REALM, lambda: datetime(2026, 12, 3, tzinfo=UTC))


@pytest.mark.parametrize(
    "delivery",
    [[cloud_event(REALM, ENTITY)], [CONTRACT_SAMPLE], LEGACY, []],
    ids=["sandbox-cloudevents", "contract-cloudevent", "legacy", "empty-array"],
)
def test_the_generated_schema_accepts_what_intuit_sends(delivery: Any) -> None:
    # Given a delivery as Intuit (or the sandbox standing in for it) sends it, the parser reads it
    parse(delivery)
    # Then the route's generated schema accepts it too
    jsonschema.validate(delivery, body_schema())


@pytest.mark.parametrize(
    "delivery",
    [
        1,
        {"eventNotifications": 1},
        {"eventNotifications": [{"dataChangeEvent": {"entities": []}}]},
        {"eventNotifications": [{"realmId": REALM, "dataChangeEvent": {"entities": [{**ENTITY, "id": " "}]}}]},
        ["event"],
        [{**CONTRACT_SAMPLE, "type": None}],
        [{k: v for k, v in CONTRACT_SAMPLE.items() if k != "intuitaccountid"}],
        [{**CONTRACT_SAMPLE, "id": None}],
    ],
)
def test_the_generated_schema_refuses_what_the_parser_refuses(delivery: Any) -> None:
    # Given a body the parser refuses with a 400
    with pytest.raises(WebhookRejected) as rejected:
        parse(delivery)
    assert rejected.value.status == 400
    # Then the generated schema refuses it as well
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(delivery, body_schema())


def test_the_route_body_is_the_models_not_a_hand_written_schema() -> None:
    schema = body_schema()
    assert schema["oneOf"] == [
        {"type": "array", "items": {"$ref": "#/components/schemas/QuickBooksCloudEvent"}},
        {"$ref": "#/components/schemas/QuickBooksLegacyPayload"},
    ]
