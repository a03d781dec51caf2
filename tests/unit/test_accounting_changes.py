"""AccountingChangeSync: accounting-side edits land or are flagged as the field rules say; echoes never bounce."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from closeloop.errors import NotFound, ValidationFailed
from closeloop.models import AccountingEvent, AccountingWorkMessage, CrmRef, Customer
from closeloop.rules import FieldRules
from closeloop.sync.accounting_changes import AccountingChangeSync, handle_accounting_messages
from closeloop.sync.contacts import ContactSync
from closeloop.sync.flags import SYNC_ISSUE
from tests.fakes import FakeAccounting, MemoryStore, WritableCrm, events_for, ref

FINANCE_OWNS_EMAIL = """
customer:
  direction: both
  source_of_truth: crm
  fields:
    email: accounting
"""


def synced(
    rules: str | None = None,
) -> tuple[AccountingChangeSync, ContactSync, WritableCrm, FakeAccounting, MemoryStore]:
    acme = Customer(ref=ref("company", "1"), name="Acme Ltd", email="ap@acme.test", phone="+44 1")
    crm = WritableCrm(customers={acme.ref: acme})
    books, store = FakeAccounting(), MemoryStore()
    loaded = FieldRules.load(rules)
    contacts = ContactSync(crm, books, store, owner="w", rules=loaded)
    contacts.sync(acme.ref, events_for(acme.ref))
    return AccountingChangeSync(crm, books, store, loaded), contacts, crm, books, store


def event(books: FakeAccounting, n: int = 0) -> AccountingEvent:
    (record_id,) = books.records
    return AccountingEvent(
        system=books.name,
        resource="customer",
        resource_id=record_id,
        kind="changed",
        occurred_at=datetime(2026, 12, 1, 12, n, tzinfo=UTC),
        dedupe_key=f"books:customer:{record_id}:{n}",
    )


def edit_in_accounting(books: FakeAccounting, **values: str) -> None:
    (record_id,) = books.records
    current = books.records[record_id]
    books.records[record_id] = current.model_copy(
        update={**{k: v for k, v in values.items() if k in ("name", "email")}, "fields": {**current.fields, **values}}
    )


def test_the_echo_of_our_own_write_changes_nothing() -> None:
    changes, _, crm, books, store = synced()
    outcome = changes.sync(event(books))
    assert outcome.action == "unchanged"
    assert (crm.field_writes, crm.property_writes) == ([], [])
    assert [a.action for a in store.list_audit(ref("company", "1"))] == ["created"]


def test_an_accounting_edit_of_a_crm_owned_field_is_a_conflict_recorded_once_and_flagged() -> None:
    # Given the default rules (the CRM owns contact details), finance renames the customer
    changes, _, crm, books, store = synced()
    edit_in_accounting(books, name="Acme Rockets Limited")
    # When the notification arrives, twice
    first = changes.sync(event(books, 0))
    second = changes.sync(event(books, 1))
    # Then nothing was written to the CRM's name, the conflict is audited once with both values, and flagged
    assert (first.action, first.fields, second.action) == ("conflict", ("name",), "unchanged")
    assert crm.field_writes == []
    conflicts = [a for a in store.list_audit(ref("company", "1")) if a.action == "conflict"]
    assert len(conflicts) == 1
    assert conflicts[0].changes == {"name": {"before": "Acme Ltd", "after": "Acme Rockets Limited"}}
    ((flagged, values),) = crm.property_writes
    assert flagged == ref("company", "1")
    assert "name" in values[SYNC_ISSUE.name]


def test_an_accounting_edit_of_an_accounting_owned_field_lands_in_the_crm_and_does_not_bounce() -> None:
    # Given rules that give the billing email to finance
    changes, contacts, crm, books, store = synced(FINANCE_OWNS_EMAIL)
    edit_in_accounting(books, email="billing@acme.test")
    # When the notification arrives
    outcome = changes.sync(event(books))
    # Then the CRM holds the new email, audited, and not flagged
    assert (outcome.action, outcome.fields) == ("applied", ("email",))
    assert crm.customers[ref("company", "1")].email == "billing@acme.test"
    assert crm.property_writes == []
    # And the CRM's notification of that write sends nothing back to accounting (no loop)
    books.calls.clear()
    back = contacts.sync(ref("company", "1"), events_for(ref("company", "1")))
    assert back.action == "unchanged"
    assert "update" not in books.calls


def test_changes_of_unlinked_customers_and_of_invoices_are_left_alone() -> None:
    changes, _, crm, books, _ = synced()
    stranger = books.add("Walk-in Customer")
    unlinked = AccountingEvent(
        system="books",
        resource="customer",
        resource_id=stranger.id,
        kind="created",
        occurred_at=datetime(2026, 12, 1, tzinfo=UTC),
        dedupe_key="x",
    )
    invoice = unlinked.model_copy(update={"resource": "invoice"})
    assert changes.sync(unlinked).action == "skipped"
    assert changes.sync(invoice).action == "skipped"
    assert (crm.field_writes, crm.property_writes) == ([], [])


def refuse_writes(crm: WritableCrm, error: Exception) -> None:
    def refuse(ref_: CrmRef, values: Mapping[str, str]) -> list[str]:
        raise error

    crm.update_customer_fields = refuse  # type: ignore[method-assign,assignment]


def test_an_accounting_change_the_crm_refuses_for_good_is_kept_as_a_failed_sync() -> None:
    # Given finance owns the billing email, and the CRM refuses the new one for good
    changes, _, crm, books, store = synced(FINANCE_OWNS_EMAIL)
    edit_in_accounting(books, email="billing@acme.test")

    refuse_writes(crm, ValidationFailed("email: rejected by the CRM", vendor="crm", status=400))
    # When the notification arrives
    outcome = changes.sync(event(books))
    # Then it is not lost: the linked record holds a failed sync with the reason, for the month's report
    assert (outcome.action, outcome.ref) == ("failed", ref("company", "1"))
    failure = store.get_failed_sync(ref("company", "1"))
    assert failure is not None
    assert (failure.error_type, failure.source_event) == ("ValidationFailed", event(books).dedupe_key)
    assert "rejected by the CRM" in failure.reason
    assert "failed" in [a.action for a in store.list_audit(ref("company", "1"))]


def test_a_failed_change_in_a_message_does_not_stop_the_next_one_or_retry_the_message() -> None:
    # Given a message whose first event concerns a record the CRM refuses for good
    changes, _, crm, books, store = synced(FINANCE_OWNS_EMAIL)
    edit_in_accounting(books, email="billing@acme.test")
    refused = event(books)
    refuse_writes(crm, NotFound("gone", vendor="crm", status=404))
    stranger = refused.model_copy(update={"resource_id": books.add("Walk-in").id, "dedupe_key": "y"})
    message = AccountingWorkMessage(events=[refused, stranger]).model_dump_json()
    # When the worker handles it
    failed = handle_accounting_messages(changes, [("m1", message)])
    # Then the message is not retried (the failure is kept instead) and the failed sync is recorded
    assert failed == []
    assert store.get_failed_sync(ref("company", "1")) is not None
