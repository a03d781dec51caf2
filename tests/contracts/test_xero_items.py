"""The Xero catalogue's exchanges (what the adapter sends for items, what the sandbox answers) held against
Xero's OpenAPI: getItems, createItems, getItem and updateItem in accounting.subset.json (extract.py).

The pair loop does not run the catalogue, so this records the adapter's item calls against the sandbox
itself: create, a replayed create, a taken code, a lookup, an update, a code rename, and the listing.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from closeloop.errors import Conflict
from closeloop.models import ItemDraft
from closeloop_local.sandboxes.base import recording
from closeloop_local.sandboxes.xero import XeroSandbox, serve
from tests.contracts.contract import load
from tests.sandbox_adapters import xero_adapter


def test_every_item_exchange_follows_xero_s_openapi() -> None:
    # Given the Xero adapter on a sandbox whose exchanges are recorded
    with recording() as recorder:
        xero, server = serve(XeroSandbox(minute_limit=10_000, day_limit=100_000, concurrent_limit=50))
        try:
            books = xero_adapter(xero, server.url)
            xero.seed_item(
                Code="TAKEN",
                Name="Finance's item",
                SalesDetails={"UnitPrice": "10.00", "AccountCode": "200", "TaxType": "OUTPUT2"},
                PurchaseDetails={"UnitPrice": "3.00", "AccountCode": "310"},
            )
            draft = ItemDraft(
                code="WIDGET-1",
                name="Widget",
                description="A widget",
                unit_price=Decimal("12.50"),
                unit_cost=Decimal("4.00"),
                tax_code="OUTPUT2",
                sales_account="200",
                purchase_account="310",
            )
            # When it creates (twice with one key), meets a taken code, looks up, updates, renames and lists
            created = books.create_item(draft, idempotency_key="k-create")
            books.create_item(draft, idempotency_key="k-create")
            with pytest.raises(Conflict):
                books.create_item(draft.model_copy(update={"code": "TAKEN"}), idempotency_key="k-taken")
            found = books.get_items(["WIDGET-1", "TAKEN"])
            books.update_item(found["TAKEN"], draft, ["name", "unit_price", "unit_cost"], idempotency_key="k-upd")
            renamed = draft.model_copy(update={"code": "WIDGET-ONE"})
            books.update_item(created, renamed, ["code", "description"], idempotency_key="k-rename")
            assert len(list(books.iter_items())) == 2
        finally:
            server.stop()
    item_calls = [e for e in recorder.exchanges if "/Items" in e.path]
    assert {(e.method, e.status) for e in item_calls} >= {("PUT", 200), ("PUT", 400), ("GET", 200), ("POST", 200)}

    # Then each request and answer validates against Xero's published operations
    contract = load("xero")
    violations = sorted({str(v) for exchange in recorder.exchanges for v in contract.check(exchange)})
    assert not violations, "\n".join(violations)
