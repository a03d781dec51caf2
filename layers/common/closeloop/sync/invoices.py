"""Deal pipeline: a deal entering a won stage becomes exactly one invoice, traceable back to the deal.

Under a per-deal lease: the customer is ensured first through the contact pipeline (create-or-match);
an invoice already made for the deal is found by the stored mapping, then by its Reference (which carries
the deal id, so a crash between the vendor's create and our mapping write is healed); only then is one
created, with an idempotency key derived from the deal alone (duplicate and concurrent deliveries of any
event share it). The invoice is written back to the deal (number, link, status, amount due), and its
total is checked against the deal amount to the cent; a difference is flagged on the deal and audited.
Lines come from the deal's line items: SKU -> item code (with a configurable map); an unknown SKU is a
failed sync naming it, never a guessed line. Tax comes from the rule table (closeloop.sync.tax).

Emailing the invoice (``send_email``) is a side effect without an idempotency key at any vendor, so it is
tracked by a marker in the store (``InvoiceEmail``): ``to_send`` is written before the invoice is created,
so a crash between the create and the send leaves a promise that the next attempt keeps; ``sending`` is
written just before the call and ``sent`` after it. A marker found at ``sending`` (the worker died
mid-call) or a send whose answer was lost (Unanswered) becomes ``unknown``: a failed sync saying the
email may not have been sent, and never a second send. The send comes after the mapping and write-back,
so a refused send (no email address) leaves the invoice linked and the promise pending.

Other flows a won deal brings (an accounting quote billed by the invoice, repeating schedules, purchase
orders) plug in as ``WonDealFlow``s: they decide what the deal promised (``promised``: e.g. the quote's
lines), which lines stay off the one-off invoice (``off_invoice``: recurring lines), and make their own
records after it (``follow``), on every delivery of the won deal, each exactly once by its own mapping. So
a crash after the invoice and before a flow is healed by the next delivery or replay.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Literal, Protocol, runtime_checkable

from closeloop.errors import FatalError, IntegrationError, OutcomeUnknown, Unanswered, ValidationFailed
from closeloop.models import (
    CrmRef,
    Customer,
    Deal,
    Invoice,
    InvoiceDraft,
    InvoiceLine,
    Item,
    LineAmountTypes,
    LineItem,
    SyncEvent,
)
from closeloop.ports import (
    AccountingPort,
    CrmPort,
    IdMapping,
    InvoiceEmail,
    InvoiceEmailState,
    InvoiceEmailStore,
    PropertyDefinition,
    SyncStore,
)
from closeloop.sync.contacts import ContactSync, Outcome
from closeloop.sync.leases import held
from closeloop.sync.payment_status import payment_status
from closeloop.sync.products import ProductSync
from closeloop.sync.tax import DEFAULT_RULES, TaxRule, rule_for
from closeloop.sync.trail import Trail
from closeloop.telemetry import NO_TELEMETRY, Telemetry

CENT = Decimal("0.01")

PAYMENT_STATUSES = ("draft", "awaiting_payment", "partially_paid", "paid", "overdue", "voided")

#: The deal properties Closeloop writes (``closeloop setup`` creates them; the worker does when missing).
DEAL_PROPERTIES: tuple[PropertyDefinition, ...] = (
    PropertyDefinition("closeloop_invoice_number", "Invoice number", description="Set by Closeloop"),
    PropertyDefinition("closeloop_invoice_url", "Invoice link", description="Opens the invoice in accounting"),
    PropertyDefinition("closeloop_invoice_status", "Invoice status", description="As the accounting system says"),
    PropertyDefinition("closeloop_payment_status", "Payment status", "enumeration", PAYMENT_STATUSES),
    PropertyDefinition("closeloop_amount_due", "Amount due", "number"),
    PropertyDefinition("closeloop_amount_paid", "Amount paid", "number"),
    PropertyDefinition("closeloop_last_payment_date", "Last payment date", "date"),
    PropertyDefinition("closeloop_sync_issue", "Sync issue", description="A difference Closeloop flagged"),
)

#: The company (customer) properties the payment poller writes: the customer's financial summary.
CUSTOMER_PROPERTIES: tuple[PropertyDefinition, ...] = (
    PropertyDefinition("closeloop_outstanding_balance", "Outstanding balance", "number"),
    PropertyDefinition("closeloop_overdue_balance", "Overdue balance", "number"),
    PropertyDefinition("closeloop_total_invoiced", "Total invoiced", "number"),
    PropertyDefinition("closeloop_total_paid", "Total paid", "number"),
)


@dataclass(frozen=True)
class InvoicePolicy:
    """How invoices are made, per deployment (see the README's configuration table)."""

    status: Literal["DRAFT", "AUTHORISED"] = "DRAFT"
    send_email: bool = False
    due_days: int = 30
    default_currency: str = ""
    sku_item_codes: Mapping[str, str] = field(default_factory=dict)
    tax_rules: tuple[TaxRule, ...] = DEFAULT_RULES


def invoice_reference(deal: Deal) -> str:
    """``hubspot-deal-3000001 Big deal``: the deal id first (unique, searchable), then its name."""
    return f"{deal.ref.crm}-deal-{deal.ref.object_id} {deal.name}".strip()[:255]


def deal_idempotency_key(ref: CrmRef, action: str) -> str:
    return f"closeloop-{hashlib.sha256(f'{ref}|{action}'.encode()).hexdigest()}"


def money(value: Decimal) -> str:
    return str(value.quantize(CENT))


def billing_currency(currency: str, policy: InvoicePolicy, what: str = "deal") -> str:
    """The currency a deal (or quote) is billed in: its own, else DEFAULT_CURRENCY. Raises ValidationFailed."""
    chosen = (currency or policy.default_currency).upper()
    if not chosen:
        raise ValidationFailed(f"the {what} has no currency and DEFAULT_CURRENCY is not set")
    return chosen


def billed_lines(
    line_items: Sequence[LineItem], customer: Customer, items: Mapping[str, Item], policy: InvoicePolicy
) -> tuple[tuple[InvoiceLine, ...], LineAmountTypes]:
    """The accounting lines of CRM ``line_items`` (SKU -> item code, tax by the rule table, a sales-tax line
    where the rule adds one) and how their amounts treat tax: what an invoice and an accounting quote bill.
    Raises ValidationFailed naming a line without a SKU or a SKU without an item."""
    rule = rule_for(customer, policy.tax_rules)
    lines: list[InvoiceLine] = []
    for line in line_items:
        if not line.sku:
            raise ValidationFailed(f"line item {line.name or line.crm_id!r} has no SKU")
        code = policy.sku_item_codes.get(line.sku, line.sku)
        item = items.get(code)
        if item is None:
            raise ValidationFailed(f"unknown SKU {line.sku!r}: no accounting item with code {code!r}")
        lines.append(
            InvoiceLine(
                item_code=item.code,
                description=line.name or item.name or item.code,
                quantity=line.quantity,
                unit_amount=line.unit_price,
                tax_type=rule.tax_type or item.tax_type,
                discount_rate=line.discount_percent or None,
            )
        )
    if rule.treatment == "sales_tax_line" and rule.sales_tax_rate:
        net = sum((_net(line) for line in lines), Decimal(0))
        tax = (net * rule.sales_tax_rate / 100).quantize(CENT)
        lines.append(
            InvoiceLine(
                item_code="",
                description=f"{rule.sales_tax_description} ({rule.sales_tax_rate}%)",
                quantity=Decimal(1),
                unit_amount=tax,
                tax_type=rule.tax_type,
                account_code=rule.sales_tax_account_code,
            )
        )
    return tuple(lines), rule.amounts


def build_draft(
    deal: Deal,
    customer: Customer,
    customer_id: str,
    items: Mapping[str, Item],
    policy: InvoicePolicy,
    today: date,
) -> InvoiceDraft:
    """The invoice for a won deal. Raises ValidationFailed naming what is missing (SKU, currency, lines)."""
    if not deal.line_items:
        raise ValidationFailed("the deal has no line items to invoice")
    currency = billing_currency(deal.currency, policy)
    lines, amounts = billed_lines(deal.line_items, customer, items, policy)
    issued = deal.close_date or today
    return InvoiceDraft(
        customer_id=customer_id,
        reference=invoice_reference(deal),
        currency=currency,
        lines=lines,
        line_amount_types=amounts,
        status=policy.status,
        issue_date=issued,
        due_date=issued + timedelta(days=policy.due_days),
        url=deal.url,
        accounting_quote_id=deal.accounting_quote_id,
    )


def items_just_in_time(
    accounting: AccountingPort,
    products: ProductSync,
    store: SyncStore,
    policy: InvoicePolicy,
    crm_name: str,
    line_items: Sequence[LineItem],
    missing: set[str],
    event: SyncEvent | None,
) -> dict[str, Item]:
    """Create the items ``line_items`` need from their CRM products first (catalogue sync on): the invoice's
    and the accounting quote's way to an item for a SKU the accounting system lacks.

    A line without a linked product is left to ``billed_lines`` (which names the unknown SKU); a product that
    cannot become an item fails with the product's own reason (the product keeps its failed sync too).
    """
    made: set[str] = set()
    for line in line_items:
        code = policy.sku_item_codes.get(line.sku, line.sku)
        if code not in missing or code in made:
            continue
        if not line.product_id:
            continue  # no product to make the item from: billed_lines names the unknown SKU
        product = CrmRef(crm=crm_name, object_type="product", object_id=line.product_id)
        outcome = products.sync(product, [event] if event else [])
        if outcome.action not in ("created", "matched", "updated", "unchanged"):
            failure = store.get_failed_sync(product)
            why = failure.reason if failure else outcome.detail
            raise ValidationFailed(
                f"line item {line.name or line.crm_id!r}: its product could not become an item: {why}"
            )
        made.add(code)
    return accounting.get_items(made) if made else {}


def line_net(line: LineItem) -> Decimal:
    """A CRM line's amount before tax: the CRM's own total where it has one, else quantity x price less discount."""
    if line.amount is not None:
        return line.amount
    gross = line.quantity * line.unit_price
    if line.discount_percent:
        gross -= gross * line.discount_percent / 100
    return gross.quantize(CENT)


def _net(line: InvoiceLine) -> Decimal:
    gross = line.quantity * line.unit_amount
    if line.discount_rate:
        gross -= gross * line.discount_rate / 100
    return gross.quantize(CENT)


def write_back_values(invoice: Invoice, today: date) -> dict[str, str]:
    """The deal properties that describe ``invoice`` (strings; "" clears)."""
    return {
        "closeloop_invoice_number": invoice.number,
        "closeloop_invoice_url": invoice.url,
        "closeloop_invoice_status": invoice.status,
        "closeloop_payment_status": payment_status(invoice, today),
        "closeloop_amount_due": money(invoice.amount_due),
        "closeloop_amount_paid": money(invoice.amount_paid),
        "closeloop_last_payment_date": invoice.last_payment_date.isoformat() if invoice.last_payment_date else "",
    }


class DealStore(SyncStore, InvoiceEmailStore, Protocol):
    """What DealSync keeps: the sync store and the invoice email markers."""


class WonDealFlow(Protocol):
    """Work a won deal brings besides its one-off invoice (quotes, repeating schedules, purchase orders).

    DealSync calls it under the deal's lease, in the order given: ``promised`` on the deal as read (each
    flow on the previous one's answer), ``off_invoice`` on the promised deal, then ``follow`` once the
    invoice exists (or when no line is left for one). ``follow`` runs on every delivery of the won deal, so
    it finds what it made before by its own mapping (never a second record), and raises FatalError (a
    failed sync of the deal, with its reason) or RetriableError like the invoice does.
    """

    name: str

    def promised(self, deal: Deal) -> Deal:
        """The deal with the lines it promised the customer (e.g. its accepted quote's, with that accounting
        quote's id for the invoice to name: ``accounting_quote_id``); ``deal`` if none.

        Called on every deal, won or not, before the won check: a flow may return the deal as won (``is_won``)
        when it makes the deal billable itself (a quote accepted, by configuration); a flow with nothing to do
        for a deal that is not won returns it untouched without reading anything."""
        ...

    def off_invoice(self, deal: Deal) -> frozenset[str]:
        """The ``crm_id``s of lines this flow bills itself, which the one-off invoice leaves out."""
        ...

    def follow(self, deal: Deal, customer_id: str, event: SyncEvent | None) -> None:
        """Make (or find) this flow's accounting records for the won, promised deal; write them back."""


@runtime_checkable
class WithdrawnDealFlow(Protocol):
    """A WonDealFlow whose records outlive the won moment (repeating schedules): told when the deal is no
    longer won, or is gone, so it can end them. Called under the deal's lease on every delivery of such a
    deal, so it must be cheap when it made nothing for it (one store read)."""

    def withdrawn(self, ref: CrmRef, deal: Deal | None, event: SyncEvent | None) -> None:
        """The deal left the won stages (``deal``) or was deleted (None): end what this flow runs for it."""


def write_to_deal(
    crm: CrmPort, deal_id: str, values: Mapping[str, str], definitions: Iterable[PropertyDefinition]
) -> None:
    """Write Closeloop's properties on a deal; when the CRM refuses them (most likely they do not exist
    yet) create ``definitions`` once and write again."""
    try:
        crm.update_deals({deal_id: values})
    except ValidationFailed:
        if not crm.ensure_properties("deal", tuple(definitions)):
            raise
        crm.update_deals({deal_id: values})


class DealSync:
    """Vendor-free won deal -> invoice over the ports. ``telemetry`` counts each invoice created."""

    def __init__(
        self,
        crm: CrmPort,
        accounting: AccountingPort,
        store: DealStore,
        contacts: ContactSync,
        policy: InvoicePolicy,
        *,
        owner: str,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        telemetry: Telemetry = NO_TELEMETRY,
        products: ProductSync | None = None,
        flows: Sequence[WonDealFlow] = (),
    ) -> None:
        """``products``: the catalogue sync, when on (PRODUCT_SYNC): a SKU without an item is made from its
        CRM product just in time, instead of failing the deal. ``flows``: the other work a won deal brings
        (see WonDealFlow), in order."""
        self.products = products
        self.flows = tuple(flows)
        self.crm = crm
        self.accounting = accounting
        self.store = store
        self.contacts = contacts
        self.policy = policy
        self.owner = owner
        self.clock = clock
        self.telemetry = telemetry
        self.trail = Trail(store, accounting.name, clock)

    def sync(self, ref: CrmRef, events: Iterable[SyncEvent]) -> Outcome:
        """Invoice the deal behind ``ref`` if it is won and not invoiced yet. Raises RetriableError."""
        ordered = sorted(events, key=lambda e: e.occurred_at)
        trigger = ordered[-1] if ordered else None
        if ref.object_type != "deal":
            return self.contacts.sync(ref, ordered)  # a mixed batch: customers go their own way
        if self.contacts.rules.direction("invoice") in ("off", "accounting_to_crm"):
            self.trail.audit(ref, "ignored", "", trigger, {}, "invoicing from the CRM is off (field rules)")
            return Outcome(ref, "skipped", detail="invoice direction is off")
        try:
            with held(self.store, f"deal#{ref}", self.owner, f"{ref} is being invoiced by another worker"):
                return self._sync_deal(ref, trigger)
        except FatalError as exc:
            self.trail.fail(ref, trigger, str(exc), type(exc).__name__)
            return Outcome(ref, "failed", detail=exc.message)

    def _sync_deal(self, ref: CrmRef, event: SyncEvent | None) -> Outcome:
        mapping = self.store.get_mapping(ref, self.accounting.name)
        if mapping is not None:
            return self._already_invoiced(ref, mapping, event)

        deal = self.crm.get_deal(ref.object_id)
        if deal is None:
            self._withdraw(ref, None, event)
            return Outcome(ref, "skipped", detail="gone from CRM")
        # Before the won check: a flow may make the deal billable (its quote accepted, by configuration).
        deal = self._promised(deal)
        if not deal.is_won:
            self._withdraw(ref, deal, event)
            return Outcome(ref, "skipped", detail="not in a won stage")
        party = deal.company or deal.contact
        if party is None:
            raise ValidationFailed("the won deal has no associated company or contact to invoice")

        existing = self.accounting.find_invoice(invoice_reference(deal))
        if existing is not None:
            outcome = self._finish(self._one_off(deal), existing, None, event, "found by reference")
            self._email_if_promised(ref, existing, event)  # made by an attempt that died before emailing it
            self._follow(deal, existing.customer_id, event)
            return outcome

        customer_outcome = self.contacts.sync(party, [event] if event else [])
        if customer_outcome.action in ("failed", "skipped") or not customer_outcome.accounting_id:
            raise ValidationFailed(f"the deal's customer {party} could not be synced: {customer_outcome.detail}")
        customer = self.crm.resolve_customer(party)
        if customer is None:
            raise ValidationFailed(f"the deal's customer {party} no longer exists in the CRM")
        billed = self._one_off(deal)
        if deal.line_items and not billed.line_items:
            # Every line is billed by a flow (e.g. all recurring): no one-off invoice, and nothing to map.
            self._follow(deal, customer_outcome.accounting_id, event)
            self.trail.audit(ref, "skipped", "", event, {}, "no one-off line to invoice: every line has its flow")
            self.store.clear_failed_sync(ref)
            return Outcome(ref, "skipped", detail="no one-off line to invoice")
        codes = {self.policy.sku_item_codes.get(li.sku, li.sku) for li in billed.line_items if li.sku}
        items = self.accounting.get_items(codes) if codes else {}
        if self.products is not None and codes - set(items):
            missing = codes - set(items)
            made = items_just_in_time(
                self.accounting, self.products, self.store, self.policy, ref.crm, billed.line_items, missing, event
            )
            items = {**items, **made}
        draft = build_draft(billed, customer, customer_outcome.accounting_id, items, self.policy, self.clock().date())
        if self.policy.send_email:
            self._mark_email(ref, "to_send")  # before the create: a crash after it still owes the email
        invoice = self.accounting.create_invoice(draft, idempotency_key=deal_idempotency_key(ref, "invoice"))
        # Counted as soon as it exists: a retry after a later failure finds it by reference, and is not counted.
        self.telemetry.invoice_created()
        outcome = self._finish(billed, invoice, draft, event, "created")
        self._email_if_promised(ref, invoice, event)
        self._follow(deal, customer_outcome.accounting_id, event)
        return outcome

    def _already_invoiced(self, ref: CrmRef, mapping: IdMapping, event: SyncEvent | None) -> Outcome:
        # Invoiced before (a redelivery, or the deal left and re-entered a won stage): never again.
        if mapping.snapshot.get("written_back") != "yes":
            invoice = self.accounting.get_invoice(mapping.accounting_id)
            if invoice is not None:
                self._write_back(ref, invoice, mapping.snapshot.get("sync_issue", ""))
                self._remember(ref, invoice, mapping.snapshot.get("sync_issue", ""), written_back=True)
        self._email_if_promised(ref, mapping.accounting_id, event)
        if self.flows and mapping.snapshot.get("kind") == "invoice":
            self._follow_mapped(ref, mapping.snapshot.get("customer_id", ""), event)
            # The flows are done now (a replay healed a flow's failure): the deal's failed sync goes, unless
            # it says the invoice email may not have been sent (that one waits for a person).
            marker = self.store.get_invoice_email(ref, self.accounting.name) if self.policy.send_email else None
            if marker is None or marker.state != "unknown":
                self.store.clear_failed_sync(ref)
        return Outcome(ref, "unchanged", mapping.accounting_id, detail="already invoiced")

    def _promised(self, deal: Deal) -> Deal:
        for flow in self.flows:
            deal = flow.promised(deal)
        return deal

    def _one_off(self, deal: Deal) -> Deal:
        """The promised deal as its one-off invoice bills it: without the lines a flow bills itself, and
        with the amount it is checked against reduced by those lines (net of discount)."""
        off = frozenset().union(*(flow.off_invoice(deal) for flow in self.flows))
        if not off:
            return deal
        kept = tuple(line for line in deal.line_items if line.crm_id not in off)
        taken = sum((line_net(line) for line in deal.line_items if line.crm_id in off), Decimal(0))
        amount = None if deal.amount is None else deal.amount - taken
        return deal.model_copy(update={"line_items": kept, "amount": amount})

    def _follow(self, deal: Deal, customer_id: str, event: SyncEvent | None) -> None:
        for flow in self.flows:
            flow.follow(deal, customer_id, event)

    def _follow_mapped(self, ref: CrmRef, customer_id: str, event: SyncEvent | None) -> None:
        """The flows of a deal invoiced before (a redelivery, a replay after a crash or a flow's failure)."""
        deal = self.crm.get_deal(ref.object_id)
        if deal is None:
            self._withdraw(ref, None, event)
            return
        promised = self._promised(deal)
        if not promised.is_won:
            self._withdraw(ref, deal, event)  # e.g. the contract was cancelled: its schedules end
            return
        if customer_id:
            self._follow(promised, customer_id, event)

    def _withdraw(self, ref: CrmRef, deal: Deal | None, event: SyncEvent | None) -> None:
        for flow in self.flows:
            if isinstance(flow, WithdrawnDealFlow):
                flow.withdrawn(ref, deal, event)

    def _mark_email(self, ref: CrmRef, state: InvoiceEmailState, invoice_id: str = "") -> None:
        self.store.put_invoice_email(InvoiceEmail(ref, self.accounting.name, state, invoice_id, self.clock()))

    def _email_if_promised(self, ref: CrmRef, invoice: Invoice | str, event: SyncEvent | None) -> None:
        """Email the deal's invoice if its marker says it is owed and not sent; exactly once.

        Raises FatalError (a failed sync) when the send was refused (the marker stays ``to_send``) or its
        outcome is unknown (the marker becomes ``unknown``: never re-sent), RetriableError when the vendor
        could not be reached (nothing was sent; the marker stays ``to_send``).
        """
        if not self.policy.send_email:
            return
        marker = self.store.get_invoice_email(ref, self.accounting.name)
        if marker is None or marker.state in ("sent", "unknown", "skipped"):
            return
        invoice_id = invoice.id if isinstance(invoice, Invoice) else invoice
        if marker.state == "sending":
            self._email_unknown(ref, marker.invoice_id or invoice_id, event, "an earlier attempt stopped mid-send")
        current = invoice if isinstance(invoice, Invoice) else self.accounting.get_invoice(invoice_id)
        if current is None or current.status != "AUTHORISED":
            self._mark_email(ref, "skipped", invoice_id)  # not approved (or gone): nothing is emailed
            return
        self._mark_email(ref, "sending", invoice_id)
        try:
            self.accounting.send_invoice(invoice_id)
        except Unanswered as exc:
            self._email_unknown(ref, invoice_id, event, exc.message)
        except IntegrationError:
            self._mark_email(ref, "to_send", invoice_id)  # refused or never sent: still owed
            raise
        self._mark_email(ref, "sent", invoice_id)
        self.trail.audit(ref, "emailed", invoice_id, event, {}, "invoice emailed to the customer")

    def _email_unknown(self, ref: CrmRef, invoice_id: str, event: SyncEvent | None, why: str) -> None:
        self._mark_email(ref, "unknown", invoice_id)
        issue = f"the email of invoice {invoice_id} may not have been sent ({why}): check, it is not re-sent"
        self.trail.audit(ref, "flagged", invoice_id, event, {}, issue)
        raise OutcomeUnknown(issue, vendor=self.accounting.name)

    def _finish(
        self, deal: Deal, invoice: Invoice, draft: InvoiceDraft | None, event: SyncEvent | None, how: str
    ) -> Outcome:
        issue = self._amount_issue(deal, invoice, draft)
        self._remember(deal.ref, invoice, issue, written_back=False)  # the mapping first: never two invoices
        self.trail.audit(
            deal.ref,
            "invoiced" if how == "created" else "linked",
            invoice.id,
            event,
            {
                "invoice_number": {"before": "", "after": invoice.number},
                "invoice_total": {"before": "", "after": f"{money(invoice.total)} {invoice.currency}"},
            },
            how,
        )
        if issue:
            self.trail.audit(deal.ref, "flagged", invoice.id, event, {}, issue)
        self._write_back(deal.ref, invoice, issue)
        self._remember(deal.ref, invoice, issue, written_back=True)
        self.store.clear_failed_sync(deal.ref)
        return Outcome(deal.ref, "created" if how == "created" else "matched", invoice.id, detail=issue or how)

    @staticmethod
    def _amount_issue(deal: Deal, invoice: Invoice, draft: InvoiceDraft | None) -> str:
        """Compare what the deal sold with what the invoice charges, to the cent.

        A CRM deal amount is the sum of its lines before tax, so it is compared with the invoice's net
        total (after tax for tax-inclusive lines), leaving out a separate sales-tax line we added.
        """
        if deal.amount is None:
            return "the deal has no amount to compare with the invoice total"
        if deal.currency and invoice.currency and deal.currency.upper() != invoice.currency.upper():
            return f"currency differs: deal {deal.currency.upper()}, invoice {invoice.currency}"
        inclusive = draft is not None and draft.line_amount_types == "Inclusive"
        charged = invoice.total if inclusive else invoice.sub_total
        if draft is not None:
            charged -= sum((line.unit_amount for line in draft.lines if not line.item_code), Decimal(0))
        if deal.amount.quantize(CENT) != charged.quantize(CENT):
            return (
                f"invoice {invoice.number or invoice.id} charges {money(charged)} {invoice.currency} before tax, "
                f"the deal amount is {money(deal.amount)}: a difference of {money(charged - deal.amount)}"
            )
        return ""

    def _write_back(self, ref: CrmRef, invoice: Invoice, issue: str) -> None:
        values = {**write_back_values(invoice, self.clock().date()), "closeloop_sync_issue": issue}
        write_to_deal(self.crm, ref.object_id, values, DEAL_PROPERTIES)

    def _remember(self, ref: CrmRef, invoice: Invoice, issue: str, *, written_back: bool) -> None:
        self.store.put_mapping(
            IdMapping(
                ref=ref,
                system=self.accounting.name,
                accounting_id=invoice.id,
                # What was (or is about to be) written to the deal, under the property names themselves, so
                # the poller compares and updates it without a translation table.
                snapshot={
                    "kind": "invoice",
                    "customer_id": invoice.customer_id,
                    "currency": invoice.currency,
                    "total": money(invoice.total),
                    "sync_issue": issue,
                    "written_back": "yes" if written_back else "no",
                    **write_back_values(invoice, self.clock().date()),
                },
                updated_at=self.clock(),
            )
        )
