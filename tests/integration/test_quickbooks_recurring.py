"""QuickBooks repeating schedules (RecurringAccounting over RecurringTransaction Invoice templates) against the
QuickBooks sandbox over HTTP: create, find by reference (paged), end, extend, generated invoices recognised,
errors; and RecurringFlow over the adapter with a fake CRM (one schedule per deal and frequency, found again
after a lost answer, its generated invoice shown on the deal by the payment poller)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar

import httpx
import pytest

from closeloop.errors import IntegrationError, NotFound, RetriableError, ValidationFailed
from closeloop.models import Address, Customer, Deal, Frequency, InvoiceLine, LineItem, ScheduleDraft
from closeloop.sync.contacts import ContactSync
from closeloop.sync.invoices import DealSync, InvoicePolicy
from closeloop.sync.payments import PaymentPoller
from closeloop.sync.recurring import RecurringFlow, SchedulePolicy, parse_schedule_reference
from closeloop.sync.tax import TaxRule
from closeloop.vendors.quickbooks.adapter import QuickBooksAccounting
from closeloop_local.sandboxes.base import Fault, SandboxServer
from closeloop_local.sandboxes.quickbooks import COMPANY_ZONE, QuickBooksDriver, QuickBooksSandbox, serve
from tests.fakes import FakeDealCrm, MemoryStore, events_for, ref
from tests.fakes import RecordedEvents as Events
from tests.quickbooks_adapters import adapter

COMPANY = ref("company", "1")
DEAL = ref("deal", "3000001")


@pytest.fixture
def sandbox() -> Iterator[tuple[QuickBooksSandbox, SandboxServer]]:
    qbo, server = serve()
    yield qbo, server
    server.stop()


def today(qbo: QuickBooksSandbox) -> date:
    return datetime.fromtimestamp(qbo.state.clock.now(), COMPANY_ZONE).date()


def seeded(qbo: QuickBooksSandbox) -> str:
    """Items SUP-1 and HOST-1 and a customer; the customer's id."""
    driver = QuickBooksDriver(qbo)
    driver.seed_item("SUP-1", "Support", Decimal("100"))
    driver.seed_item("HOST-1", "Hosting", Decimal("40"))
    return str(qbo.seed("Customer", DisplayName="Acme Ltd")["Id"])


def draft(customer_id: str, start: date, **kw: Any) -> ScheduleDraft:
    values: dict[str, Any] = {
        "customer_id": customer_id,
        "reference": "crm-deal-3000001/monthly",
        "currency": "USD",
        "lines": (
            InvoiceLine(
                item_code="SUP-1",
                description="Support",
                quantity=Decimal(2),
                unit_amount=Decimal("100.00"),
                tax_type="TAX",
            ),
        ),
        "frequency": "monthly",
        "start": start,
        "end": start + timedelta(days=334),
        "status": "AUTHORISED",
        "url": "https://crm.example/deal/3000001",
    }
    values.update(kw)
    return ScheduleDraft(**values)


def templates(qbo: QuickBooksSandbox) -> list[dict[str, Any]]:
    return [row["Invoice"] for row in qbo.recurring_templates()]


def posts(qbo: QuickBooksSandbox) -> int:
    return len([r for r in qbo.state.requests if r.method == "POST" and r.path.endswith("/recurringtransaction")])


def test_create_sends_an_automated_monthly_invoice_template_named_by_the_reference(
    sandbox: tuple[QuickBooksSandbox, SandboxServer],
) -> None:
    qbo, server = sandbox
    customer = seeded(qbo)
    books = adapter(qbo, server.url)
    start = today(qbo)
    # When an approved monthly schedule is created
    made = books.create_schedule(draft(customer, start), idempotency_key="s-1")
    # Then QuickBooks holds one Invoice template: our reference as its Name and PrivateNote, Automated, monthly
    (row,) = templates(qbo)
    info = row["RecurringInfo"]
    assert (info["Name"], info["RecurType"], info["Active"]) == ("crm-deal-3000001/monthly", "Automated", True)
    schedule = info["ScheduleInfo"]
    assert (schedule["IntervalType"], schedule["NumInterval"], schedule["DayOfMonth"]) == ("Monthly", 1, start.day)
    assert (schedule["StartDate"], schedule["EndDate"]) == (
        start.isoformat(),
        (start + timedelta(days=334)).isoformat(),
    )
    assert row["PrivateNote"] == "crm-deal-3000001/monthly\nhttps://crm.example/deal/3000001"
    assert "DocNumber" not in row  # each generated invoice takes the company's next number
    (line,) = row["Line"][:1]
    assert line["SalesItemLineDetail"]["TaxCodeRef"]["value"] == "TAX"
    assert (row["TxnDate"], row["DueDate"]) == (start.isoformat(), (start + timedelta(days=30)).isoformat())
    # And the answer reads as the canonical schedule, money as Decimal
    assert (made.id, made.reference, made.status, made.approved) == (row["Id"], info["Name"], "active", True)
    assert (made.frequency, made.customer_id, made.currency) == ("monthly", customer, "USD")
    assert (made.start_date, made.next_invoice_date, made.end_date) == (start, start, start + timedelta(days=334))
    assert (made.sub_total, made.total) == (Decimal("200.00"), Decimal("220.00"))  # TAX is 10 %


def test_a_draft_schedule_is_a_reminded_template_that_makes_no_invoice_by_itself(
    sandbox: tuple[QuickBooksSandbox, SandboxServer],
) -> None:
    qbo, server = sandbox
    customer = seeded(qbo)
    books = adapter(qbo, server.url)
    made = books.create_schedule(draft(customer, today(qbo), status="DRAFT"), idempotency_key="s-1")
    assert templates(qbo)[0]["RecurringInfo"]["RecurType"] == "Reminded"
    assert (made.status, made.approved) == ("active", False)
    assert QuickBooksDriver(qbo).run_recurring(today(qbo)) == []


@pytest.mark.parametrize(
    ("frequency", "interval", "every", "pinned"),
    [
        ("weekly", "Weekly", 1, "DayOfWeek"),
        ("fortnightly", "Weekly", 2, "DayOfWeek"),
        ("quarterly", "Monthly", 3, "DayOfMonth"),
        ("semi_annual", "Monthly", 6, "DayOfMonth"),
        ("annual", "Yearly", 1, "MonthOfYear"),
        ("biennial", "Yearly", 2, "MonthOfYear"),
    ],
)
def test_each_frequency_is_an_interval_and_reads_back_as_itself(
    sandbox: tuple[QuickBooksSandbox, SandboxServer], frequency: str, interval: str, every: int, pinned: str
) -> None:
    qbo, server = sandbox
    customer = seeded(qbo)
    books = adapter(qbo, server.url)
    start = today(qbo)
    made = books.create_schedule(
        draft(customer, start, frequency=frequency, end=start + timedelta(days=3 * 366)), idempotency_key="s-1"
    )
    schedule = templates(qbo)[0]["RecurringInfo"]["ScheduleInfo"]
    assert (schedule["IntervalType"], schedule["NumInterval"]) == (interval, every)
    assert pinned in schedule
    assert made.frequency == frequency
    assert books.get_schedule(made.id) == made


def test_find_by_reference_pages_through_the_templates(sandbox: tuple[QuickBooksSandbox, SandboxServer]) -> None:
    class SmallPages(QuickBooksAccounting):
        MAX_RESULTS: ClassVar[int] = 2

    qbo, server = sandbox
    customer = seeded(qbo)
    books = adapter(qbo, server.url, cls=SmallPages)
    start = today(qbo)
    for n in range(5):
        books.create_schedule(draft(customer, start, reference=f"crm-deal-{n}/monthly"), idempotency_key=f"s-{n}")
    asked = len(qbo.state.requests)
    # When the last one is looked up by its reference, Then it is found on the third page
    found = books.find_schedule("crm-deal-4/monthly")
    assert found is not None and found.reference == "crm-deal-4/monthly" and found.status == "active"
    queries = [r for r in qbo.state.requests[asked:] if r.path.endswith("/query")]
    assert len(queries) == 3
    # And an unknown reference reads every page and finds nothing
    assert books.find_schedule("crm-deal-99/monthly") is None
    assert books.find_schedule("") is None


def test_a_repeated_create_answers_the_first_template_and_a_taken_name_is_found(
    sandbox: tuple[QuickBooksSandbox, SandboxServer],
) -> None:
    qbo, server = sandbox
    customer = seeded(qbo)
    books = adapter(qbo, server.url)
    first = books.create_schedule(draft(customer, today(qbo)), idempotency_key="s-1")
    # When the same create is repeated (the requestid), Then the first template answers
    assert books.create_schedule(draft(customer, today(qbo)), idempotency_key="s-1").id == first.id
    # When another attempt with a new key creates the same reference, Then QBO refuses the Name and it is found
    assert books.create_schedule(draft(customer, today(qbo)), idempotency_key="s-2").id == first.id
    assert len(templates(qbo)) == 1


def test_an_unknown_item_or_a_refused_template_creates_nothing(
    sandbox: tuple[QuickBooksSandbox, SandboxServer],
) -> None:
    qbo, server = sandbox
    customer = seeded(qbo)
    books = adapter(qbo, server.url)
    line = InvoiceLine(item_code="NOPE-1", description="?", quantity=Decimal(1), unit_amount=Decimal(1))
    with pytest.raises(ValidationFailed, match="NOPE-1"):
        books.create_schedule(draft(customer, today(qbo), lines=(line,)), idempotency_key="s-1")
    assert posts(qbo) == 0
    # A currency the customer does not bill in: QBO's refusal, with its reason
    with pytest.raises(ValidationFailed, match="currency"):
        books.create_schedule(draft(customer, today(qbo), currency="EUR"), idempotency_key="s-2")
    assert templates(qbo) == []


def test_a_server_error_is_retriable(sandbox: tuple[QuickBooksSandbox, SandboxServer]) -> None:
    qbo, server = sandbox
    customer = seeded(qbo)
    books = adapter(qbo, server.url)
    qbo.state.faults.append(Fault("*/recurringtransaction", 503, times=10))
    with pytest.raises(RetriableError):
        books.create_schedule(draft(customer, today(qbo)), idempotency_key="s-1")


def test_end_makes_the_template_inactive_and_a_second_end_changes_nothing(
    sandbox: tuple[QuickBooksSandbox, SandboxServer],
) -> None:
    qbo, server = sandbox
    customer = seeded(qbo)
    books = adapter(qbo, server.url)
    made = books.create_schedule(draft(customer, today(qbo) + timedelta(days=1)), idempotency_key="s-1")
    ended = books.end_schedule(made.id, idempotency_key="e-1")
    # Then it is kept, inactive, with its schedule as it was; it reads as ended and makes no invoice
    (row,) = templates(qbo)
    assert row["RecurringInfo"]["Active"] is False
    assert row["RecurringInfo"]["ScheduleInfo"]["EndDate"] == made.end_date.isoformat()  # type: ignore[union-attr]
    assert (ended.id, ended.status, ended.next_invoice_date) == (made.id, "ended", None)
    assert books.get_schedule(made.id) == ended
    assert books.find_schedule(made.reference) == ended  # its Name stays taken: found, never made again
    assert QuickBooksDriver(qbo).run_recurring(today(qbo) + timedelta(days=40)) == []
    sent = posts(qbo)
    assert books.end_schedule(made.id, idempotency_key="e-2") == ended
    assert posts(qbo) == sent


def test_extend_moves_the_end_date_at_the_sync_token_and_keeps_the_rest(
    sandbox: tuple[QuickBooksSandbox, SandboxServer],
) -> None:
    qbo, server = sandbox
    customer = seeded(qbo)
    books = adapter(qbo, server.url)
    made = books.create_schedule(draft(customer, today(qbo)), idempotency_key="s-1")
    assert made.end_date is not None
    later = made.end_date + timedelta(days=365)
    extended = books.extend_schedule(made, later, idempotency_key="x-1")
    (row,) = templates(qbo)
    assert (row["SyncToken"], row["RecurringInfo"]["ScheduleInfo"]["EndDate"]) == ("1", later.isoformat())
    assert extended == made.model_copy(update={"end_date": later})
    # An end already as late or later: nothing sent
    sent = posts(qbo)
    assert books.extend_schedule(extended, later - timedelta(days=30), idempotency_key="x-2") == extended
    assert posts(qbo) == sent


def test_a_stale_sync_token_is_read_again_and_retried_once(sandbox: tuple[QuickBooksSandbox, SandboxServer]) -> None:
    qbo, server = sandbox
    customer = seeded(qbo)
    made = adapter(qbo, server.url).create_schedule(draft(customer, today(qbo)), idempotency_key="s-1")

    class EditedMeanwhile(httpx.HTTPTransport):
        """Finance edits the template between the adapter's read and its update (once)."""

        edited = False

        def handle_request(self, request: httpx.Request) -> httpx.Response:
            if request.method == "POST" and not EditedMeanwhile.edited:
                EditedMeanwhile.edited = True
                with qbo.state.lock:
                    record = qbo.recurring[made.id]
                    record.data["SyncToken"] = str(int(record.data["SyncToken"]) + 1)
            return super().handle_request(request)

    books = adapter(qbo, server.url, transport=EditedMeanwhile())
    ended = books.end_schedule(made.id, idempotency_key="e-1")
    assert ended.status == "ended" and templates(qbo)[0]["SyncToken"] == "2"


def test_get_or_change_a_template_deleted_in_quickbooks(sandbox: tuple[QuickBooksSandbox, SandboxServer]) -> None:
    qbo, server = sandbox
    customer = seeded(qbo)
    books = adapter(qbo, server.url)
    made = books.create_schedule(draft(customer, today(qbo)), idempotency_key="s-1")
    with qbo.state.lock:
        del qbo.recurring[made.id]
    assert books.get_schedule(made.id) is None
    assert books.get_schedule("") is None
    assert books.find_schedule(made.reference) is None
    with pytest.raises(NotFound):
        books.end_schedule(made.id, idempotency_key="e-1")
    with pytest.raises(NotFound):
        books.extend_schedule(made, date(2030, 1, 1), idempotency_key="x-1")


def test_generated_invoices_carry_the_schedule_reference(sandbox: tuple[QuickBooksSandbox, SandboxServer]) -> None:
    qbo, server = sandbox
    customer = seeded(qbo)
    books = adapter(qbo, server.url)
    start = today(qbo)
    books.create_schedule(draft(customer, start), idempotency_key="s-1")
    # When QuickBooks runs its templates for two months
    made = QuickBooksDriver(qbo).run_recurring(start + timedelta(days=40))
    assert len(made) == 2
    # Then the change feed reads both with the schedule's reference (their DocNumber is the company's own)
    invoices = [i for i in books.iter_invoices_changed_since(None) if i.id in made]
    assert [i.reference for i in invoices] == ["crm-deal-3000001/monthly"] * 2
    assert all(i.number.isdigit() and i.total == Decimal("220.00") for i in invoices)
    assert parse_schedule_reference("crm", invoices[0].reference) == (DEAL, "monthly")


# -- RecurringFlow over the adapter and the sandbox ------------------------------------------------------------


class LostScheduleAnswers(httpx.HTTPTransport):
    """Delivers every request; while ``losing``, the answers to template creates never come back."""

    losing = False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if (
            LostScheduleAnswers.losing
            and request.method == "POST"
            and request.url.path.endswith("/recurringtransaction")
        ):
            response.close()
            raise httpx.ReadTimeout("the answer was lost", request=request)
        return response


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
        currency="USD",
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
    qbo: QuickBooksSandbox, server: SandboxServer
) -> tuple[DealSync, FakeDealCrm, QuickBooksAccounting, MemoryStore]:
    seeded(qbo)
    crm = FakeDealCrm(customers={COMPANY: Customer(ref=COMPANY, name="Contract Co", address=Address(country="US"))})
    crm.deals[DEAL.object_id] = contract_deal(today(qbo))
    books = adapter(qbo, server.url, transport=LostScheduleAnswers())
    store = MemoryStore()
    policy = InvoicePolicy(status="AUTHORISED", tax_rules=(TaxRule(countries=("US",), tax_type="TAX"),))
    sync = DealSync(crm, books, store, ContactSync(crm, books, store, owner="w"), policy, owner="w")
    flow = RecurringFlow(crm, books, books, store, SchedulePolicy(status="AUTHORISED", invoices=policy), owner="w")
    sync.flows = (flow,)
    return sync, crm, books, store


def test_the_flow_makes_one_template_per_deal_and_frequency_and_finds_it_after_a_lost_answer(
    sandbox: tuple[QuickBooksSandbox, SandboxServer],
) -> None:
    qbo, server = sandbox
    sync, crm, books, store = wired(qbo, server)
    # Given QuickBooks makes the templates but its answers never reach the worker
    LostScheduleAnswers.losing = True
    try:
        with pytest.raises(IntegrationError):
            sync.sync(DEAL, events_for(DEAL))
    finally:
        LostScheduleAnswers.losing = False
    assert len(templates(qbo)) == 1  # the first frequency's, made once though its answer was lost
    # When the deal is delivered again, Then the made template is found by its Name and the other one made
    sync.sync(DEAL, events_for(DEAL))
    names = sorted(t["RecurringInfo"]["Name"] for t in templates(qbo))
    assert names == ["crm-deal-3000001/annual", "crm-deal-3000001/monthly"]
    actions = [a.action for a in store.list_audit(DEAL) if a.system == "quickbooks"]
    assert "linked" in actions and "scheduled" in actions
    # And the one-off invoice bills the setup line only; the monthly template both monthly lines
    (one_off,) = qbo.rows("Invoice")
    assert one_off["TotalAmt"] == Decimal("110.00")
    monthly = next(t for t in templates(qbo) if t["RecurringInfo"]["Name"].endswith("/monthly"))
    assert monthly["TotalAmt"] == Decimal("99.00")
    written = crm.deal_properties[DEAL.object_id]
    assert written["closeloop_annual_value"] == "1480.00"  # 90 x 12 + 400
    assert set(written["closeloop_schedule_ids"].split(", ")) == {t["Id"] for t in templates(qbo)}
    # When it is delivered again, Then nothing more is sent to QuickBooks
    sent = posts(qbo)
    sync.sync(DEAL, events_for(DEAL))
    assert (posts(qbo), len(templates(qbo))) == (sent, 2)


def test_a_generated_invoice_shows_on_the_deal_through_the_poller(
    sandbox: tuple[QuickBooksSandbox, SandboxServer],
) -> None:
    qbo, server = sandbox
    sync, crm, books, store = wired(qbo, server)
    sync.sync(DEAL, events_for(DEAL))
    poller = PaymentPoller(crm, books, store, Events())
    poller.run()
    assert "closeloop_recurring_invoice_number" not in crm.deal_properties[DEAL.object_id]
    # When QuickBooks makes the templates' first invoices (both start today) and the poller runs
    made = QuickBooksDriver(qbo).run_recurring(today(qbo))
    assert len(made) == 2
    poller.run()
    # Then the deal shows the latest generated invoice, its one-off invoice's properties untouched
    written = crm.deal_properties[DEAL.object_id]
    numbers = {str(r["DocNumber"]) for r in qbo.rows("Invoice") if r["Id"] in made}
    assert written["closeloop_recurring_invoice_number"] in numbers
    assert written["closeloop_recurring_amount_due"] in {"99.00", "440.00"}
    (one_off,) = [r for r in qbo.rows("Invoice") if r["Id"] not in made]
    assert written["closeloop_invoice_number"] == one_off["DocNumber"]


def test_the_spec_lists_repeating_invoice_and_the_adapter_implements_the_whole_port() -> None:
    from closeloop.ports import RecurringAccounting  # noqa: PLC0415
    from closeloop.vendors.quickbooks import SPEC  # noqa: PLC0415

    assert "repeating_invoice" in SPEC.capabilities.objects
    methods = [n for n, v in vars(RecurringAccounting).items() if callable(v) and not n.startswith("_")]
    assert sorted(methods) == ["create_schedule", "end_schedule", "extend_schedule", "find_schedule", "get_schedule"]
    assert all(callable(getattr(QuickBooksAccounting, n, None)) for n in methods)


def test_a_renewal_extends_the_template_and_a_cancelled_contract_makes_both_inactive(
    sandbox: tuple[QuickBooksSandbox, SandboxServer],
) -> None:
    qbo, server = sandbox
    sync, crm, _, _ = wired(qbo, server)
    sync.sync(DEAL, events_for(DEAL))
    monthly_id = next(t["Id"] for t in templates(qbo) if t["RecurringInfo"]["Name"].endswith("/monthly"))
    before = next(t for t in templates(qbo) if t["Id"] == monthly_id)["RecurringInfo"]["ScheduleInfo"]["EndDate"]
    # When the monthly lines are renewed for 24 periods, Then the same template runs a year longer
    deal = crm.deals[DEAL.object_id]
    renewed = tuple(
        li.model_copy(update={"recurring_periods": 24}) if li.recurring_frequency == "monthly" else li
        for li in deal.line_items
    )
    crm.deals[DEAL.object_id] = deal.model_copy(update={"line_items": renewed})
    sync.sync(DEAL, events_for(DEAL))
    after = next(t for t in templates(qbo) if t["Id"] == monthly_id)["RecurringInfo"]["ScheduleInfo"]["EndDate"]
    assert date.fromisoformat(after) > date.fromisoformat(before) and len(templates(qbo)) == 2
    # When the deal leaves the won stages (the contract was cancelled), Then both templates stop
    crm.deals[DEAL.object_id] = crm.deals[DEAL.object_id].model_copy(update={"is_won": False, "stage": "closedlost"})
    sync.sync(DEAL, events_for(DEAL))
    assert [t["RecurringInfo"]["Active"] for t in templates(qbo)] == [False, False]
    assert crm.deal_properties[DEAL.object_id]["closeloop_schedule_ids"] == ""


def test_the_reconciliation_counts_generated_invoices_as_the_schedule_s_and_lists_one_ended_in_quickbooks(
    sandbox: tuple[QuickBooksSandbox, SandboxServer],
) -> None:
    from closeloop.sync.reconcile import reconcile  # noqa: PLC0415

    qbo, server = sandbox
    sync, crm, books, store = wired(qbo, server)
    sync.sync(DEAL, events_for(DEAL))
    day = today(qbo)
    QuickBooksDriver(qbo).run_recurring(day)

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

    # Then the generated invoices are no duplicate or orphan of the deal
    assert not [d for d in run() if d.startswith(("duplicate_invoice", "invoice_without_deal", "schedule"))]
    # When finance makes the monthly template inactive in QuickBooks, Then it is listed as ended early
    monthly = next(t for t in templates(qbo) if t["RecurringInfo"]["Name"].endswith("/monthly"))
    books.end_schedule(monthly["Id"], idempotency_key="finance")
    assert [d for d in run() if d.startswith("schedule_ended_early")]
