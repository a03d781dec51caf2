"""What the demo and the one parametrised end-to-end suite do to a vendor sandbox, whatever the vendor.

Each sandbox module (``hubspot``, ``xero``, ``quickbooks``, ...) offers a driver: a person's actions in the
vendor's UI (create a company, win a deal, record a payment) and reads of the vendor's state, in canonical
terms. The suite is written once against these protocols and runs for every CRM x accounting pair; the
production adapters never see a driver (they talk HTTP to the sandbox server like to the real API).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Protocol

from closeloop.models import CrmRef
from closeloop_local.sandboxes.base import SandboxState


@dataclass(frozen=True)
class Recurring:
    """A line's recurring billing terms: every ``frequency`` (canonical: ``monthly``, ``quarterly``,
    ``annual``...) for ``periods`` periods, the first bill on ``start``."""

    frequency: str
    periods: int
    start: date


@dataclass(frozen=True)
class DealLine:
    """A line item on a CRM deal: the SKU is the accounting item code (or mapped to one).

    ``product``: the CRM product the line is made from (``create_product``'s or ``create_supplier_product``'s
    ref); None lets the driver use or make a product of its own where the CRM needs one for a line.
    ``recurring``: the line bills on a schedule (None: a one-off line).
    """

    sku: str
    name: str
    quantity: Decimal
    unit_price: Decimal
    product: CrmRef | None = None
    recurring: Recurring | None = None


@dataclass(frozen=True)
class SeenCustomer:
    """A customer record as the accounting sandbox holds it, in canonical terms."""

    id: str
    name: str
    number: str = ""
    email: str = ""
    tax_number: str = ""
    active: bool = True


@dataclass(frozen=True)
class SeenInvoice:
    """A sales invoice as the accounting sandbox holds it, in canonical terms."""

    id: str
    reference: str
    customer_id: str
    currency: str
    total: Decimal
    amount_due: Decimal
    status: str
    lines: tuple[tuple[str, Decimal, Decimal], ...] = field(default=())  # (item code, quantity, unit price)


@dataclass(frozen=True)
class SeenItem:
    """A sales item as the accounting sandbox holds it, in canonical terms (its code is the CRM's SKU)."""

    id: str
    code: str
    name: str
    unit_price: Decimal | None
    unit_cost: Decimal | None = None


# -- quote to cash (issue 12): what the drivers show of quotes, schedules and purchase orders --------------
#: (item code, quantity, unit price), as SeenInvoice.lines
Line = tuple[str, Decimal, Decimal]


@dataclass(frozen=True)
class QuotedDeal:
    """An open CRM deal and the approved quote made from its lines (the deal itself where the CRM has no
    quotes and the deal stands in for one)."""

    deal: CrmRef
    quote: CrmRef


@dataclass(frozen=True)
class SeenQuote:
    """An accounting quote (estimate) as the sandbox holds it; ``status`` canonical (DRAFT, SENT, ACCEPTED,
    DECLINED, EXPIRED, INVOICED, DELETED); ``reference`` is Closeloop's (``<crm>-quote-<id> <title>``)."""

    id: str
    number: str
    reference: str
    status: str
    total: Decimal
    lines: tuple[Line, ...] = field(default=())


@dataclass(frozen=True)
class SeenSchedule:
    """A repeating invoice schedule (template) as the sandbox holds it; ``every`` in the vendor's words
    (``1 MONTHLY``); ``reference`` is Closeloop's (``<crm>-deal-<id>/<frequency>``)."""

    id: str
    reference: str
    every: str
    active: bool
    lines: tuple[Line, ...] = field(default=())


@dataclass(frozen=True)
class SeenPurchaseOrder:
    """A purchase order as the sandbox holds it (``supplier``: its supplier contact's name; ``reference``
    Closeloop's ``<crm>-deal-<id>-po-<supplier>``)."""

    id: str
    number: str
    reference: str
    supplier: str
    status: str
    total: Decimal
    lines: tuple[Line, ...] = field(default=())


def not_carried(vendor: str, what: str) -> NotImplementedError:
    """The error a driver raises for a quote-to-cash action its sandbox (or this driver) does not carry yet."""
    return NotImplementedError(f"the {vendor} sandbox driver does not implement {what} yet")


# -- end of quote to cash --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SentWebhook:
    """One webhook request as the CRM sandbox sent it (or as a forger would send it): replayable as is."""

    url: str
    headers: Mapping[str, str]
    body: bytes
    status: int | None = None  # the answer Closeloop gave, when it was sent


class CrmDriver(Protocol):
    """A CRM sandbox, driven as a salesperson and an admin would."""

    name: str  # the CRM_PROVIDER value
    state: SandboxState  # request log, faults, clock

    def environment(self, base_url: str) -> dict[str, str]:
        """Settings and credentials (env names as documented) that point the stack at this sandbox."""
        ...

    def subscribe(self, webhook_base_url: str) -> None:
        """Register Closeloop's webhooks (``<base>/webhooks/<crm>/...``) the way ``closeloop setup`` tells."""

    def flush_webhooks(self) -> None:
        """Deliver every pending webhook now (the sandbox batches them like the vendor does)."""

    def sent_webhooks(self) -> list[SentWebhook]:
        """Every webhook request the sandbox has sent so far, oldest first, with its URL, headers and body."""
        ...

    def forged_webhook(self, webhook_base_url: str) -> SentWebhook:
        """A request shaped like this CRM's webhook to Closeloop, made by someone without its secret."""
        ...

    def lose_pending_webhooks(self) -> None:
        """Every webhook not yet delivered is lost, as when the CRM gave up on Closeloop's endpoint: only the
        catch-up poll (or a deal that needs the record) brings those changes now."""

    def create_company(
        self, name: str, *, email: str = "", tax_number: str = "", country: str = "", city: str = ""
    ) -> CrmRef: ...

    def create_product(self, sku: str, name: str, price: Decimal, cost: Decimal | None = None) -> CrmRef:
        """A product in the CRM's catalogue, with its SKU, unit price and (where given) unit cost."""
        ...

    def update_product(self, ref: CrmRef, *, price: Decimal) -> None:
        """Sales changes the product's unit price (its other fields stay)."""

    def update_company(self, ref: CrmRef, *, name: str | None = None, phone: str | None = None) -> None: ...

    def create_won_deal(self, company: CrmRef, lines: Sequence[DealLine], *, currency: str) -> CrmRef:
        """A deal created open, with its line items (each linked to its ``product`` where given), then moved
        to the won stage (as a person does)."""
        ...

    def deal_fields(self, deal: CrmRef) -> Mapping[str, str]:
        """Closeloop's write-back values on the deal, by canonical name (``closeloop_invoice_number``...)."""
        ...

    def customer_fields(self, ref: CrmRef) -> Mapping[str, str]:
        """Closeloop's financial summary on the company (``closeloop_outstanding``...)."""
        ...

    # -- quote to cash (issue 12): a driver whose CRM lacks one raises ``not_carried`` naming its vendor --

    def create_supplier_product(
        self, sku: str, name: str, price: Decimal, *, cost: Decimal, supplier: str, currency: str
    ) -> CrmRef:
        """A catalogue product bought from ``supplier`` (its name, in the product's supplier field that
        ``closeloop setup`` makes) at unit ``cost``, priced in ``currency`` where the CRM prices products in a
        currency (the one the company sells and buys in: a purchase order is raised in its product's currency)."""
        ...

    def create_quoted_deal(
        self, company: CrmRef, lines: Sequence[DealLine], *, currency: str, expires: date
    ) -> QuotedDeal:
        """An open deal with ``lines`` and a quote made from them (same lines, recurring terms and products;
        expiring on ``expires``), approved for sending as a sales manager does."""
        ...

    def win_deal(self, deal: CrmRef) -> None:
        """Move an open deal to the won stage."""

    def quote_fields(self, quote: CrmRef) -> Mapping[str, str]:
        """Closeloop's write-back values on the quote (``closeloop_quote_number``, ``closeloop_quote_status``)."""
        ...


class AccountingDriver(Protocol):
    """An accounting sandbox, driven as finance would."""

    name: str  # the ACCOUNTING_PROVIDER value

    @property
    def state(self) -> SandboxState: ...  # read-only: a plain attribute or a property both do

    @property
    def currency(self) -> str:
        """The organisation's base currency (deals in it need no currency setup)."""
        ...

    def environment(self, base_url: str) -> dict[str, str]: ...

    def customers(self) -> list[SeenCustomer]: ...

    def invoices(self) -> list[SeenInvoice]: ...

    def items(self) -> list[SeenItem]: ...

    def seed_item(self, code: str, name: str, unit_price: Decimal) -> None: ...

    def seed_customer(self, name: str, *, email: str = "", tax_number: str = "") -> str: ...

    def edit_customer(
        self, customer_id: str, *, name: str | None = None, email: str | None = None, phone: str | None = None
    ) -> None:
        """Finance edits the customer in the accounting system (as a person would, not through Closeloop's
        connection): only the given fields change, and the system's change notifications (webhooks where it
        has them) and modification time follow as for any edit."""

    def approve_and_pay(self, invoice_id: str, amount: Decimal, on: date) -> None:
        """Approve (authorise) the invoice if it is a draft, then record a payment of ``amount``."""

    # -- quote to cash (issue 12): a driver whose system lacks one raises ``not_carried`` naming its vendor --

    def quotes(self) -> list[SeenQuote]:
        """Every quote (estimate), deleted ones too."""
        ...

    def accept_quote(self, quote_id: str) -> None:
        """The customer accepts the quote; finance marks it so (the system's change time moves, as any edit)."""

    def schedules(self) -> list[SeenSchedule]:
        """Every repeating invoice schedule, ended ones too."""
        ...

    def purchase_orders(self) -> list[SeenPurchaseOrder]:
        """Every purchase order."""
        ...
