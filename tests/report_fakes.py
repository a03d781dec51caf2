"""In-memory fakes and a planted scenario for the monthly reconciliation tests (unit tier, no network).

``ReportCrm`` / ``ReportBooks`` / ``ReportStore`` implement only what ``reconcile`` reads, with indexes so
the 100k-record benchmark measures reconcile and not the fakes. ``SyntheticCrm`` / ``SyntheticBooks`` build
each deal and invoice as it is yielded, like a paging adapter, so a memory measurement includes them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from closeloop.models import (
    AccountingCustomer,
    AccountingQuote,
    Address,
    CrmRef,
    Customer,
    Deal,
    Invoice,
    customer_fields,
)
from closeloop.ports import AuditRecord, FailedSync, IdMapping
from closeloop.rules import FieldRules
from closeloop.sync.reconcile import Catalogue, QuoteBook
from tests.fakes import FakeCatalogueBooks, FakeCatalogueCrm

CRM = "hubspot"
BOOKS = "xero"
TODAY = date(2026, 11, 1)
MONTH = "2026-10"
GENERATED_AT = datetime(2026, 11, 1, 2, 0, tzinfo=UTC)

#: Personal data planted in the scenario: none of it may appear in any report byte.
PII = (
    "ana.crm@acme.example",
    "billing.books@acme.example",
    "GB123456789",
    "GB987654321",
    "+44 20 7946 0000",
    "1 Old Street",
    "2 New Street",
    "Ana Contact",
    "ana.person@example.org",
)


def deal_ref(deal_id: str) -> CrmRef:
    return CrmRef(crm=CRM, object_type="deal", object_id=deal_id)


def company_ref(company_id: str) -> CrmRef:
    return CrmRef(crm=CRM, object_type="company", object_id=company_id)


def deal(
    deal_id: str,
    amount: str | None = "1000.00",
    *,
    currency: str = "GBP",
    closed: date = date(2026, 10, 15),
    owner: str = "7001",
    won: bool = True,
    company: CrmRef | None = None,
    synced: dict[str, str] | None = None,
    name: str = "",
) -> Deal:
    return Deal(
        ref=deal_ref(deal_id),
        name=name or f"Deal {deal_id}",
        amount=Decimal(amount) if amount is not None else None,
        currency=currency,
        stage="closedwon" if won else "closedlost",
        is_won=won,
        close_date=closed,
        owner_id=owner,
        company=company,
        synced=synced or {},
    )


def invoice(
    invoice_id: str,
    total: str = "1000.00",
    *,
    reference: str = "",
    status: str = "AUTHORISED",
    currency: str = "GBP",
    issued: date = date(2026, 10, 15),
    due: date = date(2026, 11, 14),
    paid: str = "0",
    sub_total: str | None = None,
    customer_id: str = "",
) -> Invoice:
    total_d, paid_d = Decimal(total), Decimal(paid)
    return Invoice(
        id=invoice_id,
        number=f"INV-{invoice_id}",
        reference=reference,
        status=status,
        customer_id=customer_id,
        currency=currency,
        issue_date=issued,
        due_date=due,
        sub_total=Decimal(sub_total) if sub_total is not None else total_d,
        total=total_d,
        amount_paid=paid_d,
        amount_due=total_d - paid_d,
    )


def ref_text(deal_id: str, name: str = "") -> str:
    """The Reference convention of the deal sync: ``hubspot-deal-<id> <name>``."""
    return f"{CRM}-deal-{deal_id} {name or 'Deal ' + deal_id}"


@dataclass
class ReportCrm:
    """The CRM side reconcile reads: won deals by close date, a deal by id, customers."""

    name: str = CRM
    deals: dict[str, Deal] = field(default_factory=dict)
    customers: dict[CrmRef, Customer] = field(default_factory=dict)
    get_deal_calls: list[str] = field(default_factory=list)
    resolve_calls: int = 0

    def add(self, *deals: Deal) -> None:
        for d in deals:
            self.deals[d.ref.object_id] = d

    def iter_won_deals(self, closed_from: datetime, closed_before: datetime) -> Iterator[Deal]:
        for d in self.deals.values():
            if d.is_won and d.close_date and closed_from.date() <= d.close_date < closed_before.date():
                yield d

    def get_deal(self, deal_id: str) -> Deal | None:
        self.get_deal_calls.append(deal_id)
        return self.deals.get(deal_id)

    def resolve_customer(self, ref: CrmRef) -> Customer | None:
        self.resolve_calls += 1
        return self.customers.get(ref)


@dataclass
class ReportBooks:
    """The accounting side reconcile reads: invoices by issue date, an invoice by id, customers by id."""

    name: str = BOOKS
    invoices: dict[str, Invoice] = field(default_factory=dict)
    customers: dict[str, AccountingCustomer] = field(default_factory=dict)
    get_invoice_calls: list[str] = field(default_factory=list)

    def add(self, *invoices: Invoice) -> None:
        for i in invoices:
            self.invoices[i.id] = i

    def iter_invoices(self, issued_from: date, issued_before: date) -> Iterator[Invoice]:
        for i in self.invoices.values():
            if i.issue_date and issued_from <= i.issue_date < issued_before:
                yield i

    def get_invoice(self, invoice_id: str) -> Invoice | None:
        self.get_invoice_calls.append(invoice_id)
        return self.invoices.get(invoice_id)

    def get_customer(self, customer_id: str) -> AccountingCustomer | None:
        return self.customers.get(customer_id)


@dataclass
class ReportStore:
    """Mappings with an index by accounting id (like the table's GSI1)."""

    mappings: dict[tuple[CrmRef, str], IdMapping] = field(default_factory=dict)
    by_accounting_id: dict[tuple[str, str], CrmRef] = field(default_factory=dict)
    get_mapping_calls: int = 0

    def link(self, ref: CrmRef, accounting_id: str, system: str = BOOKS) -> None:
        self.mappings[(ref, system)] = IdMapping(ref=ref, system=system, accounting_id=accounting_id)
        self.by_accounting_id[(system, accounting_id)] = ref

    def get_mapping(self, ref: CrmRef, system: str) -> IdMapping | None:
        self.get_mapping_calls += 1
        return self.mappings.get((ref, system))

    def find_ref(self, system: str, accounting_id: str) -> CrmRef | None:
        return self.by_accounting_id.get((system, accounting_id))


@dataclass
class Scenario:
    crm: ReportCrm
    books: ReportBooks
    store: ReportStore
    failed: list[FailedSync]
    dead_letters: dict[str, int]
    conflicts: list[AuditRecord] = field(default_factory=list)
    catalogue: Catalogue | None = None
    quotes: QuoteBook | None = None


@dataclass
class ReportQuotes:
    """The accounting quotes reconcile lists (once per report: ``listings`` counts it)."""

    name: str = BOOKS
    quotes: list[AccountingQuote] = field(default_factory=list)
    listings: int = 0

    def iter_quotes_changed_since(self, since: datetime | None) -> Iterator[AccountingQuote]:
        self.listings += 1
        return iter([q for q in self.quotes if since is None or (q.updated_at and q.updated_at >= since)])


def quote_ref(quote_id: str) -> CrmRef:
    return CrmRef(crm=CRM, object_type="quote", object_id=quote_id)


def planted_quotes() -> QuoteBook:
    """Accounting quotes of the planted month, each linked to its CRM quote and deal: two accepted and not
    invoiced (the deal won without an invoice; the deal lost), one invoice that differs from its quote; the rest
    clean or not Closeloop's."""
    books = ReportQuotes()
    links: list[IdMapping] = []

    def quoted(quote_id: str, deal_id: str, status: str, sub_total: str, changed: datetime | None = None) -> None:
        net = Decimal(sub_total)
        books.quotes.append(
            AccountingQuote(
                id=f"aq-{quote_id}",
                number=f"QU-{quote_id}",
                status=status,  # type: ignore[arg-type]
                currency="GBP",
                issue_date=date(2026, 10, 1),
                sub_total=net,
                total=net * Decimal("1.2"),
                updated_at=changed or datetime(2026, 10, 10, 9, 0, tzinfo=UTC),
            )
        )
        snapshot = {"kind": "quote", "deal_id": deal_id, "status": status}
        links.append(
            IdMapping(ref=quote_ref(quote_id), system=BOOKS, accounting_id=f"aq-{quote_id}", snapshot=snapshot)
        )

    quoted("q100", "100", "INVOICED", "1000.00")  # clean: invoiced as quoted (the invoice's sub_total)
    quoted("q102", "102", "ACCEPTED", "80.00")  # clean: accepted, invoiced (in September) as quoted
    quoted("q101", "101", "INVOICED", "240.50")  # invoice_differs_from_quote: the invoice bills 250.50
    quoted("q200", "200", "ACCEPTED", "500.00")  # quote_accepted_not_invoiced: deal 200 won, no invoice
    quoted("q301", "301", "ACCEPTED", "10.00")  # quote_accepted_not_invoiced: deal 301 was lost
    quoted("q200b", "200", "DECLINED", "450.00")  # clean: an older, declined quote of deal 200
    quoted("q990", "990", "ACCEPTED", "1.00", datetime(2026, 11, 2, tzinfo=UTC))  # clean: accepted after the month
    books.quotes.append(AccountingQuote(id="aq-mine", status="ACCEPTED"))  # clean: not one Closeloop made
    return QuoteBook(books, links)


def planted_catalogue() -> Catalogue:
    """Linked products and their items (prices in GBP): two drifted, the rest clean or not comparable."""
    crm, books = FakeCatalogueCrm(name=CRM), FakeCatalogueBooks(name=BOOKS)
    links: list[IdMapping] = []

    def linked(product_id: str, sku: str, price: str | None, item_price: str, **product: object) -> None:
        ref = crm.add(product_id, sku=sku, name=f"Product {sku}", unit_price=price and Decimal(price), **product)
        item = books.put(sku, name=f"Product {sku}", **({"unit_price": item_price} if item_price else {}))
        links.append(IdMapping(ref=ref, system=BOOKS, accounting_id=item.id, snapshot={"code": sku}))

    linked("800", "CLEAN-1", "10.00", "10")  # clean: the same price, written differently
    linked("801", "DRIFT-1", "12.50", "12.00")  # item_price_drift: finance edited the item's price
    linked("802", "NOPRICE-1", "5.00", "")  # item_price_drift: the item has no sales price
    linked("803", "EURO-1", "7.00", "6.00", currency="EUR")  # not compared: priced in another currency
    linked("804", "FREE-1", None, "2.00")  # clean: unpriced in the CRM, nothing for the sync to carry
    linked("806", "OLD-1", "3.00", "2.00", archived=True)  # clean: archived in the CRM, the item stays
    crm.add("805", sku="LOOSE-1", unit_price=Decimal("1.00"))  # not linked: the backfill's business
    books.put("LOOSE-1", unit_price="2.00")
    return Catalogue(crm, books, links, FieldRules.load(), base_currency="GBP")


def planted_scenario() -> Scenario:
    """A month with one of each discrepancy planted, beside records that reconcile cleanly.

    Deal ids say what they test; ``expected`` in the unit tests lists what must be found.
    """
    crm, books, store = ReportCrm(), ReportBooks(), ReportStore()
    acme, globex, person = company_ref("501"), company_ref("502"), CrmRef(crm=CRM, object_type="contact", object_id="9")

    # clean: mapped, same amount (net, tax on top), same status
    crm.add(deal("100", company=globex, synced={"closeloop_payment_status": "awaiting_payment"}))
    books.add(invoice("i100", "1200.00", sub_total="1000.00", reference=ref_text("100"), customer_id="c-globex"))
    store.link(deal_ref("100"), "i100")
    # clean: linked only by reference (no mapping yet)
    crm.add(deal("101", "250.50", owner="7002"))
    books.add(invoice("i101", "250.50", reference=ref_text("101"), paid="250.50", status="PAID"))
    # clean: mapped invoice issued in September (fetched by id)
    crm.add(deal("102", "80.00", closed=date(2026, 10, 1)))
    books.add(invoice("i102", "80.00", issued=date(2026, 9, 30), reference=ref_text("102")))
    store.link(deal_ref("102"), "i102")
    # clean: an invoice of October for a deal won in September
    crm.add(deal("103", "60.00", closed=date(2026, 9, 29)))
    books.add(invoice("i103", "60.00", reference=ref_text("103")))
    # clean: a voided invoice nobody claims
    books.add(invoice("i104", "999.00", reference="typo", status="VOIDED"))

    # won_deal_without_invoice: nothing at all
    crm.add(deal("200", "500.00", company=acme))
    # won_deal_without_invoice: its invoice was voided
    crm.add(deal("201", "300.00"))
    books.add(invoice("i201", "300.00", reference=ref_text("201"), status="VOIDED"))
    store.link(deal_ref("201"), "i201")
    # invoice_without_deal: reference names no deal
    books.add(invoice("i300", "42.00", reference="Consulting, see email"))
    # invoice_without_deal: the deal it names was lost
    crm.add(deal("301", won=False, closed=date(2026, 10, 2)))
    books.add(invoice("i301", "10.00", reference=ref_text("301")))
    # duplicate_invoice: a second invoice for a mapped deal
    crm.add(deal("400", "700.00"))
    books.add(
        invoice("i400", "700.00", reference=ref_text("400")), invoice("i401", "700.00", reference=ref_text("400"))
    )
    store.link(deal_ref("400"), "i400")
    # amount_mismatch: one cent
    crm.add(deal("500", "1000.00"))
    books.add(invoice("i500", "1000.01", reference=ref_text("500")))
    store.link(deal_ref("500"), "i500")
    # currency_mismatch
    crm.add(deal("600", "90.00", currency="EUR"))
    books.add(invoice("i600", "90.00", currency="USD", reference=ref_text("600")))
    store.link(deal_ref("600"), "i600")
    # payment_status_mismatch: the CRM still shows awaiting_payment, the invoice is paid
    crm.add(deal("700", "120.00", synced={"closeloop_payment_status": "awaiting_payment"}))
    books.add(invoice("i700", "120.00", reference=ref_text("700"), status="PAID", paid="120.00"))
    store.link(deal_ref("700"), "i700")

    # contact_drift: Acme's email, tax number and city differ; Globex matches; a person-customer drifts too
    crm_acme = Customer(
        ref=acme,
        name="Acme Ltd",
        email="ana.crm@acme.example",
        phone="+44 20 7946 0000",
        tax_number="GB123456789",
        address=Address(line1="1 Old Street", city="London", country="GB"),
    )
    books_acme_fields = customer_fields(crm_acme) | {
        "email": "billing.books@acme.example",
        "tax_number": "GB987654321",
        "address.line1": "2 New Street",
        "address.city": "Leeds",
    }
    crm.customers[acme] = crm_acme
    books.customers["c-acme"] = AccountingCustomer(id="c-acme", name="Acme Ltd", fields=books_acme_fields)
    store.link(acme, "c-acme")
    crm_globex = Customer(ref=globex, name="Globex", tax_number="gb 111 222 333", address=Address(city="Paris"))
    globex_fields = customer_fields(crm_globex) | {"tax_number": "GB111222333", "address.city": " paris "}
    crm.customers[globex] = crm_globex
    books.customers["c-globex"] = AccountingCustomer(id="c-globex", name="Globex", fields=globex_fields)
    store.link(globex, "c-globex")
    crm.add(deal("800", "10.00", company=None))
    books.add(invoice("i800", "10.00", reference=ref_text("800"), customer_id="c-person"))
    store.link(deal_ref("800"), "i800")
    crm_person = Customer(ref=person, name="Ana Contact", email="ana.person@example.org")
    crm.customers[person] = crm_person
    books.customers["c-person"] = AccountingCustomer(
        id="c-person", name="Ana Contact", fields=customer_fields(crm_person) | {"email": "other@example.org"}
    )
    store.link(person, "c-person")

    failed = [
        FailedSync(
            ref=deal_ref("900"),
            at=datetime(2026, 10, 20, 9, 30, tzinfo=UTC),
            reason="Xero said: Email address ana.crm@acme.example must be valid",
            error_type="ValidationFailed",
            source_event="evt-1",
            attempts=3,
        )
    ]
    conflicts = [
        AuditRecord(
            ref=company_ref("502"),
            at=at,
            action="conflict",
            system="books",
            target_id="c502",
            actor="",
            source_event="",
            changes={"name": {"before": "Globex", "after": "Globex Corporation"}},
            detail="changed in the accounting system; the CRM owns these",
        )
        for at in (datetime(2026, 10, 12, 8, 0, tzinfo=UTC), datetime(2026, 11, 2, 8, 0, tzinfo=UTC))  # 2nd: next month
    ]
    dead = {"closeloop-deals-dlq": 2, "closeloop-contacts-dlq": 0}
    return Scenario(crm, books, store, failed, dead, conflicts, planted_catalogue(), planted_quotes())


# -- large synthetic months (benchmark) ----------------------------------------------------------------


@dataclass
class SyntheticCrm:
    """``count`` won deals of October 2026, built as they are yielded (like pages from a CRM search)."""

    count: int
    name: str = CRM

    def iter_won_deals(self, closed_from: datetime, closed_before: datetime) -> Iterator[Deal]:
        for n in range(self.count):
            yield Deal(
                ref=deal_ref(str(3_000_000 + n)),
                name=f"Deal {n}",
                amount=Decimal(1000 + n % 500) + Decimal("0.25"),
                currency="GBP" if n % 3 else "EUR",
                is_won=True,
                close_date=date(2026, 10, 1) + timedelta(days=n % 31),
                owner_id=str(7000 + n % 40),
                company=company_ref(str(n % 2000)),
                synced={"closeloop_payment_status": "awaiting_payment"},
            )

    def get_deal(self, deal_id: str) -> Deal | None:
        return None

    def resolve_customer(self, ref: CrmRef) -> Customer | None:
        return Customer(ref=ref, name=f"Company {ref.object_id}", email=f"billing{ref.object_id}@example.com")


@dataclass
class SyntheticBooks:
    """One invoice per synthetic deal (every 100th deal invoiced one cent off), plus ``count // 100`` orphans."""

    count: int
    name: str = BOOKS

    def iter_invoices(self, issued_from: date, issued_before: date) -> Iterator[Invoice]:
        for n in range(self.count):
            total = Decimal(1000 + n % 500) + Decimal("0.25") + (Decimal("0.01") if n % 100 == 0 else 0)
            yield Invoice(
                id=f"inv-{n}",
                number=f"INV-{n:06d}",
                reference=ref_text(str(3_000_000 + n)),
                status="AUTHORISED",
                customer_id=f"c-{n % 2000}",
                currency="GBP" if n % 3 else "EUR",
                issue_date=date(2026, 10, 1) + timedelta(days=n % 31),
                due_date=date(2026, 11, 30),
                sub_total=total,
                total=total,
                amount_due=total,
            )
        for n in range(self.count // 100):
            yield Invoice(
                id=f"orphan-{n}",
                number=f"X-{n}",
                reference="manual",
                status="AUTHORISED",
                currency="GBP",
                issue_date=date(2026, 10, 5),
                total=Decimal(5),
                amount_due=Decimal(5),
            )

    def get_invoice(self, invoice_id: str) -> Invoice | None:
        return None

    def get_customer(self, customer_id: str) -> AccountingCustomer | None:
        n = customer_id.removeprefix("c-")
        return AccountingCustomer(id=customer_id, name=f"Company {n}", fields={"name": f"Company {n}"})


class SyntheticStore:
    """Every synthetic deal mapped to its invoice and every company to its customer, computed not stored."""

    def get_mapping(self, ref: CrmRef, system: str) -> IdMapping | None:
        if ref.object_type == "deal":
            return IdMapping(ref=ref, system=system, accounting_id=f"inv-{int(ref.object_id) - 3_000_000}")
        return IdMapping(ref=ref, system=system, accounting_id=f"c-{ref.object_id}")

    def find_ref(self, system: str, accounting_id: str) -> CrmRef | None:
        return None
