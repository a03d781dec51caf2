"""Canonical customer fields written back to each CRM (adapter over HTTP against its sandbox).

What is written must read back through ``resolve_customer`` as written; what a CRM cannot hold comes back
in the returned list, and nothing else on the record changes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import pytest

from closeloop.errors import NotFound
from closeloop.models import CUSTOMER_FIELDS, CrmRef, Customer, customer_fields
from closeloop.oauth import RefreshingTokens
from closeloop.ports import CrmPort, PropertyDefinition
from closeloop.vendors.hubspot.adapter import HubSpotCrm
from closeloop.vendors.pipedrive.adapter import PipedriveCrm
from closeloop.vendors.sugarcrm.adapter import SugarCrm
from closeloop.vendors.sugarcrm.client import API_PREFIX, password_grant
from closeloop_local.sandboxes.base import Fault, SandboxState
from closeloop_local.sandboxes.hubspot import serve as serve_hubspot
from closeloop_local.sandboxes.pipedrive import serve as serve_pipedrive
from closeloop_local.sandboxes.sugarcrm import serve as serve_sugar
from tests.fakes import MemoryStore

COMPANY_VALUES = {
    "name": "Acme Holdings",
    "first_name": "Anna",
    "last_name": "Abbott",
    "email": "anna@acme.test",
    "phone": "+44 20 7946 0999",
    "tax_number": "GB999999973",
    "address.line1": "2 Short Street",
    "address.line2": "Floor 3",
    "address.city": "Leeds",
    "address.region": "West Yorkshire",
    "address.postal_code": "LS1 1AA",
    "address.country": "United Kingdom",
    "people": "Someone|Else|someone@else.test",
}

CONTACT_VALUES = {
    "name": "Sally Trent",
    "first_name": "Sally",
    "last_name": "Trent",
    "email": "sally@trent.test",
    "phone": "+1 555 0100",
    "tax_number": "US-1",
    "address.line1": "9 Elm Road",
    "address.line2": "Suite 5",
    "address.city": "Boston",
    "address.region": "MA",
    "address.postal_code": "02108",
    "address.country": "United States",
    "people": "",
}


@dataclass
class Vendor:
    """One CRM under test: its adapter, sandbox state, and the records seeded in it."""

    crm: CrmPort
    state: SandboxState
    company: CrmRef  # a company with a primary person and one more person
    member: CrmRef  # the second person of that company
    loner: CrmRef  # a contact billed on its own
    missing: CrmRef
    write_path: str  # a glob of the update calls, for fault injection
    #: what each CRM cannot hold on a contact billed alone
    contact_unwritable: tuple[str, ...]
    rate_limit_headers: Mapping[str, str]


def _ref(crm: str, object_type: str, object_id: object) -> CrmRef:
    return CrmRef.model_validate({"crm": crm, "object_type": object_type, "object_id": str(object_id)})


def _hubspot() -> tuple[Vendor, Callable[[], None]]:
    hubspot, server = serve_hubspot()
    crm = HubSpotCrm(
        client_secret=hubspot.client_secret,
        access_token=hubspot.access_token,
        base_url=server.url,
        sleep=lambda s: None,
        portal_id=1,
    )
    crm.ensure_properties("company", [PropertyDefinition("vat_number", "VAT number")])
    company = hubspot.create_object(
        "companies", {"name": "Acme Ltd", "phone": "+44 20 0000", "city": "London", "vat_number": "GB1"}
    )
    primary = hubspot.create_object(
        "contacts",
        {"firstname": "Ann", "lastname": "Archer", "email": "ann@acme.test", "phone": "+44 1"},
        associations=[{"to_type": "companies", "to_id": company["id"], "primary": True}],
    )
    member = hubspot.create_object(
        "contacts",
        {"firstname": "Bob", "lastname": "Baker", "email": "bob@acme.test"},
        associations=[{"to_type": "companies", "to_id": company["id"]}],
    )
    loner = hubspot.create_object(
        "contacts", {"firstname": "Sol", "lastname": "Solo", "email": "sol@solo.test", "mobilephone": "+1 2"}
    )
    assert int(primary["id"]) < int(member["id"])
    vendor = Vendor(
        crm=crm,
        state=hubspot.state,
        company=_ref("hubspot", "company", company["id"]),
        member=_ref("hubspot", "contact", member["id"]),
        loner=_ref("hubspot", "contact", loner["id"]),
        missing=_ref("hubspot", "company", "999999999"),
        write_path="/crm/v3/objects/*",
        contact_unwritable=("tax_number", "address.line2", "people"),
        rate_limit_headers={"Retry-After": "1"},
    )

    def stop() -> None:
        hubspot.close()
        server.stop()

    return vendor, stop


def _pipedrive() -> tuple[Vendor, Callable[[], None]]:
    pipedrive, server = serve_pipedrive()
    crm = PipedriveCrm(api_token=lambda: pipedrive.api_token, base_url=server.url, sleep=lambda s: None)
    vat = pipedrive.add_field("organization", "VAT number")
    org = pipedrive.create(
        "organization",
        {
            "name": "Acme Ltd",
            "address": {"value": "1 Long Lane, London", "street_number": "1", "route": "Long Lane",
                        "locality": "London", "postal_code": "EC1A 9HF", "country": "United Kingdom"},
            "custom_fields": {vat: "GB123"},
        },
    )  # fmt: skip
    pipedrive.create(
        "person",
        {
            "name": "Ann Archer",
            "org_id": org["id"],
            "emails": [{"value": "old@acme.test"}, {"value": "ann@acme.test", "primary": True}],
            "phones": [{"value": "+44 1", "primary": True}],
        },
    )
    member = pipedrive.create("person", {"name": "Bob Baker", "org_id": org["id"], "emails": [{"value": "b@a.test"}]})
    loner = pipedrive.create(
        "person",
        {
            "name": "Sol Solo",
            "emails": [{"value": "sol@solo.test"}],
            "phones": [{"value": "+1 2", "label": "mobile"}, {"value": "+1 3", "primary": True}],
        },
    )
    vendor = Vendor(
        crm=crm,
        state=pipedrive.state,
        company=_ref("pipedrive", "company", org["id"]),
        member=_ref("pipedrive", "contact", member["id"]),
        loner=_ref("pipedrive", "contact", loner["id"]),
        missing=_ref("pipedrive", "company", 999),
        write_path="/api/v2/*",
        contact_unwritable=tuple(n for n in CUSTOMER_FIELDS if n.startswith("address.") or n == "tax_number")
        + ("people",),
        rate_limit_headers={"Retry-After": "1", "x-ratelimit-remaining": "0"},
    )
    return vendor, server.stop


def _sugar() -> tuple[Vendor, Callable[[], None]]:
    sugar, server = serve_sugar()
    tokens = RefreshingTokens(
        "sugarcrm",
        MemoryStore(),
        seed=lambda fresh: "",
        refresh=password_grant(
            server.url, username=lambda: sugar.username, password=lambda: sugar.password, platform="closeloop"
        ),
        write_back=lambda token: None,
    )
    crm = SugarCrm(instance_url=server.url, tokens=tokens, webhook_token="hook-token", sleep=lambda s: None)
    account = sugar.create_record(
        "Accounts",
        {
            "name": "Acme Ltd",
            "phone_office": "+44 20 0000",
            "vat_number_c": "GB123",
            "billing_address_street": "1 Long Lane",
            "billing_address_city": "London",
        },
    )
    sugar.create_record(
        "Contacts",
        {
            "first_name": "Ann",
            "last_name": "Archer",
            "email": [
                {"email_address": "old@acme.test", "primary_address": False},
                {"email_address": "ann@acme.test", "primary_address": True},
            ],
            "phone_work": "+44 1",
            "account_id": account["id"],
        },
    )
    sugar.state.clock.advance(1)
    member = sugar.create_record(
        "Contacts", {"first_name": "Bob", "last_name": "Baker", "email": "bob@acme.test", "account_id": account["id"]}
    )
    loner = sugar.create_record(
        "Contacts", {"first_name": "Sol", "last_name": "Solo", "email": "sol@solo.test", "phone_mobile": "+1 2"}
    )
    vendor = Vendor(
        crm=crm,
        state=sugar.state,
        company=_ref("sugarcrm", "company", account["id"]),
        member=_ref("sugarcrm", "contact", member["id"]),
        loner=_ref("sugarcrm", "contact", loner["id"]),
        missing=_ref("sugarcrm", "company", "00000000-0000-0000-0000-000000000000"),
        write_path=f"{API_PREFIX}/*",
        contact_unwritable=("tax_number", "people"),
        rate_limit_headers={"Retry-After": "1"},
    )
    return vendor, server.stop


VENDORS = {"hubspot": _hubspot, "pipedrive": _pipedrive, "sugarcrm": _sugar}


@pytest.fixture(params=sorted(VENDORS))
def vendor(request: pytest.FixtureRequest) -> Iterator[Vendor]:
    made, stop = VENDORS[request.param]()
    yield made
    stop()


def resolved(vendor: Vendor, ref: CrmRef) -> Customer:
    customer = vendor.crm.resolve_customer(ref)
    assert customer is not None
    return customer


def assert_written(before: Customer, after: Customer, values: Mapping[str, str], refused: list[str]) -> None:
    """Every written field reads back as written; every other field reads as before."""
    old, new = customer_fields(before), customer_fields(after)
    for name in CUSTOMER_FIELDS:
        expected = values[name] if name in values and name not in refused else old[name]
        assert new[name] == expected, name
    assert after.people == before.people


def test_company_fields_read_back_as_written_and_people_are_refused(vendor: Vendor) -> None:
    # Given a company with a primary person and another person
    before = resolved(vendor, vendor.company)
    # When every canonical field is written onto it
    refused = vendor.crm.update_customer_fields(vendor.company, COMPANY_VALUES)
    # Then only "people" is refused
    assert refused == ["people"]
    # And the company resolves to exactly the written values, its other people untouched
    assert_written(before, resolved(vendor, vendor.company), COMPANY_VALUES, refused)


def test_a_member_contact_is_written_as_its_company(vendor: Vendor) -> None:
    # Given a person of a company
    before = resolved(vendor, vendor.company)
    values = {"name": "Acme Group", "email": "billing@acme.test"}
    # When fields are written through the person's ref
    refused = vendor.crm.update_customer_fields(vendor.member, values)
    # Then they land on the billable company (its name, its primary person's email)
    assert refused == []
    assert_written(before, resolved(vendor, vendor.company), values, refused)


def test_contact_fields_read_back_as_written_and_unholdable_ones_are_refused(vendor: Vendor) -> None:
    # Given a contact billed on its own
    before = resolved(vendor, vendor.loner)
    # When every canonical field is written onto it
    refused = vendor.crm.update_customer_fields(vendor.loner, CONTACT_VALUES)
    # Then what a contact cannot hold in this CRM comes back, in field order
    assert refused == list(vendor.contact_unwritable)
    # And everything else reads back exactly as written
    assert_written(before, resolved(vendor, vendor.loner), CONTACT_VALUES, refused)


def test_clearing_the_phone_and_email_reads_back_empty(vendor: Vendor) -> None:
    # Given a company whose phone comes from its primary person, and a contact with a mobile phone only
    company_before, loner_before = resolved(vendor, vendor.company), resolved(vendor, vendor.loner)
    assert company_before.phone and loner_before.phone
    values = {"phone": "", "email": ""}
    # When both are cleared
    refused = [vendor.crm.update_customer_fields(ref, values) for ref in (vendor.company, vendor.loner)]
    # Then nothing falls back to another number or address
    assert refused == [[], []]
    assert_written(company_before, resolved(vendor, vendor.company), values, [])
    assert_written(loner_before, resolved(vendor, vendor.loner), values, [])


def test_a_contact_name_that_is_not_its_first_and_last_name_is_refused(vendor: Vendor) -> None:
    # Given a contact billed on its own
    before = resolved(vendor, vendor.loner)
    values = {"first_name": "Sal", "last_name": "Vo", "name": "Someone Different"}
    # When its name disagrees with the first and last name written with it
    refused = vendor.crm.update_customer_fields(vendor.loner, values)
    # Then the name is refused, the first and last name are written, and the name reads as they make it
    assert refused == ["name"]
    assert_written(before, resolved(vendor, vendor.loner), {**values, "name": "Sal Vo"}, [])


def test_a_rate_limited_write_is_retried(vendor: Vendor) -> None:
    # Given the CRM answers the next write with a 429
    before = resolved(vendor, vendor.company)
    faults = [
        Fault(vendor.write_path, 429, method=method, headers=dict(vendor.rate_limit_headers))
        for method in ("PATCH", "PUT")
    ]
    vendor.state.faults.extend(faults)
    # When a field is written
    refused = vendor.crm.update_customer_fields(vendor.company, {"name": "Acme Retried"})
    # Then the 429 was answered, the client retried, and the write landed
    assert sorted(f.times for f in faults) == [0, 1]
    assert refused == []
    assert_written(before, resolved(vendor, vendor.company), {"name": "Acme Retried"}, refused)


def test_a_missing_record_raises_not_found(vendor: Vendor) -> None:
    # Given a ref to a record that does not exist
    # When a field is written onto it
    # Then NotFound is raised
    with pytest.raises(NotFound):
        vendor.crm.update_customer_fields(vendor.missing, {"name": "Nobody"})


def test_unknown_field_names_are_a_programming_error(vendor: Vendor) -> None:
    # Given a field name outside CUSTOMER_FIELDS
    # When it is written
    # Then ValueError names it before anything is sent
    with pytest.raises(ValueError, match="website"):
        vendor.crm.update_customer_fields(vendor.company, {"website": "https://acme.test"})
