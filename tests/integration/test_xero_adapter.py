"""The Xero adapter against the Xero sandbox over HTTP: contacts, unique names, tokens, limits."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from closeloop.errors import AuthRevoked, Conflict, RateLimited
from closeloop.models import Address, CrmRef, Customer, Person
from closeloop_local.sandboxes.base import SandboxServer
from closeloop_local.sandboxes.xero import XeroSandbox, serve
from tests.fakes import MemoryStore
from tests.sandbox_adapters import xero_adapter as adapter


@pytest.fixture
def sandbox() -> Iterator[tuple[XeroSandbox, SandboxServer]]:
    xero, server = serve()
    yield xero, server
    server.stop()


def acme(**kw: object) -> Customer:
    values: dict[str, object] = {
        "ref": CrmRef(crm="hubspot", object_type="company", object_id="1000001"),
        "name": "Acme Ltd",
        "email": "ann@acme.test",
        "phone": "+44 20 7946 0000",
        "tax_number": "GB123456789",
        "first_name": "Ann",
        "last_name": "Archer",
        "address": Address(line1="1 Long Lane", city="London", postal_code="EC1A 9HF", country="United Kingdom"),
        "people": (Person(crm_id="52", first_name="Bob", last_name="Baker", email="bob@acme.test"),),
    }
    values.update(kw)
    return Customer(**values)  # type: ignore[arg-type]


def test_create_then_find_by_number_tax_email_and_name(sandbox: tuple[XeroSandbox, SandboxServer]) -> None:
    xero, server = sandbox
    books = adapter(xero, server.url)
    # When a customer is created
    created = books.create_customer(acme(), number="hubspot-company-1000001", idempotency_key="k-1")
    # Then the sandbox holds it with the Xero shape, and each lookup finds it
    stored = xero.contacts()[0]
    assert stored["Name"] == "Acme Ltd"
    assert stored["ContactNumber"] == "hubspot-company-1000001"
    assert stored["ContactPersons"][0]["EmailAddress"] == "bob@acme.test"
    assert created.fields["address.city"] == "London"
    assert [c.id for c in books.find_customers(number="hubspot-company-1000001")] == [created.id]
    assert [c.id for c in books.find_customers(tax_number="GB123456789")] == [created.id]
    assert [c.id for c in books.find_customers(email="ANN@acme.test")] == [created.id]
    assert created.id in [c.id for c in books.find_customers(name="ACME LIMITED")]
    assert books.get_customer(created.id) is not None


def test_duplicate_name_is_a_conflict_not_a_retry(sandbox: tuple[XeroSandbox, SandboxServer]) -> None:
    xero, server = sandbox
    xero.seed_contact(Name="Acme Ltd")
    books = adapter(xero, server.url)
    with pytest.raises(Conflict):
        books.create_customer(acme(), number="hubspot-company-1", idempotency_key="k-2")
    assert len(xero.state.calls("PUT", "/api.xro/2.0/Contacts")) == 1


def test_update_sends_only_the_named_fields(sandbox: tuple[XeroSandbox, SandboxServer]) -> None:
    xero, server = sandbox
    books = adapter(xero, server.url)
    created = books.create_customer(acme(), number="n-1", idempotency_key="k-3")
    books.update_customer(
        created.id, acme(name="Renamed", phone="+1 555"), ["phone"], number=None, idempotency_key="k-4"
    )
    stored = xero.contacts()[0]
    assert stored["Name"] == "Acme Ltd"
    assert any(p.get("PhoneNumber") == "+1 555" for p in stored["Phones"])
    body = xero.state.calls("POST")[-1].body
    assert b'"Name"' not in body


def test_expired_access_token_is_refreshed_once_and_rotated(sandbox: tuple[XeroSandbox, SandboxServer]) -> None:
    xero, server = sandbox
    store = MemoryStore()
    books = adapter(xero, server.url, store)
    books.find_customers(name="x")
    first_refresh = store.get_token("xero")
    assert first_refresh is not None
    # Given Xero expires the token early (or the clock moved on)
    xero.expire_access_tokens()
    # When the adapter calls again, it gets a 401, refreshes once, and retries
    books.find_customers(name="y")
    second = store.get_token("xero")
    assert second is not None
    assert second.refresh_token != first_refresh.refresh_token
    assert second.refresh_token == xero.current_refresh_token
    assert len(xero.state.calls("POST", "/connect/token")) == 2


def test_revoked_refresh_token_raises_auth_revoked(sandbox: tuple[XeroSandbox, SandboxServer]) -> None:
    xero, server = sandbox
    xero.revoke_refresh_tokens()
    with pytest.raises(AuthRevoked):
        adapter(xero, server.url).find_customers(name="x")


def test_minute_limit_429_surfaces_as_rate_limited_with_retry_after() -> None:
    xero, server = serve(XeroSandbox(minute_limit=2))
    try:
        books = adapter(xero, server.url)
        books.find_customers(name="a")
        books.find_customers(name="b")
        with pytest.raises(RateLimited) as info:
            books.find_customers(name="c")
        assert info.value.problem == "minute"
        assert info.value.retry_after and info.value.retry_after > 0
    finally:
        server.stop()


def test_quotes_in_lookup_values_are_escaped_for_where(sandbox: tuple[XeroSandbox, SandboxServer]) -> None:
    xero, server = sandbox
    xero.seed_contact(Name='The "Best" Co', TaxNumber='AB"1')
    found = adapter(xero, server.url).find_customers(tax_number='AB"1')
    assert [c.name for c in found] == ['The "Best" Co']


def _company(n: int, **kw: object) -> Customer:
    return acme(ref=CrmRef(crm="hubspot", object_type="company", object_id=str(n)), name=f"Firm {n} Ltd", **kw)


def test_bulk_create_puts_fifty_a_call_and_keeps_each_elements_error(
    sandbox: tuple[XeroSandbox, SandboxServer],
) -> None:
    xero, server = sandbox
    books = adapter(xero, server.url)
    xero.seed_contact(Name="Firm 3 Ltd")
    # When 60 contacts are created in bulk, one of which has a name Xero already holds
    batch = [(_company(n, email=f"ap@f{n}.test", tax_number=f"T{n}"), f"hubspot-company-{n}") for n in range(60)]
    results = books.create_customers(batch, idempotency_key="bulk-1")
    # Then two PUTs were made, 59 were created with their stamps, and the duplicate is a Conflict of its own
    assert len(xero.state.calls("PUT", "/api.xro/2.0/Contacts")) == 2
    assert isinstance(results[3], Conflict)
    created = [r for r in results if not isinstance(r, Exception)]
    assert len(created) == 59
    assert {c.number for c in created} == {f"hubspot-company-{n}" for n in range(60) if n != 3}
    # And replaying the same batch (a crashed worker's retry) creates nothing new
    again = books.create_customers(batch, idempotency_key="bulk-1")
    assert [getattr(r, "id", None) for r in again] == [getattr(r, "id", None) for r in results]
    assert len([c for c in xero.contacts() if c.get("ContactStatus") == "ACTIVE"]) == 60


def test_bulk_lookup_reads_a_small_organisation_whole_and_filters_a_large_one(
    sandbox: tuple[XeroSandbox, SandboxServer],
) -> None:
    xero, server = sandbox
    books = adapter(xero, server.url)
    for n in range(30):
        xero.seed_contact(Name=f"Seeded {n} Ltd", EmailAddress=f"s{n}@seed.test", TaxNumber=f"TX{n}")
    xero.seed_contact(Name="Archived Ltd", EmailAddress="s1@seed.test", ContactStatus="ARCHIVED")
    numbers = [f"hubspot-company-{n}" for n in range(200)]
    # When many values are looked up in a small organisation
    before = len(xero.state.calls("GET", "/api.xro/2.0/Contacts"))
    found = books.find_customers_any(numbers=numbers, emails=["S1@seed.test"], tax_numbers=["TX2"], names=["Seeded 3"])
    # Then one page of every active contact was read (cheaper than the filters), archived ones left out
    assert len(xero.state.calls("GET", "/api.xro/2.0/Contacts")) - before == 1
    assert len(found) == 30
    assert "Archived Ltd" not in {c.name for c in found}
    # When few values are looked up in an organisation of several pages
    books.BULK_PAGE_SIZE = 10  # type: ignore[misc]
    before = len(xero.state.calls("GET", "/api.xro/2.0/Contacts"))
    few = books.find_customers_any(
        numbers=numbers[:5], emails=["s1@seed.test"], tax_numbers=["TX2"], names=["Seeded 3"]
    )
    calls = xero.state.calls("GET", "/api.xro/2.0/Contacts")[before:]
    # Then one OR-ed filter asked for exactly those (it fits one call), archived ones left out
    assert len(calls) == 1
    assert "ContactNumber" in calls[0].query
    names = {c.name for c in few}
    assert {"Seeded 1 Ltd", "Seeded 2 Ltd", "Seeded 3 Ltd"} <= names
    assert "Archived Ltd" not in names


def test_bulk_lookup_of_many_values_in_a_large_organisation_pages_or_filters_whichever_is_fewer(
    sandbox: tuple[XeroSandbox, SandboxServer],
) -> None:
    xero, server = sandbox
    books = adapter(xero, server.url)
    for n in range(30):
        xero.seed_contact(Name=f"Seeded {n} Ltd", ContactNumber=f"hubspot-company-{n}")
    numbers = [f"hubspot-company-{n}" for n in range(200)]
    books.BULK_PAGE_SIZE = 10  # type: ignore[misc]  # 3 pages: fewer than the filters' calls
    before = len(xero.state.calls("GET", "/api.xro/2.0/Contacts"))
    found = books.find_customers_any(numbers=numbers)
    assert len(xero.state.calls("GET", "/api.xro/2.0/Contacts")) - before == 3
    assert len(found) == 30
    books.BULK_PAGE_SIZE = 1  # type: ignore[misc]  # 30 pages: more than the filters' calls
    before = len(xero.state.calls("GET", "/api.xro/2.0/Contacts"))
    found = books.find_customers_any(numbers=numbers)
    calls = xero.state.calls("GET", "/api.xro/2.0/Contacts")[before:]
    assert 1 < len(calls) < 30
    assert all("ContactNumber" in c.query for c in calls[1:])
    assert len(found) == 30


def test_an_address_with_only_a_city_and_country_is_read() -> None:
    from closeloop.vendors.xero.mapping import to_customer  # noqa: PLC0415

    contact = {
        "ContactID": "c-1",
        "Name": "Cityonly Ltd",
        "Addresses": [
            {"AddressType": "POBOX"},
            {"AddressType": "STREET", "City": "Leeds", "Country": "GB"},
        ],
    }
    fields = to_customer(contact).fields
    assert (fields["address.city"], fields["address.country"], fields["address.line1"]) == ("Leeds", "GB", "")
