"""Monthly reconciliation: what sales won, what finance invoiced and what customers paid, side by side.

For one UTC calendar month the CRM's won deals (by close date) are laid against the accounting system's sales
invoices (by issue date) and Closeloop's stored deal -> invoice links. A deal is linked to its invoice by the
stored mapping first, then by the invoice Reference, which starts with ``{crm}-deal-{deal_id}``. The mapped
invoice of a deal of the month that was issued in another month is fetched by id, so its cost is bounded by
the month's deals. Every difference is listed once, with a type and a suggested action:

| type                       | rule                                                                              |
|----------------------------|-----------------------------------------------------------------------------------|
| ``won_deal_without_invoice`` | no live (non-voided) invoice: none mapped, none of the month's references names it, |
|                            | or the mapped one is voided/deleted/gone (not a deal with no invoice at all whose   |
|                            | whole amount its repeating schedules bill: it has no one-off line to invoice)     |
| ``invoice_without_deal``   | a live invoice of the month whose reference names no deal and that no mapping     |
|                            | links, or whose deal is not a won deal of any month (or no longer exists)         |
| ``duplicate_invoice``      | a second live invoice for one deal (the mapped one is the deal's invoice)         |
| ``currency_mismatch``      | deal currency ≠ invoice currency (when both are set)                              |
| ``amount_mismatch``        | the deal amount, to the cent, equals neither the invoice total nor its net         |
|                            | (sub_total: deal amounts are usually before tax); or the deal has no amount.      |
|                            | A deal with repeating schedules is compared less its recurring lines' net (the    |
|                            | schedules' ``deal_amount_share``, as DealSync's own check); one whose schedule     |
|                            | mapping predates that share and does not match in full is named in the notes    |
| ``payment_status_mismatch``| the deal's written-back ``closeloop_payment_status`` ≠ ``payment_status(invoice)``  |
|                            | (compared only when the deal carries one)                                         |
| ``contact_drift``          | a mapped customer's name, email, tax number or address differs between systems    |
|                            | (field NAMES only in the report: the values may be personal data)                 |
| ``item_price_drift``       | a linked product whose CRM price differs, to the cent, from its item's sales price  |
|                            | (or the item has none) while the field rules have the CRM own the price and the   |
|                            | sync carry it: a missed sync, or an accounting edit the rules override            |
|                            | (checked only when catalogue sync is on: ``catalogue``)                            |
| ``schedule_ended_early``   | a repeating schedule Closeloop made for a deal is deleted or ended in accounting  |
|                            | while the CRM contract (its stored end date) runs on; shows the month's expected  |
|                            | billing (periods due x amount per period) against what the schedule generated     |
| ``quote_accepted_not_invoiced`` | an accounting quote Closeloop made, ACCEPTED by the month's end (its last    |
|                            | change, else its date), whose deal is not won (or is gone), or is won with no     |
|                            | live invoice issued by the month's end (checked only when quotes are on: ``quotes``) |
| ``invoice_differs_from_quote`` | a deal of the month invoiced from its accounting quote (the one accepted or  |
|                            | invoiced, else the one standing) whose invoice's amount before tax (sub_total)    |
|                            | differs, to the cent, from the quote's, or is in another currency; deals with     |
|                            | repeating schedules are left out (their recurring lines are the schedule's)       |
| ``failed_sync``            | each failed sync passed in                                                        |
| ``dead_lettered``          | each dead-letter queue holding messages                                           |

Invoices a repeating schedule generates (their reference names the deal and frequency, see
closeloop.sync.recurring) count in the month's totals but are never a deal's duplicate nor an orphan.

The module is vendor-free: it sees the CRM, the accounting system and the store through the ports only.
Nothing it puts into a discrepancy is an email, phone, tax id or address: deal and company names, invoice
numbers, ids and amounts only (emails inside names and failure reasons are masked).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Final, Literal

from closeloop.models import AccountingQuote, CrmRef, Invoice, Item, PaymentStatus, Product, customer_fields
from closeloop.ports import (
    AccountingPort,
    AuditRecord,
    CatalogueAccounting,
    CatalogueCrm,
    CrmPort,
    FailedSync,
    IdMapping,
    QuoteAccounting,
    RecurringAccounting,
    SyncStore,
)
from closeloop.redaction import redact
from closeloop.rules import FieldRules
from closeloop.sync.contacts import normalise_tax_number
from closeloop.sync.payment_status import payment_status
from closeloop.sync.recurring import SHARE_KEY, add_periods, parse_schedule_reference

__all__ = [
    "DISCREPANCY_TYPES",
    "FORECAST_DEFINITION",
    "PRICE_DRIFT_DEFINITION",
    "QUOTES_DEFINITION",
    "SUGGESTED_ACTIONS",
    "TOTALS_DEFINITION",
    "Catalogue",
    "CurrencyTotals",
    "Discrepancy",
    "DiscrepancyType",
    "ForecastActual",
    "PriceDrift",
    "QuoteBook",
    "QuoteFinding",
    "Reconciliation",
    "RepCollection",
    "month_bounds",
    "reconcile",
]

CENT: Final = Decimal("0.01")
ZERO: Final = Decimal(0)

DiscrepancyType = Literal[
    "won_deal_without_invoice",
    "invoice_without_deal",
    "duplicate_invoice",
    "amount_mismatch",
    "currency_mismatch",
    "payment_status_mismatch",
    "contact_drift",
    "field_conflict",
    "item_price_drift",
    "schedule_ended_early",
    "quote_accepted_not_invoiced",
    "invoice_differs_from_quote",
    "failed_sync",
    "dead_lettered",
]

#: Every discrepancy type, in the order reports list them.
DISCREPANCY_TYPES: Final[tuple[DiscrepancyType, ...]] = (
    "won_deal_without_invoice",
    "invoice_without_deal",
    "duplicate_invoice",
    "amount_mismatch",
    "currency_mismatch",
    "payment_status_mismatch",
    "contact_drift",
    "field_conflict",
    "item_price_drift",
    "schedule_ended_early",
    "quote_accepted_not_invoiced",
    "invoice_differs_from_quote",
    "failed_sync",
    "dead_lettered",
)

SUGGESTED_ACTIONS: Final[Mapping[DiscrepancyType, str]] = {
    "won_deal_without_invoice": "Replay the deal's sync (closeloop replay) or create the invoice; check failed syncs",
    "invoice_without_deal": "Link or void: no won deal in the CRM",
    "duplicate_invoice": "Void the duplicate; keep the invoice linked to the deal",
    "amount_mismatch": "Correct the deal amount, or credit and re-issue the invoice, so they agree",
    "currency_mismatch": "Correct the deal currency, or void the invoice and re-issue it in the deal's currency",
    "payment_status_mismatch": "Let the payment poller run (or run it); if the difference stays, check its errors",
    "contact_drift": "Decide which system is right: edit the CRM record (it syncs on) or correct accounting",
    "field_conflict": "A field changed in the system that does not own it: settle the value where the rules say",
    "item_price_drift": (
        "The CRM owns the price: replay the product's sync (closeloop replay), or correct the CRM price if the "
        "item's is right"
    ),
    "schedule_ended_early": "Recreate the schedule in accounting, or end the contract in the CRM, so they agree",
    "quote_accepted_not_invoiced": (
        "Win the deal in the CRM (its invoice follows) or replay its sync (closeloop replay); if the deal was lost, "
        "decline or delete the quote in accounting"
    ),
    "invoice_differs_from_quote": (
        "Decide which is right: credit and re-issue the invoice from the quote, or agree the change with the "
        "customer and revise the quote in the CRM"
    ),
    "failed_sync": "Fix the cause named, then replay the record (closeloop replay)",
    "dead_lettered": "Inspect the messages, fix the cause, then redrive the dead-letter queue",
}

#: The customer fields compared for contact drift (canonical names from ``CUSTOMER_FIELDS``).
DRIFT_FIELDS: Final = (
    "name",
    "email",
    "tax_number",
    "address.line1",
    "address.line2",
    "address.city",
    "address.region",
    "address.postal_code",
    "address.country",
)

FORECAST_DEFINITION: Final = (
    "Forecast = the sum of the CRM amounts of the deals won in the month (deals without an amount are counted, "
    "not summed). Actual = the totals (tax included) and amounts paid of the accounting invoices linked to those "
    "deals, wherever they were issued; voided and deleted invoices are left out. Deal amounts are usually before "
    "tax, so invoiced can exceed forecast by the tax. Forecast is grouped by the deal currency, actuals by the "
    "invoice currency; nothing is converted."
)

TOTALS_DEFINITION: Final = (
    "Won = CRM deals with a close date in the month (UTC). Invoiced = totals of the month's sales invoices by "
    "issue date, drafts included, voided and deleted left out; Draft = the part not yet approved. Paid = amounts "
    "paid on those invoices; Outstanding = amounts due on approved ones; Overdue = the part of Outstanding past "
    "its due date. Collection rate = paid / invoiced for the invoices of each sales rep's deals of the month."
)

PRICE_DRIFT_DEFINITION: Final = (
    "Item price drift = a product linked to an accounting item whose CRM price differs, to the cent, from the "
    "item's sales price (or the item has none), while the field rules have the CRM own the price and the sync "
    "carry it. Difference = CRM price - accounting price. Archived and unpriced products, and products priced "
    "in another currency than the items, are not compared."
)

QUOTES_DEFINITION: Final = (
    "Quotes = the accounting quotes Closeloop made from CRM quotes, listed once. Accepted but not invoiced = "
    "ACCEPTED by the month's end (its last change, else its date) while its deal is not won, or is won with no "
    "live invoice issued by the month's end. Invoice differs from quote = a deal of the month whose invoice's "
    "amount before tax differs, to the cent, from the amount before tax of the quote it was made from (the one "
    "accepted or invoiced, else the one standing), or whose currency differs; lines are not compared one by "
    "one. Deals with repeating schedules are not compared: their recurring lines are billed by the schedule."
)

_MONTH: Final = re.compile(r"(\d{4})-(\d{2})")
_EMAIL: Final = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_MAX_NAME: Final = 200


def month_bounds(month: str) -> tuple[date, date]:
    """``"2026-10"`` -> (2026-10-01, 2026-11-01): the first day and the first day after. Raises ValueError."""
    match = _MONTH.fullmatch(month) if isinstance(month, str) else None
    if match is None:
        raise ValueError(f"month must be YYYY-MM, got {month!r}")
    year, number = int(match[1]), int(match[2])
    if not 1 <= number <= 12 or year < 1:
        raise ValueError(f"month must be YYYY-MM with a month 01-12, got {month!r}")
    if year == 9999 and number == 12:
        raise ValueError(f"month {month!r} is out of range")
    return date(year, number, 1), date(year + number // 12, number % 12 + 1, 1)


def percent(part: Decimal, whole: Decimal) -> Decimal | None:
    """``part`` as a percentage of ``whole`` to two places; None when ``whole`` is zero."""
    if not whole:
        return None
    return (part * 100 / whole).quantize(CENT)


@dataclass(frozen=True)
class Discrepancy:
    """One difference between the systems. Carries ids, names, numbers and amounts: never contact details."""

    type: DiscrepancyType
    crm_ref: str = ""
    deal_name: str = ""
    invoice_number: str = ""
    invoice_id: str = ""
    crm_amount: Decimal | None = None
    accounting_amount: Decimal | None = None
    currency: str = ""
    detail: str = ""
    suggested_action: str = ""

    def __post_init__(self) -> None:
        if not self.suggested_action:
            object.__setattr__(self, "suggested_action", SUGGESTED_ACTIONS[self.type])


@dataclass(frozen=True)
class PriceDrift:
    """A linked product whose CRM price is not its accounting item's sales price (money to the cent)."""

    crm_ref: str
    product: str
    sku: str
    item_code: str
    crm_price: Decimal
    accounting_price: Decimal | None
    currency: str = ""

    @property
    def difference(self) -> Decimal:
        """CRM price minus accounting price (an item without a price counts as zero)."""
        return self.crm_price - (self.accounting_price or ZERO)


@dataclass(frozen=True)
class Catalogue:
    """What the price-drift check reads: both catalogues (one listing each), the product -> item links the
    catalogue sync keeps, the field rules, and the currency items are priced in ("" unknown)."""

    crm: CatalogueCrm
    accounting: CatalogueAccounting
    mappings: Iterable[IdMapping]
    rules: FieldRules
    base_currency: str = ""


@dataclass(frozen=True)
class QuoteBook:
    """What the quote checks read: the accounting system's quotes (listed once) and the CRM quote ->
    accounting quote links the quote sync keeps (their snapshot names the deal: ``deal_id``)."""

    accounting: QuoteAccounting
    mappings: Iterable[IdMapping]


@dataclass(frozen=True)
class QuoteFinding:
    """One quote discrepancy as the Quotes sheet lists it (money before tax, to the cent)."""

    type: DiscrepancyType
    quote_ref: str
    quote_number: str
    quote_status: str
    deal_ref: str
    deal_name: str
    quote_amount: Decimal
    invoice_number: str = ""
    invoice_amount: Decimal | None = None
    currency: str = ""
    detail: str = ""


@dataclass(slots=True)
class CurrencyTotals:
    """The month in one currency: won in the CRM, invoiced, paid and owed in accounting (see TOTALS_DEFINITION)."""

    currency: str
    won_deals: int = 0
    won_amount: Decimal = ZERO
    invoices: int = 0
    invoiced: Decimal = ZERO
    draft: Decimal = ZERO
    paid: Decimal = ZERO
    outstanding: Decimal = ZERO
    overdue: Decimal = ZERO


@dataclass(slots=True)
class ForecastActual:
    """The month's won deals in one currency: forecast (CRM) against invoiced and paid (accounting)."""

    currency: str
    won_deals: int = 0
    deals_without_amount: int = 0
    forecast: Decimal = ZERO
    deals_invoiced: int = 0
    invoiced: Decimal = ZERO
    paid: Decimal = ZERO

    @property
    def variance(self) -> Decimal:
        """Invoiced minus forecast."""
        return self.invoiced - self.forecast

    @property
    def invoiced_percent(self) -> Decimal | None:
        return percent(self.invoiced, self.forecast)

    @property
    def paid_percent(self) -> Decimal | None:
        return percent(self.paid, self.invoiced)


@dataclass(slots=True)
class RepCollection:
    """One sales rep's (CRM owner id) deals of the month in one currency, and how much of it was collected."""

    owner_id: str
    currency: str
    won_deals: int = 0
    won_amount: Decimal = ZERO
    invoiced: Decimal = ZERO
    paid: Decimal = ZERO
    outstanding: Decimal = ZERO

    @property
    def collection_rate(self) -> Decimal | None:
        """Paid / invoiced, as a percentage; None when nothing was invoiced."""
        return percent(self.paid, self.invoiced)


@dataclass(frozen=True)
class Reconciliation:
    """The result of one month's reconciliation; an empty month gives empty tuples and zero counts."""

    month: str
    period_start: date
    period_end: date
    today: date
    generated_at: datetime
    crm: str = ""
    accounting: str = ""
    won_deals: int = 0
    invoices: int = 0
    invoiced_deals: int = 0
    customers_checked: int = 0
    #: Linked products whose prices were compared; None: the catalogue was not checked (catalogue sync off).
    products_checked: int | None = None
    price_drift: tuple[PriceDrift, ...] = ()
    #: Accounting quotes Closeloop made that were checked; None: the quotes were not checked (quotes off).
    quotes_checked: int | None = None
    quote_findings: tuple[QuoteFinding, ...] = ()
    discrepancies: tuple[Discrepancy, ...] = ()
    totals: tuple[CurrencyTotals, ...] = ()
    forecast: tuple[ForecastActual, ...] = ()
    collection_by_rep: tuple[RepCollection, ...] = ()
    notes: tuple[str, ...] = ()

    def counts_by_type(self) -> dict[str, int]:
        """How many discrepancies of each type (every type present, zeros included), in report order."""
        counts: dict[str, int] = dict.fromkeys(DISCREPANCY_TYPES, 0)
        for discrepancy in self.discrepancies:
            counts[discrepancy.type] += 1
        return counts


# -- internals -----------------------------------------------------------------------------------------


@dataclass(slots=True)
class _InvoiceRow:
    """What reconcile keeps of an invoice (much smaller than the model: 100k of them must fit)."""

    id: str
    number: str
    status: str
    currency: str
    issue_date: date | None
    customer_id: str
    total: Decimal
    sub_total: Decimal
    amount_paid: Decimal
    amount_due: Decimal
    payment: PaymentStatus

    @classmethod
    def of(cls, invoice: Invoice, today: date) -> _InvoiceRow:
        return cls(
            id=invoice.id,
            number=invoice.number,
            status=invoice.status,
            currency=invoice.currency.upper(),
            issue_date=invoice.issue_date,
            customer_id=invoice.customer_id,
            total=invoice.total,
            sub_total=invoice.sub_total,
            amount_paid=invoice.amount_paid,
            amount_due=invoice.amount_due,
            payment=payment_status(invoice, today),
        )

    @property
    def live(self) -> bool:
        return self.payment != "voided"

    @property
    def label(self) -> str:
        return self.number or self.id

    def order(self) -> tuple[date, str, str]:
        return (self.issue_date or date.max, self.number, self.id)


@dataclass(slots=True)
class _DealRow:
    ref: CrmRef
    name: str
    amount: Decimal | None
    currency: str
    owner_id: str
    party: CrmRef | None
    synced_status: str | None
    mapped_invoice_id: str | None = None
    mapped_missing: bool = False
    invoices: list[_InvoiceRow] = field(default_factory=list)
    primary: _InvoiceRow | None = None
    #: What the deal's repeating schedules bill of its amount (their ``deal_amount_share`` summed); None:
    #: no schedule known. ``share_unknown``: a schedule mapping made before the share was kept.
    scheduled_share: Decimal | None = None
    share_unknown: bool = False


def _day(text: str) -> date | None:
    try:
        return date.fromisoformat(text) if text else None
    except ValueError:
        return None


def _safe_name(name: str) -> str:
    """A deal or company name for the report: emails inside it masked, length bounded."""
    return _EMAIL.sub("<email>", name.strip())[:_MAX_NAME]


def _item_price(item: Item) -> Decimal | None:
    """The item's sales price: its comparable ``unit_price`` text, else the model's value; None when unset."""
    text = item.fields.get("unit_price", "")
    if text:
        try:
            return Decimal(text)
        except ArithmeticError:
            return item.unit_price
    return item.unit_price


def _comparable(field_name: str, value: str) -> str:
    if field_name == "tax_number":
        return normalise_tax_number(value)
    return " ".join(value.split()).casefold()


class _Reconciler:
    """One run; the steps are methods so each stays small."""

    def __init__(
        self,
        crm: CrmPort,
        accounting: AccountingPort,
        store: SyncStore,
        start: date,
        end: date,
        today: date,
    ) -> None:
        self.crm = crm
        self.accounting = accounting
        self.store = store
        self.system = accounting.name
        self.start, self.end, self.today = start, end, today
        self.deals: dict[str, _DealRow] = {}
        self.deal_of_invoice: dict[str, _DealRow] = {}
        self.month_invoice_ids: set[str] = set()
        self.live_invoices = 0
        self.orphans: list[tuple[_InvoiceRow, str | None]] = []
        self.scheduled: dict[str, list[_InvoiceRow]] = {}
        self.found: list[Discrepancy] = []
        self.totals: dict[str, CurrencyTotals] = {}
        self.forecast: dict[str, ForecastActual] = {}
        self.reps: dict[tuple[str, str], RepCollection] = {}
        self.won_elsewhere: dict[str, bool | None] = {}
        self.customers_checked = 0
        self.customers_skipped = 0
        self.products_checked: int | None = None
        self.price_drift: list[PriceDrift] = []
        self.catalogue_notes: list[str] = []
        self.quotes_checked: int | None = None
        self.quote_findings: list[QuoteFinding] = []
        #: Deals with repeating schedules whose share of the amount is unknown and that differ in full.
        self.shares_unknown: list[str] = []
        #: Invoices of the month naming a deal won in another month (linked by reference): deal id -> rows.
        self.invoices_elsewhere: dict[str, list[_InvoiceRow]] = {}
        self.reference = re.compile(rf"\s*{re.escape(crm.name)}-deal-(\S+)", re.IGNORECASE)

    # -- loading ---------------------------------------------------------------------------------

    def load_deals(self, preloaded: Mapping[CrmRef, IdMapping] | None) -> None:
        closed_from = datetime(self.start.year, self.start.month, 1, tzinfo=UTC)
        closed_before = datetime(self.end.year, self.end.month, 1, tzinfo=UTC)
        for deal in self.crm.iter_won_deals(closed_from, closed_before):
            deal_id = deal.ref.object_id
            if not deal.is_won or deal.ref.object_type != "deal" or deal_id in self.deals:
                continue
            if deal.close_date is not None and not self.start <= deal.close_date < self.end:
                continue  # the port promises the range; a lax adapter must not skew the month
            synced: Mapping[str, str] = getattr(deal, "synced", None) or {}
            row = _DealRow(
                ref=deal.ref,
                name=_safe_name(deal.name),
                amount=deal.amount,
                currency=deal.currency.upper(),
                owner_id=deal.owner_id,
                party=deal.company or deal.contact,
                synced_status=synced.get("closeloop_payment_status") or None,
            )
            mapping = (
                preloaded.get(deal.ref) if preloaded is not None else self.store.get_mapping(deal.ref, self.system)
            )
            if mapping is not None:
                row.mapped_invoice_id = mapping.accounting_id
                self.deal_of_invoice[mapping.accounting_id] = row
            self.deals[deal_id] = row

    def load_invoices(self) -> None:
        for invoice in self.accounting.iter_invoices(self.start, self.end):
            if invoice.id in self.month_invoice_ids:
                continue
            if invoice.issue_date is not None and not self.start <= invoice.issue_date < self.end:
                continue
            self.month_invoice_ids.add(invoice.id)
            row = _InvoiceRow.of(invoice, self.today)
            self._count_invoice(row)
            if parse_schedule_reference(self.crm.name, invoice.reference) is not None:
                self.scheduled.setdefault(invoice.reference.strip(), []).append(row)  # a schedule's, not a duplicate
                continue
            deal = self.deal_of_invoice.get(row.id)
            referenced = self._deal_id_in(invoice.reference)
            if deal is None and referenced is not None:
                deal = self.deals.get(referenced)
            if deal is not None:
                deal.invoices.append(row)  # voided ones too: "its invoice was voided" is the useful detail
            elif row.live:
                self.orphans.append((row, referenced))

    def load_schedule_shares(self, mappings: Iterable[IdMapping]) -> None:
        """What each deal's repeating schedules bill of its amount, from their mappings' snapshots."""
        prefix = f"{self.system}#schedule#"
        for mapping in mappings:
            deal = self.deals.get(mapping.ref.object_id) if mapping.ref.crm == self.crm.name else None
            if deal is None or mapping.ref.object_type != "deal" or not mapping.system.startswith(prefix):
                continue
            try:
                share = Decimal(mapping.snapshot.get(SHARE_KEY, ""))
            except ArithmeticError:
                share = Decimal("NaN")
            if not share.is_finite():
                deal.share_unknown = True  # made before RecurringFlow kept it (or unreadable): never guessed
                continue
            deal.scheduled_share = (deal.scheduled_share or ZERO) + share

    def fetch_invoices_of_other_months(self) -> None:
        """The mapped invoices of the month's deals that were issued in another month, by id."""
        for deal in self.deals.values():
            invoice_id = deal.mapped_invoice_id
            if invoice_id is None or invoice_id in self.month_invoice_ids:
                continue
            invoice = self.accounting.get_invoice(invoice_id)
            if invoice is None:
                deal.mapped_missing = True
            else:
                deal.invoices.append(_InvoiceRow.of(invoice, self.today))

    def _deal_id_in(self, reference: str) -> str | None:
        match = self.reference.match(reference)
        return match[1] if match else None

    def _count_invoice(self, row: _InvoiceRow) -> None:
        if not row.live:
            return
        self.live_invoices += 1
        totals = self._totals(row.currency)
        totals.invoices += 1
        totals.invoiced += row.total
        totals.paid += row.amount_paid
        if row.payment == "draft":
            totals.draft += row.total
        else:
            totals.outstanding += row.amount_due
        if row.payment == "overdue":
            totals.overdue += row.amount_due

    # -- comparing -------------------------------------------------------------------------------

    def resolve_orphans(self) -> None:
        """Invoices of the month not linked to a deal of the month: linked elsewhere, or without a deal."""
        for row, deal_id in self.orphans:
            ref = (
                CrmRef(crm=self.crm.name, object_type="deal", object_id=deal_id)
                if deal_id is not None
                else self.store.find_ref(self.system, row.id)
            )
            if ref is not None and ref.object_type == "deal":
                deal = self.deals.get(ref.object_id) if ref.crm == self.crm.name else None
                if deal is not None:
                    deal.invoices.append(row)  # a mapping the preloaded list did not have
                    continue
                won = self._won_in_any_month(ref)
                if won:
                    self.invoices_elsewhere.setdefault(ref.object_id, []).append(row)
                    continue
                detail = (
                    f"deal {ref.object_id} is not a won deal in the CRM"
                    if won is False
                    else f"deal {ref.object_id} no longer exists in the CRM"
                )
            else:
                detail = "the reference names no deal and no stored link points to it"
            self.found.append(
                Discrepancy(
                    "invoice_without_deal",
                    crm_ref=str(ref) if ref is not None else "",
                    invoice_number=row.number,
                    invoice_id=row.id,
                    accounting_amount=row.total,
                    currency=row.currency,
                    detail=f"{detail} (invoice status {row.status})",
                )
            )

    def _won_in_any_month(self, ref: CrmRef) -> bool | None:
        """True if the deal is won, False if it is not, None if it is gone (asked once per deal)."""
        if ref.object_id not in self.won_elsewhere:
            deal = self.crm.get_deal(ref.object_id) if ref.crm == self.crm.name else None
            self.won_elsewhere[ref.object_id] = deal.is_won if deal is not None else None
        return self.won_elsewhere[ref.object_id]

    def compare_deals(self) -> None:
        for deal in self.deals.values():
            live = [row for row in deal.invoices if row.live]
            mapped = next((row for row in live if row.id == deal.mapped_invoice_id), None)
            deal.primary = mapped or min(live, key=_InvoiceRow.order, default=None)
            currency = deal.currency or (deal.primary.currency if deal.primary else "")
            self._add_to_cohort(deal, currency, live)
            if deal.primary is None:
                if not self._all_scheduled(deal):
                    self._without_invoice(deal, currency)
                continue
            self._compare_pair(deal, deal.primary)
            for row in sorted(live, key=_InvoiceRow.order):
                if row is not deal.primary:
                    self.found.append(
                        self._about(
                            deal,
                            row,
                            "duplicate_invoice",
                            accounting_amount=row.total,
                            detail=f"a second live invoice for the deal, whose invoice is {deal.primary.label}",
                        )
                    )

    def _add_to_cohort(self, deal: _DealRow, currency: str, live: list[_InvoiceRow]) -> None:
        totals = self._totals(currency)
        forecast = self.forecast.setdefault(currency, ForecastActual(currency))
        rep = self._rep(deal.owner_id, currency)
        totals.won_deals += 1
        forecast.won_deals += 1
        rep.won_deals += 1
        if deal.amount is None:
            forecast.deals_without_amount += 1
        else:
            totals.won_amount += deal.amount
            forecast.forecast += deal.amount
            rep.won_amount += deal.amount
        if live:
            forecast.deals_invoiced += 1
        for row in live:
            actual = self.forecast.setdefault(row.currency, ForecastActual(row.currency))
            actual.invoiced += row.total
            actual.paid += row.amount_paid
            billed = self._rep(deal.owner_id, row.currency)
            billed.invoiced += row.total
            billed.paid += row.amount_paid
            if row.payment != "draft":
                billed.outstanding += row.amount_due

    @staticmethod
    def _all_scheduled(deal: _DealRow) -> bool:
        """A deal whose whole amount its repeating schedules bill, and which has no invoice at all: DealSync
        makes no one-off invoice when every line is recurring, so there is none to miss."""
        return (
            not deal.invoices
            and deal.mapped_invoice_id is None
            and not deal.share_unknown
            and deal.scheduled_share is not None
            and deal.amount is not None
            and (deal.amount - deal.scheduled_share).quantize(CENT) == ZERO
        )

    def _without_invoice(self, deal: _DealRow, currency: str) -> None:
        voided = next((row for row in deal.invoices if row.id == deal.mapped_invoice_id), None)
        voided = voided or min(deal.invoices, key=_InvoiceRow.order, default=None)
        if voided is not None:
            detail = f"its invoice {voided.label} is {voided.status.lower()}"
        elif deal.mapped_missing:
            detail = "its stored invoice link points to an invoice the accounting system no longer has"
        else:
            detail = "no stored invoice link, and no invoice issued this month carries the deal id"
        self.found.append(
            Discrepancy(
                "won_deal_without_invoice",
                crm_ref=str(deal.ref),
                deal_name=deal.name,
                invoice_number=voided.number if voided else "",
                invoice_id=voided.id if voided else (deal.mapped_invoice_id or ""),
                crm_amount=deal.amount,
                currency=currency,
                detail=detail,
            )
        )

    def _compare_pair(self, deal: _DealRow, invoice: _InvoiceRow) -> None:
        if deal.currency and invoice.currency and deal.currency != invoice.currency:
            self.found.append(
                self._about(
                    deal,
                    invoice,
                    "currency_mismatch",
                    accounting_amount=invoice.total,
                    currency=f"{deal.currency}/{invoice.currency}",
                    detail=f"the deal is in {deal.currency}, the invoice in {invoice.currency}",
                )
            )
        elif deal.amount is None:
            self.found.append(
                self._about(
                    deal,
                    invoice,
                    "amount_mismatch",
                    accounting_amount=invoice.total,
                    detail="the deal has no amount to compare with the invoice",
                )
            )
        else:
            self._compare_amounts(deal, deal.amount, invoice)
        if deal.synced_status is not None and deal.synced_status != invoice.payment:
            self.found.append(
                self._about(
                    deal,
                    invoice,
                    "payment_status_mismatch",
                    accounting_amount=invoice.amount_due,
                    detail=(
                        f"the CRM shows {deal.synced_status[:40]!r}, the invoice is {invoice.payment!r} "
                        f"({invoice.amount_paid.quantize(CENT)} paid, {invoice.amount_due.quantize(CENT)} due)"
                    ),
                )
            )

    def _compare_amounts(self, deal: _DealRow, amount: Decimal, invoice: _InvoiceRow) -> None:
        """The deal amount (less what its repeating schedules bill, as DealSync checks it) against the invoice's
        total or net, to the cent."""
        charged = (invoice.total.quantize(CENT), invoice.sub_total.quantize(CENT))
        if amount.quantize(CENT) in charged and deal.scheduled_share is None:
            return
        if deal.share_unknown:
            if amount.quantize(CENT) not in charged:
                self.shares_unknown.append(str(deal.ref))  # its recurring lines' share is unknown: not guessed
            return
        expected = (amount - (deal.scheduled_share or ZERO)).quantize(CENT)
        if expected in charged:
            return
        compared = f"deal {amount.quantize(CENT)}"
        if deal.scheduled_share is not None:
            compared += f" less {deal.scheduled_share.quantize(CENT)} billed by its repeating schedules = {expected}"
        self.found.append(
            self._about(
                deal,
                invoice,
                "amount_mismatch",
                accounting_amount=invoice.total,
                crm_amount=expected,
                detail=(
                    f"{compared}, invoice total {invoice.total.quantize(CENT)} "
                    f"(before tax {invoice.sub_total.quantize(CENT)}): "
                    f"a difference of {(invoice.total - expected).quantize(CENT)}"
                ),
            )
        )

    @staticmethod
    def _about(
        deal: _DealRow,
        invoice: _InvoiceRow,
        kind: DiscrepancyType,
        *,
        accounting_amount: Decimal | None,
        detail: str,
        currency: str = "",
        crm_amount: Decimal | None = None,
    ) -> Discrepancy:
        return Discrepancy(
            kind,
            crm_ref=str(deal.ref),
            deal_name=deal.name,
            invoice_number=invoice.number,
            invoice_id=invoice.id,
            crm_amount=deal.amount if crm_amount is None else crm_amount,
            accounting_amount=accounting_amount,
            currency=currency or invoice.currency or deal.currency,
            detail=detail,
        )

    # -- repeating schedules -----------------------------------------------------------------------

    def check_schedules(self, mappings: Iterable[IdMapping], schedules: RecurringAccounting) -> None:
        """Schedules Closeloop runs for a deal that accounting ended while the CRM contract runs on."""
        prefix = f"{self.system}#schedule#"
        for mapping in mappings:
            if not mapping.system.startswith(prefix) or mapping.snapshot.get("state") != "active":
                continue
            contract_end = _day(mapping.snapshot.get("end_date", ""))
            if contract_end is not None and contract_end < self.start:
                continue  # the contract ran out before this month
            schedule = schedules.get_schedule(mapping.accounting_id)
            if schedule is not None and schedule.status == "active":
                continue
            frequency = mapping.system.removeprefix(prefix)
            expected = self._expected(mapping, frequency)
            reference = f"{mapping.ref.crm}-deal-{mapping.ref.object_id}/{frequency}"
            billed = sum((row.sub_total for row in self.scheduled.get(reference, []) if row.live), ZERO)
            deal = self.deals.get(mapping.ref.object_id)
            self.found.append(
                Discrepancy(
                    "schedule_ended_early",
                    crm_ref=str(mapping.ref),
                    deal_name=deal.name if deal else "",
                    invoice_id=mapping.accounting_id,
                    crm_amount=expected,
                    accounting_amount=billed,
                    currency=mapping.snapshot.get("currency", ""),
                    detail=(
                        f"the {frequency} schedule is {'gone' if schedule is None else 'ended'} in accounting; the "
                        f"contract runs until {contract_end.isoformat() if contract_end else 'no end date'}: "
                        f"{expected.quantize(CENT)} expected this month before tax, {billed.quantize(CENT)} generated"
                    ),
                )
            )

    def _expected(self, mapping: IdMapping, frequency: str) -> Decimal:
        """The month's expected billing of a schedule: its invoice dates in the month x amount per period."""
        start = _day(mapping.snapshot.get("start_date", ""))
        end = _day(mapping.snapshot.get("end_date", ""))
        per_period = Decimal(mapping.snapshot.get("sub_total", "0") or "0")
        if start is None:
            return ZERO
        due, n = 0, 0
        while True:
            day = add_periods(start, frequency, n)
            if day >= self.end or (end is not None and day > end):
                break
            if day >= self.start:
                due += 1
            n += 1
        return per_period * due

    # -- quotes ----------------------------------------------------------------------------------

    def check_quotes(
        self, book: QuoteBook, deal_links: Mapping[CrmRef, IdMapping] | None, scheduled_deals: set[str]
    ) -> None:
        """Quotes accepted but not invoiced, and invoices that differ from their quote: the quotes listed
        once; vendor reads only for the deals of accepted quotes won in another month (deal, invoice)."""
        self.quotes_checked = 0
        links = {m.accounting_id: m for m in book.mappings if m.system == self.system and m.ref.object_type == "quote"}
        if not links:
            return
        by_deal: dict[str, list[AccountingQuote]] = {}
        accepted: list[tuple[AccountingQuote, IdMapping]] = []
        for quote in book.accounting.iter_quotes_changed_since(None):
            mapping = links.get(quote.id)
            if mapping is None:
                continue  # not one Closeloop made: its deal is unknown
            self.quotes_checked += 1
            deal_id = mapping.snapshot.get("deal_id", "")
            if deal_id:
                by_deal.setdefault(deal_id, []).append(quote)
            if quote.status == "ACCEPTED" and self._answered_by_month_end(quote):
                accepted.append((quote, mapping))
        for quote, mapping in accepted:
            self._accepted(quote, mapping, deal_links)
        skipped = 0
        for deal in self.deals.values():
            quotes = by_deal.get(deal.ref.object_id)
            if deal.primary is None or not quotes:
                continue
            if deal.ref.object_id in scheduled_deals:
                skipped += 1
                continue
            billed = min(quotes, key=_billed_first, default=None)
            if billed is not None and billed.status not in ("DRAFT", "DECLINED", "EXPIRED", "DELETED"):
                self._against_quote(deal, deal.primary, billed, links[billed.id])
        if skipped:
            self.catalogue_notes.append(
                f"{skipped} quoted deal(s) with repeating schedules were not compared with their quote: their "
                "recurring lines are billed by the schedule, not the invoice."
            )

    def _answered_by_month_end(self, quote: AccountingQuote) -> bool:
        if quote.updated_at is not None:
            stamp = quote.updated_at if quote.updated_at.tzinfo else quote.updated_at.replace(tzinfo=UTC)
            return stamp.astimezone(UTC).date() < self.end
        return quote.issue_date is None or quote.issue_date < self.end

    def _accepted(
        self, quote: AccountingQuote, mapping: IdMapping, deal_links: Mapping[CrmRef, IdMapping] | None
    ) -> None:
        """An accepted quote: flagged when its deal is not won (or gone), or is won with no invoice by month end."""
        deal_id = mapping.snapshot.get("deal_id", "")
        row = self.deals.get(deal_id) if deal_id else None
        invoice: _InvoiceRow | None = None
        if not deal_id:
            detail = "accepted, and its CRM quote names no deal to invoice"
        elif row is not None:  # won this month
            invoice = row.primary
            detail = f"accepted; deal {deal_id} is won but has no live invoice"
        else:
            ref = CrmRef(crm=mapping.ref.crm, object_type="deal", object_id=deal_id)
            won = self._won_in_any_month(ref)
            if won:
                invoice = self._invoice_elsewhere(ref, deal_links)
                detail = f"accepted; deal {deal_id} is won but has no live invoice issued by the month's end"
            else:
                detail = f"accepted; deal {deal_id} {'is not won' if won is False else 'no longer exists'} in the CRM"
        if invoice is not None and invoice.live and (invoice.issue_date is None or invoice.issue_date < self.end):
            return
        self._quote_finding(
            "quote_accepted_not_invoiced",
            quote,
            mapping,
            deal_ref=f"{mapping.ref.crm}/deal/{deal_id}" if deal_id else "",
            deal_name=row.name if row else "",
            detail=f"quote {quote.number or quote.id} {detail}",
        )

    def _invoice_elsewhere(self, ref: CrmRef, deal_links: Mapping[CrmRef, IdMapping] | None) -> _InvoiceRow | None:
        """The live invoice of a deal won in another month: one of this month naming it, else its mapped one."""
        named = [row for row in self.invoices_elsewhere.get(ref.object_id, []) if row.live]
        if named:
            return min(named, key=_InvoiceRow.order)
        mapping = deal_links.get(ref) if deal_links is not None else self.store.get_mapping(ref, self.system)
        if mapping is None or mapping.snapshot.get("kind", "invoice") != "invoice":
            return None
        invoice = self.accounting.get_invoice(mapping.accounting_id)
        return _InvoiceRow.of(invoice, self.today) if invoice is not None else None

    def _against_quote(self, deal: _DealRow, invoice: _InvoiceRow, quote: AccountingQuote, mapping: IdMapping) -> None:
        quoted, billed = quote.sub_total.quantize(CENT), invoice.sub_total.quantize(CENT)
        currency = quote.currency.upper()
        if currency and invoice.currency and currency != invoice.currency:
            detail = f"the quote is in {currency}, the invoice in {invoice.currency}"
        elif quoted != billed:
            detail = f"{billed} before tax, the quote {quoted}: a difference of {billed - quoted}"
        else:
            return
        self._quote_finding(
            "invoice_differs_from_quote",
            quote,
            mapping,
            deal_ref=str(deal.ref),
            deal_name=deal.name,
            invoice=invoice,
            detail=f"invoice {invoice.label} of quote {quote.number or quote.id} ({quote.status.lower()}): {detail}",
        )

    def _quote_finding(
        self,
        kind: DiscrepancyType,
        quote: AccountingQuote,
        mapping: IdMapping,
        *,
        deal_ref: str,
        deal_name: str,
        detail: str,
        invoice: _InvoiceRow | None = None,
    ) -> None:
        currency = quote.currency.upper() or (invoice.currency if invoice else "")
        finding = QuoteFinding(
            type=kind,
            quote_ref=str(mapping.ref),
            quote_number=quote.number,
            quote_status=quote.status,
            deal_ref=deal_ref,
            deal_name=deal_name,
            quote_amount=quote.sub_total.quantize(CENT),
            invoice_number=invoice.label if invoice else "",
            invoice_amount=invoice.sub_total.quantize(CENT) if invoice else None,
            currency=currency,
            detail=detail,
        )
        self.quote_findings.append(finding)
        self.found.append(
            Discrepancy(
                kind,
                # The invoice's discrepancy is the deal's (as amount_mismatch); the accepted one is the quote's.
                crm_ref=deal_ref if invoice is not None else finding.quote_ref,
                deal_name=deal_name,
                invoice_number=invoice.number if invoice else "",
                invoice_id=invoice.id if invoice else quote.id,
                crm_amount=finding.quote_amount,
                accounting_amount=finding.invoice_amount,
                currency=currency,
                detail=detail,
            )
        )

    # -- customers -------------------------------------------------------------------------------

    def check_customers(self, limit: int | None) -> None:
        """Contact drift for the distinct customers of the month's won deals that have a customer mapping."""
        parties: dict[CrmRef, None] = {}
        customer_ids: set[str] = set()
        for deal in self.deals.values():
            if deal.party is not None:
                parties[deal.party] = None
            elif deal.primary is not None and deal.primary.customer_id:
                # CRM searches return deals without associations: the invoice's customer leads back.
                customer_ids.add(deal.primary.customer_id)
        for customer_id in sorted(customer_ids):
            ref = self.store.find_ref(self.system, customer_id)
            if ref is not None and ref.object_type in ("company", "contact"):
                parties[ref] = None
        checked: set[CrmRef] = set()
        for party in parties:
            if limit is not None and len(checked) >= limit:
                self.customers_skipped += 1
                continue
            customer = self.crm.resolve_customer(party)
            if customer is None or customer.ref in checked:
                continue
            checked.add(customer.ref)
            mapping = self.store.get_mapping(customer.ref, self.system)
            if mapping is None:
                continue
            self.customers_checked += 1
            record = self.accounting.get_customer(mapping.accounting_id)
            label = _safe_name(customer.name) if customer.ref.object_type == "company" else "a contact (name withheld)"
            if record is None:
                detail = f"{label}: the linked accounting record is archived or missing"
            else:
                crm_values = customer_fields(customer)
                drifted = [
                    name
                    for name in DRIFT_FIELDS
                    if name in record.fields
                    and _comparable(name, crm_values[name]) != _comparable(name, record.fields[name])
                ]
                if not drifted:
                    continue
                detail = f"{label}: differs in {', '.join(drifted)}"
            self.found.append(Discrepancy("contact_drift", crm_ref=str(customer.ref), detail=detail))

    # -- catalogue -------------------------------------------------------------------------------

    def check_prices(self, catalogue: Catalogue) -> None:
        """Item price drift: each linked product's CRM price against its item's, both catalogues read once."""
        self.products_checked = 0
        if not catalogue.rules.may_write("product", "unit_price", "accounting"):
            self.catalogue_notes.append(
                "Item prices were not compared: the field rules do not have the CRM price flow to accounting."
            )
            return
        links = {
            m.ref.object_id: m
            for m in catalogue.mappings
            if m.system == catalogue.accounting.name and m.ref.object_type == "product"
        }
        if not links:
            return
        products = {p.ref.object_id: p for p in catalogue.crm.iter_products() if p.ref.object_id in links}
        items: dict[str, Item] = {}
        for listed in catalogue.accounting.iter_items():
            items.setdefault(listed.id or listed.code, listed)
            if listed.code:
                items.setdefault(f"code:{listed.code}", listed)
        base = catalogue.base_currency.strip().upper()
        other_currency = 0
        for product_id in sorted(links):
            mapping, product = links[product_id], products.get(product_id)
            if product is None or product.archived or product.unit_price is None:
                continue  # gone, archived (the item stays) or unpriced: nothing the sync would carry
            code = mapping.snapshot.get("code", "")
            item = items.get(mapping.accounting_id) or items.get(f"code:{code}")
            if item is None:
                continue  # inactive or deleted in accounting: the next product sync re-creates or re-links
            currency = product.currency.strip().upper()
            if currency and base and currency != base:
                other_currency += 1  # never written (a CurrencyMismatch failed sync says so)
                continue
            self.products_checked += 1
            drift = self._drift(product, item, base or currency)
            if drift is not None:
                self.price_drift.append(drift)
        if other_currency:
            self.catalogue_notes.append(
                f"{other_currency} linked product(s) priced in another currency than the items ({base}) were not "
                "compared: the catalogue sync never writes those prices (see their failed syncs)."
            )

    def _drift(self, product: Product, item: Item, currency: str) -> PriceDrift | None:
        crm_price = (product.unit_price or ZERO).quantize(CENT)
        accounting_price = _item_price(item)
        if accounting_price is not None and accounting_price.quantize(CENT) == crm_price:
            return None
        drift = PriceDrift(
            crm_ref=str(product.ref),
            product=_safe_name(product.name or product.sku),
            sku=product.sku.strip(),
            item_code=item.code,
            crm_price=crm_price,
            accounting_price=None if accounting_price is None else accounting_price.quantize(CENT),
            currency=currency,
        )
        had = "no sales price" if drift.accounting_price is None else f"{drift.accounting_price}"
        self.found.append(
            Discrepancy(
                "item_price_drift",
                crm_ref=drift.crm_ref,
                deal_name=drift.product,
                invoice_id=item.id or item.code,
                crm_amount=drift.crm_price,
                accounting_amount=drift.accounting_price,
                currency=currency,
                detail=(
                    f"SKU {drift.sku[:60]} (item {drift.item_code[:60]}): CRM price {drift.crm_price}, item {had}; "
                    f"a difference of {drift.difference}"
                ),
            )
        )
        return drift

    # -- operations ------------------------------------------------------------------------------

    def add_failures(
        self,
        failed_syncs: Iterable[FailedSync],
        dead_letters: Mapping[str, int],
        conflicts: Iterable[AuditRecord] = (),
    ) -> None:
        for failure in failed_syncs:
            deal = self.deals.get(failure.ref.object_id) if failure.ref.object_type == "deal" else None
            at = failure.at.astimezone(UTC) if failure.at.tzinfo else failure.at
            self.found.append(
                Discrepancy(
                    "failed_sync",
                    crm_ref=str(failure.ref),
                    deal_name=deal.name if deal else "",
                    detail=(
                        f"{failure.error_type}, {failure.attempts} attempt(s), last {at:%Y-%m-%d %H:%M} UTC: "
                        f"{redact(failure.reason, 300)}"
                    ),
                )
            )
        for conflict in conflicts:
            at = conflict.at.astimezone(UTC) if conflict.at.tzinfo else conflict.at
            if not self.start <= at.date() < self.end:
                continue
            fields = ", ".join(sorted(conflict.changes))
            self.found.append(
                Discrepancy(
                    "field_conflict",
                    crm_ref=str(conflict.ref),
                    detail=f"{fields} changed on {at:%Y-%m-%d %H:%M} UTC ({redact(conflict.detail, 200)})",
                )
            )
        for queue, count in sorted(dead_letters.items()):
            if count > 0:
                self.found.append(Discrepancy("dead_lettered", detail=f"{count} message(s) waiting in {queue}"))

    # -- accumulators ----------------------------------------------------------------------------

    def _totals(self, currency: str) -> CurrencyTotals:
        totals = self.totals.get(currency)
        if totals is None:
            totals = self.totals[currency] = CurrencyTotals(currency)
        return totals

    def _rep(self, owner_id: str, currency: str) -> RepCollection:
        key = (owner_id, currency)
        rep = self.reps.get(key)
        if rep is None:
            rep = self.reps[key] = RepCollection(owner_id, currency)
        return rep

    def notes(self, limit: int | None) -> tuple[str, ...]:
        notes = []
        without_amount = sum(f.deals_without_amount for f in self.forecast.values())
        if without_amount:
            notes.append(f"{without_amount} won deal(s) have no amount: counted, not summed, in the forecast.")
        if self.customers_skipped:
            notes.append(
                f"Contact drift was checked for {self.customers_checked} customers; {self.customers_skipped} more "
                f"were not checked (limit {limit})."
            )
        if self.shares_unknown:
            named = ", ".join(sorted(self.shares_unknown)[:20]) + (", ..." if len(self.shares_unknown) > 20 else "")
            notes.append(
                f"The amounts of {len(self.shares_unknown)} deal(s) were not compared with their invoice ({named}): "
                "each differs in full, and its repeating schedule was made before Closeloop kept the recurring "
                "lines' share of the deal amount, so the one-off part is unknown. Replay the deal's sync "
                "(closeloop replay) to record it."
            )
        notes.extend(self.catalogue_notes)
        return tuple(notes)


_TYPE_ORDER: Final = {kind: index for index, kind in enumerate(DISCREPANCY_TYPES)}


def _billed_first(quote: AccountingQuote) -> tuple[int, float]:
    """The quote a deal was invoiced from ranks first: accepted or invoiced, then standing; the newest of each."""
    rank = 0 if quote.status in ("ACCEPTED", "INVOICED") else 1
    return (rank, -quote.updated_at.timestamp() if quote.updated_at else 0.0)


def _sort_key(d: Discrepancy) -> tuple[int, str, str, str, str]:
    return (_TYPE_ORDER[d.type], d.crm_ref, d.invoice_number, d.invoice_id, d.detail)


def reconcile(
    month: str,
    *,
    crm: CrmPort,
    accounting: AccountingPort,
    store: SyncStore,
    failed_syncs: Iterable[FailedSync],
    dead_letters: Mapping[str, int],
    today: date,
    generated_at: datetime | None = None,
    deal_mappings: Iterable[IdMapping] | None = None,
    max_customer_checks: int | None = None,
    conflicts: Iterable[AuditRecord] = (),
    catalogue: Catalogue | None = None,
    schedules: RecurringAccounting | None = None,
    quotes: QuoteBook | None = None,
) -> Reconciliation:
    """Reconcile one UTC calendar month ``"YYYY-MM"`` between the CRM, the accounting system and the store.

    ``today`` decides what is overdue. ``deal_mappings``, when given (e.g. a store's listing of the deal
    mappings), replaces one ``store.get_mapping`` per won deal, and its repeating schedules' mappings tell what
    each deal's schedules bill of its amount (``amount_mismatch`` compares the rest; without the listing a deal
    amount is compared in full). ``max_customer_checks`` bounds the vendor reads
    of the contact-drift check (two per customer); customers beyond it are counted in ``notes``. Vendor reads:
    one listing each of won deals and invoices, ``get_invoice`` per mapped invoice issued in another month,
    ``get_deal`` per distinct deal named only by invoices of the month. ``schedules``, when the accounting
    system runs repeating schedules and ``deal_mappings`` are given: ``get_schedule`` per schedule of a
    running contract, to find the ones ended early. Raises ValueError for a bad month and
    whatever the ports raise (IntegrationError subclasses).

    ``catalogue`` (given when catalogue sync is on) adds the item price drift check: one listing each of the
    CRM's products and the accounting items, whatever the number of links.

    ``quotes`` (given when the stack syncs quotes) adds the quote checks (see QUOTES_DEFINITION): one listing
    of the accounting quotes; for an accepted quote whose deal was not won this month, ``get_deal`` once per
    deal and, when won, ``get_invoice`` of its mapped invoice.
    """
    start, end = month_bounds(month)
    run = _Reconciler(crm, accounting, store, start, end, today)
    preloaded = None
    listed = list(deal_mappings) if deal_mappings is not None else None
    if listed is not None:
        preloaded = {m.ref: m for m in listed if m.system == accounting.name and m.ref.object_type == "deal"}
    run.load_deals(preloaded)
    if listed is not None:
        run.load_schedule_shares(listed)
    run.load_invoices()
    run.fetch_invoices_of_other_months()
    run.resolve_orphans()
    run.compare_deals()
    if schedules is not None and listed is not None:
        run.check_schedules(listed, schedules)
    run.check_customers(max_customer_checks)
    if catalogue is not None:
        run.check_prices(catalogue)
    if quotes is not None:
        scheduled = {m.ref.object_id for m in listed or () if m.system.startswith(f"{accounting.name}#schedule#")}
        run.check_quotes(quotes, preloaded, scheduled)
    run.add_failures(failed_syncs, dead_letters, conflicts)
    return Reconciliation(
        month=month,
        period_start=start,
        period_end=end,
        today=today,
        generated_at=generated_at or datetime.now(UTC),
        crm=crm.name,
        accounting=accounting.name,
        won_deals=len(run.deals),
        invoices=run.live_invoices,
        invoiced_deals=sum(1 for deal in run.deals.values() if deal.primary is not None),
        customers_checked=run.customers_checked,
        products_checked=run.products_checked,
        price_drift=tuple(run.price_drift),
        quotes_checked=run.quotes_checked,
        quote_findings=tuple(sorted(run.quote_findings, key=lambda f: (_TYPE_ORDER[f.type], f.quote_ref))),
        discrepancies=tuple(sorted(run.found, key=_sort_key)),
        totals=tuple(run.totals[c] for c in sorted(run.totals)),
        forecast=tuple(run.forecast[c] for c in sorted(run.forecast)),
        collection_by_rep=tuple(run.reps[k] for k in sorted(run.reps)),
        notes=run.notes(max_customer_checks),
    )
