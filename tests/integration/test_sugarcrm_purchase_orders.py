"""Purchase orders from a SugarCRM deal: the real SugarCRM adapter (sandbox) as the CRM and the catalogue, the
purchase order flow over fake books. Sugar carries what the flow needs: a revenue line item's product template
(``product_template_id``) with its supplier (``closeloop_supplier_c``) and unit cost (``cost_price``), and the
write-back field ``closeloop_purchase_orders_c`` on the opportunity."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from closeloop.errors import ConfigurationError
from closeloop.models import CrmRef, Item
from closeloop.sync.contacts import ContactSync
from closeloop.sync.invoices import DealSync, InvoicePolicy, write_to_deal
from closeloop.sync.purchase_orders import (
    PURCHASE_ORDER_PROPERTIES,
    PURCHASE_ORDERS_PROPERTY,
    PurchaseOrderFlow,
    PurchaseOrderPolicy,
)
from closeloop_local.sandboxes.base import SandboxServer
from closeloop_local.sandboxes.sugarcrm import SugarSandbox, serve
from tests.fakes import FakePurchasingBooks, MemoryStore, events_for
from tests.sandbox_adapters import sugarcrm_adapter


@pytest.fixture
def sandbox() -> Iterator[tuple[SugarSandbox, SandboxServer]]:
    sugar, server = serve()
    yield sugar, server
    server.stop()


def supplied_deal(sugar: SugarSandbox) -> tuple[CrmRef, dict[str, str]]:
    """A won opportunity of an anvil bought from Acme Supplies (cost 40) and a service nobody supplies."""
    account = sugar.create_record("Accounts", {"name": "Buyer Ltd", "billing_address_country": "NZ"})
    anvil = sugar.create_record(
        "ProductTemplates",
        {"name": "Anvil", "mft_part_num": "ANV-1", "discount_price": "99", "cost_price": "40",
         "closeloop_supplier_c": "Acme Supplies Ltd"},
    )  # fmt: skip
    setup = sugar.create_record("ProductTemplates", {"name": "Setup", "mft_part_num": "SVC", "cost_price": "60"})
    deal = sugar.create_record(
        "Opportunities", {"name": "Big deal", "account_id": account["id"], "date_closed": "2026-11-20"}
    )
    for template, quantity, price in ((anvil, "3", "99"), (setup, "2", "150")):
        sugar.create_record(
            "RevenueLineItems",
            {"name": template["name"], "opportunity_id": deal["id"], "product_template_id": template["id"],
             "quantity": quantity, "discount_price": price},
        )  # fmt: skip
    sugar.update_record("Opportunities", str(deal["id"]), {"sales_stage": "Closed Won"})
    ref = CrmRef(crm="sugarcrm", object_type="deal", object_id=str(deal["id"]))
    return ref, {"anvil": str(anvil["id"]), "setup": str(setup["id"])}


def test_get_product_gives_the_supplier_and_unit_cost_a_purchase_order_needs(
    sandbox: tuple[SugarSandbox, SandboxServer],
) -> None:
    sugar, server = sandbox
    _, templates = supplied_deal(sugar)
    crm = sugarcrm_adapter(sugar, server.url)
    anvil, setup = crm.get_product(templates["anvil"]), crm.get_product(templates["setup"])
    assert anvil is not None and setup is not None
    assert (anvil.supplier, anvil.unit_cost, setup.supplier, setup.unit_cost) == (
        "Acme Supplies Ltd", Decimal(40), "", Decimal(60),
    )  # fmt: skip


def test_a_won_sugar_deal_makes_one_purchase_order_at_cost_and_writes_its_number_to_the_opportunity(
    sandbox: tuple[SugarSandbox, SandboxServer],
) -> None:
    sugar, server = sandbox
    deal, _ = supplied_deal(sugar)
    crm = sugarcrm_adapter(sugar, server.url)
    books = FakePurchasingBooks()
    for code in ("ANV-1", "SVC"):
        books.items[code] = Item(code=code, name=code, tax_type="OUTPUT2")
    store = MemoryStore()
    clock = lambda: datetime(2026, 11, 21, tzinfo=UTC)  # noqa: E731
    flow = PurchaseOrderFlow(crm, crm, books, store, PurchaseOrderPolicy(), owner="w", clock=clock)
    sync = DealSync(
        crm, books, store, ContactSync(crm, books, store, owner="w"), InvoicePolicy(), owner="w", flows=(flow,)
    )
    # When the won deal is synced, and delivered again
    sync.sync(deal, events_for(deal))
    sync.sync(deal, events_for(deal, kind="changed"))
    # Then one draft purchase order buys the anvils at their cost from Acme, and its number is on the opportunity
    (order,) = books.purchase_orders.values()
    draft = books.po_drafts[order.id]
    assert books.suppliers[draft.supplier_id].name == "Acme Supplies Ltd"
    assert [(line.item_code, line.quantity, line.unit_cost) for line in draft.lines] == [
        ("ANV-1", Decimal(3), Decimal(40))
    ]
    opportunity = sugar.get_record("Opportunities", deal.object_id)
    assert opportunity is not None and opportunity[f"{PURCHASE_ORDERS_PROPERTY}_c"] == order.number
    assert store.get_failed_sync(deal) is None


def test_without_the_purchase_orders_field_the_write_back_names_the_studio_field(
    sandbox: tuple[SugarSandbox, SandboxServer],
) -> None:
    sugar, server = sandbox
    deal, _ = supplied_deal(sugar)
    sugar.remove_field("Opportunities", "closeloop_purchase_orders_c")
    crm = sugarcrm_adapter(sugar, server.url)
    with pytest.raises(ConfigurationError, match="closeloop_purchase_orders_c"):
        write_to_deal(crm, deal.object_id, {PURCHASE_ORDERS_PROPERTY: "PO-0001"}, PURCHASE_ORDER_PROPERTIES)
