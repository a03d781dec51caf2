"""The QuickBooks catalogue's exchanges (items and accounts) held against Intuit's published contract: the pair
loop names no products, so this runs the adapter's item calls against the sandbox and checks every request
and answer (tests/contracts/quickbooks: schemas from Intuit's XSDs, the Item page's create rules)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from closeloop.errors import Conflict, ValidationFailed
from closeloop.models import ItemDraft
from closeloop_local.sandboxes.base import recording
from closeloop_local.sandboxes.quickbooks import QuickBooksDriver, serve
from tests.contracts.contract import load
from tests.quickbooks_adapters import adapter


def test_every_catalogue_exchange_follows_intuit_s_contract() -> None:
    # Given the adapter's item calls recorded against the sandbox: creates (with a cost, so both accounts),
    # a replay, lookups by Sku and Name, sparse updates and a code rename, the paged list and two refusals
    with recording() as recorder:
        qbo, server = serve()
        try:
            QuickBooksDriver(qbo).seed_item("LEGACY", "Old item", Decimal("5"))
            books = adapter(qbo, server.url)
            draft = ItemDraft(code="W-1", name="Widget", description="A widget", unit_price=Decimal("9.99"))
            item = books.create_item(draft.model_copy(update={"unit_cost": Decimal("2")}), idempotency_key="c-1")
            books.create_item(draft, idempotency_key="c-1")
            found = books.get_items(["W-1", "LEGACY"])
            books.update_item(
                found["LEGACY"],
                draft.model_copy(update={"code": "LEGACY", "name": "Old item"}),
                ["name"],
                idempotency_key="u-1",
            )
            books.update_item(
                item, draft.model_copy(update={"code": "W-2"}), ["code", "unit_price"], idempotency_key="u-2"
            )
            assert len(list(books.iter_items())) == 2
            with pytest.raises(Conflict):
                books.create_item(draft.model_copy(update={"code": "W-3"}), idempotency_key="c-3")
            with pytest.raises(ValidationFailed):
                books.create_item(draft.model_copy(update={"code": "W-4", "name": "N" * 101}), idempotency_key="c-4")
        finally:
            server.stop()
    exchanges = [e for e in recorder.exchanges if "/v3/company/" in e.path]
    assert {e.path.rsplit("/", 1)[-1] for e in exchanges} >= {"item", "query"}
    # When each is held against the contract, Then none departs from it but the deliberately long Name
    contract = load("quickbooks")
    long_name = [e for e in exchanges if b"N" * 101 in e.body]
    violations = [str(v) for exchange in exchanges if exchange not in long_name for v in contract.check(exchange)]
    assert not violations, "\n".join(sorted(set(violations)))
    assert long_name and any("is too long" in str(v) for v in contract.check(long_name[0]))
