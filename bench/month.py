"""A synthetic month for the reconciliation benchmark: ``count`` won deals, their invoices, the store.

Deals and invoices are built as they are yielded, as a paging adapter builds them from each page, so a
memory measurement includes them while they live and nothing before. The store's ``iter_mappings`` builds
its list when called, as ``DynamoStore.iter_mappings`` does from its scan. Planted, per deal number ``n``:

| n                | what                                                                    |
|------------------|-------------------------------------------------------------------------|
| % 200 == 0       | won, never invoiced (``won_deal_without_invoice``)                      |
| % 100 == 1       | invoiced one cent more (``amount_mismatch``)                            |
| % 250 == 2       | paid in accounting, "awaiting_payment" on the deal                      |
| % 500 == 3       | invoiced in USD for a GBP deal (``currency_mismatch``)                  |
| % 1000 == 4      | invoiced twice (``duplicate_invoice``)                                  |
| % 50 == 5        | its mapped invoice was issued last month (fetched by id)                |
| every 100th      | an invoice of the month naming no deal (``invoice_without_deal``)       |
| company % 20 == 7| the accounting customer's email differs (``contact_drift``)             |
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from closeloop.models import AccountingCustomer, Address, CrmRef, Customer, Deal, Invoice, customer_fields
from closeloop.ports import FailedSync, IdMapping

CRM = "hubspot"
BOOKS = "xero"
MONTH = "2026-10"
TODAY = date(2026, 11, 1)
COMPANIES = 2_000
REPS = 40
FIRST_DEAL = 3_000_000
CENT = Decimal("0.01")


def deal_ref(n: int) -> CrmRef:
    return CrmRef(crm=CRM, object_type="deal", object_id=str(FIRST_DEAL + n))


def company_ref(c: int) -> CrmRef:
    return CrmRef(crm=CRM, object_type="company", object_id=str(10_000_000_000 + c))


def deal_amount(n: int) -> Decimal:
    return Decimal(500 + (n * 37) % 9_500) + Decimal("0.25")


def deal_currency(n: int) -> str:
    return "EUR" if n % 3 == 0 else "GBP"


def reference(n: int) -> str:
    return f"{CRM}-deal-{FIRST_DEAL + n} Renewal {n}"


def customer(c: int) -> Customer:
    return Customer(
        ref=company_ref(c),
        name=f"Company {c} Ltd",
        email=f"billing{c}@example.com",
        tax_number=f"GB{100_000_000 + c}",
        address=Address(line1=f"{c} High Street", city="London", postal_code="EC1A 1AA", country="GB"),
    )


def invoice_for(n: int, *, suffix: str = "", issued: date | None = None) -> Invoice:
    net = deal_amount(n) + (CENT if n % 100 == 1 else 0)
    tax = (net * Decimal("0.2")).quantize(CENT)
    paid = n % 250 == 2
    total = net + tax
    return Invoice(
        id=f"inv-{n}{suffix}",
        number=f"INV-{n:06d}{suffix}",
        reference=reference(n),
        status="PAID" if paid else "AUTHORISED",
        customer_id=f"c-{n % COMPANIES}",
        currency="USD" if n % 500 == 3 else deal_currency(n),
        issue_date=issued or date(2026, 10, 1) + timedelta(days=n % 31),
        due_date=date(2026, 11, 30),
        sub_total=net,
        total_tax=tax,
        total=total,
        amount_paid=total if paid else Decimal(0),
        amount_due=Decimal(0) if paid else total,
        updated_at=datetime(2026, 10, 31, tzinfo=UTC),
    )


@dataclass
class MonthCrm:
    """The CRM: ``count`` won deals of October 2026, built page by page as they are read."""

    count: int
    name: str = CRM

    def iter_won_deals(self, closed_from: datetime, closed_before: datetime) -> Iterator[Deal]:
        for n in range(self.count):
            yield Deal(
                ref=deal_ref(n),
                name=f"Renewal {n}",
                amount=deal_amount(n),
                currency=deal_currency(n),
                stage="closedwon",
                pipeline="default",
                is_won=True,
                close_date=date(2026, 10, 1) + timedelta(days=n % 31),
                owner_id=str(7_000 + n % REPS),
                company=company_ref(n % COMPANIES),
                synced={"closeloop_payment_status": "awaiting_payment"},
            )

    def get_deal(self, deal_id: str) -> Deal | None:
        return None

    def resolve_customer(self, ref: CrmRef) -> Customer | None:
        return customer(int(ref.object_id) - 10_000_000_000)


@dataclass
class MonthBooks:
    """The accounting system: the month's invoices (see the module table), by id and customers."""

    count: int
    name: str = BOOKS

    def iter_invoices(self, issued_from: date, issued_before: date) -> Iterator[Invoice]:
        for n in range(self.count):
            if n % 200 == 0 or n % 50 == 5:
                continue  # never invoiced / invoiced last month
            yield invoice_for(n)
            if n % 1000 == 4:
                yield invoice_for(n, suffix="-dup")
        for k in range(self.count // 100):
            yield Invoice(
                id=f"orphan-{k}",
                number=f"X-{k:05d}",
                reference="Consulting, see email",
                status="AUTHORISED",
                currency="GBP",
                issue_date=date(2026, 10, 5),
                total=Decimal(120),
                sub_total=Decimal(100),
                amount_due=Decimal(120),
            )

    def get_invoice(self, invoice_id: str) -> Invoice | None:
        n = int(invoice_id.removeprefix("inv-").split("-")[0])
        return invoice_for(n, issued=date(2026, 9, 30))

    def get_customer(self, customer_id: str) -> AccountingCustomer | None:
        c = int(customer_id.removeprefix("c-"))
        fields = customer_fields(customer(c))
        if c % 20 == 7:
            fields["email"] = f"accounts{c}@example.com"
        return AccountingCustomer(id=customer_id, name=fields["name"], fields=fields)


@dataclass
class MonthStore:
    """Mappings: every invoiced deal to its (first) invoice, every company to its customer."""

    count: int

    def _invoiced(self, n: int) -> bool:
        return 0 <= n < self.count and n % 200 != 0

    def get_mapping(self, ref: CrmRef, system: str) -> IdMapping | None:
        if ref.object_type == "company":
            return IdMapping(ref=ref, system=system, accounting_id=f"c-{int(ref.object_id) - 10_000_000_000}")
        n = int(ref.object_id) - FIRST_DEAL
        return IdMapping(ref=ref, system=system, accounting_id=f"inv-{n}") if self._invoiced(n) else None

    def find_ref(self, system: str, accounting_id: str) -> CrmRef | None:
        if accounting_id.startswith("c-"):
            return company_ref(int(accounting_id.removeprefix("c-")))
        return None

    def iter_mappings(self, crm: str, object_type: str) -> list[IdMapping]:
        """Every deal mapping, as one list (DynamoStore scans the table into one)."""
        return [
            IdMapping(ref=deal_ref(n), system=BOOKS, accounting_id=f"inv-{n}")
            for n in range(self.count)
            if self._invoiced(n)
        ]


def failed_syncs(count: int = 25) -> list[FailedSync]:
    return [
        FailedSync(
            ref=deal_ref(n),
            at=datetime(2026, 10, 20, 9, 30, tzinfo=UTC),
            reason=f"unknown SKU 'OLD-{n}': no accounting item with code 'OLD-{n}'",
            error_type="ValidationFailed",
            source_event=f"evt-{n}",
        )
        for n in range(count)
    ]
