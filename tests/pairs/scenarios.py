"""The pair loop's scenarios, written once: the pair suite runs them as tests, the contract suite records them.

tests/pairs/test_every_pair.py runs each as a test for every pair; tests/contracts/conftest.py replays
them while the sandboxes' recorder is on, so the contract checks see the requests a real run makes.
Each acts only through the drivers (a person in the CRM, finance in the accounting system) and the stack.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from closeloop.models import CrmRef
from closeloop_local.pairs import Pair
from closeloop_local.sandboxes.drivers import DealLine, SeenItem

TODAY = datetime.now(UTC).date()
LINES = (
    DealLine("WIDGET-1", "Widget", Decimal(3), Decimal("19.99")),
    DealLine("SETUP-1", "Setup, per hour", Decimal("1.5"), Decimal("120.00")),
)


def stamped(pair: Pair, ref: CrmRef) -> list[str]:
    """Ids of the active accounting customers that carry ``ref``'s stamp or mapping."""
    mapping = pair.store.get_mapping(ref, pair.books.name)
    return [c.id for c in pair.books.customers() if c.active and mapping is not None and c.id == mapping.accounting_id]


def invoices_of(pair: Pair, deal: CrmRef) -> list[str]:
    key = f"{deal.crm}-deal-{deal.object_id}"
    return [i.id for i in pair.books.invoices() if i.reference.split(" ")[0] == key and i.status != "VOIDED"]


def a_new_company_becomes_one_customer_even_when_delivered_again(pair: Pair) -> None:
    # Given a company created in the CRM
    ref = pair.crm.create_company("Northwind Traders Ltd", email="ap@northwind.test", country="GB", city="Leeds")
    # When its webhook is delivered and the queue drains, and the catch-up poll queues it again
    pair.settle()
    pair.poll()  # the first run sets the catch-up watermark
    pair.crm.update_company(ref, phone="+44 113 496 0000")
    pair.settle()
    pair.poll()
    pair.stack.drain(timeout=60)
    # Then the accounting system holds exactly one customer for it, mapped and named as in the CRM
    customers = [c for c in pair.books.customers() if c.active and c.name == "Northwind Traders Ltd"]
    assert len(customers) == 1
    assert stamped(pair, ref) == [customers[0].id]
    assert pair.store.get_failed_sync(ref) is None


def an_existing_customer_is_matched_not_duplicated(pair: Pair) -> None:
    # Given finance already has the customer, under a different legal suffix
    existing = pair.books.seed_customer("Contoso Pharmaceuticals Limited", email="billing@contoso.test")
    # When sales creates the company in the CRM
    ref = pair.crm.create_company("Contoso Pharmaceuticals Ltd", email="billing@contoso.test", country="GB")
    pair.settle()
    # Then it is linked to the existing record and nothing new is created
    mapping = pair.store.get_mapping(ref, pair.books.name)
    assert mapping is not None
    assert mapping.accounting_id == existing
    assert len([c for c in pair.books.customers() if "Contoso" in c.name and c.active]) == 1


def a_won_deal_becomes_one_invoice_written_back_and_paid_through(pair: Pair) -> None:
    for line in LINES:
        pair.books.seed_item(line.sku, line.name, line.unit_price)
    company = pair.crm.create_company("Fabrikam Inc", email="ap@fabrikam.test", country="GB")
    pair.settle()
    # Given a deal with two line items, won
    deal = pair.crm.create_won_deal(company, LINES, currency=pair.books.currency)
    pair.settle()
    # Then one invoice exists, with the deal's lines and the deal's net total
    (invoice_id,) = invoices_of(pair, deal)
    (invoice,) = [i for i in pair.books.invoices() if i.id == invoice_id]
    assert sorted((code, q, p) for code, q, p in invoice.lines if code) == sorted(
        (li.sku, li.quantity, li.unit_price) for li in LINES
    )
    net = sum((li.quantity * li.unit_price for li in LINES), Decimal(0))
    assert invoice.total >= net
    # And the deal shows the invoice
    written = pair.crm.deal_fields(deal)
    assert written.get("closeloop_invoice_number")
    assert pair.store.get_failed_sync(deal) is None
    # When the same won delivery arrives again (and the catch-up poll finds the deal)
    pair.poll()
    pair.stack.drain(timeout=60)
    assert invoices_of(pair, deal) == [invoice_id]
    # When finance records part of the payment and the poller runs
    pair.books.approve_and_pay(invoice_id, Decimal("50.00"), TODAY)
    pair.poll()
    pair.stack.drain(timeout=60)
    # Then the deal says partially paid, with the amount paid
    written = pair.crm.deal_fields(deal)
    assert written.get("closeloop_payment_status") == "partially_paid"
    assert Decimal(written["closeloop_amount_paid"]) == Decimal("50.00")


def a_crm_product_becomes_one_item_and_a_won_deal_makes_a_missing_one_just_in_time(pair: Pair) -> None:
    def items(code: str) -> list[SeenItem]:
        return [i for i in pair.books.items() if i.code == code]

    # Given a product whose webhook never arrives (the CRM gave up on Closeloop's endpoint): no item knows it
    unheard = pair.crm.create_product("CAT-JIT", "Catalogue gadget", Decimal("40.00"))
    pair.crm.lose_pending_webhooks()
    # And a product created in the CRM with a price and a cost, then delivered like any change
    widget = pair.crm.create_product("CAT-1", "Catalogue widget", Decimal("12.50"), Decimal("4.00"))
    company = pair.crm.create_company("Catalogue Buyers Ltd", email="ap@catalogue.test", country="GB")
    pair.settle()
    # Then the accounting system holds exactly one item for it: coded by the SKU, named and priced as in the
    # CRM, costed as the CRM's starting value, and mapped to the product
    (made,) = items("CAT-1")
    assert (made.name, made.unit_price, made.unit_cost) == ("Catalogue widget", Decimal("12.50"), Decimal("4.00"))
    mapping = pair.store.get_mapping(widget, pair.books.name)
    assert mapping is not None and mapping.accounting_id == made.id
    assert pair.store.get_failed_sync(widget) is None
    assert items("CAT-JIT") == []
    # When sales changes the product's price, and wins a deal whose line is made from the unheard-of product
    # (sold below its list price)
    pair.crm.update_product(widget, price=Decimal("13.75"))
    line = DealLine("CAT-JIT", "Catalogue gadget", Decimal(2), Decimal("38.00"), product=unheard)
    deal = pair.crm.create_won_deal(company, [line], currency=pair.books.currency)
    pair.settle()
    # Then the price follows on the same item
    (updated,) = items("CAT-1")
    assert (updated.id, updated.unit_price) == (made.id, Decimal("13.75"))
    # And the missing item was made from the product (its name and list price), before the one invoice that
    # bills the line at the deal's price
    (gadget,) = items("CAT-JIT")
    assert (gadget.name, gadget.unit_price) == ("Catalogue gadget", Decimal("40.00"))
    jit = pair.store.get_mapping(unheard, pair.books.name)
    assert jit is not None and jit.accounting_id == gadget.id
    (invoice_id,) = invoices_of(pair, deal)
    (invoice,) = [i for i in pair.books.invoices() if i.id == invoice_id]
    assert [(code, q, p) for code, q, p in invoice.lines if code] == [("CAT-JIT", Decimal(2), Decimal("38.00"))]
    assert pair.store.get_failed_sync(deal) is None
