"""Two-way sync for every pair, under the default field rules (the CRM owns contact details).

A CRM edit lands in accounting and its echo (the accounting system's notification of our own write) changes
nothing; finance's edit of a CRM-owned field is not copied anywhere: it is recorded once as a conflict with
both values, flagged on the CRM record, and listed in the month's report. Xero and QuickBooks notify by
signed webhook; Zoho Books, which has none, is polled.
"""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from closeloop import runtime
from closeloop.models import CrmRef
from closeloop_local.pairs import Pair

pytestmark = pytest.mark.e2e


def deliver_accounting_changes(pair: Pair) -> None:
    """Let the accounting system tell Closeloop what changed: its webhooks, or the scheduled poll."""
    if hasattr(pair.books, "flush_webhooks"):
        pair.books.flush_webhooks()  # type: ignore[attr-defined]
    else:
        pair.poll()
    pair.stack.drain(timeout=60)


def conflicts(pair: Pair, ref: CrmRef) -> list[dict[str, dict[str, str]]]:
    return [a.changes for a in pair.store.list_audit(ref) if a.action == "conflict"]


def test_edits_on_each_side_land_or_are_flagged_as_the_rules_say_and_never_bounce(pair: Pair) -> None:
    if hasattr(pair.books, "subscribe_webhooks"):
        pair.books.subscribe_webhooks(f"{pair.stack.api_url}/accounting-webhooks/{pair.books.name}")  # type: ignore[attr-defined]
    pair.poll()  # the catch-up watermarks stand before the changes below
    # Given a company synced to accounting
    ref = pair.crm.create_company("Two Way Traders Ltd", email="ap@twoway.test", country="GB")
    pair.settle()
    deliver_accounting_changes(pair)  # the echo of the create
    mapping = pair.store.get_mapping(ref, pair.books.name)
    assert mapping is not None
    runtime.reset()
    books = runtime.accounting()
    # When sales changes the phone in the CRM (the CRM owns it)
    pair.crm.update_company(ref, phone="+44 113 496 0999")
    pair.settle()
    deliver_accounting_changes(pair)  # the echo of our update
    # Then it landed in accounting, and neither write came back as a change
    current = books.get_customer(mapping.accounting_id)
    assert current is not None
    assert "496 0999" in current.fields["phone"].replace("-", " ")
    assert conflicts(pair, ref) == []
    # When finance renames the customer in accounting (a field the CRM owns), and the change is notified twice
    pair.books.edit_customer(mapping.accounting_id, name="Two Way Traders Limited")  # type: ignore[attr-defined]
    deliver_accounting_changes(pair)
    deliver_accounting_changes(pair)
    # Then nothing was copied: the CRM keeps its name, accounting keeps finance's, no loop between them
    customer = runtime.crm().resolve_customer(ref)
    assert customer is not None
    assert customer.name == "Two Way Traders Ltd"
    after = books.get_customer(mapping.accounting_id)
    assert after is not None
    assert after.name == "Two Way Traders Limited"
    # And the conflict is recorded once with both values, and flagged on the CRM record
    assert conflicts(pair, ref) == [{"name": {"before": "Two Way Traders Ltd", "after": "Two Way Traders Limited"}}]
    assert "name" in pair.crm.customer_fields(ref).get("closeloop_sync_issue", "")
    # And the month's report lists it
    result = pair.stack.invoke("ReconcileFunction", {"month": datetime.now(UTC).strftime("%Y-%m")})
    assert result["discrepancies"].get("field_conflict", 0) >= 1
    assert httpx.get(result["url"], timeout=10).status_code == 200
