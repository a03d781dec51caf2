"""The HubSpot sandbox behaves like api.hubapi.com, over real HTTP on loopback."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from werkzeug.wrappers import Request, Response

from closeloop_local.sandboxes.base import SandboxServer
from closeloop_local.sandboxes.hubspot import (
    HubSpotSandbox,
    serve,
    sign_v1,
    sign_v2,
    sign_v3,
    signed_batch_headers,
)

TOKEN = "pat-sandbox-token"
SECRET = "sandbox-webhook-secret"

# Vectors from HubSpot's SDK tests and docs (see /work/shared/vendors/crm.md, HubSpot "Signatures").
VECTOR_SECRET = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy"
VECTOR_URI = "https://www.example.com/webhook_uri"
PYTHONISH_BODY = b"{'example_field':'example_value'}"
CREATION_BODY = (
    b'[{"eventId":1,"subscriptionId":12345,"portalId":62515,"occurredAt":1564113600000,'
    b'"subscriptionType":"contact.creation","attemptNumber":0,"objectId":123,"changeSource":"CRM",'
    b'"changeFlag":"NEW","appId":54321}]'
)


# ---------------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------------


@dataclass
class Hub:
    sandbox: HubSpotSandbox
    server: SandboxServer
    api: httpx.Client  # authenticated like a production adapter
    control: httpx.Client  # /_sandbox/ control API


@pytest.fixture
def make_hub() -> Iterator[Callable[..., Hub]]:
    opened: list[tuple[HubSpotSandbox, SandboxServer, list[httpx.Client]]] = []

    def make(**kwargs: Any) -> Hub:
        sandbox, server = serve(HubSpotSandbox(**kwargs))
        api = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
        control = httpx.Client(base_url=server.url, timeout=30)
        opened.append((sandbox, server, [api, control]))
        return Hub(sandbox, server, api, control)

    yield make
    for sandbox, server, clients in opened:
        for client in clients:
            client.close()
        server.stop()
        sandbox.close()


@pytest.fixture
def hub(make_hub: Callable[..., Hub]) -> Hub:
    return make_hub()


@dataclass
class Receiver:
    """A tiny webhook endpoint: records every POST and answers with queued statuses (then 200)."""

    statuses: list[int] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Condition = field(default_factory=threading.Condition)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        with self.lock:
            self.received.append(
                {"method": request.method, "headers": dict(request.headers), "body": request.get_data()}
            )
            status = self.statuses.pop(0) if self.statuses else 200
            self.lock.notify_all()
        return Response("", status=status)(environ, start_response)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        with self.lock:
            while len(self.received) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"expected {count} webhook POSTs, got {len(self.received)}")
                self.lock.wait(remaining)
            return list(self.received)


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    app = Receiver()
    with SandboxServer(app) as server:
        yield app, f"{server.url}/hubspot/webhooks?stage=test"


def events_of(delivery: dict[str, Any]) -> list[dict[str, Any]]:
    events = json.loads(delivery["body"])
    assert isinstance(events, list)
    return events


# ---------------------------------------------------------------------------------------------------
# Signatures
# ---------------------------------------------------------------------------------------------------


def test_signatures_match_hubspot_vectors() -> None:
    # Given HubSpot's published secret, URI and bodies
    # When each signature version is computed
    # Then the digests equal the SDK/doc vectors
    assert sign_v1(VECTOR_SECRET, PYTHONISH_BODY) == (
        "69fc6631a867edd4f9e9e627fc5c1148e3fbdd8b21837b6d2b8901c1fa57f750"
    )
    assert sign_v1(VECTOR_SECRET, CREATION_BODY) == ("232db2615f3d666fe21a8ec971ac7b5402d33b9a925784df3ca654d05f4817de")
    assert sign_v2(VECTOR_SECRET, "POST", VECTOR_URI, PYTHONISH_BODY) == (
        "4fe4e3a7d3cf09db53be39d0a58130e2aaba074ec123a9e355b876a689a1c383"
    )
    assert sign_v2(VECTOR_SECRET, "POST", VECTOR_URI, b'{"example_field":"example_value"}') == (
        "9569219f8ba981ffa6f6f16aa0f48637d35d728c7e4d93d0d52efaa512af7900"
    )
    assert sign_v2(VECTOR_SECRET, "GET", VECTOR_URI, b"") == (
        "eee2dddcc73c94d699f5e395f4b9d454a069a6855fbfa152e91e88823087200e"
    )
    assert sign_v3(VECTOR_SECRET, "POST", VECTOR_URI, PYTHONISH_BODY, 15000000) == (
        "HPW73RUtKmcYoEDADG0s6MmGFWUzWJKAW07r8RDgcQw="
    )


def test_signed_batch_headers_per_version() -> None:
    # Given a batch body and a timestamp
    body, ts = CREATION_BODY, 1_700_000_000_123
    # When headers are built for v3, v1 and "all"
    v3 = signed_batch_headers(VECTOR_SECRET, VECTOR_URI, body, ts, "v3")
    v1 = signed_batch_headers(VECTOR_SECRET, VECTOR_URI, body, ts, "v1")
    both = signed_batch_headers(VECTOR_SECRET, VECTOR_URI, body, ts)
    # Then each carries exactly its version's headers, timestamp in ms
    assert v3["X-HubSpot-Signature-v3"] == sign_v3(VECTOR_SECRET, "POST", VECTOR_URI, body, ts)
    assert v3["X-HubSpot-Request-Timestamp"] == "1700000000123"
    assert "X-HubSpot-Signature" not in v3
    assert v1["X-HubSpot-Signature"] == sign_v1(VECTOR_SECRET, body)
    assert v1["X-HubSpot-Signature-Version"] == "v1"
    assert "X-HubSpot-Signature-v3" not in v1
    assert both.keys() >= {"X-HubSpot-Signature", "X-HubSpot-Signature-v3", "X-HubSpot-Request-Timestamp"}
    with pytest.raises(ValueError, match="signature_version"):
        signed_batch_headers(VECTOR_SECRET, VECTOR_URI, body, ts, "v4")


# ---------------------------------------------------------------------------------------------------
# Auth, faults, request log
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("authorization", [None, "Bearer pat-wrong", f"Basic {TOKEN}"])
def test_missing_or_wrong_token_is_401_with_hubspot_body(hub: Hub, authorization: str | None) -> None:
    # Given a request without the private-app token
    headers = {"Authorization": authorization} if authorization else {}
    # When any API path is called
    response = httpx.get(f"{hub.server.url}/crm/v3/objects/contacts", headers=headers)
    # Then HubSpot's INVALID_AUTHENTICATION body comes back, without rate-limit headers
    assert response.status_code == 401
    body = response.json()
    assert body["status"] == "error"
    assert body["category"] == "INVALID_AUTHENTICATION"
    assert body["message"].startswith("Authentication credentials not found.")
    assert body["correlationId"] == response.headers["X-HubSpot-Correlation-Id"]
    assert "X-HubSpot-RateLimit-Remaining" not in response.headers
    # And the call is in the request log with its status
    assert [r.status for r in hub.sandbox.state.calls("GET", "/crm/v3/objects/contacts")] == [401]


def test_faults_answer_before_auth_and_control_calls_are_not_logged(hub: Hub) -> None:
    # Given a one-shot 503 fault on deal reads
    fault = {"path_glob": "/crm/v3/objects/deals/*", "status": 503, "method": "GET"}
    assert hub.control.post("/_sandbox/faults", json=fault).status_code == 201
    deal = hub.sandbox.create_object("deals", {"dealname": "Fault test"})
    # When the deal is read twice
    first = hub.api.get(f"/crm/v3/objects/deals/{deal['id']}")
    second = hub.api.get(f"/crm/v3/objects/deals/{deal['id']}")
    # Then only the first read fails
    assert first.status_code == 503
    assert second.status_code == 200
    # And the log holds the two API calls, not the control calls
    log = hub.control.get("/_sandbox/requests").json()["requests"]
    assert [(r["method"], r["status"]) for r in log] == [("GET", 503), ("GET", 200)]
    assert log[0]["headers"]["authorization"] == f"Bearer {TOKEN}"


# ---------------------------------------------------------------------------------------------------
# CRM objects v3
# ---------------------------------------------------------------------------------------------------


def test_get_contact_with_properties_and_associations(hub: Hub) -> None:
    # Given a company and a contact whose primary company it is
    company = hub.sandbox.create_object("companies", {"name": "Acme Ltd", "domain": "acme.test"})
    contact = hub.sandbox.create_object(
        "contacts",
        {"firstname": "Ada", "email": "Ada@Acme.test"},
        associations=[{"to_type": "companies", "to_id": company["id"], "primary": True}],
    )
    # When the contact is read with explicit properties and associations
    response = hub.api.get(
        f"/crm/v3/objects/contacts/{contact['id']}",
        params={"properties": "email,phone,nosuchprop", "associations": "companies", "archived": "false"},
    )
    # Then only the requested (known) properties plus the always-present ones come back, as strings
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == contact["id"] == "51"
    assert body["properties"] == {
        "createdate": body["createdAt"],
        "email": "ada@acme.test",
        "hs_object_id": "51",
        "lastmodifieddate": body["updatedAt"],
        "phone": None,
    }
    assert body["archived"] is False
    assert body["createdAt"].endswith("Z") and len(body["createdAt"]) == len("2024-01-01T00:00:00.000Z")
    # And the association lists the primary and the unlabeled type
    assert body["associations"] == {
        "companies": {
            "results": [
                {"id": company["id"], "type": "contact_to_company"},
                {"id": company["id"], "type": "contact_to_company_unlabeled"},
            ]
        }
    }
    # And the rate-limit headers HubSpot sends on every authenticated call are present
    assert response.headers["X-HubSpot-RateLimit-Max"] == "100"
    assert response.headers["X-HubSpot-RateLimit-Interval-Milliseconds"] == "10000"


def test_default_properties_and_missing_object(hub: Hub) -> None:
    # Given a deal in the default pipeline
    deal = hub.sandbox.create_object("deals", {"dealname": "Big one", "amount": "1200", "dealstage": "closedwon"})
    # When it is read without a properties parameter
    body = hub.api.get(f"/crm/v3/objects/deals/{deal['id']}").json()
    # Then HubSpot's default deal properties come back (hs_lastmodifieddate, not lastmodifieddate)
    assert set(body["properties"]) == {
        "amount", "closedate", "createdate", "dealname", "dealstage", "hs_lastmodifieddate",
        "hs_object_id", "pipeline",
    }  # fmt: skip
    assert body["properties"]["pipeline"] == "default"
    # When an unknown id is read
    missing = hub.api.get("/crm/v3/objects/deals/999")
    # Then it is HubSpot's 404
    assert missing.status_code == 404
    assert missing.json()["category"] == "OBJECT_NOT_FOUND"
    assert missing.json()["message"] == "resource not found"
    # And an unknown object type is a 400
    unknown = hub.api.get("/crm/v3/objects/invoices_typo/1")
    assert unknown.status_code == 400
    assert unknown.json()["message"] == "Unable to infer object type from: invoices_typo"


def test_create_patch_clear_and_unknown_property(hub: Hub) -> None:
    # Given a contact created through the API with a numeric-typed value
    created = hub.api.post(
        "/crm/v3/objects/contacts",
        json={"properties": {"email": "bob@example.test", "phone": "+44 20 1234", "firstname": "Bob"}},
    )
    assert created.status_code == 201
    contact_id = created.json()["id"]
    # When a PATCH clears phone with "" and sets lastname
    patched = hub.api.patch(
        f"/crm/v3/objects/contacts/{contact_id}", json={"properties": {"phone": "", "lastname": "Jones"}}
    )
    # Then the value is gone and the other is set
    assert patched.status_code == 200
    assert patched.json()["properties"]["phone"] is None
    stored = hub.sandbox.get_object("contacts", contact_id)
    assert stored is not None
    assert "phone" not in stored["properties"]
    assert stored["properties"]["lastname"] == "Jones"
    # When a write names a property that does not exist
    bad = hub.api.patch(f"/crm/v3/objects/contacts/{contact_id}", json={"properties": {"vat_number": "GB1"}})
    # Then HubSpot's VALIDATION_ERROR with PROPERTY_DOESNT_EXIST comes back
    assert bad.status_code == 400
    body = bad.json()
    assert body["category"] == "VALIDATION_ERROR"
    assert body["message"].startswith("Property values were not valid: ")
    detail = json.loads(body["message"].removeprefix("Property values were not valid: "))
    assert detail[0]["error"] == "PROPERTY_DOESNT_EXIST"
    assert detail[0]["name"] == "vat_number"
    assert body["errors"][0] == {
        "message": 'Property "vat_number" does not exist',
        "code": "PROPERTY_DOESNT_EXIST",
        "context": {"propertyName": ["vat_number"]},
    }
    # And a second contact with the same email is a conflict
    dup = hub.api.post("/crm/v3/objects/contacts", json={"properties": {"email": "BOB@example.test"}})
    assert dup.status_code == 409
    assert dup.json()["message"] == f"Contact already exists. Existing ID: {contact_id}"


def test_batch_read_complete_and_partial(hub: Hub) -> None:
    # Given two line items on a product
    product = hub.sandbox.create_object("products", {"name": "Widget", "price": "25", "hs_sku": "W-1"})
    items = [
        hub.sandbox.create_object("line_items", {"hs_product_id": product["id"], "quantity": "2"}),
        hub.sandbox.create_object("line_items", {"name": "Setup", "price": "100", "quantity": "1"}),
    ]
    ids = [item["id"] for item in items]
    properties = ["name", "quantity", "price", "amount", "hs_product_id", "hs_sku"]
    # When both are batch-read
    ok = hub.api.post(
        "/crm/v3/objects/line_items/batch/read", json={"properties": properties, "inputs": [{"id": i} for i in ids]}
    )
    # Then the batch is COMPLETE with the products' values copied and net price calculated
    assert ok.status_code == 200
    body = ok.json()
    assert body["status"] == "COMPLETE"
    assert {"startedAt", "completedAt"} <= body.keys()
    first = body["results"][0]["properties"]
    assert (first["name"], first["price"], first["hs_sku"], first["amount"]) == ("Widget", "25", "W-1", "50")
    # When one id does not exist
    partial = hub.api.post(
        "/crm/v3/objects/line_items/batch/read",
        json={"properties": properties, "inputs": [{"id": ids[0]}, {"id": "404404"}]},
    )
    # Then it is a 207 with the found result and HubSpot's OBJECT_NOT_FOUND error
    assert partial.status_code == 207
    payload = partial.json()
    assert [r["id"] for r in payload["results"]] == [ids[0]]
    assert payload["numErrors"] == 1
    assert payload["errors"][0]["category"] == "OBJECT_NOT_FOUND"
    assert payload["errors"][0]["context"] == {"ids": ["404404"]}
    assert "LINE_ITEM objects" in payload["errors"][0]["message"]


def test_batch_update_limits_and_applies(hub: Hub) -> None:
    # Given a deal
    deal = hub.sandbox.create_object("deals", {"dealname": "Update me"})
    # When 101 inputs are sent
    too_many = hub.api.post(
        "/crm/v3/objects/deals/batch/update",
        json={"inputs": [{"id": deal["id"], "properties": {"amount": "1"}}] * 101},
    )
    # Then the whole batch is refused
    assert too_many.status_code == 400
    assert too_many.json()["category"] == "VALIDATION_ERROR"
    # When a valid batch is sent
    done = hub.api.post(
        "/crm/v3/objects/deals/batch/update",
        json={"inputs": [{"id": deal["id"], "properties": {"amount": 99.5, "dealstage": "closedwon"}}]},
    )
    # Then the values are stored as strings and derived flags follow
    assert done.status_code == 200
    stored = hub.sandbox.get_object("deals", deal["id"])
    assert stored is not None
    assert stored["properties"]["amount"] == "99.5"
    assert stored["properties"]["hs_is_closed_won"] == "true"


def test_list_pages_with_after_cursor(hub: Hub) -> None:
    # Given five companies
    for n in range(5):
        hub.sandbox.create_object("companies", {"name": f"Company {n}"})
    # When they are listed two at a time following paging.next.after
    seen: list[str] = []
    params: dict[str, Any] = {"limit": 2, "properties": "name"}
    while True:
        page = hub.api.get("/crm/v3/objects/companies", params=params).json()
        seen += [r["properties"]["name"] for r in page["results"]]
        if "paging" not in page:
            break
        params["after"] = page["paging"]["next"]["after"]
        assert page["paging"]["next"]["link"].startswith(hub.server.url)
    # Then every company is seen exactly once, in order
    assert seen == [f"Company {n}" for n in range(5)]


def test_search_by_email(hub: Hub) -> None:
    # Given two contacts
    hub.sandbox.create_object("contacts", {"email": "one@example.test", "firstname": "One"})
    hub.sandbox.create_object("contacts", {"email": "two@example.test", "firstname": "Two"})
    # When searching by email (HubSpot matches case-insensitively)
    response = hub.api.post(
        "/crm/v3/objects/contacts/search",
        json={
            "filterGroups": [{"filters": [{"propertyName": "email", "operator": "EQ", "value": "TWO@example.test"}]}],
            "properties": ["email", "firstname"],
        },
    )
    # Then exactly that contact comes back
    assert response.status_code == 200
    assert response.json()["total"] == 1
    assert response.json()["results"][0]["properties"]["firstname"] == "Two"


# ---------------------------------------------------------------------------------------------------
# Associations v4, properties, pipelines
# ---------------------------------------------------------------------------------------------------


def test_v4_associations_use_hubspot_type_ids(hub: Hub) -> None:
    # Given a deal with a primary company, a contact and a line item
    company = hub.sandbox.create_object("companies", {"name": "Buyer Co"})
    contact = hub.sandbox.create_object("contacts", {"email": "buyer@example.test"})
    deal = hub.sandbox.create_object("deals", {"dealname": "Order"})
    item = hub.sandbox.create_object("line_items", {"name": "Thing", "price": "5", "quantity": "4"})
    hub.sandbox.associate("deals", deal["id"], "companies", company["id"], primary=True)
    hub.sandbox.associate("deals", deal["id"], "contacts", contact["id"])
    hub.sandbox.associate("deals", deal["id"], "line_items", item["id"])

    def types(from_type: str, from_id: str, to_type: str) -> list[tuple[int, int, str | None]]:
        response = hub.api.get(f"/crm/v4/objects/{from_type}/{from_id}/associations/{to_type}")
        assert response.status_code == 200
        return [
            (r["toObjectId"], t["typeId"], t["label"])
            for r in response.json()["results"]
            for t in r["associationTypes"]
        ]

    # When each side's associations are listed
    # Then the typeIds and labels are HubSpot's, and toObjectId is a number
    assert types("deals", deal["id"], "companies") == [
        (int(company["id"]), 5, "Primary"),
        (int(company["id"]), 341, None),
    ]
    assert types("companies", company["id"], "deals") == [
        (int(deal["id"]), 6, "Deal with Primary Company"),
        (int(deal["id"]), 342, None),
    ]
    assert types("deals", deal["id"], "contacts") == [(int(contact["id"]), 3, None)]
    assert types("contacts", contact["id"], "deals") == [(int(deal["id"]), 4, None)]
    assert types("deals", deal["id"], "line_items") == [(int(item["id"]), 19, None)]
    assert types("line_items", item["id"], "deals") == [(int(deal["id"]), 20, None)]
    # And v3 reads spell the line items key the way HubSpot does
    v3 = hub.api.get(f"/crm/v3/objects/deals/{deal['id']}", params={"associations": "line_items"}).json()
    assert v3["associations"]["line items"]["results"] == [{"id": item["id"], "type": "deal_to_line_item"}]


def test_v4_put_primary_and_batch_read(hub: Hub) -> None:
    # Given a contact and two companies
    contact = hub.sandbox.create_object("contacts", {"email": "p@example.test"})
    first = hub.sandbox.create_object("companies", {"name": "First"})
    second = hub.sandbox.create_object("companies", {"name": "Second"})
    primary = [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 1}]
    # When the contact is made primary to the first, then to the second company
    one = hub.api.put(f"/crm/v4/objects/contacts/{contact['id']}/associations/companies/{first['id']}", json=primary)
    two = hub.api.put(f"/crm/v4/objects/contacts/{contact['id']}/associations/companies/{second['id']}", json=primary)
    # Then the second keeps the primary label and the first stays unlabeled
    assert one.status_code == two.status_code == 200
    assert two.json()["labels"] == ["Primary"]
    stored = hub.sandbox.get_object("contacts", contact["id"])
    assert stored is not None
    assert stored["properties"]["associatedcompanyid"] == second["id"]
    # When the associations are batch-read for the contact and for an unassociated id
    batch = hub.api.post(
        "/crm/v4/associations/contacts/companies/batch/read", json={"inputs": [{"id": contact["id"]}, {"id": "7"}]}
    )
    # Then it is a 207 with the contact's links and NO_ASSOCIATIONS_FOUND for the other
    assert batch.status_code == 207
    body = batch.json()
    links = {r["toObjectId"]: [t["typeId"] for t in r["associationTypes"]] for r in body["results"][0]["to"]}
    assert links == {int(first["id"]): [279], int(second["id"]): [1, 279]}
    assert body["errors"][0]["subCategory"] == "crm.associations.NO_ASSOCIATIONS_FOUND"


def test_properties_list_create_and_conflict(hub: Hub) -> None:
    # Given the seeded company properties (HubSpot has no default VAT property)
    names = {p["name"] for p in hub.api.get("/crm/v3/properties/companies").json()["results"]}
    assert {"name", "domain", "address2", "country", "hs_object_id"} <= names
    assert "vat_number" not in names
    definition = {
        "name": "vat_number",
        "label": "VAT number",
        "type": "string",
        "fieldType": "text",
        "groupName": "companyinformation",
    }
    # When a custom property is created
    created = hub.api.post("/crm/v3/properties/companies", json=definition)
    # Then it is returned as a non-HubSpot-defined property and can be written
    assert created.status_code == 201
    assert created.json()["hubspotDefined"] is False
    company = hub.sandbox.create_object("companies", {"name": "EU Co", "vat_number": "DE123456789"})
    assert company["properties"]["vat_number"] == "DE123456789"
    # When the same name is created again
    again = hub.api.post("/crm/v3/properties/companies", json=definition)
    # Then HubSpot answers 409
    assert again.status_code == 409
    assert again.json()["status"] == "error"
    assert "vat_number" in again.json()["message"]


def test_deal_pipelines(hub: Hub) -> None:
    # When the deal pipelines are read
    response = hub.api.get("/crm/v3/pipelines/deals")
    # Then the default pipeline ends in closedwon (probability 1.0, closed) and closedlost
    assert response.status_code == 200
    pipelines = {p["id"]: p for p in response.json()["results"]}
    stages = {s["id"]: s for s in pipelines["default"]["stages"]}
    assert list(stages)[0] == "appointmentscheduled"
    assert stages["closedwon"]["metadata"] == {"isClosed": "true", "probability": "1.0"}
    assert stages["closedlost"]["metadata"]["isClosed"] == "true"
    # And a custom pipeline uses numeric stage ids, one of them closed-won
    custom = next(p for p in pipelines.values() if p["id"] != "default")
    assert custom["id"].isdigit()
    assert all(s["id"].isdigit() for s in custom["stages"])
    assert any(s["metadata"]["probability"] == "1.0" for s in custom["stages"])
    # And a stage from another pipeline is refused on write
    bad = hub.api.post(
        "/crm/v3/objects/deals",
        json={"properties": {"dealname": "x", "pipeline": custom["id"], "dealstage": "closedwon"}},
    )
    assert bad.status_code == 400


def test_account_details_answer_hubspots_portal_information(hub: Hub) -> None:
    # When a private app reads the account's details
    response = hub.api.get("/account-info/v3/details")
    # Then every field of HubSpot's PortalInformationResponse is there, for the default (US) account
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {
        "portalId", "accountType", "timeZone", "companyCurrency", "additionalCurrencies", "utcOffset",
        "utcOffsetMilliseconds", "uiDomain", "dataHostingLocation",
    }  # fmt: skip
    assert (body["portalId"], body["uiDomain"], body["dataHostingLocation"]) == (62515, "app.hubspot.com", "na1")
    assert (body["accountType"], body["timeZone"], body["companyCurrency"]) == ("STANDARD", "US/Eastern", "USD")
    # And the additional currencies are the others the deal currency property offers
    assert "USD" not in body["additionalCurrencies"]
    assert {"EUR", "GBP"} <= set(body["additionalCurrencies"])
    # And the offset is US Eastern's (summer or winter), written both ways
    assert (body["utcOffset"], body["utcOffsetMilliseconds"]) in {("-04:00", -14_400_000), ("-05:00", -18_000_000)}
    # And the answer counts against the rate limit like any API call
    assert "X-HubSpot-RateLimit-Remaining" in response.headers


def test_account_details_follow_the_configured_portal_and_ui_domain(make_hub: Callable[..., Hub]) -> None:
    # Given an EU-hosted account with its own portal id
    hub = make_hub(portal_id=26001, ui_domain="app-eu1.hubspot.com")
    # When its details are read
    body = hub.api.get("/account-info/v3/details").json()
    # Then they name that portal, its UI domain and the data centre the domain is in
    assert (body["portalId"], body["uiDomain"], body["dataHostingLocation"]) == (
        26001,
        "app-eu1.hubspot.com",
        "eu1",
    )


@pytest.mark.parametrize("authorization", [None, "Bearer pat-wrong"])
def test_account_details_need_a_valid_token(hub: Hub, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = httpx.get(f"{hub.server.url}/account-info/v3/details", headers=headers)
    assert response.status_code == 401
    assert response.json()["category"] == "INVALID_AUTHENTICATION"


def test_account_details_refuse_a_private_app_without_the_scope_but_not_oauth(make_hub: Callable[..., Hub]) -> None:
    # Given a private app that was not granted the scope account-info needs
    hub = make_hub(account_info_scope=False)
    # When it reads the account's details
    refused = hub.api.get("/account-info/v3/details")
    # Then HubSpot's MISSING_SCOPES 403 comes back, naming the scope
    assert refused.status_code == 403
    body = refused.json()
    assert body["category"] == "MISSING_SCOPES"
    assert body["errors"][0]["context"]["requiredGranularScopes"] == ["oauth"]
    # And an OAuth app's token (which always carries the oauth scope) still reads them
    form = {
        "grant_type": "refresh_token",
        "client_id": hub.sandbox.client_id,
        "client_secret": SECRET,
        "refresh_token": hub.sandbox.refresh_token,
    }
    token = hub.control.post("/oauth/v1/token", data=form).json()["access_token"]
    answered = hub.control.get("/account-info/v3/details", headers={"Authorization": f"Bearer {token}"})
    assert (answered.status_code, answered.json()["portalId"]) == (200, 62515)


# ---------------------------------------------------------------------------------------------------
# Rate limits
# ---------------------------------------------------------------------------------------------------


def test_ten_second_rolling_limit_and_clock(make_hub: Callable[..., Hub]) -> None:
    # Given an account limited to 3 calls per 10 seconds
    hub = make_hub(ten_second_limit=3)
    # When 4 calls are made in the same window
    responses = [hub.api.get("/crm/v3/objects/contacts") for _ in range(4)]
    # Then the first 3 pass, counting down, and the 4th is HubSpot's 429
    assert [r.status_code for r in responses] == [200, 200, 200, 429]
    assert [r.headers["X-HubSpot-RateLimit-Remaining"] for r in responses] == ["2", "1", "0", "0"]
    limited = responses[3]
    body = limited.json()
    assert body["status"] == "error"
    assert body["message"] == "You have reached your ten_secondly_rolling limit."
    assert body["errorType"] == "RATE_LIMIT"
    assert body["policyName"] == "TEN_SECONDLY_ROLLING"
    assert body["correlationId"]
    assert limited.headers["X-HubSpot-RateLimit-Daily"] == "250000"
    assert limited.headers["X-HubSpot-RateLimit-Daily-Remaining"] == "249997"
    # When the sandbox clock moves past the window
    hub.control.post("/_sandbox/clock", json={"advance": 10.5})
    # Then calls pass again
    assert hub.api.get("/crm/v3/objects/contacts").status_code == 200


def test_daily_limit(make_hub: Callable[..., Hub]) -> None:
    # Given an account with 2 calls left for the day
    hub = make_hub(daily_limit=2)
    statuses = [hub.api.get("/crm/v3/pipelines/deals").status_code for _ in range(3)]
    # Then the third call hits the DAILY policy
    assert statuses == [200, 200, 429]
    last = hub.api.get("/crm/v3/pipelines/deals")
    assert last.json()["policyName"] == "DAILY"
    assert last.json()["message"] == "You have reached your daily limit."
    # And a new day restores the budget
    hub.sandbox.state.clock.advance(86_400)
    assert hub.api.get("/crm/v3/pipelines/deals").status_code == 200


# ---------------------------------------------------------------------------------------------------
# Webhooks
# ---------------------------------------------------------------------------------------------------


def test_creation_batch_is_delivered_with_valid_v3_signature(hub: Hub, receiver: tuple[Receiver, str]) -> None:
    app, target = receiver
    # Given webhooks for contact creation and email changes, signed v3
    settings = {
        "target_url": target,
        "signature_version": "v3",
        "subscriptions": ["contact.creation", "contact.propertyChange:email"],
    }
    assert hub.control.post("/_sandbox/webhooks", json=settings).status_code == 200
    # When two contacts are created through the control API (as in the UI)
    ids = [
        hub.control.post("/_sandbox/objects/contacts", json={"properties": {"email": f"w{n}@example.test"}}).json()[
            "id"
        ]
        for n in range(2)
    ]
    # Then the receiver gets JSON-array batches carrying every event
    deliveries = app.wait_for(1)
    deadline = time.monotonic() + 10
    while sum(len(events_of(d)) for d in app.received) < 4 and time.monotonic() < deadline:
        time.sleep(0.02)
    events = [e for d in app.received for e in events_of(d)]
    creations = [e for e in events if e["subscriptionType"] == "contact.creation"]
    changes = [e for e in events if e["subscriptionType"] == "contact.propertyChange"]
    assert sorted(e["objectId"] for e in creations) == sorted(int(i) for i in ids)
    assert {e["propertyValue"] for e in changes} == {"w0@example.test", "w1@example.test"}
    first = creations[0]
    assert first["portalId"] == 62515
    assert first["appId"] == 54321
    assert first["attemptNumber"] == 0
    assert first["changeFlag"] == "CREATED"
    assert first["changeSource"] == "CRM_UI"
    assert isinstance(first["occurredAt"], int) and first["occurredAt"] > 1_600_000_000_000
    assert {"eventId", "subscriptionId", "sourceId"} <= first.keys()
    # And every POST carries a v3 signature over method + target URL + raw body + timestamp
    for delivery in deliveries:
        headers = delivery["headers"]
        timestamp = int(headers["X-Hubspot-Request-Timestamp"])
        expected = sign_v3(SECRET, "POST", target, delivery["body"], timestamp)
        assert headers["X-Hubspot-Signature-V3"] == expected
        assert "X-Hubspot-Signature" not in headers
        assert headers["Content-Type"] == "application/json"
    # And the attempts are recorded
    recorded = hub.control.get("/_sandbox/webhooks/deliveries").json()["deliveries"]
    assert recorded[0]["status"] == 200
    assert recorded[0]["attempt"] == 0
    assert json.loads(recorded[0]["body"]) == events_of(deliveries[0])


def test_failed_delivery_is_retried_with_next_attempt_number(hub: Hub, receiver: tuple[Receiver, str]) -> None:
    app, target = receiver
    # Given a receiver that answers 500 once, and v1 signing
    app.statuses.append(500)
    settings = {
        "target_url": target,
        "signature_version": "v1",
        "subscriptions": ["deal.creation"],
        "retry_delay": 0.05,
        "max_retries": 3,
    }
    hub.sandbox.configure_webhooks(settings)
    # When a deal is created through the API
    created = hub.api.post("/crm/v3/objects/deals", json={"properties": {"dealname": "Retry me"}})
    assert created.status_code == 201
    # Then the batch is POSTed again with attemptNumber 1
    first, second = app.wait_for(2)[:2]
    assert [e["attemptNumber"] for e in events_of(first)] == [0]
    assert [e["attemptNumber"] for e in events_of(second)] == [1]
    assert events_of(second)[0]["objectId"] == int(created.json()["id"])
    assert events_of(second)[0]["changeSource"] == "INTEGRATION"
    # And both carry a valid v1 signature of their own body
    for delivery in (first, second):
        assert delivery["headers"]["X-Hubspot-Signature"] == sign_v1(SECRET, delivery["body"])
        assert delivery["headers"]["X-Hubspot-Signature-Version"] == "v1"
    # And both attempts are recorded
    deadline = time.monotonic() + 5
    while len(hub.sandbox.deliveries) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [(d["attempt"], d["status"], d["ok"]) for d in hub.sandbox.deliveries] == [(0, 500, False), (1, 200, True)]


def test_manual_mode_flush_batches_property_changes(hub: Hub, receiver: tuple[Receiver, str]) -> None:
    app, target = receiver
    # Given manual delivery, batches of at most 2 events, and deal stage subscriptions
    deal = hub.sandbox.create_object("deals", {"dealname": "Pipeline", "dealstage": "appointmentscheduled"})
    hub.sandbox.configure_webhooks(
        {
            "target_url": target,
            "mode": "manual",
            "max_batch": 2,
            "subscriptions": [{"eventType": "deal.propertyChange", "propertyName": "dealstage"}],
        }
    )
    # When the stage changes three times in the UI
    for stage in ("qualifiedtobuy", "contractsent", "closedwon"):
        hub.sandbox.update_object("deals", deal["id"], {"dealstage": stage})
    # Then nothing is sent until flush, which delivers two batches synchronously
    assert app.received == []
    result = hub.control.post("/_sandbox/webhooks/flush").json()
    assert result == {"attempts": 2, "succeeded": 2, "failed": 0}
    batches = [events_of(d) for d in app.received]
    assert [len(b) for b in batches] == [2, 1]
    values = [e["propertyValue"] for b in batches for e in b]
    assert values == ["qualifiedtobuy", "contractsent", "closedwon"]
    assert all(e["propertyName"] == "dealstage" and e["objectId"] == int(deal["id"]) for b in batches for e in b)


def test_concurrent_creates_get_unique_ids(hub: Hub) -> None:
    # Given many threads creating contacts through the API at once
    results: list[str] = []
    lock = threading.Lock()

    def create(n: int) -> None:
        with httpx.Client(base_url=hub.server.url, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
            response = client.post("/crm/v3/objects/contacts", json={"properties": {"email": f"c{n}@example.test"}})
            with lock:
                results.append(response.json()["id"])

    threads = [threading.Thread(target=create, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then every id is distinct and numeric, counting up from HubSpot-like bases
    assert len(set(results)) == 20
    assert sorted(int(i) for i in results) == list(range(51, 71))


def test_reset_restores_a_fresh_account(hub: Hub) -> None:
    # Given data, a custom property and a webhook target
    hub.sandbox.create_object("contacts", {"email": "gone@example.test"})
    hub.api.post(
        "/crm/v3/properties/contacts",
        json={
            "name": "erp_id",
            "label": "ERP",
            "type": "string",
            "fieldType": "text",
            "groupName": "contactinformation",
        },
    )
    # When the sandbox is reset
    assert hub.control.post("/_sandbox/reset").status_code == 200
    # Then objects, custom properties and the log are gone and ids start again
    assert hub.api.get("/crm/v3/objects/contacts").json()["results"] == []
    assert hub.api.get("/crm/v3/properties/contacts/erp_id").status_code == 404
    again = hub.sandbox.create_object("contacts", {"email": "again@example.test"})
    assert again["id"] == "51"
    assert hub.control.get("/_sandbox/webhooks").json() == {"settings": None}


def test_v3_header_signs_the_uri_with_hubspots_decoding() -> None:
    # Given a target URL whose query holds escapes HubSpot decodes before signing
    uri = "https://hooks.example.test/hubspot?next=https%3A%2F%2Fapp.test%2Fdone&tag=a%20b"
    # When the delivery headers are built
    headers = signed_batch_headers(SECRET, uri, b"[]", 1_700_000_000_000, "v3")
    # Then the signature covers the decoded URI (%20 is not on HubSpot's list and stays)
    decoded = "https://hooks.example.test/hubspot?next=https://app.test/done&tag=a%20b"
    assert headers["X-HubSpot-Signature-v3"] == sign_v3(SECRET, "POST", decoded, b"[]", 1_700_000_000_000)


# ---------------------------------------------------------------------------------------------------
# Generic object.* events, association paging, OAuth tokens, property option fields
# ---------------------------------------------------------------------------------------------------


def test_generic_events_switch_sends_object_types_by_id(hub: Hub, receiver: tuple[Receiver, str]) -> None:
    app, target = receiver
    # Given the current platform's generic format, manual delivery
    hub.sandbox.configure_webhooks(
        {
            "target_url": target,
            "signature_version": "v3",
            "mode": "manual",
            "generic_events": True,
            "subscriptions": ["contact.creation", "company.propertyChange:name", "contact.associationChange"],
        }
    )
    # When a company is renamed and a contact of it is created
    company = hub.sandbox.create_object("companies", {"name": "Before"})
    hub.sandbox.update_object("companies", company["id"], {"name": "After"})
    contact = hub.sandbox.create_object(
        "contacts", {"email": "g@example.test"}, associations=[("companies", company["id"])]
    )
    hub.sandbox.flush_webhooks()
    events = [e for d in app.received for e in events_of(d)]
    # Then each carries object.<kind> and the object's type id, never the typed subscription type
    by_type = {(e["subscriptionType"], e.get("objectTypeId") or e.get("fromObjectTypeId")): e for e in events}
    assert set(by_type) == {
        ("object.propertyChange", "0-2"),
        ("object.creation", "0-1"),
        ("object.associationChange", "0-1"),
    }
    assert by_type[("object.propertyChange", "0-2")]["objectId"] == int(company["id"])
    assert by_type[("object.creation", "0-1")]["objectId"] == int(contact["id"])
    association = by_type[("object.associationChange", "0-1")]
    assert (association["fromObjectId"], association["toObjectTypeId"]) == (int(contact["id"]), "0-2")


def test_generic_events_switch_must_be_a_boolean(hub: Hub) -> None:
    answer = hub.control.post("/_sandbox/webhooks", json={"target_url": "http://x.test/", "generic_events": "yes"})
    assert answer.status_code == 400
    assert "generic_events" in answer.json()["error"]


def test_v4_batch_read_pages_each_object_with_after(make_hub: Callable[..., Hub]) -> None:
    # Given a page size of 2, a company with 5 contacts and one with a single contact
    hub = make_hub(association_page_size=2)
    big = hub.sandbox.create_object("companies", {"name": "Big"})
    small = hub.sandbox.create_object("companies", {"name": "Small"})
    people = [
        hub.sandbox.create_object("contacts", {"email": f"p{n}@x.test"}, associations=[("companies", big["id"])])["id"]
        for n in range(5)
    ]
    hub.sandbox.create_object("contacts", {"email": "s@x.test"}, associations=[("companies", small["id"])])
    # When the first page is read for both
    path = "/crm/v4/associations/companies/contacts/batch/read"
    first = hub.api.post(path, json={"inputs": [{"id": big["id"]}, {"id": small["id"]}]}).json()["results"]
    pages = {r["from"]["id"]: r for r in first}
    # Then the big one holds 2 and a cursor; the small one everything and no paging at all
    assert len(pages[big["id"]]["to"]) == 2
    assert "paging" not in pages[small["id"]]
    # And following the cursor with {id, after} gives every contact once
    seen = [str(t["toObjectId"]) for t in pages[big["id"]]["to"]]
    after = pages[big["id"]]["paging"]["next"]["after"]
    while after:
        (result,) = hub.api.post(path, json={"inputs": [{"id": big["id"], "after": after}]}).json()["results"]
        seen += [str(t["toObjectId"]) for t in result["to"]]
        after = (result.get("paging") or {}).get("next", {}).get("after")
    assert seen == people
    # And a malformed cursor is a 400
    bad = hub.api.post(path, json={"inputs": [{"id": big["id"], "after": "nope"}]})
    assert bad.status_code == 400


def test_oauth_token_endpoint_issues_expiring_tokens(hub: Hub) -> None:
    form = {
        "grant_type": "refresh_token",
        "client_id": hub.sandbox.client_id,
        "client_secret": SECRET,
        "refresh_token": hub.sandbox.refresh_token,
    }
    # Given a refresh with the app's credentials (form-encoded, as HubSpot's v1 endpoint takes it)
    granted = hub.control.post("/oauth/v1/token", data=form)
    assert granted.status_code == 200
    body = granted.json()
    # Then it is an expiring bearer token, and the refresh token is the same one (HubSpot's do not rotate)
    assert (body["token_type"], body["expires_in"], body["refresh_token"]) == ("bearer", 1800, form["refresh_token"])
    bearer = {"Authorization": f"Bearer {body['access_token']}"}
    assert hub.control.get("/crm/v3/pipelines/deals", headers=bearer).status_code == 200
    # When the sandbox clock passes its lifetime
    hub.sandbox.state.clock.advance(1801)
    expired = hub.control.get("/crm/v3/pipelines/deals", headers=bearer)
    # Then it is refused as expired
    assert expired.status_code == 401
    assert expired.json()["category"] == "EXPIRED_AUTHENTICATION"
    # And a wrong refresh token or client secret is a 400 with HubSpot's status code
    wrong = hub.control.post("/oauth/v1/token", data={**form, "refresh_token": "stolen"})
    assert (wrong.status_code, wrong.json()["status"]) == (400, "BAD_REFRESH_TOKEN")
    wrong = hub.control.post("/oauth/v1/token", data={**form, "client_secret": "guess"})
    assert (wrong.status_code, wrong.json()["status"]) == (400, "BAD_CLIENT_SECRET")


@pytest.mark.parametrize(
    ("option", "problem"),
    [
        ({"label": "Paid", "value": "paid", "displayOrder": 0}, "hidden"),
        ({"value": "paid", "displayOrder": 0, "hidden": False}, "label"),
        ({"label": "Paid", "displayOrder": 0, "hidden": False}, "value"),
        ({"label": "Paid", "value": "paid", "displayOrder": "first", "hidden": False}, "displayOrder"),
    ],
)
def test_property_create_refuses_options_missing_required_fields(
    hub: Hub, option: dict[str, Any], problem: str
) -> None:
    definition = {
        "name": "closeloop_status",
        "label": "Status",
        "type": "enumeration",
        "fieldType": "select",
        "groupName": "dealinformation",
        "options": [option],
    }
    answer = hub.api.post("/crm/v3/properties/deals", json=definition)
    assert answer.status_code == 400
    assert problem in answer.json()["message"]
    # And with the spec's fields it is created
    ok = {**definition, "options": [{"label": "Paid", "value": "paid", "displayOrder": 0, "hidden": False}]}
    assert hub.api.post("/crm/v3/properties/deals", json=ok).status_code == 201


@pytest.mark.parametrize("field_name", ["name", "label", "type", "fieldType", "groupName"])
def test_property_create_refuses_a_missing_required_field(hub: Hub, field_name: str) -> None:
    definition = {"name": "closeloop_x", "label": "X", "type": "string", "fieldType": "text", "groupName": "g"}
    del definition[field_name]
    answer = hub.api.post("/crm/v3/properties/deals", json=definition)
    assert answer.status_code == 400
    assert field_name in answer.json()["message"]


def test_v3_read_embeds_at_most_the_limit_of_associations_with_a_cursor(make_hub: Callable[..., Hub]) -> None:
    # Given a limit of 3 embedded associations, a company with 4 contacts (the last one primary) and one with 3
    hub = make_hub(embedded_association_limit=3)
    big = hub.sandbox.create_object("companies", {"name": "Big"})
    snug = hub.sandbox.create_object("companies", {"name": "Snug"})
    for n in range(4):
        hub.sandbox.create_object(
            "contacts", {"email": f"b{n}@x.test"}, associations=[("companies", big["id"], n == 3)]
        )
    for n in range(3):
        hub.sandbox.create_object("contacts", {"email": f"s{n}@x.test"}, associations=[("companies", snug["id"])])
    # When both are read with their contacts
    big_read = hub.api.get(f"/crm/v3/objects/companies/{big['id']}", params={"associations": "contacts"}).json()
    snug_read = hub.api.get(f"/crm/v3/objects/companies/{snug['id']}", params={"associations": "contacts"}).json()
    # Then the big one's list is cut at 3 entries, without the primary, and names a cursor
    embedded = big_read["associations"]["contacts"]
    assert len(embedded["results"]) == 3
    assert "company_to_contact" not in {r["type"] for r in embedded["results"]}
    assert embedded["paging"]["next"]["after"]
    assert embedded["paging"]["next"]["link"].startswith(hub.server.url)
    # And the snug one's list is whole, with no paging
    assert len(snug_read["associations"]["contacts"]["results"]) == 3
    assert "paging" not in snug_read["associations"]["contacts"]


# ---------------------------------------------------------------------------------------------------
# Products (the product library)
# ---------------------------------------------------------------------------------------------------


def test_products_are_created_listed_archived_and_searched_as_hubspot_does(hub: Hub) -> None:
    # Given a product created through the API with its catalogue properties
    made = hub.api.post(
        "/crm/v3/objects/products",
        json={"properties": {"name": "Widget", "hs_sku": "W-1", "price": "12.50", "hs_cost_of_goods_sold": "4"}},
    )
    assert made.status_code == 201
    product_id = made.json()["id"]
    other = hub.sandbox.create_object("products", {"name": "Gadget", "hs_sku": "G-1"})
    # When one is deleted (HubSpot archives it)
    assert hub.api.delete(f"/crm/v3/objects/products/{other['id']}").status_code == 204
    # Then the live list holds the other, the archived list the deleted one, marked archived
    props = {"properties": "name,hs_sku,price,hs_cost_of_goods_sold"}
    live = hub.api.get("/crm/v3/objects/products", params=props).json()["results"]
    archived = hub.api.get("/crm/v3/objects/products", params={**props, "archived": "true"}).json()["results"]
    assert [(p["id"], p["properties"]["price"], p["properties"]["hs_cost_of_goods_sold"]) for p in live] == [
        (product_id, "12.50", "4")
    ]
    assert [(p["id"], p["archived"]) for p in archived] == [(other["id"], True)]
    assert "archivedAt" in archived[0]
    # And reading the deleted one is 404 unless archived=true is asked
    assert hub.api.get(f"/crm/v3/objects/products/{other['id']}").status_code == 404
    assert hub.api.get(f"/crm/v3/objects/products/{other['id']}", params={"archived": "true"}).status_code == 200
    # And search finds live products only
    search = {"filterGroups": [{"filters": [{"propertyName": "hs_sku", "operator": "HAS_PROPERTY"}]}]}
    found = hub.api.post("/crm/v3/objects/products/search", json=search).json()
    assert [r["id"] for r in found["results"]] == [product_id]


def test_a_product_price_that_is_not_a_number_is_refused(hub: Hub) -> None:
    answer = hub.api.post("/crm/v3/objects/products", json={"properties": {"name": "Widget", "price": "cheap"}})
    assert answer.status_code == 400
    assert answer.json()["category"] == "VALIDATION_ERROR"


def test_products_refuse_a_private_app_without_the_products_scope(make_hub: Callable[..., Hub]) -> None:
    # Given a private app made without crm.objects.products.read/write
    hub = make_hub(product_scope=False)
    product = hub.sandbox.create_object("products", {"name": "Widget"})
    # Then reads and searches name the read scope, writes the write scope, in HubSpot's 403 body
    reads = [
        hub.api.get(f"/crm/v3/objects/products/{product['id']}"),
        hub.api.get("/crm/v3/objects/products"),
        hub.api.post("/crm/v3/objects/products/search", json={}),
    ]
    write = hub.api.post("/crm/v3/objects/products", json={"properties": {"name": "Gadget"}})
    for answer, scope in [*((r, "crm.objects.products.read") for r in reads), (write, "crm.objects.products.write")]:
        assert answer.status_code == 403
        assert answer.json()["category"] == "MISSING_SCOPES"
        assert answer.json()["errors"][0]["context"]["requiredGranularScopes"] == [scope]
    # And the other objects are served as before
    assert hub.api.get("/crm/v3/objects/companies").status_code == 200


def test_product_events_are_delivered_for_product_subscriptions(hub: Hub, receiver: tuple[Receiver, str]) -> None:
    app, target = receiver
    subscriptions = ["product.creation", "product.propertyChange:price", "product.deletion"]
    hub.sandbox.configure_webhooks({"target_url": target, "mode": "manual", "subscriptions": subscriptions})
    # When a product is created, repriced and deleted
    product = hub.sandbox.create_object("products", {"name": "Widget", "price": "3"})
    hub.sandbox.update_object("products", product["id"], {"price": "4"})
    hub.api.delete(f"/crm/v3/objects/products/{product['id']}")
    hub.sandbox.flush_webhooks()
    events = [e for d in app.received for e in events_of(d)]
    # Then each event names the product and its kind, in order
    assert [(e["subscriptionType"], e.get("propertyValue")) for e in events] == [
        ("product.creation", None),
        ("product.propertyChange", "3"),
        ("product.propertyChange", "4"),
        ("product.deletion", None),
    ]
    assert {e["objectId"] for e in events} == {int(product["id"])}


# ---------------------------------------------------------------------------------------------------
# Routing: every route's answer, and the answers where no route serves the request
# ---------------------------------------------------------------------------------------------------

NOT_SUPPORTED = "HTTP {method} is not supported by this endpoint"


def test_every_api_route_is_served_by_its_handler(hub: Hub) -> None:
    # Given a contact and a company
    contact = hub.sandbox.create_object("contacts", {"email": "routed@example.com"})["id"]
    company = hub.sandbox.create_object("companies", {"name": "Routed"})["id"]
    unlabeled = [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 279}]
    update = {"inputs": [{"id": contact, "properties": {}}]}
    definition = {"name": "routed", "label": "Routed", "type": "string", "fieldType": "text", "groupName": "x"}
    v4 = f"/crm/v4/objects/contacts/{contact}/associations"
    # (method, path, JSON body, status, a key of the answer: None for an empty answer)
    routes: list[tuple[str, str, Any, int, str | None]] = [
        ("GET", "/crm/v3/objects/contacts", None, 200, "results"),
        ("POST", "/crm/v3/objects/contacts", {"properties": {"email": "new@example.com"}}, 201, "id"),
        ("POST", "/crm/v3/objects/contacts/batch/read", {"inputs": [{"id": contact}]}, 200, "results"),
        ("POST", "/crm/v3/objects/contacts/batch/update", update, 200, "results"),
        ("POST", "/crm/v3/objects/contacts/batch/create", {"inputs": [{"properties": {}}]}, 201, "results"),
        ("POST", "/crm/v3/objects/contacts/search", {}, 200, "total"),
        ("GET", f"/crm/v3/objects/contacts/{contact}", None, 200, "properties"),
        ("PATCH", f"/crm/v3/objects/contacts/{contact}", {"properties": {"lastname": "Routed"}}, 200, "properties"),
        ("GET", "/crm/v3/properties/contacts", None, 200, "results"),
        ("POST", "/crm/v3/properties/contacts", definition, 201, "fieldType"),
        ("GET", "/crm/v3/properties/contacts/email", None, 200, "fieldType"),
        ("GET", "/crm/v3/pipelines/deals", None, 200, "results"),
        ("GET", "/crm/v3/pipelines/deals/default", None, 200, "stages"),
        ("GET", "/crm/v3/pipelines/deals/default/stages", None, 200, "results"),
        ("GET", f"{v4}/companies", None, 200, "results"),
        ("PUT", f"{v4}/default/companies/{company}", None, 200, "startedAt"),
        ("PUT", f"{v4}/companies/{company}", unlabeled, 200, "labels"),
        ("POST", "/crm/v4/associations/contacts/companies/batch/read", {"inputs": [{"id": contact}]}, 200, "results"),
        ("DELETE", f"{v4}/companies/{company}", None, 204, None),
        ("DELETE", f"/crm/v3/objects/contacts/{contact}", None, 204, None),
        ("GET", "/account-info/v3/details", None, 200, "portalId"),
    ]
    for method, path, body, status, key in routes:
        # When each route is called
        answer = hub.api.request(method, path, json=body)
        # Then its handler answers
        assert answer.status_code == status, (method, path, answer.text)
        if key is None:
            assert answer.content == b"", (method, path)
        else:
            assert key in answer.json(), (method, path)


@pytest.mark.parametrize(
    ("method", "path", "status", "message"),
    [
        # a route's path with a method it does not serve: HubSpot's 405
        ("PUT", "/crm/v3/objects/contacts", 405, NOT_SUPPORTED),
        ("GET", "/crm/v3/objects/contacts/batch/read", 405, NOT_SUPPORTED),
        ("DELETE", "/crm/v3/objects/contacts/search", 204, None),  # <oid> = "search": archives no record
        ("POST", "/crm/v3/objects/contacts/1", 405, NOT_SUPPORTED),
        ("DELETE", "/crm/v3/properties/contacts", 405, NOT_SUPPORTED),
        ("PATCH", "/crm/v3/properties/contacts/email", 405, NOT_SUPPORTED),
        ("POST", "/crm/v3/pipelines/deals", 405, NOT_SUPPORTED),
        ("GET", "/crm/v4/objects/contacts/1/associations/default/companies/2", 405, NOT_SUPPORTED),
        ("DELETE", "/crm/v4/objects/contacts/1/associations/default/companies/2", 405, NOT_SUPPORTED),
        ("GET", "/crm/v4/associations/contacts/companies/batch/read", 405, NOT_SUPPORTED),
        ("POST", "/account-info/v3/details", 405, NOT_SUPPORTED),
        ("OPTIONS", "/crm/v3/objects/contacts", 405, NOT_SUPPORTED),
        # no route's path: HubSpot's 404
        ("GET", "/", 404, "resource not found"),
        ("GET", "/crm/v3/objects", 404, "resource not found"),
        ("GET", "/crm/v3/objects/contacts/1/extra", 404, "resource not found"),
        ("GET", "/crm/v3/objects/contacts/", 404, "resource not found"),
        ("POST", "/crm/v3/objects/contacts/batch/archive", 404, "resource not found"),
        ("GET", "/crm/v3/nothing", 404, "resource not found"),
        ("GET", "/account-info/v3/details/more", 404, "resource not found"),
        ("GET", "/crm//v3/objects/contacts", 404, "resource not found"),  # a doubled slash (was a 500)
    ],
)
def test_requests_no_route_serves_answer_hubspots_405_or_404(
    hub: Hub, method: str, path: str, status: int, message: str | None
) -> None:
    # When a path or method the API does not serve is called
    answer = hub.api.request(method, path)
    # Then HubSpot's answer comes back, with the rate limit headers of any authenticated call
    assert answer.status_code == status, answer.text
    if message is not None:
        body = answer.json()
        assert body["message"] == message.format(method=method)
        assert body["status"] == "error"
        assert body["correlationId"] == answer.headers["X-HubSpot-Correlation-Id"]
        assert body.get("category") == ("OBJECT_NOT_FOUND" if status == 404 else None)
    assert "X-HubSpot-RateLimit-Remaining" in answer.headers


def test_head_is_served_by_a_get_route_without_a_body(hub: Hub) -> None:
    contact = hub.sandbox.create_object("contacts", {"email": "head@example.com"})["id"]
    for path in ("/crm/v3/objects/contacts", f"/crm/v3/objects/contacts/{contact}", "/account-info/v3/details"):
        # When a GET route is called with HEAD
        get, head = hub.api.get(path), hub.api.head(path)
        # Then it answers as GET does, without the body
        assert (head.status_code, head.content) == (200, b""), path
        assert head.headers["Content-Type"] == get.headers["Content-Type"], path
        assert head.headers["Content-Length"] == get.headers["Content-Length"], path
    # And a path without a GET route answers 405, an unknown path 404 (no body either)
    assert hub.api.head("/crm/v3/objects/contacts/search").status_code == 404  # no record "search"
    assert hub.api.head("/crm/v3/objects/contacts/batch/read").status_code == 405
    assert hub.api.head("/crm/v3/nothing").status_code == 404
    assert [r.status for r in hub.sandbox.state.calls("HEAD")] == [200, 200, 200, 404, 405, 404]


def test_the_products_scope_is_checked_on_the_object_routes_only(make_hub: Callable[..., Hub]) -> None:
    # Given a private app made without the products scopes, and a product
    hub = make_hub(product_scope=False)
    product = hub.sandbox.create_object("products", {"name": "Widget"})["id"]
    inputs = {"inputs": [{"id": product}]}
    refused: list[tuple[str, str, Any, str]] = [
        ("GET", "/crm/v3/objects/products", None, "read"),
        ("GET", f"/crm/v3/objects/0-7/{product}", None, "read"),  # by the object type id too
        ("POST", "/crm/v3/objects/PRODUCT/search", {}, "read"),  # aliases are case-insensitive
        ("POST", "/crm/v3/objects/products/batch/read", inputs, "read"),
        ("POST", "/crm/v3/objects/products", {"properties": {}}, "write"),
        ("POST", "/crm/v3/objects/products/batch/create", {"inputs": []}, "write"),
        ("POST", "/crm/v3/objects/products/batch/update", inputs, "write"),
        ("PATCH", f"/crm/v3/objects/products/{product}", {"properties": {}}, "write"),
        ("DELETE", f"/crm/v3/objects/products/{product}", None, "write"),
    ]
    for method, path, body, access in refused:
        # When the private app calls a product object route
        answer = hub.api.request(method, path, json=body)
        # Then HubSpot's 403 names the scope it lacks
        assert answer.status_code == 403, (method, path)
        scopes = answer.json()["errors"][0]["context"]["requiredGranularScopes"]
        assert scopes == [f"crm.objects.products.{access}"], (method, path)
    # And HEAD is refused too, naming the write scope (only GET counts as a read): the same length as a write's
    head = hub.api.head("/crm/v3/objects/products")
    assert head.status_code == 403
    assert int(head.headers["Content-Length"]) == len(hub.api.delete(f"/crm/v3/objects/products/{product}").content)
    # And a method no route serves is still HubSpot's 405, the property and association routes are served
    assert hub.api.put("/crm/v3/objects/products").status_code == 405
    assert hub.api.get("/crm/v3/properties/products").status_code == 200
    assert hub.api.get(f"/crm/v4/objects/products/{product}/associations/deals").status_code == 200
    # And an OAuth token (its scopes are the app's, not the private app's) reads products
    token = hub.api.post(
        "/oauth/v1/token",
        data={
            "grant_type": "refresh_token",
            "client_id": "sandbox-client-id",
            "client_secret": SECRET,
            "refresh_token": "sandbox-refresh-token",
        },
    ).json()["access_token"]
    assert hub.api.get("/crm/v3/objects/products", headers={"Authorization": f"Bearer {token}"}).status_code == 200
