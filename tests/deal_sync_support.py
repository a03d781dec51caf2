"""A won deal for DealSync tests (``won_deal``, ``setup``), and one already invoiced (``invoiced``) for tests of
what happens after invoicing."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from closeloop.models import Address, Customer, Deal, Item, LineItem
from closeloop.sync.contacts import ContactSync
from closeloop.sync.invoices import DealSync, InvoicePolicy
from closeloop.sync.tax import TaxRule
from tests.fakes import FakeBooks, FakeDealCrm, MemoryStore, ref

COMPANY = ref("company", "1")
DEAL = ref("deal", "3000001")


def invoiced(status: str = "AUTHORISED") -> tuple[FakeDealCrm, FakeBooks, MemoryStore]:
    crm = FakeDealCrm(customers={COMPANY: Customer(ref=COMPANY, name="Acme Ltd", address=Address(country="NZ"))})
    crm.deals[DEAL.object_id] = Deal(
        ref=DEAL,
        name="Big deal",
        amount=Decimal("200.00"),
        currency="NZD",
        is_won=True,
        close_date=date.today(),
        company=COMPANY,
        line_items=(LineItem(crm_id="1", name="Anvil", sku="ANV", quantity=Decimal(2), unit_price=Decimal(100)),),
    )
    books = FakeBooks()
    books.items["ANV"] = Item(code="ANV", tax_type="OUTPUT2")
    store = MemoryStore()
    policy = InvoicePolicy(status=status)  # type: ignore[arg-type]
    DealSync(crm, books, store, ContactSync(crm, books, store, owner="w"), policy, owner="w").sync(DEAL, [])
    return crm, books, store


def won_deal(**kw: object) -> Deal:
    values: dict[str, object] = {
        "ref": DEAL,
        "name": "Big deal",
        "amount": Decimal("1234.50"),
        "currency": "NZD",
        "stage": "closedwon",
        "is_won": True,
        "close_date": date(2026, 11, 20),
        "company": COMPANY,
        "url": "https://crm.example/deal/3000001",
        "line_items": (
            LineItem(crm_id="1", name="Anvil", sku="ANV-1", quantity=Decimal(3), unit_price=Decimal("99.50")),
            LineItem(crm_id="2", name="Rocket", sku="RKT", quantity=Decimal(1), unit_price=Decimal("500.00")),
            LineItem(crm_id="3", name="Setup", sku="SVC-SETUP", quantity=Decimal("2.5"), unit_price=Decimal("176.10")),
        ),
    }
    values.update(kw)
    return Deal(**values)  # type: ignore[arg-type]


def setup(
    deal: Deal | None = None, policy: InvoicePolicy | None = None, books: FakeBooks | None = None
) -> tuple[DealSync, FakeDealCrm, FakeBooks, MemoryStore]:
    crm = FakeDealCrm(customers={COMPANY: Customer(ref=COMPANY, name="Acme Ltd", address=Address(country="NZ"))})
    crm.deals[DEAL.object_id] = deal or won_deal()
    books = books or FakeBooks()
    for code in ("ANV-1", "ROCKET-XL", "SVC-SETUP"):
        books.items[code] = Item(code=code, name=code, tax_type="OUTPUT2")
    store = MemoryStore()
    contacts = ContactSync(crm, books, store, owner="w")
    rules = (TaxRule(countries=("NZ",), tax_type="OUTPUT2"),)
    chosen = policy or InvoicePolicy(sku_item_codes={"RKT": "ROCKET-XL"}, tax_rules=rules)
    return DealSync(crm, books, store, contacts, chosen, owner="w"), crm, books, store
