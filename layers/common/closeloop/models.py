"""Canonical, vendor-free models: what the sync logic works with.

Adapters translate vendor payloads into these and back. Identifiers of CRM objects are
``CrmRef(crm, object_type, object_id)``; object types are the canonical ``contact``, ``company``, ``deal``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import cache
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError

ObjectType = Literal["contact", "company", "deal", "line_item", "product", "quote"]
Pipeline = Literal["contacts", "deals"]


class _Model(BaseModel):
    """Base of the canonical models: each builds its validator on first use, not at import, so a function
    builds only the schemas it uses (building them all cost every cold start about 50-100 ms)."""

    model_config = ConfigDict(defer_build=True)


#: Which worker pipeline handles events about each object type.
#: Products travel with companies and contacts (master data) on the contacts queue.
PIPELINE_OF: dict[str, Pipeline] = {
    "contact": "contacts",
    "company": "contacts",
    "product": "contacts",
    "deal": "deals",
    #: Quotes ride with their deals: the deal's invoice bills its quote's lines.
    "quote": "deals",
}


class CrmRef(_Model):
    """A CRM object's identity, e.g. ``hubspot/company/1000001``."""

    model_config = ConfigDict(frozen=True)

    crm: str
    object_type: ObjectType
    object_id: str

    def __str__(self) -> str:
        return f"{self.crm}/{self.object_type}/{self.object_id}"


class SyncEvent(_Model):
    """One change notification from a CRM, normalised. Carries ids, never field values of people."""

    model_config = ConfigDict(frozen=True)

    ref: CrmRef
    event_id: str
    kind: Literal["created", "changed", "deleted", "merged", "restored", "associated", "other"]
    occurred_at: datetime
    source_type: str = Field(description="The vendor's own event type, e.g. contact.propertyChange")
    property_name: str | None = None
    change_source: str | None = None
    actor: str | None = Field(None, description="Who made the change, as the CRM reports it (e.g. userId:45678)")
    dedupe_key: str = Field(description="Stable across redeliveries of the same event")


class WorkMessage(_Model):
    """A work message (kind ``crm_events``) with CRM change events for one pipeline: the events of one webhook
    delivery or of a catch-up pass, or the rest of such a message re-queued after a rate limit or parked."""

    kind: Literal["crm_events"] = "crm_events"
    pipeline: Pipeline
    received_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    events: list[SyncEvent]
    #: Not to be worked on before this (epoch seconds of the workers' clock): a wait longer than SQS's
    #: longest delay, served by parking the message again when it comes back early.
    not_before: float | None = None


class Address(_Model):
    model_config = ConfigDict(frozen=True)

    line1: str = ""
    line2: str = ""
    city: str = ""
    region: str = ""
    postal_code: str = ""
    country: str = ""

    def is_empty(self) -> bool:
        return not any((self.line1, self.line2, self.city, self.region, self.postal_code, self.country))


class Person(_Model):
    model_config = ConfigDict(frozen=True)

    crm_id: str
    first_name: str = ""
    last_name: str = ""
    email: str = ""
    phone: str = ""


class Customer(_Model):
    """A billable party as the CRM knows it: a company with its people, or a contact on its own."""

    model_config = ConfigDict(frozen=True)

    ref: CrmRef
    name: str
    email: str = ""
    phone: str = ""
    tax_number: str = ""
    first_name: str = ""
    last_name: str = ""
    address: Address = Address()
    people: tuple[Person, ...] = ()
    updated_at: datetime | None = None


class AccountingCustomer(_Model):
    """A customer record as the accounting system holds it."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    number: str = ""
    email: str = ""
    tax_number: str = ""
    status: str = "ACTIVE"
    fields: dict[str, str] = Field(default_factory=dict, description="Comparable field values, see CUSTOMER_FIELDS")


#: Canonical customer fields that sync compares and writes, in a stable order.
CUSTOMER_FIELDS: tuple[str, ...] = (
    "name",
    "first_name",
    "last_name",
    "email",
    "phone",
    "tax_number",
    "address.line1",
    "address.line2",
    "address.city",
    "address.region",
    "address.postal_code",
    "address.country",
    "people",
)


def customer_fields(customer: Customer) -> dict[str, str]:
    """Flatten a customer into the comparable ``CUSTOMER_FIELDS`` values (people as a stable string)."""
    address = customer.address
    people = ";".join(
        f"{p.first_name}|{p.last_name}|{p.email}" for p in sorted(customer.people, key=lambda p: p.crm_id)
    )
    return {
        "name": customer.name,
        "first_name": customer.first_name,
        "last_name": customer.last_name,
        "email": customer.email,
        "phone": customer.phone,
        "tax_number": customer.tax_number,
        "address.line1": address.line1,
        "address.line2": address.line2,
        "address.city": address.city,
        "address.region": address.region,
        "address.postal_code": address.postal_code,
        "address.country": address.country,
        "people": people,
    }


# -- deals, invoices, payments -------------------------------------------------------------------------

PaymentStatus = Literal["draft", "awaiting_payment", "partially_paid", "paid", "overdue", "voided"]
InvoiceStatus = Literal["DRAFT", "SUBMITTED", "AUTHORISED", "PAID", "VOIDED", "DELETED"]
LineAmountTypes = Literal["Exclusive", "Inclusive", "NoTax"]


#: How often a recurring line bills (the canonical frequencies; adapters translate their vendor's own).
Frequency = Literal[
    "weekly",
    "fortnightly",
    "monthly",
    "quarterly",
    "semi_annual",
    "annual",
    "biennial",
    "triennial",
    "every_4_years",
    "every_5_years",
]

#: Each frequency's period as (unit, count): weeks or months, the units repeating invoices are set in.
FREQUENCY_PERIODS: dict[str, tuple[Literal["week", "month"], int]] = {
    "weekly": ("week", 1),
    "fortnightly": ("week", 2),
    "monthly": ("month", 1),
    "quarterly": ("month", 3),
    "semi_annual": ("month", 6),
    "annual": ("month", 12),
    "biennial": ("month", 24),
    "triennial": ("month", 36),
    "every_4_years": ("month", 48),
    "every_5_years": ("month", 60),
}


#: The deal fields Closeloop writes back to the CRM; adapters read them into ``Deal.synced``.
DEAL_SYNC_FIELDS: tuple[str, ...] = (
    "closeloop_invoice_number",
    "closeloop_invoice_url",
    "closeloop_invoice_status",
    "closeloop_payment_status",
    "closeloop_amount_due",
    "closeloop_amount_paid",
    "closeloop_last_payment_date",
    "closeloop_sync_issue",
)


class LineItem(_Model):
    """A deal's line item as the CRM holds it. Money is Decimal, never float."""

    model_config = ConfigDict(frozen=True)

    crm_id: str
    name: str = ""
    sku: str = ""
    #: The CRM product the line was made from, where the CRM links one (the catalogue sync's key).
    product_id: str = ""
    quantity: Decimal = Decimal(1)
    unit_price: Decimal = Decimal(0)
    discount_percent: Decimal | None = None
    amount: Decimal | None = Field(None, description="The CRM's own line total, for cross-checks")
    #: Recurring terms (a contract line): how often it bills, from when, and for how long -- a number of
    #: billing periods or an end date. None: a one-off line.
    recurring_frequency: Frequency | None = None
    recurring_start: date | None = None
    recurring_periods: int | None = Field(None, ge=1)
    recurring_end: date | None = None


class Deal(_Model):
    """A CRM deal with what invoicing needs: amount, currency, stage (won or not), parties, line items."""

    model_config = ConfigDict(frozen=True)

    ref: CrmRef
    name: str
    amount: Decimal | None = None
    currency: str = ""
    stage: str = ""
    pipeline: str = ""
    is_won: bool = False
    close_date: date | None = None
    owner_id: str = ""
    company: CrmRef | None = None
    contact: CrmRef | None = None
    line_items: tuple[LineItem, ...] = ()
    url: str = Field("", description="Where a person opens the deal in the CRM")
    updated_at: datetime | None = None
    synced: dict[str, str] = Field(
        default_factory=dict, description="Values of Closeloop's own write-back properties, as last read"
    )
    accounting_quote_id: str = Field(
        "",
        description=(
            "The accounting quote whose lines the deal bills: set by the quote flow (never read from the CRM), "
            "so the invoice names it where the accounting system links an invoice to its quote"
        ),
    )


class Item(_Model):
    """A product/service in the accounting system, addressed by its code (the CRM's SKU).

    ``id`` is the system's own id where it differs from the code (empty when the code is the address);
    ``fields`` holds the comparable ``PRODUCT_FIELDS`` values as the system has them (adapters that read
    the catalogue fill it; invoice lookups may leave it empty)."""

    model_config = ConfigDict(frozen=True)

    code: str
    name: str = ""
    unit_price: Decimal | None = None
    account_code: str = ""
    tax_type: str = ""
    id: str = ""
    fields: dict[str, str] = Field(default_factory=dict, description="Comparable values, see PRODUCT_FIELDS")


class Product(_Model):
    """A product of the CRM's catalogue: what a deal's line items name by SKU. Money is Decimal."""

    model_config = ConfigDict(frozen=True)

    ref: CrmRef
    sku: str = ""
    name: str = ""
    description: str = ""
    unit_price: Decimal | None = None
    unit_cost: Decimal | None = None
    currency: str = ""
    #: The supplier's name (the ``closeloop_supplier`` product property), for purchase orders.
    supplier: str = ""
    archived: bool = False
    updated_at: datetime | None = None


#: Canonical product/item fields the catalogue sync compares and writes, in a stable order. ``tax_code``,
#: ``sales_account`` and ``purchase_account`` are the accounting system's (a CRM has none).
PRODUCT_FIELDS: tuple[str, ...] = (
    "name",
    "description",
    "unit_price",
    "unit_cost",
    "tax_code",
    "sales_account",
    "purchase_account",
)


def money_text(value: Decimal | None) -> str:
    """A stable text for a money value: ``12.5`` and ``12.50`` compare equal; None is ""."""
    if value is None:
        return ""
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "") else text


class ItemDraft(_Model):
    """An accounting item to create or update, every value decided by the sync logic. Empty text and None
    mean "not set by us" (the adapter leaves the system's value or default)."""

    model_config = ConfigDict(frozen=True)

    code: str
    name: str
    description: str = ""
    unit_price: Decimal | None = None
    unit_cost: Decimal | None = None
    tax_code: str = ""
    sales_account: str = ""
    purchase_account: str = ""


def item_fields(draft: ItemDraft) -> dict[str, str]:
    """The comparable ``PRODUCT_FIELDS`` values a draft carries from the CRM (money as plain decimal text)."""
    return {
        "name": draft.name,
        "description": draft.description,
        "unit_price": money_text(draft.unit_price),
        "unit_cost": money_text(draft.unit_cost),
    }


@dataclass(frozen=True)
class ItemLimits:
    """What an accounting system accepts in an item (its published field lengths); 0: no limit published."""

    code: int = 0
    name: int = 0
    description: int = 0


class InvoiceLine(_Model):
    model_config = ConfigDict(frozen=True)

    item_code: str
    description: str
    quantity: Decimal
    unit_amount: Decimal
    tax_type: str = ""
    account_code: str = ""
    discount_rate: Decimal | None = None


class InvoiceDraft(_Model):
    """A sales invoice to create: every value decided by the sync logic, nothing left to the adapter."""

    model_config = ConfigDict(frozen=True)

    customer_id: str
    reference: str = Field(description="Carries the CRM deal id and name; unique per deal")
    currency: str
    lines: tuple[InvoiceLine, ...]
    line_amount_types: LineAmountTypes = "Exclusive"
    status: Literal["DRAFT", "AUTHORISED"] = "DRAFT"
    issue_date: date
    due_date: date
    url: str = Field("", description="Link back to the CRM deal, shown on the accounting record")
    accounting_quote_id: str = Field(
        "",
        description=(
            'The accounting quote the invoice is made from ("": none): sent where the system links them, so '
            "the quote reads invoiced by this invoice; a system without that link ignores it"
        ),
    )


class Invoice(_Model):
    """A sales invoice as the accounting system holds it."""

    model_config = ConfigDict(frozen=True)

    id: str
    number: str = ""
    reference: str = ""
    status: InvoiceStatus = "DRAFT"
    customer_id: str = ""
    currency: str = ""
    issue_date: date | None = None
    due_date: date | None = None
    sub_total: Decimal = Decimal(0)
    total_tax: Decimal = Decimal(0)
    total: Decimal = Decimal(0)
    amount_paid: Decimal = Decimal(0)
    amount_due: Decimal = Decimal(0)
    last_payment_date: date | None = None
    url: str = Field("", description="Where a person opens the invoice in the accounting system")
    updated_at: datetime | None = None


# -- purchase orders ----------------------------------------------------------------------------------


class Supplier(_Model):
    """A supplier as the accounting system holds it (a Xero contact, a QuickBooks vendor)."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    status: str = "ACTIVE"


class PurchaseOrderLine(_Model):
    """One line of a purchase order: what is bought, at the product's unit cost. Money is Decimal."""

    model_config = ConfigDict(frozen=True)

    item_code: str
    description: str
    quantity: Decimal
    unit_cost: Decimal


class PurchaseOrderDraft(_Model):
    """A purchase order to create: one per won deal and supplier, always a draft (a person approves it)."""

    model_config = ConfigDict(frozen=True)

    supplier_id: str
    reference: str = Field(description="Carries the CRM deal id and the supplier; unique per deal and supplier")
    currency: str
    lines: tuple[PurchaseOrderLine, ...]
    issue_date: date
    delivery_date: date | None = None
    status: Literal["DRAFT"] = "DRAFT"


class PurchaseOrder(_Model):
    """A purchase order as the accounting system holds it."""

    model_config = ConfigDict(frozen=True)

    id: str
    number: str = ""
    reference: str = ""
    status: str = "DRAFT"
    supplier_id: str = ""
    currency: str = ""
    total: Decimal = Decimal(0)
    url: str = Field("", description="Where a person opens the purchase order in the accounting system")


# -- quotes ----------------------------------------------------------------------------------------------

#: Where a CRM quote stands, canonically: ``ready`` is approved or published (sent to the customer) and is
#: what becomes an accounting quote; ``draft``, ``pending_approval`` and ``rejected`` are not quoted yet.
CrmQuoteStatus = Literal["draft", "pending_approval", "ready", "rejected"]

#: Where an accounting quote stands, canonically. ``EXPIRED`` is a state of its own in some systems and a
#: sent quote past its expiry date in others (the sync logic derives it there); ``INVOICED`` is a quote billed
#: by an invoice (a state in some systems, a link from the invoice in others); ``DELETED`` covers deleted and
#: voided ones.
AccountingQuoteStatus = Literal["DRAFT", "SENT", "ACCEPTED", "DECLINED", "EXPIRED", "INVOICED", "DELETED"]

#: The quote fields Closeloop writes back to the CRM quote (or to the deal, where the deal stands in for it).
QUOTE_SYNC_FIELDS: tuple[str, ...] = (
    "closeloop_quote_number",
    "closeloop_quote_status",
    "closeloop_quote_url",
    "closeloop_quote_revision",
)


class Quote(_Model):
    """A CRM quote with what an accounting quote needs: its deal, parties, currency, expiry and lines.

    A CRM without quotes lets its deal stand in (``ref`` then names the quote by the deal's id and
    ``deal`` is that deal)."""

    model_config = ConfigDict(frozen=True)

    ref: CrmRef
    deal: CrmRef | None = None
    title: str = ""
    number: str = Field("", description="The CRM's own quote number, where it has one")
    status: CrmQuoteStatus = "draft"
    currency: str = ""
    expiry: date | None = None
    company: CrmRef | None = None
    contact: CrmRef | None = None
    line_items: tuple[LineItem, ...] = ()
    url: str = Field("", description="Where a person opens the quote in the CRM")
    updated_at: datetime | None = None
    synced: dict[str, str] = Field(
        default_factory=dict, description="Values of Closeloop's own write-back properties, as last read"
    )


class QuoteDraft(_Model):
    """An accounting quote to create or revise: every value decided by the sync logic."""

    model_config = ConfigDict(frozen=True)

    customer_id: str
    reference: str = Field(description="Carries the CRM quote id; unique per CRM quote")
    title: str = ""
    currency: str
    lines: tuple[InvoiceLine, ...]
    line_amount_types: LineAmountTypes = "Exclusive"
    issue_date: date
    expiry: date | None = None
    #: What the CRM made it: ``SENT`` (approved or published, so the customer has it) is what the sync asks.
    status: Literal["DRAFT", "SENT"] = "SENT"
    url: str = Field("", description="Link back to the CRM quote, shown on the accounting record")


class AccountingQuote(_Model):
    """A quote (estimate) as the accounting system holds it."""

    model_config = ConfigDict(frozen=True)

    id: str
    number: str = ""
    reference: str = ""
    status: AccountingQuoteStatus = "DRAFT"
    customer_id: str = ""
    currency: str = ""
    issue_date: date | None = None
    expiry: date | None = None
    sub_total: Decimal = Decimal(0)
    total_tax: Decimal = Decimal(0)
    total: Decimal = Decimal(0)
    url: str = Field("", description="Where a person opens the quote in the accounting system")
    updated_at: datetime | None = None


class ScheduleDraft(_Model):
    """A repeating invoice schedule to create: every value decided by the sync logic (one per deal and
    frequency). ``start`` is the first invoice's date, ``end`` the last one's at the latest."""

    model_config = ConfigDict(frozen=True)

    customer_id: str
    reference: str = Field(description="Carries the CRM deal id and the frequency; unique per deal and frequency")
    currency: str
    lines: tuple[InvoiceLine, ...]
    line_amount_types: LineAmountTypes = "Exclusive"
    frequency: Frequency
    start: date
    end: date
    status: Literal["DRAFT", "AUTHORISED"] = "DRAFT"
    due_days: int = 30
    url: str = Field("", description="Link back to the CRM deal")


class RepeatingSchedule(_Model):
    """A repeating invoice schedule as the accounting system holds it. ``status`` is ``active`` while it
    generates invoices (draft templates included), ``ended`` once deleted or past its end."""

    model_config = ConfigDict(frozen=True)

    id: str
    reference: str = ""
    status: Literal["active", "ended"] = "active"
    approved: bool = False
    frequency: Frequency | None = None
    customer_id: str = ""
    currency: str = ""
    start_date: date | None = None
    next_invoice_date: date | None = None
    end_date: date | None = None
    sub_total: Decimal = Field(Decimal(0), description="Each period's invoice before tax")
    total: Decimal = Field(Decimal(0), description="Each period's invoice with tax")


# -- accounting-side changes (two-way sync) --------------------------------------------------------------

AccountingResource = Literal["customer", "invoice", "payment"]


class AccountingEvent(_Model):
    """One change notification from an accounting system (webhook or poll), normalised. Ids only."""

    model_config = ConfigDict(frozen=True)

    system: str = Field(description="The ACCOUNTING_PROVIDER that sent it, e.g. the adapter's name")
    resource: AccountingResource
    resource_id: str
    kind: Literal["created", "changed", "deleted", "other"]
    occurred_at: datetime
    dedupe_key: str = Field(description="Stable across redeliveries of the same event")


class AccountingWorkMessage(_Model):
    """A work message (kind ``accounting_changes``) with an accounting system's change notifications; it
    travels on the contacts queue."""

    kind: Literal["accounting_changes"] = "accounting_changes"
    received_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    events: list[AccountingEvent]


class BackfillWorkMessage(_Model):
    """A work message (kind ``backfill_chunk``): one chunk of a backfill fanned out over the contacts queue
    (CRM records to match or create)."""

    kind: Literal["backfill_chunk"] = "backfill_chunk"
    run_id: str
    refs: list[CrmRef]


#: The kind of each body queued before work messages named theirs, by the ``pipeline`` field they had then.
_KIND_OF_OLD_PIPELINE = {
    "contacts": "crm_events",
    "deals": "crm_events",
    "accounting": "accounting_changes",
    "backfill": "backfill_chunk",
}


def _kind_of_old_body(value: Any) -> Any:
    """Name the kind of a body queued before messages carried ``kind`` (they may sit in a queue or a DLQ at
    an upgrade): every old body began with ``pipeline``, whose value says which message it is."""
    if not isinstance(value, dict) or "kind" in value:
        return value
    pipeline = value.get("pipeline")
    kind = _KIND_OF_OLD_PIPELINE.get(pipeline) if isinstance(pipeline, str) else None
    if kind is None:
        return value  # no kind to give it: refused as a body without one
    if kind != "crm_events":  # "accounting" and "backfill" named the message, not a pipeline
        value = {key: item for key, item in value.items() if key != "pipeline"}
    return {**value, "kind": kind}


#: Any body put on a work queue, told apart by its ``kind``.
AnyWorkMessage = Annotated[
    WorkMessage | AccountingWorkMessage | BackfillWorkMessage,
    Field(discriminator="kind"),
    BeforeValidator(_kind_of_old_body),
]


class UnreadableMessage(ValueError):
    """A queue message that is no work message (malformed, of an unknown kind, or of a kind its worker does
    not take). It fails alone: it comes back until its queue's DLQ keeps it."""


@cache
def _work_messages() -> TypeAdapter[AnyWorkMessage]:
    # Built on first use, like the models: the webhook routes only ever write messages.
    return TypeAdapter(AnyWorkMessage)


def read_work_message(body: str | bytes) -> WorkMessage | AccountingWorkMessage | BackfillWorkMessage:
    """The work message in a queue body, of whichever kind. Raises UnreadableMessage saying what is wrong
    (where and why, never the body's values)."""
    try:
        return _work_messages().validate_json(body)
    except ValidationError as exc:
        problems = exc.errors(include_url=False, include_input=False)
        reasons = "; ".join(
            f"{'.'.join(str(part) for part in problem['loc']) or 'body'}: {problem['msg']}" for problem in problems[:3]
        )
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise UnreadableMessage(f"not a work message: {reasons}{more}") from None
