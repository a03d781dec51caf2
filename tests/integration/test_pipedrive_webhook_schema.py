"""The webhook API's request body schema for Pipedrive, generated from the parser's model, against Pipedrive's
deliveries: it accepts what Pipedrive sends (the v2 guide's example, every sandbox delivery) and refuses what
the parser refuses, so the published description and the parser cannot drift apart."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from closeloop.errors import WebhookRejected
from closeloop.vendors.pipedrive.adapter import PipedriveCrm
from closeloop.webhook_api import openapi_document
from closeloop_local.sandboxes.base import SandboxServer
from closeloop_local.sandboxes.drivers import DealLine
from closeloop_local.sandboxes.pipedrive import PipedriveDriver, serve
from tests.integration.test_pipedrive_adapter import PASSWORD, SECRET, USER, Inbox, crm

ROUTE = "/webhooks/pipedrive/{pipeline}/{secret}"

#: The v2 guide's delivery as /work/shared/vendors/crm.md section 2 quotes it (a deal won, custom money field).
GUIDE_EXAMPLE: dict[str, Any] = {
    "meta": {
        "action": "change", "entity": "deal", "version": "2.0", "company_id": "12882925", "user_id": "18487521",
        "id": "0b1f6f0e-5f7c-4a47-a6a8-3e2b2f0c9d11", "entity_id": "1", "correlation_id": "c0ffee",
        "webhook_id": "99", "webhook_owner_id": "18487521", "type": "general", "is_bulk_edit": False,
        "attempt": 1, "host": "acme.pipedrive.com", "timestamp": "2025-01-01T00:00:00.000Z",
        "change_source": "app", "permitted_user_ids": ["18487521"],
    },
    "data": {
        "id": 1, "title": "test deal", "value": 2, "currency": "USD", "status": "won", "stage_id": 5,
        "pipeline_id": 1, "person_id": 3, "org_id": 2, "custom_fields": {"a" * 40: {"value": 500, "currency": "USD"}},
    },
    "previous": {"status": "open"},
}  # fmt: skip

#: Bodies that are JSON but not a delivery the parser takes (the timestamp's format aside: see below).
REFUSED: list[Any] = [
    [],
    {},
    {"meta": "deal"},
    {"meta": {"id": "x"}},
    {"meta": {**GUIDE_EXAMPLE["meta"], "entity_id": ""}},
    {"meta": {**GUIDE_EXAMPLE["meta"], "action": None}},
    {"meta": {**GUIDE_EXAMPLE["meta"], "entity": 7}},
    {**GUIDE_EXAMPLE, "data": []},
    {**GUIDE_EXAMPLE, "previous": "open"},
]


def validator() -> Draft202012Validator:
    document = openapi_document()
    operation = document["paths"][ROUTE]["post"]
    assert "requestBody" in operation, "the route's body schema is generated from its model"
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    return Draft202012Validator({**schema, "components": document["components"]})


def test_the_schema_accepts_the_v2_guides_delivery_and_the_parser_reads_it() -> None:
    # Given the schema generated from the parser's model
    schema = validator()
    # When the guide's delivery is checked and parsed
    errors = [e.message for e in schema.iter_errors(GUIDE_EXAMPLE)]
    events = PipedriveCrm().parse_webhook(json.dumps(GUIDE_EXAMPLE).encode())
    # Then both take it: a won transition on deal 1
    assert errors == []
    assert [(e.ref.object_id, e.kind, e.property_name, e.actor) for e in events] == [
        ("1", "changed", "status", "userId:18487521")
    ]


def test_every_sandbox_delivery_is_valid_under_the_schema() -> None:
    # Given the sandbox delivering creates, a won deal's changes and a delete to a working inbox
    pipedrive, api = serve()
    inbox = Inbox(crm(pipedrive, api.url), "https://hooks.example.com")
    hooks = SandboxServer(inbox).start()
    try:
        driver = PipedriveDriver(pipedrive)
        driver.path_secret, driver.webhook_user, driver.webhook_password = SECRET, USER, PASSWORD
        driver.subscribe(hooks.url)
        company = driver.create_company("Acme", email="a@acme.test")
        driver.create_won_deal(company, [DealLine("SKU", "Widget", Decimal(1), Decimal("5.10"))], currency="EUR")
        pipedrive.delete("organization", company.object_id)
        driver.flush_webhooks()
        bodies = [json.loads(d["body"]) for d in pipedrive.deliveries if "body" in d]
    finally:
        hooks.stop()
        api.stop()
    # Then there were deliveries of each action, all answered 200 and all valid under the schema
    assert {b["meta"]["action"] for b in bodies} == {"create", "change", "delete"}
    assert set(inbox.statuses) == {200}
    schema = validator()
    assert [e.message for body in bodies for e in schema.iter_errors(body)] == []


@pytest.mark.parametrize("body", REFUSED, ids=[json.dumps(b)[:40] for b in REFUSED])
def test_what_the_parser_refuses_the_schema_refuses(body: Any) -> None:
    # When a body the parser refuses with a 400 is checked against the schema
    with pytest.raises(WebhookRejected) as caught:
        PipedriveCrm().parse_webhook(json.dumps(body).encode())
    # Then the schema refuses it too
    assert caught.value.status == 400
    assert not validator().is_valid(body)


def test_a_timestamp_is_checked_by_the_parser_only() -> None:
    # The schema says "a string" (JSON Schema formats are not asserted); the parser also reads it as a time
    body = {**GUIDE_EXAMPLE, "meta": {**GUIDE_EXAMPLE["meta"], "timestamp": "soon"}}
    assert validator().is_valid(body)
    with pytest.raises(WebhookRejected, match="meta.timestamp: not a timestamp"):
        PipedriveCrm().parse_webhook(json.dumps(body).encode())
