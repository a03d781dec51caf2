"""ContactSync under field rules: only CRM-owned fields reach accounting; a CRM edit of another is a conflict."""

from __future__ import annotations

from closeloop.models import Customer
from closeloop.rules import FieldRules
from closeloop.sync.contacts import ContactSync
from tests.fakes import FakeAccounting, FakeCrm, MemoryStore, events_for, ref

FINANCE_OWNS_NAME = """
customer:
  direction: both
  source_of_truth: crm
  fields:
    name: accounting
"""


def test_a_crm_rename_of_a_name_finance_owns_is_a_conflict_once_and_never_written() -> None:
    # Given a synced company, and rules that give its legal name to finance
    acme = Customer(ref=ref("company", "1"), name="Acme Ltd", email="ap@acme.test")
    crm = FakeCrm(customers={acme.ref: acme})
    books, store = FakeAccounting(), MemoryStore()
    sync = ContactSync(crm, books, store, owner="w", rules=FieldRules.load(FINANCE_OWNS_NAME))
    sync.sync(acme.ref, events_for(acme.ref))
    # When sales renames it in the CRM, twice delivered
    crm.customers[acme.ref] = acme.model_copy(update={"name": "ACME Rockets"})
    books.calls.clear()
    first = sync.sync(acme.ref, events_for(acme.ref))
    second = sync.sync(acme.ref, events_for(acme.ref))
    # Then accounting keeps its name, nothing was written, and the conflict is audited once with both values
    assert [r.name for r in books.records.values()] == ["Acme Ltd"]
    assert "update" not in books.calls
    assert (first.action, second.action) == ("unchanged", "unchanged")
    conflicts = [a for a in store.list_audit(acme.ref) if a.action == "conflict"]
    assert len(conflicts) == 1
    assert conflicts[0].changes == {"name": {"before": "Acme Ltd", "after": "ACME Rockets"}}
    # And the CRM record is flagged once, naming the field
    ((flagged, values),) = crm.property_writes
    assert flagged == acme.ref
    assert "name" in values["closeloop_sync_issue"]


def test_fields_the_crm_owns_still_flow_beside_a_held_one() -> None:
    acme = Customer(ref=ref("company", "1"), name="Acme Ltd", email="ap@acme.test")
    crm = FakeCrm(customers={acme.ref: acme})
    books, store = FakeAccounting(), MemoryStore()
    sync = ContactSync(crm, books, store, owner="w", rules=FieldRules.load(FINANCE_OWNS_NAME))
    sync.sync(acme.ref, events_for(acme.ref))
    crm.customers[acme.ref] = acme.model_copy(update={"name": "ACME Rockets", "email": "billing@acme.test"})
    outcome = sync.sync(acme.ref, events_for(acme.ref))
    record = next(iter(books.records.values()))
    assert (outcome.action, outcome.detail) == ("updated", "email")
    assert (record.name, record.email) == ("Acme Ltd", "billing@acme.test")
