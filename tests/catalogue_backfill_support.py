"""Two catalogues as a business has them before Closeloop, for tests of the catalogue backfill."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from closeloop.models import Item
from closeloop.sync.backfill_products import ProductBackfill
from closeloop.sync.products import ProductSync
from tests.fakes import FakeCatalogueBooks, FakeCatalogueCrm, MemoryStore

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


@dataclass
class CodeSharingBooks(FakeCatalogueBooks):
    """Items whose codes are not unique (systems where the code is a plain field): ``shared`` are listed too."""

    shared: list[Item] = field(default_factory=list)

    def iter_items(self) -> Iterator[Item]:
        yield from self.items.values()
        yield from self.shared


def setup(
    books: FakeCatalogueBooks | None = None, **kw: Any
) -> tuple[ProductBackfill, FakeCatalogueCrm, FakeCatalogueBooks, MemoryStore, list[float]]:
    crm, store = FakeCatalogueCrm(), MemoryStore()
    books = books or FakeCatalogueBooks()
    pauses: list[float] = []
    sync = ProductSync(crm, books, store, owner="backfill", clock=lambda: NOW, **kw)
    backfill = ProductBackfill(sync, store, pause=lambda s, why: pauses.append(s), now=lambda: NOW)
    return backfill, crm, books, store, pauses


def mixed() -> tuple[ProductBackfill, FakeCatalogueCrm, CodeSharingBooks, MemoryStore]:
    """Both catalogues as a business has them before Closeloop: some agree, some nearly, some not at all."""
    books = CodeSharingBooks()
    backfill, crm, _, store, _ = setup(books)
    books.put("W-1", name="Widget", unit_price="13")
    books.put("GAD", name="gadget ")
    books.put("X", name="Thing")
    books.shared.append(Item(code="X", id="item-x2", name="Thing copy"))  # two items, one code
    books.shared.extend([Item(code="Y", id="item-y1", name="Y1"), Item(code="Y", id="item-y2", name="Y2")])
    crm.add("1", sku="W-1", name="Widget", description="A widget", unit_price=Decimal("12.50"))
    crm.add("2", sku="GAD-1", name="Gadget", unit_price=Decimal("5"))
    crm.add("3", sku="NEW-1", name="Brand new", unit_price=Decimal("7"))
    crm.add("4", sku="", name="No SKU")
    crm.add("5", sku="D", name="Dup one")
    crm.add("6", sku="D", name="Dup two")
    crm.add("7", sku="OLD", name="Retired", archived=True)
    crm.add("8", sku="X", name="Thing")
    return backfill, crm, books, store
