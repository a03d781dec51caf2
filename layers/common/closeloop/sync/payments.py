"""Payments back: invoice payment status and the customer's financial summary flow to the CRM.

Each run reads only the invoices changed since the stored watermark (the accounting system's change feed,
paged), so its vendor cost grows with the changes, not with the number of invoices. The invoices a repeating
schedule generates carry its reference (deal and frequency): they update the deal's "latest scheduled
invoice" properties through the schedule's own mapping, never through a second invoice mapping. Invoices that turn
overdue without changing are found in the store's due-date index, at no vendor cost. For every mapped deal
whose payment state changed, the deal gets payment status, amounts and last payment date; every customer
touched gets outstanding, overdue, total invoiced and total paid. CRM writes go in batches; only after
they succeed are status changes published and the watermark advanced, so a failed run is simply redone. A
vendor's 429 (``RateLimited``, after the HTTP client's own waits) does not fail a scheduled run: it ends as
``deferred`` with the watermark where it was, and the next run redoes it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from closeloop.errors import RateLimited, ValidationFailed
from closeloop.models import CrmRef, Invoice
from closeloop.ports import AccountingPort, CrmPort, IdMapping, PropertyDefinition, SyncStore
from closeloop.rules import FieldRules
from closeloop.sync.catchup import deferral
from closeloop.sync.invoices import CUSTOMER_PROPERTIES, DEAL_PROPERTIES, money, write_back_values
from closeloop.sync.payment_status import payment_status
from closeloop.sync.recurring import SCHEDULE_PROPERTIES, parse_schedule_reference, schedule_system

#: Statuses that count towards what a customer owes (drafts are not invoices yet; voided ones never were).
BILLED = frozenset({"SUBMITTED", "AUTHORISED", "PAID"})
COMPARED = (
    "closeloop_invoice_status",
    "closeloop_payment_status",
    "closeloop_amount_due",
    "closeloop_amount_paid",
    "closeloop_last_payment_date",
)


class PaymentStore(SyncStore, Protocol):
    def get_watermark(self, name: str) -> datetime | None: ...

    def put_watermark(self, name: str, value: datetime) -> None: ...

    def put_customer_invoice(self, system: str, invoice: Invoice, *, open_: bool) -> None: ...

    def list_customer_invoices(self, system: str, customer_id: str) -> list[Invoice]: ...

    def list_open_invoices_due(self, system: str, due_from: date, due_to: date) -> list[Invoice]: ...


class StatusEvents(Protocol):
    def publish(self, detail_type: str, details: Iterable[Mapping[str, Any]]) -> None:
        """Publish one event per detail (EventBridge in production)."""


@dataclass
class PollResult:
    changed_invoices: int = 0
    deals_updated: int = 0
    customers_updated: int = 0
    status_changes: list[dict[str, str]] = field(default_factory=list)
    watermark: datetime | None = None
    #: why the run stopped and left its work to the next run ("" when it did not): nothing was published
    #: and the watermark stayed
    deferred: str = ""


def summary(invoices: Iterable[Invoice], today: date) -> dict[str, str]:
    """A customer's financial summary from its invoices (one currency per customer is assumed)."""
    billed = [i for i in invoices if i.status in BILLED]
    outstanding = sum((i.amount_due for i in billed), Decimal(0))
    overdue = sum((i.amount_due for i in billed if payment_status(i, today) == "overdue"), Decimal(0))
    return {
        "closeloop_outstanding_balance": money(outstanding),
        "closeloop_overdue_balance": money(overdue),
        "closeloop_total_invoiced": money(sum((i.total for i in billed), Decimal(0))),
        "closeloop_total_paid": money(sum((i.amount_paid for i in billed), Decimal(0))),
    }


def is_open(invoice: Invoice) -> bool:
    return invoice.status in ("AUTHORISED", "SUBMITTED") and invoice.amount_due > 0


class PaymentPoller:
    """One poll of the accounting system's changes into the CRM."""

    EVENT_TYPE = "closeloop.payment-status-changed"

    def __init__(
        self,
        crm: CrmPort,
        accounting: AccountingPort,
        store: PaymentStore,
        events: StatusEvents,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        rules: FieldRules | None = None,
    ) -> None:
        self.crm = crm
        self.accounting = accounting
        self.store = store
        self.events = events
        self.clock = clock
        self.rules = rules or FieldRules.load()

    @property
    def watermark_name(self) -> str:
        return f"payments#{self.accounting.name}"

    def run(self) -> PollResult:
        """Poll once. Raises IntegrationError subclasses but RateLimited (a result ``deferred`` instead); the
        watermark then stays where it was."""
        since = self.store.get_watermark(self.watermark_name)
        try:
            return self._run(since)
        except RateLimited as exc:
            # Deal writes made before the 429 are made again by the next run (they set the same values); the
            # mappings, the status events and the watermark wait for it.
            return PollResult(watermark=since, deferred=deferral(exc))

    def _run(self, since: datetime | None) -> PollResult:
        today = self.clock().date()
        result = PollResult(watermark=since)
        changed = self._changed_invoices(since, today, result)
        deal_updates, touched = self._deal_updates(changed, today, result)
        customer_updates = self._customer_updates(changed, today)
        if self.rules.direction("payment") in ("off", "crm_to_accounting"):
            deal_updates, customer_updates, touched = {}, {}, []  # the field rules keep payments out of the CRM
        if deal_updates:
            self._with_properties(
                lambda: self.crm.update_deals(deal_updates), {"deal": DEAL_PROPERTIES + SCHEDULE_PROPERTIES}
            )
        if customer_updates:
            kinds: dict[str, tuple[PropertyDefinition, ...]] = {
                r.object_type: CUSTOMER_PROPERTIES for r in customer_updates
            }
            self._with_properties(lambda: self.crm.update_customers(customer_updates), kinds)
        for mapping, written in touched:
            self.store.put_mapping(
                IdMapping(
                    mapping.ref,
                    mapping.system,
                    mapping.accounting_id,
                    {**mapping.snapshot, **written},
                    updated_at=self.clock(),
                )
            )
        if result.status_changes:
            self.events.publish(self.EVENT_TYPE, result.status_changes)
        if result.watermark is not None and result.watermark != since:
            self.store.put_watermark(self.watermark_name, result.watermark)
        result.deals_updated = len(deal_updates)
        result.customers_updated = len(customer_updates)
        return result

    def _with_properties(self, write: Callable[[], None], needed: Mapping[str, tuple[PropertyDefinition, ...]]) -> None:
        """Write; if the CRM refuses because our custom properties are missing, create them once and retry."""
        try:
            write()
        except ValidationFailed:
            created = [self.crm.ensure_properties(kind, definitions) for kind, definitions in needed.items()]
            if not any(created):
                raise
            write()

    def _changed_invoices(self, since: datetime | None, today: date, result: PollResult) -> dict[str, Invoice]:
        changed: dict[str, Invoice] = {}
        for invoice in self.accounting.iter_invoices_changed_since(since):
            changed[invoice.id] = invoice
            if invoice.updated_at and (result.watermark is None or invoice.updated_at > result.watermark):
                result.watermark = invoice.updated_at
        result.changed_invoices = len(changed)
        # Open invoices whose due date passed since the last run turn overdue without changing.
        last_run = (since or self.clock()).date()
        due = self.store.list_open_invoices_due(
            self.accounting.name, last_run - timedelta(days=1), today - timedelta(1)
        )
        for invoice in due:
            changed.setdefault(invoice.id, invoice)
        return changed

    def _deal_updates(
        self, changed: Mapping[str, Invoice], today: date, result: PollResult
    ) -> tuple[dict[str, dict[str, str]], list[tuple[IdMapping, dict[str, str]]]]:
        """The deal writes the changed invoices bring, and the mappings to update with what was written."""
        system = self.accounting.name
        updates: dict[str, dict[str, str]] = {}
        touched: list[tuple[IdMapping, dict[str, str]]] = []
        for invoice in changed.values():
            if invoice.customer_id:
                self.store.put_customer_invoice(system, invoice, open_=is_open(invoice))
            ref = self.store.find_ref(system, invoice.id)
            mapping = self.store.get_mapping(ref, system) if ref and ref.object_type == "deal" else None
            if mapping is None:
                # A schedule's generated invoice, or not one of ours (made by hand in accounting: it still
                # counts in the customer's summary).
                self._scheduled_invoice(invoice, today, updates, touched)
                continue
            values = write_back_values(invoice, today)
            if all(mapping.snapshot.get(k, "") == values[k] for k in COMPARED):
                continue  # already written: idempotent runs write nothing
            updates[mapping.ref.object_id] = {**updates.get(mapping.ref.object_id, {}), **values}
            touched.append((mapping, values))
            before = mapping.snapshot.get("closeloop_payment_status", "")
            if before != values["closeloop_payment_status"]:
                result.status_changes.append(
                    {
                        "crm": mapping.ref.crm,
                        "deal_id": mapping.ref.object_id,
                        "invoice_id": invoice.id,
                        "invoice_number": invoice.number,
                        "previous_status": before,
                        "status": values["closeloop_payment_status"],
                        "amount_due": values["closeloop_amount_due"],
                        "amount_paid": values["closeloop_amount_paid"],
                        "currency": invoice.currency,
                    }
                )
        return updates, touched

    def _scheduled_invoice(
        self,
        invoice: Invoice,
        today: date,
        updates: dict[str, dict[str, str]],
        touched: list[tuple[IdMapping, dict[str, str]]],
    ) -> None:
        """An invoice generated by one of our schedules (its reference names the deal and frequency) shows
        on the deal as its latest scheduled invoice; an older one changing later does not replace it."""
        named = parse_schedule_reference(self.crm.name, invoice.reference)
        if named is None:
            return
        ref, frequency = named
        mapping = self.store.get_mapping(ref, schedule_system(self.accounting.name, frequency))
        if mapping is None or (
            invoice.customer_id and mapping.snapshot.get("customer_id", invoice.customer_id) != invoice.customer_id
        ):
            return
        issued = invoice.issue_date.isoformat() if invoice.issue_date else ""
        latest = mapping.snapshot.get("recurring_invoice_date", "")
        if latest and issued < latest and mapping.snapshot.get("recurring_invoice_id") != invoice.id:
            return
        values = {
            "closeloop_recurring_invoice_number": invoice.number,
            "closeloop_recurring_payment_status": payment_status(invoice, today),
            "closeloop_recurring_amount_due": money(invoice.amount_due),
        }
        if all(mapping.snapshot.get(k, "") == v for k, v in values.items()):
            return
        updates[ref.object_id] = {**updates.get(ref.object_id, {}), **values}
        touched.append((mapping, {**values, "recurring_invoice_date": issued, "recurring_invoice_id": invoice.id}))

    def _customer_updates(self, changed: Mapping[str, Invoice], today: date) -> dict[CrmRef, dict[str, str]]:
        system = self.accounting.name
        updates: dict[CrmRef, dict[str, str]] = {}
        for customer_id in {i.customer_id for i in changed.values() if i.customer_id}:
            owner = self.store.find_ref(system, customer_id)
            if owner is not None and owner.object_type in ("company", "contact"):
                updates[owner] = summary(self.store.list_customer_invoices(system, customer_id), today)
        return updates
