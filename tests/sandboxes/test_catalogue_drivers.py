"""The drivers' catalogue actions (a person's products in the CRM, the items accounting holds), checked against
the production adapters: what a CRM driver makes is the product the adapter reads, and what an accounting
driver reports is the item the adapter made. The pair suite's catalogue scenario rests on both."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal

import pytest

from closeloop.models import ItemDraft
from closeloop.oauth import RefreshingTokens
from closeloop.ports import CatalogueAccounting
from closeloop.vendors.hubspot.adapter import HubSpotCrm
from closeloop.vendors.pipedrive.adapter import PipedriveCrm
from closeloop.vendors.sugarcrm.adapter import SugarCrm
from closeloop.vendors.sugarcrm.client import password_grant
from closeloop_local.sandboxes import hubspot, pipedrive, quickbooks, sugarcrm, xero, zohobooks
from closeloop_local.sandboxes.drivers import AccountingDriver, CrmDriver, DealLine
from tests.fakes import MemoryStore
from tests.sandbox_adapters import qbo_books, xero_books, zohobooks_adapter

HOOKS = "http://127.0.0.1:9"  # nothing listens: a delivery attempt would fail, so none may be made


@dataclass
class Crm:
    driver: CrmDriver
    adapter: HubSpotCrm | PipedriveCrm | SugarCrm  # each is a CrmPort and a CatalogueCrm
    pending: Callable[[], int]  # the webhooks the sandbox has not delivered yet


def _hubspot() -> tuple[Crm, Callable[[], None]]:
    sandbox, server = hubspot.serve()
    adapter = HubSpotCrm(client_secret=sandbox.client_secret, access_token=sandbox.access_token,
                         base_url=server.url, sleep=lambda s: None, portal_id=1)  # fmt: skip

    def stop() -> None:
        sandbox.close()
        server.stop()

    return Crm(hubspot.HubSpotDriver(sandbox, server.url), adapter, sandbox.pending_webhooks), stop


def _pipedrive() -> tuple[Crm, Callable[[], None]]:
    sandbox, server = pipedrive.serve()
    adapter = PipedriveCrm(api_token=lambda: sandbox.api_token, base_url=server.url, sleep=lambda s: None)
    return Crm(pipedrive.PipedriveDriver(sandbox), adapter, sandbox.pending_webhooks), server.stop


def _sugarcrm() -> tuple[Crm, Callable[[], None]]:
    sandbox, server = sugarcrm.serve()
    login = password_grant(
        server.url, username=lambda: sandbox.username, password=lambda: sandbox.password, platform="closeloop"
    )
    tokens = RefreshingTokens("sugarcrm", MemoryStore(), seed=lambda fresh: "", refresh=login,
                              write_back=lambda token: None)  # fmt: skip
    adapter = SugarCrm(instance_url=server.url, tokens=tokens, webhook_token="tok", sleep=lambda s: None)
    return Crm(sugarcrm.SugarCrmDriver(sandbox, webhook_token="tok"), adapter, sandbox.pending_hooks), server.stop


@pytest.fixture(params=[_hubspot, _pipedrive, _sugarcrm], ids=["hubspot", "pipedrive", "sugarcrm"])
def crm(request: pytest.FixtureRequest) -> Iterator[Crm]:
    made, stop = request.param()
    try:
        yield made
    finally:
        stop()


def test_a_crm_drivers_product_is_the_one_its_adapter_reads_and_a_deal_line_names_it(crm: Crm) -> None:
    # Given a product made through the driver, with a price and a cost
    ref = crm.driver.create_product("SKU-9", "Widget", Decimal("12.50"), Decimal("4.00"))
    assert (ref.crm, ref.object_type) == (crm.driver.name, "product")
    product = crm.adapter.get_product(ref.object_id)
    assert product is not None
    assert (product.sku, product.name, product.unit_price, product.unit_cost, product.archived) == (
        "SKU-9", "Widget", Decimal("12.50"), Decimal("4.00"), False
    )  # fmt: skip
    # When its price is changed: the price follows, the cost stays
    crm.driver.update_product(ref, price=Decimal("13.75"))
    changed = crm.adapter.get_product(ref.object_id)
    assert changed is not None and (changed.unit_price, changed.unit_cost) == (Decimal("13.75"), Decimal("4.00"))
    # And a won deal's line that names the product is read as made from it, with its SKU
    company = crm.driver.create_company("Buyers Ltd", country="GB")
    line = DealLine("SKU-9", "Widget", Decimal(2), Decimal("11.00"), product=ref)
    deal = crm.adapter.get_deal(crm.driver.create_won_deal(company, [line], currency="USD").object_id)
    assert deal is not None
    assert [(li.sku, li.product_id, li.quantity, li.unit_price) for li in deal.line_items] == [
        ("SKU-9", ref.object_id, Decimal(2), Decimal("11.00"))
    ]


def test_a_crm_driver_loses_the_webhooks_not_yet_delivered_and_later_ones_still_queue(crm: Crm) -> None:
    crm.driver.subscribe(HOOKS)
    ref = crm.driver.create_product("SKU-L", "Lost", Decimal(1))
    assert crm.pending() >= 1
    crm.driver.lose_pending_webhooks()
    assert crm.pending() == 0
    crm.driver.update_product(ref, price=Decimal(2))
    assert crm.pending() >= 1


@dataclass
class Books:
    driver: AccountingDriver
    adapter: CatalogueAccounting


def _xero() -> tuple[Books, Callable[[], None]]:
    sandbox, server = xero.serve()
    return Books(xero.XeroDriver(sandbox, server.url), xero_books(sandbox, server.url)), server.stop


def _quickbooks() -> tuple[Books, Callable[[], None]]:
    sandbox, server = quickbooks.serve()
    return Books(quickbooks.QuickBooksDriver(sandbox), qbo_books(sandbox, server.url)), server.stop


def _zohobooks() -> tuple[Books, Callable[[], None]]:
    sandbox, server = zohobooks.serve()
    return Books(zohobooks.ZohoBooksDriver(sandbox), zohobooks_adapter(sandbox, server.url)), server.stop


@pytest.fixture(params=[_xero, _quickbooks, _zohobooks], ids=["xero", "quickbooks", "zohobooks"])
def books(request: pytest.FixtureRequest) -> Iterator[Books]:
    made, stop = request.param()
    try:
        yield made
    finally:
        stop()


def test_an_accounting_drivers_items_are_the_ones_its_adapter_made_and_seeded(books: Books) -> None:
    # Given an item the adapter made, with a price and a cost, and one seeded by finance
    draft = ItemDraft(code="SKU-9", name="Widget", unit_price=Decimal("12.50"), unit_cost=Decimal("4.00"))
    made = books.adapter.create_item(draft, idempotency_key="test-item-1")
    books.driver.seed_item("SEED-1", "Seeded thing", Decimal("3.00"))
    # Then the driver sees both, in canonical terms (code, name, price, and the cost where one was given)
    seen = {item.code: item for item in books.driver.items()}
    assert sorted(seen) == ["SEED-1", "SKU-9"]
    widget = seen["SKU-9"]
    assert (widget.id, widget.name, widget.unit_price, widget.unit_cost) == (
        made.id, "Widget", Decimal("12.50"), Decimal("4.00")
    )  # fmt: skip
    assert (seen["SEED-1"].name, seen["SEED-1"].unit_price) == ("Seeded thing", Decimal("3.00"))
