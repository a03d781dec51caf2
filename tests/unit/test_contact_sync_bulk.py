"""ContactSync.sync_many: the bulk path matches with the same rules as one-by-one, creates in batches."""

from __future__ import annotations

from closeloop.errors import Busy, RetriableError, Unavailable
from closeloop.models import Customer
from closeloop.sync.contacts import ContactSync, Outcome, external_number
from tests.fakes import FakeAccounting, FakeCrm, MemoryStore, events_for, ref


def company(n: int, **kw: object) -> Customer:
    values: dict[str, object] = {"ref": ref("company", str(n)), "name": f"Company {n} Ltd", "email": f"ap@c{n}.test"}
    values.update(kw)
    return Customer(**values)  # type: ignore[arg-type]


def setup(*customers: Customer) -> tuple[ContactSync, FakeCrm, FakeAccounting, MemoryStore]:
    crm = FakeCrm(customers={c.ref: c for c in customers})
    books = FakeAccounting()
    store = MemoryStore()
    return ContactSync(crm, books, store, owner="w1"), crm, books, store


def outcomes(results: dict[object, Outcome | RetriableError]) -> dict[str, str]:
    return {str(k): (v.action if isinstance(v, Outcome) else type(v).__name__) for k, v in results.items()}


def test_a_burst_of_new_companies_costs_one_lookup_and_one_batched_create() -> None:
    # Given 40 companies unknown to accounting
    customers = [company(n) for n in range(40)]
    sync, _, books, store = setup(*customers)
    # When they are synced in one batch
    results = sync.sync_many({c.ref: events_for(c.ref) for c in customers})
    # Then each was created once, stamped, mapped and audited, with one bulk read and one bulk write
    assert set(outcomes(results).values()) == {"created"}
    assert books.calls == ["find_any", "create_many"]
    assert sorted(r.number for r in books.records.values()) == sorted(external_number(c.ref) for c in customers)
    assert all(store.get_mapping(c.ref, "books") is not None for c in customers)
    assert [a.action for a in store.list_audit(customers[0].ref)] == ["created"]
    # And a second delivery of the same batch changes nothing and calls nothing
    books.calls.clear()
    again = sync.sync_many({c.ref: events_for(c.ref) for c in customers})
    assert set(outcomes(again).values()) == {"unchanged"}
    assert books.calls == []


def test_bulk_matching_follows_the_one_by_one_order_stamp_tax_email_name() -> None:
    # Given accounting records that match four of five new companies, each by a different rule
    customers = [company(1, tax_number="GB123"), company(2), company(3, name="Gamma Trading Limited"), company(4)]
    customers.append(company(5))
    sync, _, books, store = setup(*customers)
    by_tax = books.add("Finance's name for 1", tax_number="GB123")
    by_email = books.add("Finance's name for 2", email="AP@c2.test")
    by_name = books.add("GAMMA TRADING LTD")
    by_stamp = books.add("Renamed by finance", number=external_number(customers[3].ref))
    # When all five sync together
    results = sync.sync_many({c.ref: events_for(c.ref) for c in customers})
    # Then four were linked to the record their rule finds, and only the fifth was created
    assert outcomes(results) == {
        str(customers[0].ref): "matched",
        str(customers[1].ref): "matched",
        str(customers[2].ref): "matched",
        str(customers[3].ref): "matched",
        str(customers[4].ref): "created",
    }
    linked = {c.ref: store.get_mapping(c.ref, "books").accounting_id for c in customers[:4]}  # type: ignore[union-attr]
    assert linked == {
        customers[0].ref: by_tax.id,
        customers[1].ref: by_email.id,
        customers[2].ref: by_name.id,
        customers[3].ref: by_stamp.id,
    }
    assert len(books.records) == 5


def test_a_record_owned_by_another_crm_object_is_never_taken_in_bulk() -> None:
    # Given a record already mapped to company 9, and three new companies, one sharing its email
    other = company(9)
    customers = [company(1, email="shared@x.test"), company(2), company(3)]
    sync, _, books, store = setup(other, *customers)
    sync.sync(other.ref, events_for(other.ref))
    books.records[next(iter(books.records))] = next(iter(books.records.values())).model_copy(
        update={"email": "shared@x.test"}
    )
    # When the three sync in bulk
    results = sync.sync_many({c.ref: events_for(c.ref) for c in customers})
    # Then company 1 got a record of its own
    assert outcomes(results)[str(customers[0].ref)] == "created"
    assert (
        store.get_mapping(customers[0].ref, "books").accounting_id
        != store.get_mapping(other.ref, "books").accounting_id
    )  # type: ignore[union-attr]


def test_duplicate_name_refused_inside_a_batch_is_looked_up_once_and_fails_with_its_reason() -> None:
    # Given three new companies, two of which carry the same name
    customers = [company(1, name="Twin Ltd"), company(2, name="Twin Ltd"), company(3)]
    sync, _, books, store = setup(*customers)
    # When they sync together
    results = sync.sync_many({c.ref: events_for(c.ref) for c in customers})
    # Then one Twin Ltd exists, the other is a failed sync naming the conflict, and company 3 was created
    actions = outcomes(results)
    assert sorted(actions.values()) == ["created", "created", "failed"]
    assert [r.name for r in books.records.values()].count("Twin Ltd") == 1
    failed = next(c for c in customers[:2] if actions[str(c.ref)] == "failed")
    assert store.get_failed_sync(failed.ref).error_type == "Conflict"  # type: ignore[union-attr]


def test_a_contact_and_its_company_in_one_batch_make_one_customer() -> None:
    # Given a company and one of its contacts, both changed, plus two other companies
    customers = [company(1), company(2), company(3)]
    sync, crm, books, _ = setup(*customers)
    contact = ref("contact", "11")
    crm.company_of[contact] = customers[0].ref
    groups = {c.ref: events_for(c.ref) for c in customers} | {contact: events_for(contact)}
    # When the batch syncs
    results = sync.sync_many(groups)
    # Then company 1 exists once and both refs report its record
    assert len(books.records) == 3
    assert results[contact].accounting_id == results[customers[0].ref].accounting_id  # type: ignore[union-attr]


def test_a_held_lease_and_an_outage_are_retriable_per_object_not_lost() -> None:
    # Given four new companies, one being synced by another worker
    customers = [company(n) for n in range(4)]
    sync, _, books, store = setup(*customers)
    store.acquire_lease(f"customer#{customers[0].ref}", "other-worker", 120)

    # When accounting is down for the bulk read
    def down(**_: object) -> list[object]:
        raise Unavailable("503", vendor="books", status=503)

    books.find_customers_any = down  # type: ignore[method-assign,assignment]
    results = sync.sync_many({c.ref: events_for(c.ref) for c in customers})
    # Then the leased one is Busy, the others carry the outage to retry, and nothing was created
    assert isinstance(results[customers[0].ref], Busy)
    assert all(isinstance(results[c.ref], Unavailable) for c in customers[1:])
    assert books.records == {}
    # And the leases taken by this worker were released
    assert store.acquire_lease(f"customer#{customers[1].ref}", "third", 120)


def test_invalid_and_deleted_objects_in_a_batch_are_recorded_not_sent() -> None:
    customers = [company(1, name=""), company(2), company(3), company(4)]
    sync, _, books, store = setup(*customers)
    gone = ref("company", "404")
    deleted = ref("company", "5")
    groups = {c.ref: events_for(c.ref) for c in customers} | {gone: events_for(gone)}
    groups[deleted] = events_for(deleted, kind="deleted")
    results = sync.sync_many(groups)
    actions = outcomes(results)
    assert actions[str(customers[0].ref)] == "failed"
    assert "no name" in store.get_failed_sync(customers[0].ref).reason  # type: ignore[union-attr]
    assert actions[str(gone)] == "skipped"
    assert actions[str(deleted)] == "skipped"
    assert len(books.records) == 3
