"""A won deal already invoiced through DealSync, for tests of what happens after invoicing."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from closeloop.models import Address, Customer, Deal, Item, LineItem
from closeloop.sync.contacts import ContactSync
from closeloop.sync.invoices import DealSync, InvoicePolicy
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
