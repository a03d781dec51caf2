"""The HubSpot adapter against the HubSpot sandbox over HTTP: fetch-back and webhook verification."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from closeloop.crm.hubspot import HubSpotCrm
from closeloop.errors import RateLimited
from closeloop.models import CrmRef
from closeloop.ports import WebhookRequest
from closeloop_local.sandboxes.base import SandboxServer
from closeloop_local.sandboxes.hubspot import HubSpotSandbox, serve, signed_batch_headers


@pytest.fixture
def sandbox() -> Iterator[tuple[HubSpotSandbox, SandboxServer]]:
    hubspot, server = serve()
    yield hubspot, server
    hubspot.close()
    server.stop()


def crm(hubspot: HubSpotSandbox, url: str) -> HubSpotCrm:
    return HubSpotCrm(
        client_secret=hubspot.client_secret, access_token=hubspot.access_token, base_url=url, sleep=lambda s: None
    )


def company_ref(object_id: object) -> CrmRef:
    return CrmRef(crm="hubspot", object_type="company", object_id=str(object_id))


def test_company_resolves_with_primary_person_first_and_the_others_as_people(
    sandbox: tuple[HubSpotSandbox, SandboxServer],
) -> None:
    hubspot, server = sandbox
    httpx.post(
        f"{server.url}/crm/v3/properties/companies",
        json={
            "name": "vat_number",
            "label": "VAT",
            "type": "string",
            "fieldType": "text",
            "groupName": "companyinformation",
        },
        headers={"Authorization": f"Bearer {hubspot.access_token}"},
    ).raise_for_status()
    company = hubspot.create_object("companies", {"name": "Acme Ltd", "city": "London", "vat_number": "GB1"})
    hubspot.create_object(
        "contacts",
        {"firstname": "Bob", "email": "BOB@acme.test"},
        associations=[{"to_type": "companies", "to_id": company["id"]}],
    )
    ann = hubspot.create_object(
        "contacts",
        {"firstname": "Ann", "lastname": "Archer", "email": "ann@acme.test", "phone": "+44 1"},
        associations=[{"to_type": "companies", "to_id": company["id"], "primary": True}],
    )
    customer = crm(hubspot, server.url).resolve_customer(company_ref(company["id"]))
    assert customer is not None
    assert (customer.name, customer.email, customer.phone, customer.tax_number) == (
        "Acme Ltd",
        "ann@acme.test",
        "+44 1",
        "GB1",
    )
    assert customer.address.city == "London"
    assert [p.email for p in customer.people] == ["bob@acme.test"]
    # And a contact event resolves to its company
    via_contact = crm(hubspot, server.url).resolve_customer(
        CrmRef(crm="hubspot", object_type="contact", object_id=str(ann["id"]))
    )
    assert via_contact is not None
    assert via_contact.ref == company_ref(company["id"])


def test_contact_without_company_is_its_own_customer(sandbox: tuple[HubSpotSandbox, SandboxServer]) -> None:
    hubspot, server = sandbox
    solo = hubspot.create_object("contacts", {"firstname": "Sol", "lastname": "Trader", "email": "sol@trader.test"})
    customer = crm(hubspot, server.url).resolve_customer(
        CrmRef(crm="hubspot", object_type="contact", object_id=str(solo["id"]))
    )
    assert customer is not None
    assert (customer.name, customer.email) == ("Sol Trader", "sol@trader.test")


def test_missing_object_resolves_to_none(sandbox: tuple[HubSpotSandbox, SandboxServer]) -> None:
    hubspot, server = sandbox
    assert crm(hubspot, server.url).resolve_customer(company_ref(999999999)) is None


def test_rate_limit_is_retried_then_surfaces(sandbox: tuple[HubSpotSandbox, SandboxServer]) -> None:
    hubspot, server = serve(HubSpotSandbox(ten_second_limit=1))
    try:
        company = hubspot.create_object("companies", {"name": "Acme"})
        adapter = crm(hubspot, server.url)
        adapter.resolve_customer(company_ref(company["id"]))
        with pytest.raises(RateLimited):
            adapter.resolve_customer(company_ref(company["id"]))
    finally:
        hubspot.close()
        server.stop()


def test_sandbox_signed_batches_verify_with_the_adapter(sandbox: tuple[HubSpotSandbox, SandboxServer]) -> None:
    hubspot, _ = sandbox
    body = json.dumps([{"eventId": 1}]).encode()
    uri = "https://hooks.example.com/webhooks/hubspot/contacts"
    import time

    now = int(time.time() * 1000)
    headers = signed_batch_headers(hubspot.client_secret, uri, body, now, "v3")
    HubSpotCrm(client_secret=hubspot.client_secret).verify_webhook(WebhookRequest("POST", uri, headers, body))
