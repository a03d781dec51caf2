"""Backfill for every pair: messy overlapping records on both sides end linked once, with no duplicate.

The CRM's companies exist before Closeloop is switched on (their webhooks are held back until after the
backfill); finance already has some of them under other spellings. A dry run must only read; the real run
links what matches, creates the rest, and the webhooks that then arrive find everything linked already.
"""

from __future__ import annotations

import pytest

from closeloop import runtime
from closeloop.sync.backfill import ContactBackfill
from closeloop.sync.matching import Matcher
from closeloop_local.pairs import Pair

pytestmark = pytest.mark.e2e
READ_POSTS = ("token", "batch", "query", "search", "read", "filter", "login")


def backfill() -> ContactBackfill:
    runtime.reset()
    return ContactBackfill(
        runtime.crm(),
        runtime.accounting(),
        runtime.store(),
        runtime.contact_sync(),
        Matcher,
        pause=lambda seconds, why: None,
    )


def writes(calls: list[object]) -> list[str]:
    """Requests that could change vendor state (POSTs that only read, like searches and token grants, aside)."""
    found = []
    for call in calls:
        method, path = call.method, call.path.lower()  # type: ignore[attr-defined]
        if method in ("PUT", "PATCH", "DELETE") or (method == "POST" and not any(p in path for p in READ_POSTS)):
            found.append(f"{method} {call.path}")  # type: ignore[attr-defined]
    return found


def test_a_backfill_of_messy_overlapping_records_links_once_and_duplicates_nothing(pair: Pair) -> None:
    # Given finance's customers, some of them the CRM's companies under other spellings
    acme = pair.books.seed_customer("Acme Limited", email="accounts@acme-rockets.test")
    globex = pair.books.seed_customer("Globex Corporation", email="ap@globex.test")
    pair.books.seed_customer("Soylent Foods Ltd", email="ap@soylent.test")  # finance only
    # And the CRM's companies (created before the sync was switched on: their webhooks are not delivered yet)
    refs = {
        "acme": pair.crm.create_company("ACME, Ltd.", email="accounts@acme-rockets.test", country="GB"),
        "globex": pair.crm.create_company("Globex Corp", email="AP@globex.test", country="GB"),
        "initech": pair.crm.create_company("Initech Inc", email="billing@initech.test", country="GB"),
        "hooli": pair.crm.create_company("Hooli Ltd", email="ap@hooli.test", country="GB"),
    }
    customers_before = {c.id: c for c in pair.books.customers()}
    crm_calls, books_calls = len(pair.crm.state.requests), len(pair.books.state.requests)
    # When a dry run plans the backfill
    planned = backfill().run(dry_run=True)
    # Then it only read: no vendor write, no mapping, no checkpoint
    assert writes(pair.crm.state.requests[crm_calls:]) == []
    assert writes(pair.books.state.requests[books_calls:]) == []
    assert {c.id for c in pair.books.customers()} == set(customers_before)
    assert all(pair.store.get_mapping(ref, pair.books.name) is None for ref in refs.values())
    plan = {e.ref: e.action for e in planned.plan}
    assert plan[refs["acme"]] == plan[refs["globex"]] == "link"
    assert plan[refs["initech"]] == plan[refs["hooli"]] == "create"
    # When the backfill runs for real
    result = backfill().run()
    # Then the two known companies are linked to finance's records, the two new ones created once
    assert pair.store.get_mapping(refs["acme"], pair.books.name).accounting_id == acme  # type: ignore[union-attr]
    assert pair.store.get_mapping(refs["globex"], pair.books.name).accounting_id == globex  # type: ignore[union-attr]
    assert result.failures == []
    names = [c.name for c in pair.books.customers() if c.active]
    assert names.count("Initech Inc") == names.count("Hooli Ltd") == 1
    assert len(names) == len(customers_before) + 2
    # And once the held-back webhooks arrive and a second backfill runs, nothing is duplicated
    pair.settle()
    again = backfill().run()
    assert again.counts.get("create", 0) == again.counts.get("link", 0) == 0
    assert len([c for c in pair.books.customers() if c.active]) == len(customers_before) + 2


def test_a_backfill_fanned_out_over_the_queue_links_once_and_duplicates_nothing(pair: Pair) -> None:
    from closeloop.models import BackfillWorkMessage  # noqa: PLC0415

    # Given finance's customer and the CRM's companies (webhooks held back), one of them the same customer
    known = pair.books.seed_customer("Umbrella Limited", email="ap@umbrella.test")
    refs = [
        pair.crm.create_company("UMBRELLA LTD", email="ap@umbrella.test", country="GB"),
        pair.crm.create_company("Wayne Logistics Ltd", email="ap@wayne-logistics.test", country="GB"),
        pair.crm.create_company("Stark Tooling Ltd", email="ap@stark-tooling.test", country="GB"),
    ]
    before = len([c for c in pair.books.customers() if c.active])
    # When the records are queued in chunks for the stack's contact worker (as `--fan-out` does), twice
    runtime.reset()
    for _ in range(2):
        for start in range(0, len(refs), 2):
            message = BackfillWorkMessage(run_id="fan-out-test", refs=refs[start : start + 2])
            runtime.queues().send("contacts", message.model_dump_json())
    pair.stack.drain(timeout=90)
    # Then every company is linked once: the known one to finance's record, the others created once
    assert pair.store.get_mapping(refs[0], pair.books.name).accounting_id == known  # type: ignore[union-attr]
    assert all(pair.store.get_mapping(r, pair.books.name) is not None for r in refs)
    assert len([c for c in pair.books.customers() if c.active]) == before + 2
