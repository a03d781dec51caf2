"""Recurring lines -> one repeating schedule per deal and frequency (closeloop.sync.recurring): off the one-off
invoice, exactly once under redelivery, crash and lost answers, validated before anything is made, ended when
the contract ends early, extended when it is renewed, and written back to the deal."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from closeloop.models import Deal, LineItem
from closeloop.ports import IdMapping
from closeloop.sync.invoices import DealSync
from closeloop.sync.recurring import (
    RecurringFlow,
    SchedulePolicy,
    add_periods,
    parse_schedule_reference,
    schedule_reference,
    schedule_system,
)
from tests.deal_sync_support import DEAL, setup, won_deal
from tests.fakes import FakeBooks, FakeDealCrm, MemoryStore, events_for

START = date(2026, 12, 1)
ONE_OFF = LineItem(crm_id="1", name="Anvil", sku="ANV-1", quantity=Decimal(3), unit_price=Decimal("99.50"))
SUPPORT = LineItem(
    crm_id="9",
    name="Support",
    sku="SVC-SETUP",
    quantity=Decimal(1),
    unit_price=Decimal("100.00"),
    recurring_frequency="monthly",
    recurring_start=START,
    recurring_periods=12,
)


def recurring_deal(*lines: LineItem, **kw: object) -> Deal:
    return won_deal(line_items=lines or (ONE_OFF, SUPPORT), amount=Decimal("398.50"), **kw)


def wired(deal: Deal | None = None) -> tuple[DealSync, FakeDealCrm, FakeBooks, MemoryStore, RecurringFlow]:
    sync, crm, books, store = setup(deal or recurring_deal())
    clock = lambda: datetime(2026, 11, 20, tzinfo=UTC)  # noqa: E731
    flow = RecurringFlow(crm, books, books, store, SchedulePolicy(invoices=sync.policy), owner="w", clock=clock)
    sync.flows = (flow,)
    return sync, crm, books, store, flow


def change_lines(crm: FakeDealCrm, *lines: LineItem, **kw: object) -> None:
    crm.deals[DEAL.object_id] = crm.deals[DEAL.object_id].model_copy(update={"line_items": lines, **kw})


def test_a_won_deal_gets_one_invoice_without_its_recurring_line_and_one_schedule() -> None:
    sync, crm, books, store, _ = wired()
    outcome = sync.sync(DEAL, events_for(DEAL))
    assert outcome.action == "created"
    (invoice,) = books.invoices.values()
    assert [line.item_code for line in books.drafts[invoice.id].lines] == ["ANV-1"]
    assert crm.deal_properties[DEAL.object_id]["closeloop_sync_issue"] == ""  # 298.50 == 398.50 - 100
    (schedule,) = books.schedules.values()
    draft = books.schedule_drafts[schedule.id]
    assert (draft.frequency, draft.start, draft.end) == ("monthly", START, date(2027, 11, 1))  # 12 invoices
    assert draft.reference == "crm-deal-3000001/monthly"
    assert draft.customer_id == invoice.customer_id and draft.currency == "NZD" and draft.status == "DRAFT"
    assert [(li.item_code, li.unit_amount, li.tax_type) for li in draft.lines] == [
        ("SVC-SETUP", Decimal("100.00"), "OUTPUT2")
    ]
    written = crm.deal_properties[DEAL.object_id]
    assert written["closeloop_schedule_ids"] == schedule.id
    assert written["closeloop_next_invoice_date"] == "2026-12-01"
    assert written["closeloop_annual_value"] == "1200.00"
    assert [a.action for a in store.list_audit(DEAL) if a.system == "books"][-1] == "scheduled"


def test_redelivery_makes_no_second_schedule_and_writes_nothing_again() -> None:
    sync, crm, books, store, _ = wired()
    sync.sync(DEAL, events_for(DEAL))
    writes = crm.write_calls
    assert sync.sync(DEAL, events_for(DEAL)).action == "unchanged"
    assert len(books.schedules) == 1 and books.calls.count("create_schedule") == 1
    assert crm.write_calls == writes


def test_a_crash_after_the_create_is_healed_by_the_reference() -> None:
    sync, crm, books, store, _ = wired(recurring_deal(SUPPORT))  # no one-off line: no invoice at all
    books.fail_after_create = True
    with pytest.raises(RuntimeError):
        sync.sync(DEAL, events_for(DEAL))
    assert store.get_mapping(DEAL, schedule_system("books", "monthly")) is None
    store.leases.clear()
    assert sync.sync(DEAL, events_for(DEAL)).action == "skipped"  # no one-off line to invoice
    assert len(books.schedules) == 1 and books.invoices == {}
    assert store.get_mapping(DEAL, schedule_system("books", "monthly")) is not None
    assert "linked" in [a.action for a in store.list_audit(DEAL)]


def test_a_lost_answer_is_retried_with_the_same_key_and_makes_one_schedule() -> None:
    sync, crm, books, store, flow = wired(recurring_deal(SUPPORT))
    deal = crm.deals[DEAL.object_id]
    real_create = books.create_schedule
    answers: list[str] = []

    def lost(draft, *, idempotency_key):  # type: ignore[no-untyped-def]
        real_create(draft, idempotency_key=idempotency_key)
        answers.append(idempotency_key)
        raise TimeoutError("the answer was lost")

    books.create_schedule = lost  # type: ignore[method-assign]
    books.find_schedule = lambda reference: None  # type: ignore[method-assign]  # a lagging search index
    with pytest.raises(TimeoutError):
        flow.follow(deal, "C1", None)
    books.create_schedule = real_create  # type: ignore[method-assign]
    flow.follow(deal, "C1", None)
    assert len(books.schedules) == 1
    assert books.keys[answers[0]] in books.schedules


def test_a_recurring_line_without_a_term_fails_the_deal_naming_it_and_nothing_is_made() -> None:
    no_term = SUPPORT.model_copy(update={"recurring_periods": None})
    sync, crm, books, store, _ = wired(recurring_deal(ONE_OFF, no_term))
    outcome = sync.sync(DEAL, events_for(DEAL))
    assert outcome.action == "failed" and "'Support' has no term" in outcome.detail
    assert books.schedules == {} and books.invoices == {}  # the one-off invoice is not made either
    failure = store.get_failed_sync(DEAL)
    assert failure is not None and "has no term" in failure.reason


def test_a_recurring_line_with_an_unknown_sku_fails_before_any_schedule() -> None:
    unknown = SUPPORT.model_copy(update={"sku": "NOPE", "recurring_frequency": "annual", "crm_id": "8"})
    sync, crm, books, store, _ = wired(recurring_deal(ONE_OFF, SUPPORT, unknown))
    outcome = sync.sync(DEAL, events_for(DEAL))
    assert outcome.action == "failed" and "unknown SKU 'NOPE'" in outcome.detail
    assert books.schedules == {}  # the valid monthly one was not made either
    assert books.invoices == {}


def test_one_schedule_per_frequency() -> None:
    yearly = SUPPORT.model_copy(
        update={"crm_id": "10", "name": "Licence", "recurring_frequency": "annual", "recurring_periods": 3}
    )
    sync, crm, books, store, _ = wired(recurring_deal(ONE_OFF, SUPPORT, yearly))
    sync.sync(DEAL, events_for(DEAL))
    sync.sync(DEAL, events_for(DEAL))
    by_frequency = {d.frequency: d for d in books.schedule_drafts.values()}
    assert set(by_frequency) == {"monthly", "annual"} and len(books.schedules) == 2
    assert by_frequency["annual"].end == date(2028, 12, 1)  # 3 yearly invoices: 2026, 2027, 2028
    assert crm.deal_properties[DEAL.object_id]["closeloop_annual_value"] == "1300.00"  # 12 x 100 + 100


def test_removing_the_recurring_line_ends_the_schedule() -> None:
    sync, crm, books, store, _ = wired()
    sync.sync(DEAL, events_for(DEAL))
    (schedule_id,) = books.schedules
    change_lines(crm, ONE_OFF)
    sync.sync(DEAL, events_for(DEAL))
    assert books.schedules[schedule_id].status == "ended"
    assert crm.deal_properties[DEAL.object_id]["closeloop_schedule_ids"] == ""
    sync.sync(DEAL, events_for(DEAL))
    assert books.calls.count("end_schedule") == 1  # ended once


def test_a_cancelled_contract_ends_the_schedule() -> None:
    sync, crm, books, store, _ = wired()
    sync.sync(DEAL, events_for(DEAL))
    (schedule_id,) = books.schedules
    change_lines(crm, ONE_OFF, SUPPORT, is_won=False, stage="closedlost")
    sync.sync(DEAL, events_for(DEAL))
    assert books.schedules[schedule_id].status == "ended"
    assert [a.detail for a in store.list_audit(DEAL) if a.action == "ended"] == ["the deal is no longer won"]


def test_a_cancelled_all_recurring_deal_ends_its_schedule() -> None:
    sync, crm, books, store, _ = wired(recurring_deal(SUPPORT))
    sync.sync(DEAL, events_for(DEAL))
    (schedule_id,) = books.schedules
    del crm.deals[DEAL.object_id]
    sync.sync(DEAL, events_for(DEAL))
    assert books.schedules[schedule_id].status == "ended"


def test_a_renewal_extends_the_schedule_once() -> None:
    sync, crm, books, store, _ = wired()
    sync.sync(DEAL, events_for(DEAL))
    (schedule_id,) = books.schedules
    change_lines(crm, ONE_OFF, SUPPORT.model_copy(update={"recurring_periods": 24}))
    sync.sync(DEAL, events_for(DEAL))
    sync.sync(DEAL, events_for(DEAL))
    assert books.schedules[schedule_id].end_date == date(2028, 11, 1)
    assert books.calls.count("extend_schedule") == 1 and len(books.schedules) == 1


def test_a_contract_cut_short_to_an_end_that_has_passed_ends_the_schedule() -> None:
    # Given a 12-month schedule from 1 December 2026 (the flow's clock reads 20 November 2026)
    sync, crm, books, store, flow = wired()
    sync.sync(DEAL, events_for(DEAL))
    (schedule_id,) = books.schedules
    # When the contract is cut to one month while that month is still ahead: a person is told, nothing ends
    change_lines(crm, ONE_OFF, SUPPORT.model_copy(update={"recurring_periods": 1}))
    sync.sync(DEAL, events_for(DEAL))
    assert books.schedules[schedule_id].status == "active" and "end_schedule" not in books.calls
    # When the clock passes that end and the deal is synced again, the schedule is ended, once
    flow.clock = lambda: datetime(2027, 1, 5, tzinfo=UTC)
    sync.sync(DEAL, events_for(DEAL))
    sync.sync(DEAL, events_for(DEAL))
    assert books.schedules[schedule_id].status == "ended" and books.calls.count("end_schedule") == 1
    assert any(r.action == "ended" and "contract ended 2026-12-01" in r.detail for r in store.list_audit(DEAL))


def test_a_schedule_ended_in_accounting_is_flagged_not_made_again() -> None:
    sync, crm, books, store, _ = wired()
    sync.sync(DEAL, events_for(DEAL))
    (schedule_id,) = books.schedules
    books.schedules[schedule_id] = books.schedules[schedule_id].model_copy(update={"status": "ended"})
    sync.sync(DEAL, events_for(DEAL))
    assert len(books.schedules) == 1
    assert any("ended in accounting" in a.detail for a in store.list_audit(DEAL) if a.action == "flagged")


def test_the_schedule_reference_names_the_deal_and_frequency() -> None:
    assert parse_schedule_reference("crm", schedule_reference(DEAL, "quarterly")) == (DEAL, "quarterly")
    assert parse_schedule_reference("hubspot", "hubspot-deal-3000001 Big deal") is None  # a one-off invoice
    assert parse_schedule_reference("pipedrive", "hubspot-deal-3000001/monthly") is None
    assert add_periods(date(2026, 1, 31), "monthly", 1) == date(2026, 2, 28)
    assert add_periods(date(2026, 1, 1), "fortnightly", 2) == date(2026, 1, 29)


def test_an_invoice_the_schedule_generates_shows_on_the_deal_through_the_poller_without_a_second_mapping() -> None:
    from closeloop.sync.payments import PaymentPoller  # noqa: PLC0415
    from tests.fakes import RecordedEvents as Events  # noqa: PLC0415

    sync, crm, books, store, _ = wired()
    sync.sync(DEAL, events_for(DEAL))
    (one_off,) = books.invoices.values()
    poller = PaymentPoller(crm, books, store, Events())
    poller.run()
    one_off_written = dict(crm.deal_properties[DEAL.object_id])
    # the schedule generates its first invoice: a plain invoice carrying the schedule's reference
    (schedule,) = books.schedules.values()
    generated = one_off.model_copy(
        update={
            "id": "generated-1",
            "number": "INV-0100",
            "reference": schedule.reference,
            "issue_date": date(2026, 12, 1),
            "total": Decimal("115.00"),
            "amount_due": Decimal("115.00"),
            "status": "AUTHORISED",
            "updated_at": datetime.now(UTC),
        }
    )
    books.invoices[generated.id] = generated
    poller.run()
    written = crm.deal_properties[DEAL.object_id]
    assert written["closeloop_recurring_invoice_number"] == "INV-0100"
    assert written["closeloop_recurring_amount_due"] == "115.00"
    # the one-off invoice's properties and mapping are untouched; no mapping points at the generated invoice
    assert {k: written[k] for k in one_off_written} == one_off_written
    assert store.get_mapping(DEAL, "books").accounting_id == one_off.id  # type: ignore[union-attr]
    assert store.find_ref("books", "generated-1") is None
    # paid: the next run shows it; a run without changes writes nothing
    books.pay("generated-1", Decimal("115.00"), date(2026, 12, 5))
    poller.run()
    assert crm.deal_properties[DEAL.object_id]["closeloop_recurring_payment_status"] == "paid"
    writes = crm.write_calls
    poller.run()
    assert crm.write_calls == writes


def test_reconcile_counts_generated_invoices_as_the_schedules_and_flags_a_schedule_ended_early() -> None:
    from closeloop.sync.reconcile import reconcile  # noqa: PLC0415

    deal = recurring_deal(close_date=date(2026, 12, 3))
    sync, crm, books, store, _ = wired(deal)
    sync.sync(DEAL, events_for(DEAL))
    (one_off,) = books.invoices.values()
    books.invoices[one_off.id] = one_off.model_copy(update={"issue_date": date(2026, 12, 3)})
    (schedule,) = books.schedules.values()
    generated = one_off.model_copy(
        update={"id": "g1", "number": "INV-0100", "reference": schedule.reference, "issue_date": date(2026, 12, 1)}
    )
    books.invoices["g1"] = generated

    def run() -> list[str]:
        found = reconcile(
            "2026-12",
            crm=crm,
            accounting=books,
            store=store,
            failed_syncs=[],
            dead_letters={},
            today=date(2026, 12, 20),
            deal_mappings=list(store.mappings.values()),
            schedules=books,
        )
        return [f"{d.type}: {d.detail}" for d in found.discrepancies]

    assert not [d for d in run() if d.startswith(("duplicate_invoice", "invoice_without_deal", "schedule"))]
    books.schedules[schedule.id] = schedule.model_copy(update={"status": "ended"})
    (ended,) = [d for d in run() if d.startswith("schedule_ended_early")]
    assert "runs until 2027-11-01" in ended and "100.00 expected this month" in ended


def test_each_schedule_keeps_its_lines_share_of_the_deal_amount_for_the_reconciliation() -> None:
    from closeloop.sync.reconcile import reconcile  # noqa: PLC0415

    # Given a won deal of 398.50: 298.50 one-off and a monthly line of 100.00, invoiced and scheduled
    sync, crm, books, store, _ = wired(recurring_deal(close_date=date(2026, 12, 3)))
    sync.sync(DEAL, events_for(DEAL))
    (one_off,) = books.invoices.values()
    books.invoices[one_off.id] = one_off.model_copy(update={"issue_date": date(2026, 12, 3)})
    system = schedule_system("books", "monthly")

    def share() -> str:
        mapping = store.get_mapping(DEAL, system)
        assert mapping is not None
        return mapping.snapshot.get("deal_amount_share", "")

    def report() -> tuple[list[str], list[str]]:
        found = reconcile(
            "2026-12",
            crm=crm,
            accounting=books,
            store=store,
            failed_syncs=[],
            dead_letters={},
            today=date(2026, 12, 20),
            deal_mappings=list(store.mappings.values()),
        )
        return [d.detail for d in found.discrepancies if d.type == "amount_mismatch"], list(found.notes)

    # Then the schedule's mapping keeps the line's share, and the report compares 398.50 - 100.00 = 298.50
    assert share() == "100.00"
    assert report() == ([], [])
    # When a second monthly line is sold (the deal amount grows with it): the share follows, still no mismatch
    upsell = SUPPORT.model_copy(update={"crm_id": "10", "unit_price": Decimal("50.00")})
    change_lines(crm, ONE_OFF, SUPPORT, upsell, amount=Decimal("448.50"))
    sync.sync(DEAL, events_for(DEAL))
    assert share() == "150.00" and report() == ([], [])
    # When the one-off part really differs from the invoice, it is still flagged, by the cent
    change_lines(crm, ONE_OFF, SUPPORT, upsell, amount=Decimal("448.60"))
    assert report()[0] == [
        "deal 448.60 less 150.00 billed by its repeating schedules = 298.60, invoice total 343.28 (before tax "
        "298.50): a difference of 44.68"
    ]
    change_lines(crm, ONE_OFF, SUPPORT, upsell, amount=Decimal("448.50"))
    # When the mapping predates the kept share: named in the notes, not flagged; a redelivery records it
    mapping = store.get_mapping(DEAL, system)
    assert mapping is not None
    legacy = {k: v for k, v in mapping.snapshot.items() if k != "deal_amount_share"}
    store.put_mapping(IdMapping(mapping.ref, mapping.system, mapping.accounting_id, legacy))
    mismatches, notes = report()
    assert mismatches == [] and len(notes) == 1 and f"({DEAL})" in notes[0]
    sync.sync(DEAL, events_for(DEAL))
    assert share() == "150.00" and report() == ([], [])
    # When the recurring lines are removed (and the deal amount with them): the ended schedule's share is 0
    change_lines(crm, ONE_OFF, amount=Decimal("298.50"))
    sync.sync(DEAL, events_for(DEAL))
    assert share() == "0.00" and report() == ([], [])


def test_an_all_recurring_deal_has_no_one_off_invoice_and_the_reconciliation_misses_none() -> None:
    from closeloop.sync.reconcile import reconcile  # noqa: PLC0415

    # Given a won deal of 100.00 whose one line is monthly: no one-off invoice, one schedule
    sync, crm, books, store, _ = wired(recurring_deal(SUPPORT, close_date=date(2026, 12, 3)))
    change_lines(crm, SUPPORT, amount=Decimal("100.00"))
    assert sync.sync(DEAL, events_for(DEAL)).detail == "no one-off line to invoice"

    # When December is reconciled
    found = reconcile(
        "2026-12",
        crm=crm,
        accounting=books,
        store=store,
        failed_syncs=[],
        dead_letters={},
        today=date(2026, 12, 20),
        deal_mappings=list(store.mappings.values()),
    )

    # Then the deal is not listed as won without an invoice: its schedule bills all of it
    assert found.won_deals == 1 and found.discrepancies == ()
