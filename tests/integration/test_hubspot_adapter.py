"""The HubSpot adapter against the HubSpot sandbox over HTTP: fetch-back and webhook verification."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from closeloop.errors import RateLimited
from closeloop.models import CrmRef
from closeloop.ports import WebhookRequest
from closeloop.vendors.hubspot.adapter import HubSpotCrm
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


def test_batch_resolution_equals_one_by_one_in_a_few_calls(sandbox: tuple[HubSpotSandbox, SandboxServer]) -> None:
    # Given companies with people (one primary, one not), a contact with a company, one without, one gone
    hubspot, server = sandbox
    refs: list[CrmRef] = []
    for n in range(30):
        company = hubspot.create_object("companies", {"name": f"Firm {n} Ltd", "city": "Leeds"})
        hubspot.create_object(
            "contacts",
            {"firstname": "Bob", "email": f"bob@f{n}.test"},
            associations=[{"to_type": "companies", "to_id": company["id"]}],
        )
        ann = hubspot.create_object(
            "contacts",
            {"firstname": "Ann", "email": f"ann@f{n}.test", "phone": "+44 1"},
            associations=[{"to_type": "companies", "to_id": company["id"], "primary": True}],
        )
        refs.append(company_ref(company["id"]))
        if n % 10 == 0:
            refs.append(CrmRef(crm="hubspot", object_type="contact", object_id=str(ann["id"])))
    solo = hubspot.create_object("contacts", {"firstname": "Sol", "lastname": "Trader", "email": "sol@t.test"})
    refs += [CrmRef(crm="hubspot", object_type="contact", object_id=str(solo["id"])), company_ref(999999999)]
    adapter = crm(hubspot, server.url)
    one_by_one = {r: adapter.resolve_customer(r) for r in refs}
    # When they are resolved in one batch
    before = len(hubspot.state.requests)
    batch = adapter.resolve_customers(refs)
    # Then every ref resolves exactly as alone (a contact to its company), in a handful of calls
    assert batch.keys() == one_by_one.keys()
    for ref in refs:
        alone, together = one_by_one[ref], batch[ref]
        assert (alone.model_dump(exclude={"updated_at"}) if alone else None) == (
            together.model_dump(exclude={"updated_at"}) if together else None
        ), ref
    assert len(hubspot.state.requests) - before <= 6


def test_changes_since_a_watermark_list_each_modified_object_once(
    sandbox: tuple[HubSpotSandbox, SandboxServer],
) -> None:
    from datetime import UTC, datetime, timedelta  # noqa: PLC0415

    hubspot, server = sandbox
    adapter = crm(hubspot, server.url)
    start = datetime.now(UTC) - timedelta(seconds=5)
    company = hubspot.create_object("companies", {"name": "Changed Ltd"})
    contact = hubspot.create_object("contacts", {"firstname": "Cy", "email": "cy@changed.test"})
    deal = hubspot.create_object(
        "deals", {"dealname": "Changed deal", "pipeline": "default", "dealstage": "appointmentscheduled"}
    )
    events = list(adapter.iter_changes_since(start))
    assert {str(e.ref) for e in events} == {
        f"hubspot/company/{company['id']}",
        f"hubspot/contact/{contact['id']}",
        f"hubspot/deal/{deal['id']}",
    }
    assert len({e.dedupe_key for e in events}) == 3
    assert list(adapter.iter_changes_since(datetime.now(UTC) + timedelta(hours=1))) == []


def crowded_company(hubspot: HubSpotSandbox) -> tuple[dict[str, Any], list[str]]:
    """A company with 1,200 contacts (ids in creation order); the 701st is its primary contact."""
    company = hubspot.create_object("companies", {"name": "Crowded Ltd"})
    people = [
        str(
            hubspot.create_object(
                "contacts",
                {"firstname": f"P{n}", "email": f"p{n}@crowded.test"},
                associations=[{"to_type": "companies", "to_id": company["id"], "primary": n == 700}],
            )["id"]
        )
        for n in range(1200)
    ]
    return company, people


def test_a_company_with_1200_contacts_resolves_with_every_one_of_them(
    sandbox: tuple[HubSpotSandbox, SandboxServer],
) -> None:
    # Given a company with 1,200 contacts (v4 association reads page at 500, as HubSpot's do)
    hubspot, server = sandbox
    company, people = crowded_company(hubspot)
    # When it is resolved in batch
    customer = crm(hubspot, server.url).resolve_customers([company_ref(company["id"])])[company_ref(company["id"])]
    # Then none is lost: the primary person first, the 1,199 others as its people
    assert customer is not None
    assert customer.email == "p700@crowded.test"
    assert sorted([customer.people[i].crm_id for i in range(len(customer.people))] + [people[700]]) == sorted(people)
    # And the association pages were asked for with HubSpot's {id, after} inputs
    reads = [
        json.loads(r.body)
        for r in hubspot.state.requests
        if r.path == "/crm/v4/associations/companies/contacts/batch/read"
    ]
    assert [[sorted(i) for i in read["inputs"]] for read in reads] == [[["id"]], [["after", "id"]], [["after", "id"]]]


def test_oauth_app_token_expiry_is_refreshed_once_under_the_lease_and_work_continues(
    sandbox: tuple[HubSpotSandbox, SandboxServer],
) -> None:
    from closeloop.oauth import RefreshingTokens  # noqa: PLC0415
    from closeloop.vendors.hubspot.client import refresh_with_hubspot  # noqa: PLC0415
    from tests.fakes import MemoryStore  # noqa: PLC0415

    # Given an OAuth app (no private-app token) and two workers sharing one token store and lease
    hubspot, server = sandbox
    company = hubspot.create_object("companies", {"name": "Tokened Ltd"})
    store = MemoryStore()

    def worker() -> HubSpotCrm:
        tokens = RefreshingTokens(
            "hubspot",
            store,
            seed=lambda fresh: hubspot.refresh_token,
            refresh=refresh_with_hubspot(server.url, lambda: hubspot.client_id, lambda: hubspot.client_secret),
            write_back=lambda token: None,
        )
        return HubSpotCrm(client_secret=hubspot.client_secret, oauth_tokens=lambda: tokens, base_url=server.url)

    first, second = worker(), worker()
    assert first.resolve_customer(company_ref(company["id"])) is not None
    assert second.resolve_customer(company_ref(company["id"])) is not None
    token_calls = [r for r in hubspot.state.requests if r.path == "/oauth/v1/token"]
    assert len(token_calls) == 1  # the second worker used the stored token
    assert b"grant_type=refresh_token" in token_calls[0].body
    # When HubSpot's clock passes the 30 minutes (the workers' clocks still think the token is fresh)
    hubspot.state.clock.advance(1801)
    before = len(hubspot.state.requests)
    first_after = first.resolve_customer(company_ref(company["id"]))
    second_after = second.resolve_customer(company_ref(company["id"]))
    # Then each is refused once (401), the token is refreshed once, and both go on with the new one
    assert first_after is not None and first_after.name == "Tokened Ltd"
    assert second_after is not None and second_after.name == "Tokened Ltd"
    answered = [(r.path, r.status) for r in hubspot.state.requests[before:]]
    assert [p for p, s in answered if p == "/oauth/v1/token"] == ["/oauth/v1/token"]
    assert [s for p, s in answered if p != "/oauth/v1/token"].count(401) == 2
    assert store.tokens["hubspot"].refresh_token == hubspot.refresh_token


def test_private_app_token_wins_over_oauth_and_neither_is_a_configuration_error(
    sandbox: tuple[HubSpotSandbox, SandboxServer],
) -> None:
    from closeloop.errors import ConfigurationError  # noqa: PLC0415

    hubspot, server = sandbox
    company = hubspot.create_object("companies", {"name": "Private Ltd"})

    def no_oauth() -> Any:
        raise AssertionError("the OAuth tokens must not be built when a private-app token is set")

    adapter = HubSpotCrm(
        client_secret=hubspot.client_secret,
        access_token=hubspot.access_token,
        oauth_tokens=no_oauth,
        base_url=server.url,
    )
    assert adapter.resolve_customer(company_ref(company["id"])) is not None
    with pytest.raises(ConfigurationError, match="HUBSPOT_REFRESH_TOKEN"):
        HubSpotCrm(client_secret=hubspot.client_secret, base_url=server.url).resolve_customer(company_ref(1))


def test_a_company_with_1200_contacts_resolves_alone_with_every_one_of_them(
    sandbox: tuple[HubSpotSandbox, SandboxServer],
) -> None:
    # Given a company with 1,200 contacts, the primary one far past the 100 a v3 read embeds
    hubspot, server = sandbox
    company, people = crowded_company(hubspot)
    adapter = crm(hubspot, server.url)
    # When it is resolved on its own (the webhook path), and through one of its contacts
    before = len(hubspot.state.requests)
    customer = adapter.resolve_customer(company_ref(company["id"]))
    calls = hubspot.state.requests[before:]
    via_contact = adapter.resolve_customer(CrmRef(crm="hubspot", object_type="contact", object_id=people[3]))
    # Then none is lost: the primary person first, the 1,199 others as its people, as in batch
    assert customer is not None
    assert customer.email == "p700@crowded.test"
    assert sorted([p.crm_id for p in customer.people] + [people[700]]) == sorted(people)
    assert via_contact is not None and via_contact.email == "p700@crowded.test"
    assert customer.model_dump(exclude={"updated_at"}) == (
        adapter.resolve_customers([company_ref(company["id"])])[company_ref(company["id"])].model_dump(  # type: ignore[union-attr]
            exclude={"updated_at"}
        )
    )
    # And the cost: the v3 read, three v4 association pages, and the people 100 at a time
    assert [r.path for r in calls].count("/crm/v4/associations/companies/contacts/batch/read") == 3
    assert len(calls) == 1 + 3 + 12


def test_a_company_with_few_contacts_costs_no_extra_association_read(
    sandbox: tuple[HubSpotSandbox, SandboxServer],
) -> None:
    # Given a company with 99 contacts (every one fits in the associations a v3 read embeds)
    hubspot, server = sandbox
    company = hubspot.create_object("companies", {"name": "Snug Ltd"})
    for n in range(99):
        hubspot.create_object(
            "contacts", {"email": f"s{n}@snug.test"}, associations=[{"to_type": "companies", "to_id": company["id"]}]
        )
    # When it is resolved on its own
    before = len(hubspot.state.requests)
    customer = crm(hubspot, server.url).resolve_customer(company_ref(company["id"]))
    # Then it takes the v3 read and one batch read of its people, and no v4 association read
    assert customer is not None and len(customer.people) == 98
    assert [r.path for r in hubspot.state.requests[before:]] == [
        f"/crm/v3/objects/companies/{company['id']}",
        "/crm/v3/objects/contacts/batch/read",
    ]
