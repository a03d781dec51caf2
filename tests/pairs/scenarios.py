"""The pair loop's scenarios, written once: the pair suite runs them as tests, the contract suite records them.

tests/pairs/test_every_pair.py runs each as a test for every pair; tests/contracts/conftest.py replays
them while the sandboxes' recorder is on, so the contract checks see the requests a real run makes.
Each acts only through the drivers (a person in the CRM, finance in the accounting system) and the stack.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from closeloop import runtime
from closeloop.models import CrmRef
from closeloop_local.pairs import Pair
from closeloop_local.sandboxes.drivers import DealLine, Recurring, SeenItem

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


def quote_to_cash_off(pair: Pair) -> dict[str, str]:
    """Why each quote-to-cash flow is off for this pair ("" when it runs): quotes, schedules, purchase orders."""
    return {
        "quotes": runtime.quotes_off_reason(),
        "schedules": runtime.recurring_off_reason(),
        "purchase orders": runtime.purchase_orders_off_reason(),
    }


def a_quote_accepted_then_won_makes_one_invoice_one_schedule_and_one_purchase_order(pair: Pair) -> None:
    """Quote -> accounting quote -> accepted -> status on the CRM quote; the deal won with a recurring line and
    a supplier line -> one invoice (the quote's lines less the recurring one), one schedule, one purchase order
    at unit cost; everything delivered again -> nothing new. Each flow the pair does not carry is left out
    (the test skips when none is carried)."""
    off = quote_to_cash_off(pair)
    quotes, schedules, orders = (not off[k] for k in ("quotes", "schedules", "purchase orders"))
    crm, books = pair.crm, pair.books
    pair.poll()  # the catch-up watermarks stand before anything here exists (HubSpot finds quotes by polling)
    one_off = DealLine("Q2C-ONE", "Installation", Decimal(1), Decimal("250.00"))
    lines = [one_off]
    supplied = DealLine("Q2C-SUP", "Supplied router", Decimal(2), Decimal("80.00"))
    cost, supplier = Decimal("45.50"), "Router Wholesale Ltd"
    if orders:
        product = crm.create_supplier_product(
            supplied.sku, supplied.name, Decimal("85.00"), cost=cost, supplier=supplier, currency=books.currency
        )
        supplied = DealLine(supplied.sku, supplied.name, supplied.quantity, supplied.unit_price, product=product)
    lines.append(supplied)
    if schedules:
        lines.append(
            DealLine(
                "Q2C-REC", "Support, monthly", Decimal(1), Decimal("30.00"), recurring=Recurring("monthly", 12, TODAY)
            )
        )
    for line in lines:
        books.seed_item(line.sku, line.name, line.unit_price)
    company = crm.create_company("Quote To Cash Ltd", email="ap@q2c.test", country="GB")
    pair.settle()

    # Given a deal quoted (an approved quote, found by the poll) and accepted in the accounting system
    if quotes:
        quoted = crm.create_quoted_deal(company, lines, currency=books.currency, expires=TODAY + timedelta(days=30))
        deal = quoted.deal
        pair.settle()
        pair.poll()
        pair.settle()
        key = f"{quoted.quote.crm}-quote-{quoted.quote.object_id}"
        (made,) = [q for q in books.quotes() if q.reference.split(" ")[0] == key]
        assert sorted(made.lines) == sorted((li.sku, li.quantity, li.unit_price) for li in lines)
        assert crm.quote_fields(quoted.quote).get("closeloop_quote_number") == made.number
        assert pair.store.get_failed_sync(quoted.quote) is None
        books.accept_quote(made.id)
        pair.poll()
        pair.settle()
        # Then the CRM quote says accepted
        assert crm.quote_fields(quoted.quote).get("closeloop_quote_status") == "ACCEPTED"
        # When the deal is won
        crm.win_deal(deal)
    else:
        deal = crm.create_won_deal(company, lines, currency=books.currency)
    pair.settle()

    # Then one invoice bills the quote's lines less the recurring one
    def made_for_deal() -> tuple[list[str], list[str], list[str]]:
        deal_key = f"{deal.crm}-deal-{deal.object_id}"
        return (
            invoices_of(pair, deal),
            [s.id for s in books.schedules() if s.reference == f"{deal_key}/monthly" and s.active] if schedules else [],
            [o.id for o in books.purchase_orders() if o.reference.startswith(f"{deal_key}-po-")] if orders else [],
        )

    invoice_ids, schedule_ids, order_ids = made_for_deal()
    assert pair.store.get_failed_sync(deal) is None
    (invoice,) = [i for i in books.invoices() if i.id in invoice_ids]
    one_offs = [li for li in lines if li.recurring is None]
    assert sorted((c, q, p) for c, q, p in invoice.lines if c) == sorted(
        (li.sku, li.quantity, li.unit_price) for li in one_offs
    )
    written = crm.deal_fields(deal)
    if schedules:
        # And one monthly schedule bills the recurring line, named on the deal
        (schedule_id,) = schedule_ids
        (schedule,) = [s for s in books.schedules() if s.id == schedule_id]
        assert [(c, q, p) for c, q, p in schedule.lines if c] == [("Q2C-REC", Decimal(1), Decimal("30.00"))]
        assert written.get("closeloop_schedule_ids") == schedule_id
    if orders:
        # And one draft purchase order buys the supplier's line at unit cost, its number on the deal
        (order_id,) = order_ids
        (order,) = [o for o in books.purchase_orders() if o.id == order_id]
        assert order.supplier == supplier
        assert [(c, q, p) for c, q, p in order.lines if c] == [(supplied.sku, supplied.quantity, cost)]
        assert written.get("closeloop_purchase_orders") == order.number
    if quotes:
        assert [q.id for q in books.quotes() if q.reference.split(" ")[0] == key] == [made.id]

    # When the won deal is delivered again (the catch-up poll finds the deal, its quote and company changed)
    pair.poll()
    pair.settle()
    # Then nothing new exists
    assert made_for_deal() == (invoice_ids, schedule_ids, order_ids)
    if quotes:
        assert [q.id for q in books.quotes() if q.reference.split(" ")[0] == key] == [made.id]
    assert pair.store.get_failed_sync(deal) is None
