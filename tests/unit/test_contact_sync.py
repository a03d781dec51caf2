"""ContactSync: create-or-match order, changed-fields-only updates, duplicates, failures, audit."""

from __future__ import annotations

import pytest

from closeloop.errors import Busy, NotFound
from closeloop.models import Address, Customer, Person
from closeloop.sync.contacts import ContactSync, external_number, normalise_name
from tests.fakes import FakeAccounting, FakeCrm, MemoryStore, events_for, ref


def make(customer: Customer, **existing: str) -> tuple[ContactSync, FakeCrm, FakeAccounting, MemoryStore]:
    crm = FakeCrm(customers={customer.ref: customer})
    books = FakeAccounting()
    store = MemoryStore()
    return ContactSync(crm, books, store, owner="w1"), crm, books, store


def acme(**kw: object) -> Customer:
    values: dict[str, object] = {"ref": ref("company", "1"), "name": "Acme Ltd", "email": "ap@acme.test"}
    values.update(kw)
    return Customer(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Acme Ltd", "acme"),
        ("ACME, Ltd.", "acme"),
        ("The Acme Company", "acme"),
        ("Müller & Söhne GmbH", "muller and sohne"),
        ("Ltd", "ltd"),
    ],
)
def test_normalise_name_ignores_case_punctuation_and_legal_suffixes(name: str, expected: str) -> None:
    assert normalise_name(name) == expected


def test_new_company_is_created_once_and_mapped_and_audited() -> None:
    # Given a company unknown to accounting
    sync, _, books, store = make(acme())
    r = ref("company", "1")
    # When it is synced twice
    first = sync.sync(r, events_for(r))
    second = sync.sync(r, events_for(r))
    # Then one record exists, stamped with our number, and the second run changed nothing
    assert first.action == "created"
    assert second.action == "unchanged"
    assert len(books.records) == 1
    record = next(iter(books.records.values()))
    assert record.number == external_number(r)
    assert store.get_mapping(r, "books") is not None
    audit = store.list_audit(r)
    assert [a.action for a in audit] == ["created"]
    assert audit[0].changes["name"] == {"before": "", "after": "Acme Ltd"}
    assert audit[0].actor == "userId:7"


def test_existing_record_is_matched_by_tax_number_before_email_and_name() -> None:
    # Given accounting holds records matching by name, by email and by tax number
    sync, _, books, store = make(acme(tax_number="GB 123 456 789"))
    books.add("Acme Limited")
    books.add("Other Name", email="ap@acme.test")
    by_tax = books.add("Acme Trading", tax_number="GB 123 456 789")
    # When the company syncs
    outcome = sync.sync(ref("company", "1"), events_for(ref("company", "1")))
    # Then the tax-number match wins, and nothing is created
    assert outcome.action == "matched"
    assert outcome.accounting_id == by_tax.id
    assert outcome.detail == "tax number"
    assert "create" not in books.calls
    assert books.records[by_tax.id].number == "crm-company-1"


def test_match_by_email_then_by_normalised_name() -> None:
    sync, _, books, _ = make(acme())
    by_email = books.add("Totally Different", email="AP@acme.test")
    assert sync.sync(ref("company", "1"), []).accounting_id == by_email.id

    sync2, _, books2, _ = make(acme(email=""))
    by_name = books2.add("ACME LIMITED")
    outcome = sync2.sync(ref("company", "1"), [])
    assert (outcome.action, outcome.accounting_id, outcome.detail) == ("matched", by_name.id, "normalised name")


def test_record_stamped_for_another_crm_object_is_never_taken() -> None:
    # Given accounting holds "Acme Ltd" already linked to another CRM company
    sync, _, books, store = make(acme(email=""))
    books.add("Acme Ltd", number="crm-company-99")
    # When company 1 (same name) syncs, the vendor refuses the duplicate name
    outcome = sync.sync(ref("company", "1"), events_for(ref("company", "1")))
    # Then it is a failed sync with a reason, not a hijack and not a loop
    assert outcome.action == "failed"
    assert books.calls.count("create") == 1
    failure = store.get_failed_sync(ref("company", "1"))
    assert failure is not None
    assert "Conflict" in failure.error_type


def test_duplicate_name_refusal_links_to_the_existing_record_with_one_lookup() -> None:
    # Given a name match that search could not see (e.g. created meanwhile), the vendor answers "duplicate"
    sync, _, books, _ = make(acme(email=""))
    original_find = books.find_customers
    hidden = books.add("Acme Ltd")
    seen = {"n": 0}

    def find(**kw: str) -> list:  # type: ignore[type-arg]
        seen["n"] += 1
        return [] if seen["n"] <= 2 else original_find(**kw)

    books.find_customers = find  # type: ignore[method-assign]
    outcome = sync.sync(ref("company", "1"), [])
    assert outcome.action == "matched"
    assert outcome.accounting_id == hidden.id
    assert books.calls.count("create") == 1


def test_crash_after_create_before_mapping_is_healed_by_the_number_stamp() -> None:
    # Given the record was created (with our stamp) but the mapping never stored
    sync, _, books, store = make(acme())
    created = books.add("Acme Ltd", number="crm-company-1")
    # When the event is retried
    outcome = sync.sync(ref("company", "1"), [])
    # Then it is found by its stamp, no second record
    assert outcome.action == "matched"
    assert outcome.detail == "external number"
    assert outcome.accounting_id == created.id
    assert len(books.records) == 1
    assert store.get_mapping(ref("company", "1"), "books") is not None


def test_update_sends_only_changed_fields_with_before_after_audit() -> None:
    sync, crm, books, store = make(acme(phone="+44 1"))
    r = ref("company", "1")
    sync.sync(r, [])
    crm.customers[r] = acme(phone="+44 2")
    books.calls.clear()
    outcome = sync.sync(r, events_for(r))
    assert outcome.action == "updated"
    assert outcome.detail == "phone"
    assert books.calls == ["get", "update"]
    assert store.list_audit(r)[-1].changes == {"phone": {"before": "+44 1", "after": "+44 2"}}


def test_contact_with_company_syncs_the_company_customer() -> None:
    company = acme(people=(Person(crm_id="5", first_name="Ann", email="ann@acme.test"),))
    sync, crm, books, store = make(company)
    crm.company_of[ref("contact", "5")] = company.ref
    outcome = sync.sync(ref("contact", "5"), [])
    assert outcome.ref == company.ref
    assert store.get_mapping(company.ref, "books") is not None
    assert store.get_mapping(ref("contact", "5"), "books") is None


def test_nameless_record_is_a_failed_sync_with_reason_and_no_vendor_call() -> None:
    sync, _, books, store = make(acme(name="  "))
    outcome = sync.sync(ref("company", "1"), events_for(ref("company", "1")))
    assert outcome.action == "failed"
    assert books.calls == []
    failure = store.get_failed_sync(ref("company", "1"))
    assert failure is not None
    assert "no name" in failure.reason


def test_a_later_successful_sync_clears_the_failed_record() -> None:
    sync, crm, _, store = make(acme(email="not-an-email"))
    sync.sync(ref("company", "1"), [])
    assert store.get_failed_sync(ref("company", "1")) is not None
    crm.customers[ref("company", "1")] = acme()
    sync.sync(ref("company", "1"), [])
    assert store.get_failed_sync(ref("company", "1")) is None


def test_busy_customer_raises_retriable_and_touches_nothing() -> None:
    sync, _, books, store = make(acme())
    store.acquire_lease("customer#crm/company/1", "other-worker", 60)
    with pytest.raises(Busy):
        sync.sync(ref("company", "1"), [])
    assert books.calls == []


def test_deletions_are_audited_not_propagated() -> None:
    sync, _, books, store = make(acme())
    outcome = sync.sync(ref("company", "1"), events_for(ref("company", "1"), kind="deleted"))
    assert outcome.action == "skipped"
    assert books.calls == []
    assert store.list_audit(ref("company", "1"))[0].action == "ignored"


def test_object_gone_from_crm_is_skipped() -> None:
    sync, crm, books, _ = make(acme())
    crm.customers.clear()
    assert sync.sync(ref("company", "1"), []).action == "skipped"
    assert books.calls == []


def test_mapped_record_deleted_in_accounting_is_matched_or_recreated() -> None:
    sync, crm, books, store = make(acme())
    r = ref("company", "1")
    sync.sync(r, [])
    books.records.clear()
    crm.customers[r] = acme(phone="1")
    outcome = sync.sync(r, [])
    assert outcome.action == "created"
    assert len(books.records) == 1


def test_address_changes_are_one_field_each() -> None:
    sync, crm, _, store = make(acme(address=Address(city="Leeds")))
    r = ref("company", "1")
    sync.sync(r, [])
    crm.customers[r] = acme(address=Address(city="York", country="GB"))
    outcome = sync.sync(r, [])
    assert set(outcome.detail.split(",")) == {"address.city", "address.country"}


def test_fatal_vendor_error_is_recorded_as_failed_sync() -> None:
    sync, crm, _, store = make(acme())

    def boom(r: object) -> None:
        raise NotFound("gone", vendor="crm", status=404)

    crm.resolve_customer = boom  # type: ignore[assignment, method-assign]
    outcome = sync.sync(ref("company", "1"), [])
    assert outcome.action == "failed"
    assert store.get_failed_sync(ref("company", "1")) is not None


def test_first_link_fills_gaps_but_keeps_what_finance_entered() -> None:
    # Given finance entered the customer under its legal name with a billing email, and no phone
    sync, crm, books, store = make(acme(name="Acme", email="ann@acme.test", phone="+44 1"))
    existing = books.add("Acme Limited", email="billing@acme.test")
    # When the CRM company links to it by normalised name
    outcome = sync.sync(ref("company", "1"), [])
    # Then the name and email stay finance's; the phone the CRM knows is filled in
    record = books.records[existing.id]
    assert outcome.action == "matched"
    assert (record.name, record.email, record.fields["phone"]) == ("Acme Limited", "billing@acme.test", "+44 1")
    # And a later CRM change to the email does propagate
    crm.customers[ref("company", "1")] = acme(name="Acme", email="ap@acme.test", phone="+44 1")
    sync.sync(ref("company", "1"), [])
    assert books.records[existing.id].email == "ap@acme.test"
