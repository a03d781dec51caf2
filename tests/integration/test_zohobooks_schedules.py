"""Zoho Books repeating schedules (RecurringAccounting over recurring invoices) against the Zoho Books sandbox over
HTTP: create (named by the reference), find by name (also when Zoho ignores the filter, over pages), end (stop),
extend (the end date), child invoices recognised, refusals and lost answers; and RecurringFlow over the adapter
with a fake CRM (one profile per deal and frequency, found again after a lost answer, its children shown on the
deal by the payment poller, a renewal extended, a cancelled contract stopped)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from closeloop.errors import FatalError, IntegrationError, Unanswered, ValidationFailed
from closeloop.models import Address, Customer, Deal, Frequency, InvoiceLine, LineItem, ScheduleDraft
from closeloop.sync.contacts import ContactSync
from closeloop.sync.invoices import DealSync, InvoicePolicy
from closeloop.sync.payments import PaymentPoller
from closeloop.sync.recurring import RecurringFlow, SchedulePolicy, parse_schedule_reference
from closeloop.sync.tax import TaxRule
from closeloop.vendors.zohobooks.adapter import ZohoBooksAccounting
from closeloop_local.sandboxes.base import SandboxServer
from closeloop_local.sandboxes.zohobooks import TAXES, ZohoBooksDriver, ZohoBooksSandbox, serve
from tests.fakes import FakeDealCrm, MemoryStore, events_for, ref
from tests.fakes import RecordedEvents as Events
from tests.sandbox_adapters import LoseAnswers
from tests.sandbox_adapters import ZohoPagesOfTwo as PagesOfTwo
from tests.sandbox_adapters import zohobooks_adapter as books_on

API = "/books/v3"
VAT20 = next(tax_id for tax_id, (_, rate) in TAXES.items() if rate == Decimal("20"))
COMPANY = ref("company", "1")
DEAL = ref("deal", "3000001")
REFERENCE = "crm-deal-3000001/monthly"


@pytest.fixture
def sandbox() -> Iterator[tuple[ZohoBooksSandbox, SandboxServer]]:
    zoho, server = serve(ZohoBooksSandbox(minute_limit=10_000, day_limit=100_000))
    yield zoho, server
    server.stop()


def today(zoho: ZohoBooksSandbox) -> date:
    return datetime.fromtimestamp(zoho.state.clock.now(), UTC).date()


def seeded(zoho: ZohoBooksSandbox) -> str:
    """Items SUP-1 and HOST-1 and a customer; the customer's id."""
    driver = ZohoBooksDriver(zoho)
    driver.seed_item("SUP-1", "Support", Decimal("100"))
    driver.seed_item("HOST-1", "Hosting", Decimal("40"))
    return driver.seed_customer("Acme Ltd", email="acme@x.test")


def draft(customer_id: str, start: date, **kw: Any) -> ScheduleDraft:
    values: dict[str, Any] = {
        "customer_id": customer_id,
        "reference": REFERENCE,
        "currency": "GBP",
        "lines": (
            InvoiceLine(
                item_code="SUP-1",
                description="Support",
                quantity=Decimal(2),
                unit_amount=Decimal("100.00"),
                tax_type=VAT20,
            ),
            InvoiceLine(
                item_code="HOST-1",
                description="Hosting",
                quantity=Decimal(1),
                unit_amount=Decimal("40.00"),
                discount_rate=Decimal("10"),
            ),
        ),
        "frequency": "monthly",
        "start": start,
        "end": start + timedelta(days=334),
        "due_days": 14,
    }
    values.update(kw)
    return ScheduleDraft(**values)


def profiles(zoho: ZohoBooksSandbox) -> list[dict[str, Any]]:
    return zoho.recurring_invoices()


def test_create_names_the_profile_by_the_reference_and_finds_and_reads_it_back(
    sandbox: tuple[ZohoBooksSandbox, SandboxServer],
) -> None:
    zoho, server = sandbox
    customer = seeded(zoho)
    books = books_on(zoho, server.url)
    start = today(zoho)
    # When a monthly schedule is created
    made = books.create_schedule(draft(customer, start), idempotency_key="s-1")
    # Then one profile holds the reference as its unique name and as the reference its children copy
    (row,) = profiles(zoho)
    assert row["recurrence_name"] == REFERENCE and row["reference_number"] == REFERENCE
    assert (row["recurrence_frequency"], row["repeat_every"], row["payment_terms"]) == ("months", 1, 14)
    assert (row["start_date"], row["end_date"]) == (start.isoformat(), (start + timedelta(days=334)).isoformat())
    assert [line["tax_id"] for line in row["line_items"]] == [VAT20, ""]
    assert row["line_items"][1]["discount"] == "10%"
    # And the schedule reads as it runs: Decimal totals (200 + 40 x 90%; VAT on the first line)
    assert made.status == "active" and made.approved and made.frequency == "monthly" and made.reference == REFERENCE
    assert (made.sub_total, made.total, made.currency) == (Decimal("236.00"), Decimal("276.00"), "GBP")
    assert made.customer_id == customer and made.next_invoice_date == start
    # And it is found by its name (case aside), read by id; an unknown one is None
    assert books.find_schedule(REFERENCE) == made
    assert books.find_schedule(REFERENCE.upper()) == made
    assert books.find_schedule("crm-deal-3000001/annual") is None
    assert books.get_schedule(made.id) == made
    assert books.get_schedule("460000000999999") is None
    # And a second create for the deal and frequency meets the taken name and answers the first profile
    assert books.create_schedule(draft(customer, start), idempotency_key="s-1") == made
    assert len(profiles(zoho)) == 1


@pytest.mark.parametrize(
    ("frequency", "unit", "every"),
    [
        ("weekly", "weeks", 1),
        ("fortnightly", "weeks", 2),
        ("quarterly", "months", 3),
        ("annual", "years", 1),
        ("biennial", "years", 2),
        ("semi_annual", "months", 6),
    ],
)
def test_each_frequency_is_zoho_s_recurrence_and_reads_back_as_itself(
    sandbox: tuple[ZohoBooksSandbox, SandboxServer], frequency: Frequency, unit: str, every: int
) -> None:
    zoho, server = sandbox
    customer = seeded(zoho)
    books = books_on(zoho, server.url)
    start = today(zoho)
    made = books.create_schedule(
        draft(
            customer, start, frequency=frequency, reference=f"crm-deal-1/{frequency}", end=start + timedelta(days=800)
        ),
        idempotency_key="s",
    )
    (row,) = profiles(zoho)
    assert (row["recurrence_frequency"], row["repeat_every"]) == (unit, every)
    assert made.frequency == frequency


def test_find_checks_every_row_when_zoho_ignores_the_name_filter_over_pages(
    sandbox: tuple[ZohoBooksSandbox, SandboxServer],
) -> None:
    zoho, server = sandbox
    customer = seeded(zoho)
    start = today(zoho)
    setup = books_on(zoho, server.url)
    for n in range(5):
        setup.create_schedule(draft(customer, start, reference=f"crm-deal-{n}/monthly"), idempotency_key=str(n))

    class IgnoredNameFilter(httpx.HTTPTransport):
        """Zoho answering the list as if ``recurrence_name`` were not sent."""

        def handle_request(self, request: httpx.Request) -> httpx.Response:
            request.url = request.url.copy_remove_param("recurrence_name")
            return super().handle_request(request)

    books = books_on(zoho, server.url, cls=PagesOfTwo, transport=IgnoredNameFilter())
    # When the schedule of the first-made profile (the last page, newest first) is looked up
    found = books.find_schedule("crm-deal-0/monthly")
    # Then the pages are read until its row, and no other profile is taken for it
    assert found is not None and found.reference == "crm-deal-0/monthly"
    assert len(zoho.state.calls("GET", f"{API}/recurringinvoices")) == 3
    assert books.find_schedule("crm-deal-9/monthly") is None


def test_refusals_name_the_reason_and_create_nothing(sandbox: tuple[ZohoBooksSandbox, SandboxServer]) -> None:
    zoho, server = sandbox
    customer = seeded(zoho)
    books = books_on(zoho, server.url)
    start = today(zoho)
    # An unknown SKU is refused before anything is sent
    unknown = draft(
        customer,
        start,
        lines=(InvoiceLine(item_code="NOPE", description="x", quantity=Decimal(1), unit_amount=Decimal(1)),),
    )
    with pytest.raises(ValidationFailed, match="NOPE"):
        books.create_schedule(unknown, idempotency_key="s")
    assert not zoho.state.calls("POST", f"{API}/recurringinvoices")
    # A start in the past, or a currency other than the customer's, is Zoho's refusal with its message
    with pytest.raises(ValidationFailed, match="Start date"):
        books.create_schedule(draft(customer, start - timedelta(days=3)), idempotency_key="s")
    with pytest.raises(ValidationFailed, match="currency_code"):
        books.create_schedule(draft(customer, start, currency="USD"), idempotency_key="s")
    # A reference longer than Zoho's name is refused before it is sent
    with pytest.raises(ValidationFailed, match="100"):
        books.create_schedule(
            draft(customer, start, reference="crm-deal-" + "9" * 100 + "/monthly"), idempotency_key="s"
        )
    assert profiles(zoho) == []


def test_a_lost_create_answer_is_not_resent_but_found_by_name(sandbox: tuple[ZohoBooksSandbox, SandboxServer]) -> None:
    zoho, server = sandbox
    customer = seeded(zoho)
    start = today(zoho)
    books = books_on(zoho, server.url, transport=LoseAnswers("POST", f"{API}/recurringinvoices"))
    # When Zoho makes the profile but the answer is lost
    made = books.create_schedule(draft(customer, start), idempotency_key="s-1")
    # Then the create was sent once and the profile found by its name
    assert len(zoho.state.calls("POST", f"{API}/recurringinvoices")) == 1
    assert [p["recurring_invoice_id"] for p in profiles(zoho)] == [made.id]
    # And a lost answer to a create Zoho refused (an unknown customer) stays Unanswered: nothing found
    lost = books_on(zoho, server.url, transport=LoseAnswers("POST", f"{API}/recurringinvoices"))
    with pytest.raises(Unanswered):
        lost.create_schedule(draft("1", start, reference="crm-deal-5/monthly"), idempotency_key="s-5")


def test_end_stops_the_profile_keeps_its_children_and_a_second_end_changes_nothing(
    sandbox: tuple[ZohoBooksSandbox, SandboxServer],
) -> None:
    zoho, server = sandbox
    customer = seeded(zoho)
    books = books_on(zoho, server.url)
    start = today(zoho)
    made = books.create_schedule(draft(customer, start), idempotency_key="s-1")
    children = ZohoBooksDriver(zoho).run_recurring(start)
    # When the schedule is ended
    ended = books.end_schedule(made.id, idempotency_key="e-1")
    # Then the profile is stopped, not deleted: readable, its name still taken, its child kept
    assert ended.status == "ended" and ended.next_invoice_date is None and not ended.approved
    assert profiles(zoho)[0]["status"] == "stopped" and len(children) == 1
    assert books.get_schedule(made.id) == ended and books.find_schedule(REFERENCE) == ended
    assert ZohoBooksDriver(zoho).run_recurring(start + timedelta(days=70)) == []
    # And ending it again sends no second stop
    assert books.end_schedule(made.id, idempotency_key="e-1") == ended
    assert len(zoho.state.calls("POST", f"{API}/recurringinvoices/{made.id}/status/stop")) == 1
    # And a profile deleted in Zoho is answered as ended
    books.client.call("DELETE", f"/recurringinvoices/{made.id}")
    gone = books.end_schedule(made.id, idempotency_key="e-2")
    assert gone.status == "ended" and books.get_schedule(made.id) is None


def test_extend_moves_the_end_date_and_keeps_the_profile(sandbox: tuple[ZohoBooksSandbox, SandboxServer]) -> None:
    zoho, server = sandbox
    customer = seeded(zoho)
    books = books_on(zoho, server.url)
    start = today(zoho)
    made = books.create_schedule(draft(customer, start), idempotency_key="s-1")
    ZohoBooksDriver(zoho).run_recurring(start)
    before = books.get_schedule(made.id)
    assert before is not None
    # When it is extended by a year
    later = start + timedelta(days=334 + 365)
    extended = books.extend_schedule(before, later, idempotency_key="x-1")
    # Then the same profile runs until then, its lines, total and next date unchanged
    assert (extended.id, extended.end_date, extended.total) == (made.id, later, made.total)
    assert extended.next_invoice_date == before.next_invoice_date
    (row,) = profiles(zoho)
    assert row["end_date"] == later.isoformat() and len(row["line_items"]) == 2
    # And extending to an earlier or the same end sends nothing
    puts = len(zoho.state.calls("PUT", f"{API}/recurringinvoices/{made.id}"))
    assert books.extend_schedule(extended, later - timedelta(days=30), idempotency_key="x-2") == extended
    assert len(zoho.state.calls("PUT", f"{API}/recurringinvoices/{made.id}")) == puts
    # And a profile deleted in Zoho cannot be extended
    books.client.call("DELETE", f"/recurringinvoices/{made.id}")
    with pytest.raises(FatalError, match="gone"):
        books.extend_schedule(extended, later + timedelta(days=30), idempotency_key="x-3")


def test_child_invoices_read_with_the_schedule_reference_also_when_they_copied_none(
    sandbox: tuple[ZohoBooksSandbox, SandboxServer],
) -> None:
    zoho, server = sandbox
    customer = seeded(zoho)
    books = books_on(zoho, server.url)
    start = today(zoho)
    books.create_schedule(draft(customer, start), idempotency_key="s-1")
    # When Zoho runs the profile for two months
    made = ZohoBooksDriver(zoho).run_recurring(start + timedelta(days=40))
    assert len(made) == 2
    # Then the change feed reads both with the schedule's reference, which names the deal and frequency
    invoices = [i for i in books.iter_invoices_changed_since(None) if i.id in made]
    assert [i.reference for i in invoices] == [REFERENCE] * 2
    assert all(i.total == Decimal("276.00") and i.customer_id == customer for i in invoices)
    assert parse_schedule_reference("crm", invoices[0].reference) == (DEAL, "monthly")
    # When a child carries no reference of its own (Zoho did not copy it), Then its profile's is read, once
    for invoice_id in made:
        zoho.invoices_by_id[invoice_id]["reference_number"] = ""
    fresh = books_on(zoho, server.url)
    profile_id = profiles(zoho)[0]["recurring_invoice_id"]
    reads = len(zoho.state.calls("GET", f"{API}/recurringinvoices/{profile_id}"))
    assert [i.reference for i in fresh.iter_invoices_changed_since(None) if i.id in made] == [REFERENCE] * 2
    assert len(zoho.state.calls("GET", f"{API}/recurringinvoices/{profile_id}")) == 1 + reads
    one = fresh.get_invoice(made[0])
    assert one is not None and one.reference == REFERENCE


# -- RecurringFlow over the adapter and the sandbox ------------------------------------------------------------


def contract_deal(start: date) -> Deal:
    def recurring(crm_id: str, sku: str, price: str, frequency: Frequency, periods: int) -> LineItem:
        return LineItem(
            crm_id=crm_id,
            name=sku,
            sku=sku,
            quantity=Decimal(1),
            unit_price=Decimal(price),
            recurring_frequency=frequency,
            recurring_start=start,
            recurring_periods=periods,
        )

    return Deal(
        ref=DEAL,
        name="Support contract",
        amount=Decimal("100.00"),  # the one-off line's: recurring lines stay out of the amount check
        currency="GBP",
        stage="closedwon",
        is_won=True,
        close_date=start,
        company=COMPANY,
        url="https://crm.example/deal/3000001",
        line_items=(
            LineItem(crm_id="1", name="Setup", sku="SUP-1", quantity=Decimal(1), unit_price=Decimal("100.00")),
            recurring("2", "SUP-1", "50.00", "monthly", 12),
            recurring("3", "HOST-1", "40.00", "monthly", 12),
            recurring("4", "HOST-1", "400.00", "annual", 2),
        ),
    )


def wired(
    zoho: ZohoBooksSandbox,
    server: SandboxServer,
    transport: httpx.BaseTransport | None = None,
    store: MemoryStore | None = None,
) -> tuple[DealSync, FakeDealCrm, ZohoBooksAccounting, MemoryStore]:
    """DealSync with RecurringFlow over the adapter; a first call seeds the sandbox, a ``store`` goes on."""
    if store is None:
        seeded(zoho)
    crm = FakeDealCrm(customers={COMPANY: Customer(ref=COMPANY, name="Contract Co", address=Address(country="GB"))})
    crm.deals[DEAL.object_id] = contract_deal(today(zoho))
    books = books_on(zoho, server.url, transport=transport)
    store = store if store is not None else MemoryStore()
    policy = InvoicePolicy(status="AUTHORISED", tax_rules=(TaxRule(countries=("GB",), tax_type=VAT20),))
    sync = DealSync(crm, books, store, ContactSync(crm, books, store, owner="w"), policy, owner="w")
    flow = RecurringFlow(crm, books, books, store, SchedulePolicy(status="AUTHORISED", invoices=policy), owner="w")
    sync.flows = (flow,)
    return sync, crm, books, store


def test_the_flow_makes_one_profile_per_deal_and_frequency_and_finds_it_after_a_lost_answer(
    sandbox: tuple[ZohoBooksSandbox, SandboxServer],
) -> None:
    zoho, server = sandbox
    # Given Zoho makes the first profile but its answer never reaches the worker
    lost = LoseAnswers("POST", f"{API}/recurringinvoices")
    sync, crm, books, store = wired(zoho, server, lost)
    sync.sync(DEAL, events_for(DEAL))
    assert lost.times == 0
    # Then the lost answer was settled by the name lookup: both profiles made once each
    names = sorted(p["recurrence_name"] for p in profiles(zoho))
    assert names == ["crm-deal-3000001/annual", "crm-deal-3000001/monthly"]
    assert len(zoho.state.calls("POST", f"{API}/recurringinvoices")) == 2
    # And the one-off invoice bills the setup line only (with VAT); the monthly profile both monthly lines
    (one_off,) = zoho.invoices()
    assert one_off["total"] == Decimal("120.00")
    monthly = next(p for p in profiles(zoho) if p["recurrence_name"].endswith("/monthly"))
    assert monthly["total"] == Decimal("108.00")
    written = crm.deal_properties[DEAL.object_id]
    assert written["closeloop_annual_value"] == "1480.00"  # 90 x 12 + 400
    assert set(written["closeloop_schedule_ids"].split(", ")) == {p["recurring_invoice_id"] for p in profiles(zoho)}
    # When the deal is delivered again after a crash that lost every mapping, Then the profiles are found
    store.mappings.clear()
    sync.sync(DEAL, events_for(DEAL))
    assert len(zoho.state.calls("POST", f"{API}/recurringinvoices")) == 2 and len(profiles(zoho)) == 2
    actions = [a.action for a in store.list_audit(DEAL) if a.system == "zohobooks"]
    assert "linked" in actions


def test_a_lost_answer_the_flow_cannot_settle_fails_the_delivery_and_the_replay_links_it(
    sandbox: tuple[ZohoBooksSandbox, SandboxServer],
) -> None:
    zoho, server = sandbox

    class LoseListsToo(LoseAnswers):
        """Loses the create's answer and the name lookup after it: the worker cannot tell."""

        def handle_request(self, request: httpx.Request) -> httpx.Response:
            if self.times == 0 and request.method == "GET" and request.url.path == f"{API}/recurringinvoices":
                raise httpx.ConnectError("down", request=request)
            return super().handle_request(request)

    sync, _, _, store = wired(zoho, server, LoseListsToo("POST", f"{API}/recurringinvoices"))
    with pytest.raises(IntegrationError):
        sync.sync(DEAL, events_for(DEAL))
    assert len(profiles(zoho)) == 1
    # When the deal is delivered again (Zoho answers again), Then the made profile is linked, one more made
    again, _, _, _ = wired(zoho, server, store=store)
    again.sync(DEAL, events_for(DEAL))
    assert len(profiles(zoho)) == 2 and len(zoho.state.calls("POST", f"{API}/recurringinvoices")) == 2
    assert "linked" in [a.action for a in store.list_audit(DEAL) if a.system == "zohobooks"]


def test_a_child_invoice_shows_on_the_deal_through_the_poller(sandbox: tuple[ZohoBooksSandbox, SandboxServer]) -> None:
    zoho, server = sandbox
    sync, crm, books, store = wired(zoho, server)
    sync.sync(DEAL, events_for(DEAL))
    poller = PaymentPoller(crm, books, store, Events())
    poller.run()
    assert "closeloop_recurring_invoice_number" not in crm.deal_properties[DEAL.object_id]
    # When Zoho makes the profiles' first invoices (both start today) and the poller runs
    zoho.state.clock.advance(2)
    made = ZohoBooksDriver(zoho).run_recurring(today(zoho))
    assert len(made) == 2
    poller.run()
    # Then the deal shows the latest child invoice, its one-off invoice's properties untouched
    written = crm.deal_properties[DEAL.object_id]
    numbers = {i["invoice_number"] for i in zoho.invoices() if i["invoice_id"] in made}
    assert written["closeloop_recurring_invoice_number"] in numbers
    assert written["closeloop_recurring_amount_due"] in {"108.00", "480.00"}
    (one_off,) = [i for i in zoho.invoices() if i["invoice_id"] not in made]
    assert written["closeloop_invoice_number"] == one_off["invoice_number"]


def test_a_renewal_extends_the_profile_and_a_cancelled_contract_stops_both(
    sandbox: tuple[ZohoBooksSandbox, SandboxServer],
) -> None:
    zoho, server = sandbox
    sync, crm, _, _ = wired(zoho, server)
    sync.sync(DEAL, events_for(DEAL))
    monthly = next(p for p in profiles(zoho) if p["recurrence_name"].endswith("/monthly"))
    # When the monthly lines are renewed for 24 periods, Then the same profile runs a year longer
    deal = crm.deals[DEAL.object_id]
    renewed = tuple(
        li.model_copy(update={"recurring_periods": 24}) if li.recurring_frequency == "monthly" else li
        for li in deal.line_items
    )
    crm.deals[DEAL.object_id] = deal.model_copy(update={"line_items": renewed})
    sync.sync(DEAL, events_for(DEAL))
    after = next(p for p in profiles(zoho) if p["recurring_invoice_id"] == monthly["recurring_invoice_id"])
    assert date.fromisoformat(after["end_date"]) > date.fromisoformat(monthly["end_date"]) and len(profiles(zoho)) == 2
    # When the deal leaves the won stages (the contract was cancelled), Then both profiles are stopped
    crm.deals[DEAL.object_id] = crm.deals[DEAL.object_id].model_copy(update={"is_won": False, "stage": "closedlost"})
    sync.sync(DEAL, events_for(DEAL))
    assert [p["status"] for p in profiles(zoho)] == ["stopped", "stopped"]
    assert crm.deal_properties[DEAL.object_id]["closeloop_schedule_ids"] == ""


def test_the_spec_lists_repeating_invoice_and_the_adapter_implements_the_whole_port() -> None:
    from closeloop.ports import RecurringAccounting  # noqa: PLC0415
    from closeloop.vendors.zohobooks import SPEC  # noqa: PLC0415

    assert "repeating_invoice" in SPEC.capabilities.objects
    methods = [n for n, v in vars(RecurringAccounting).items() if callable(v) and not n.startswith("_")]
    assert sorted(methods) == ["create_schedule", "end_schedule", "extend_schedule", "find_schedule", "get_schedule"]
    assert all(callable(getattr(ZohoBooksAccounting, n, None)) for n in methods)


def test_the_reconciliation_counts_children_as_the_schedule_s_and_lists_one_stopped_in_zoho(
    sandbox: tuple[ZohoBooksSandbox, SandboxServer],
) -> None:
    from closeloop.sync.reconcile import reconcile  # noqa: PLC0415

    zoho, server = sandbox
    sync, crm, books, store = wired(zoho, server)
    sync.sync(DEAL, events_for(DEAL))
    day = today(zoho)
    ZohoBooksDriver(zoho).run_recurring(day)

    def run() -> list[str]:
        found = reconcile(
            day.strftime("%Y-%m"),
            crm=crm,
            accounting=books,
            store=store,
            failed_syncs=[],
            dead_letters={},
            today=day,
            deal_mappings=list(store.mappings.values()),
            schedules=books,
        )
        return [f"{d.type}: {d.detail}" for d in found.discrepancies]

    # Then the child invoices are no duplicate or orphan of the deal
    assert not [d for d in run() if d.startswith(("duplicate_invoice", "invoice_without_deal", "schedule"))]
    # When finance stops the monthly profile in Zoho, Then it is listed as ended early
    monthly = next(p for p in profiles(zoho) if p["recurrence_name"].endswith("/monthly"))
    books.client.call("POST", f"/recurringinvoices/{monthly['recurring_invoice_id']}/status/stop")
    assert [d for d in run() if d.startswith("schedule_ended_early")]
