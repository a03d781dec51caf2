"""DealSync's WonDealFlow hook: what a flow promises is billed, what it bills itself stays off the one-off
invoice, and its follow-up runs after the invoice on every delivery (a crash before it is healed)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from closeloop.errors import ValidationFailed
from closeloop.models import Deal, LineItem, SyncEvent
from closeloop.ports import FailedSync
from tests.deal_sync_support import DEAL, setup, won_deal
from tests.fakes import events_for


@dataclass
class Flow:
    """A flow that bills line "3" itself and records each follow-up it was asked for."""

    off: frozenset[str] = frozenset({"3"})
    promise: tuple[LineItem, ...] = ()
    followed: list[tuple[str, tuple[str, ...], str]] = field(default_factory=list)
    fail: bool = False
    name: str = "test"

    def promised(self, deal: Deal) -> Deal:
        return deal.model_copy(update={"line_items": self.promise}) if self.promise else deal

    def off_invoice(self, deal: Deal) -> frozenset[str]:
        return self.off & {line.crm_id for line in deal.line_items}

    def follow(self, deal: Deal, customer_id: str, event: SyncEvent | None) -> None:
        if self.fail:
            raise ValidationFailed("the flow refused")
        self.followed.append((deal.ref.object_id, tuple(line.crm_id for line in deal.line_items), customer_id))


def test_lines_a_flow_bills_stay_off_the_invoice_and_the_amount_check_leaves_them_out() -> None:
    flow = Flow()
    # 298.50 + 500.00 one-off; line 3 (440.25) is the flow's: the deal amount covers all three
    sync, crm, books, store = setup(won_deal(amount=Decimal("1238.75")))
    sync.flows = (flow,)
    outcome = sync.sync(DEAL, events_for(DEAL))
    assert outcome.action == "created"
    (invoice,) = books.invoices.values()
    assert [line.item_code for line in books.drafts[invoice.id].lines] == ["ANV-1", "ROCKET-XL"]
    assert crm.deal_properties[DEAL.object_id]["closeloop_sync_issue"] == ""  # 798.50 == 1238.75 - 440.25
    # the flow follows the whole promised deal, with the invoice's customer
    assert flow.followed == [(DEAL.object_id, ("1", "2", "3"), invoice.customer_id)]


def test_a_flow_follows_again_on_redelivery_so_a_crash_before_it_is_healed() -> None:
    flow = Flow(fail=True)
    sync, crm, books, store = setup()
    sync.flows = (flow,)
    first = sync.sync(DEAL, events_for(DEAL))
    assert first.action == "failed" and "the flow refused" in first.detail
    assert len(books.invoices) == 1  # the invoice exists; the flow's failure is the deal's failed sync
    assert store.get_failed_sync(DEAL) is not None
    flow.fail = False
    again = sync.sync(DEAL, events_for(DEAL))
    assert again.action == "unchanged"
    assert len(books.invoices) == 1
    assert [f[0] for f in flow.followed] == [DEAL.object_id]
    assert store.get_failed_sync(DEAL) is None  # healed: the flow's failure is cleared


def test_a_healed_flow_keeps_the_failed_sync_of_an_invoice_email_that_may_not_have_been_sent() -> None:
    from dataclasses import replace  # noqa: PLC0415

    from closeloop.ports import InvoiceEmail  # noqa: PLC0415

    flow = Flow()
    sync, crm, books, store = setup(won_deal(amount=Decimal("1238.75")))
    sync.flows = (flow,)
    sync.policy = replace(sync.policy, send_email=True)
    assert sync.sync(DEAL, events_for(DEAL)).action == "created"
    store.put_invoice_email(InvoiceEmail(DEAL, books.name, "unknown"))
    store.record_failed_sync(
        FailedSync(DEAL, datetime.now(UTC), "the email may not have been sent", "OutcomeUnknown", "")
    )
    assert sync.sync(DEAL, events_for(DEAL)).action == "unchanged"
    assert store.get_failed_sync(DEAL) is not None


def test_a_deal_whose_every_line_has_its_flow_gets_no_invoice_but_its_flows() -> None:
    flow = Flow(off=frozenset({"1", "2", "3"}))
    sync, crm, books, store = setup()
    sync.flows = (flow,)
    outcome = sync.sync(DEAL, events_for(DEAL))
    assert outcome.action == "skipped" and "no one-off line" in outcome.detail
    assert books.invoices == {}
    assert len(flow.followed) == 1 and flow.followed[0][2]  # the customer was synced for the flow


def test_the_invoice_bills_what_a_flow_promised() -> None:
    quoted = (LineItem(crm_id="q1", name="Anvil", sku="ANV-1", quantity=Decimal(4), unit_price=Decimal("90.00")),)
    flow = Flow(off=frozenset(), promise=quoted)
    sync, crm, books, store = setup(won_deal(amount=Decimal("360.00")))
    sync.flows = (flow,)
    assert sync.sync(DEAL, events_for(DEAL)).action == "created"
    (invoice,) = books.invoices.values()
    assert [(line.item_code, line.quantity, line.unit_amount) for line in books.drafts[invoice.id].lines] == [
        ("ANV-1", Decimal(4), Decimal("90.00"))
    ]
    assert crm.deal_properties[DEAL.object_id]["closeloop_sync_issue"] == ""
