"""Backfill of the catalogues: the CRM's products meet the items accounting already has, once, before live sync.

Both catalogues are read whole (every CRM product, every active item): a catalogue is thousands of records at
most, and a shared SKU or a name match can only be told with both in hand. For each product that is neither
archived nor linked yet:

1. the item whose code is the product's item code (its SKU, or the SKU's ``SKU_ITEM_CODES`` entry) ->
   ``link``, through ``ProductSync.link``: the same mapping, audit, lease and limits as the live sync's first
   match by code (what the item lacks is filled in, what finance entered stays);
2. otherwise the one item with the same name (case, accents, punctuation and spacing ignored) -> ``review``:
   uncertain, never linked without a person. ``closeloop review accept`` lets the next run link it (the item
   then takes the product's SKU as its code); ``reject`` lets the next run create the product's own item;
3. otherwise -> ``create``, through ``ProductSync.sync`` (its limits, idempotency key and audit).

Reported, never guessed (``duplicate``, nothing written for them): two active products with one item code,
two items with one code (items sharing a code no product names are listed too), several items with the
product's name, an item already linked to another product. A product the sync cannot send (no SKU, a code
over the system's limit) is ``invalid``: a real run keeps it as a failed sync with its reason. Archived
products are left alone, as the live sync leaves them; linked ones too (``mapped``), so a second run writes
nothing new.

Like the other backfills: a dry run reads and plans and writes nothing anywhere; a real run stores a
checkpoint after every chunk and ``resume`` continues after the last finished one; a vendor's rate limit
pauses the run as long as the vendor says and retries (the helpers are the contacts backfill's).
"""

from __future__ import annotations

import re
import time
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, Protocol, TypeVar

from closeloop.errors import FatalError, ValidationFailed
from closeloop.models import CrmRef, Item, Product
from closeloop.ports import ReviewItem, SyncStore
from closeloop.sync.backfill import CHUNK, BackfillStore, Progress, with_limits
from closeloop.sync.products import ProductSync

#: The score a review shows for an item that only shares the product's name.
NAME_SCORE = 0.8

ProductAction = Literal["link", "review", "create", "duplicate", "invalid", "archived", "mapped"]
T = TypeVar("T")


class ProductBackfillStore(BackfillStore, SyncStore, Protocol):
    """The contacts backfill's store (checkpoints, reviews) and the sync store ProductSync writes to."""


@dataclass(frozen=True)
class ProductPlanEntry:
    """What the backfill does (or would do) with one CRM product, or with items sharing a code no product names
    (``ref`` None). Catalogue data only: SKUs, codes, names."""

    action: ProductAction
    ref: CrmRef | None
    sku: str = ""
    name: str = ""
    item_id: str = ""
    item_code: str = ""
    item_name: str = ""
    score: float = 0.0
    reasons: tuple[str, ...] = ()


@dataclass
class ProductBackfillResult:
    dry_run: bool
    total: int
    counts: Counter[str] = field(default_factory=Counter)
    plan: list[ProductPlanEntry] = field(default_factory=list)
    failures: list[tuple[CrmRef, str]] = field(default_factory=list)
    resumed_at: int = 0


def normalise_product_name(name: str) -> str:
    """Compare-key for product names: accents, case, punctuation and spacing ignored."""
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    return " ".join(re.findall(r"[a-z0-9]+", text))


def item_key(item: Item) -> str:
    """The accounting id a product's mapping holds for ``item`` (as ProductSync stores it)."""
    return item.id or item.code


@dataclass
class _Catalogues:
    products: dict[CrmRef, Product]
    items: dict[str, Item]  # by item_key
    by_code: dict[str, list[Item]]
    by_name: dict[str, list[Item]]
    product_codes: dict[str, list[CrmRef]]  # the item code each active product asks for


class ProductBackfill:
    """Backfill of CRM products into product -> item links (see the module docstring)."""

    def __init__(
        self,
        products: ProductSync,
        store: ProductBackfillStore,
        *,
        progress: Callable[[Progress], None] = lambda p: None,
        pause: Callable[[float, str], None] = lambda seconds, why: time.sleep(seconds),
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.products = products
        self.crm = products.crm
        self.accounting = products.accounting
        self.store = store
        self.progress = progress
        self.pause = pause
        self.clock = clock
        self.now = now
        self.system = products.accounting.name

    @property
    def checkpoint_name(self) -> str:
        return f"backfill-products-{self.crm.name}-{self.accounting.name}"

    def run(self, *, dry_run: bool = False, resume: bool = False) -> ProductBackfillResult:
        """Plan, then (unless ``dry_run``) link, review or create chunk by chunk. Raises ValueError when the
        field rules keep products out of accounting, or on a resume without checkpoint; IntegrationError
        subclasses that outlive the retries."""
        if self.products.rules.direction("product") in ("off", "accounting_to_crm"):
            raise ValueError("the field rules do not sync products to accounting (product direction)")
        position = 0
        if resume:
            checkpoint = self.store.get_checkpoint(self.checkpoint_name)
            if checkpoint is None:
                raise ValueError("there is no interrupted products backfill to resume")
            position = int(checkpoint["position"])
        catalogues = self._with_limits(self._read)
        entries, unclaimed = self._plan(catalogues)
        result = ProductBackfillResult(dry_run=dry_run, total=len(entries), resumed_at=position)
        started = self.clock()
        for start in range(position, len(entries), CHUNK):
            chunk = entries[start : start + CHUNK]
            if not dry_run:
                self._with_limits(lambda chunk=chunk: self._execute(chunk, catalogues, result))  # type: ignore[misc]
                self.store.put_checkpoint(self.checkpoint_name, {"position": start + len(chunk), "total": len(entries)})
            result.plan.extend(chunk)
            result.counts.update(e.action for e in chunk)
            self.progress(Progress(start + len(chunk) - position, len(entries) - position, started, self.clock()))
        result.plan.extend(unclaimed)
        result.counts.update(e.action for e in unclaimed)
        if not dry_run:
            self.store.delete_checkpoint(self.checkpoint_name)
        return result

    def _with_limits(self, work: Callable[[], T]) -> T:
        return with_limits(work, self.pause)

    # -- planning (reads only) -------------------------------------------------------------------------

    def _read(self) -> _Catalogues:
        products: dict[CrmRef, Product] = {}
        for product in self.crm.iter_products():
            products.setdefault(product.ref, product)
        items: dict[str, Item] = {}
        for item in self.accounting.iter_items():
            items.setdefault(item_key(item), item)
        by_code: dict[str, list[Item]] = defaultdict(list)
        by_name: dict[str, list[Item]] = defaultdict(list)
        for item in items.values():
            by_code[item.code].append(item)
            if key := normalise_product_name(item.name):
                by_name[key].append(item)
        product_codes: dict[str, list[CrmRef]] = defaultdict(list)
        for product in products.values():
            if not product.archived and product.sku.strip():
                product_codes[self.products.item_code(product.sku.strip())].append(product.ref)
        return _Catalogues(products, items, by_code, by_name, product_codes)

    def _plan(self, catalogues: _Catalogues) -> tuple[list[ProductPlanEntry], list[ProductPlanEntry]]:
        """One entry per CRM product (in a stable order), and the item codes several items share that no
        product asks for."""
        ordered = sorted(catalogues.products.values(), key=lambda p: p.ref.object_id.zfill(24))
        by_name_of_products: dict[str, list[Product]] = defaultdict(list)
        for product in ordered:
            if not product.archived and (key := normalise_product_name(product.name)):
                by_name_of_products[key].append(product)
        entries = [self._decide(product, catalogues, by_name_of_products) for product in ordered]
        unclaimed = [
            _entry(
                "duplicate",
                None,
                None,
                items[0],
                (
                    f"{len(items)} items share the code {code!r} ({', '.join(item_key(i) for i in items)}); "
                    "no product has it",
                ),
                item_id=", ".join(item_key(i) for i in items),
            )
            for code, items in sorted(catalogues.by_code.items())
            if len(items) > 1 and code not in catalogues.product_codes
        ]
        return entries, unclaimed

    def _decide(
        self, product: Product, catalogues: _Catalogues, by_name_of_products: dict[str, list[Product]]
    ) -> ProductPlanEntry:
        ref = product.ref
        if self.store.get_mapping(ref, self.system) is not None:
            return _entry("mapped", product, None, None, ("already linked",))
        if product.archived:
            return _entry("archived", product, None, None, ("archived in the CRM: left alone, as the live sync does",))
        try:
            draft, _ = self.products.draft(product)
        except ValidationFailed as exc:
            reasons = [str(exc)]
            named = self._free_by_name(product, catalogues)
            if len(named) == 1:
                reasons.append(f"item {named[0].code!r} has its name (give the product that SKU to link them)")
            return _entry("invalid", product, None, None, tuple(reasons))
        code = draft.code
        sharing = [r for r in catalogues.product_codes.get(code, []) if r != ref]
        if sharing:
            names = ", ".join(r.object_id for r in sharing)
            why = f"products {ref.object_id}, {names} all ask for item code {code!r}: one SKU, several products"
            return _entry("duplicate", product, code, None, (why,))
        return self._match(product, code, catalogues, by_name_of_products)

    def _match(
        self, product: Product, code: str, catalogues: _Catalogues, by_name_of_products: dict[str, list[Product]]
    ) -> ProductPlanEntry:
        """A person's decision first, then the item code, then the name."""
        ref = product.ref
        review = self.store.get_review(ref, self.system)
        if review is not None and review.status == "accepted":
            chosen = catalogues.items.get(review.candidate_id)
            if chosen is not None and self._owner(chosen) in (None, ref):
                return _entry("link", product, code, chosen, ("accepted in review",), 1.0)
        same_code = catalogues.by_code.get(code, [])
        if len(same_code) > 1:
            ids = ", ".join(item_key(i) for i in same_code)
            return _entry("duplicate", product, code, None, (f"{len(same_code)} items have the code {code!r}: {ids}",))
        if same_code:
            (item,) = same_code
            owner = self._owner(item)
            if owner is not None and owner != ref:
                why = f"item {code!r} is already linked to CRM product {owner.object_id}"
                return _entry("duplicate", product, code, item, (why,))
            return _entry("link", product, code, item, ("same item code",), 1.0)
        if review is not None and review.status == "rejected":
            return _entry("create", product, code, None, ("rejected in review",))
        return self._by_name(product, code, catalogues, by_name_of_products)

    def _by_name(
        self, product: Product, code: str, catalogues: _Catalogues, by_name_of_products: dict[str, list[Product]]
    ) -> ProductPlanEntry:
        named = self._free_by_name(product, catalogues)
        if len(named) > 1:
            ids = ", ".join(item_key(i) for i in named)
            return _entry("duplicate", product, code, None, (f"{len(named)} items have its name: {ids}",))
        if named:
            (item,) = named
            reasons = [f"same name, but the item's code is {item.code!r}, not {code!r}"]
            rivals = [
                p.ref.object_id for p in by_name_of_products[normalise_product_name(product.name)] if p != product
            ]
            if rivals:
                reasons.append(f"also the name of products {', '.join(rivals)}")
            reasons.append(f"accepting gives the item the code {code!r}")
            return _entry("review", product, code, item, tuple(reasons), NAME_SCORE)
        return _entry("create", product, code, None, ("no item has its code or its name",))

    def _free_by_name(self, product: Product, catalogues: _Catalogues) -> list[Item]:
        """The items named like ``product`` that no product links or asks for by code."""
        key = normalise_product_name(product.name)
        if not key:
            return []
        return [
            i
            for i in catalogues.by_name.get(key, [])
            if i.code not in catalogues.product_codes and self._owner(i) is None
        ]

    def _owner(self, item: Item) -> CrmRef | None:
        return self.store.find_ref(self.system, item_key(item))

    # -- doing it --------------------------------------------------------------------------------------

    def _execute(
        self, chunk: Sequence[ProductPlanEntry], catalogues: _Catalogues, result: ProductBackfillResult
    ) -> None:
        """Link, review or create one chunk. A retried chunk skips what is linked by now, so nothing twice."""
        for entry in chunk:
            product = catalogues.products.get(entry.ref) if entry.ref is not None else None
            if product is None or entry.action in ("duplicate", "archived", "mapped"):
                continue
            if self.store.get_mapping(product.ref, self.system) is not None:
                continue
            if entry.action == "link":
                self._link(product, catalogues.items[entry.item_id], entry, result)
            elif entry.action == "review":
                self._put_review(product, entry)
            else:  # create, or invalid: the sync keeps it as a failed sync with its reason
                outcome = self.products.sync(product.ref)
                if outcome.action == "failed":
                    failure = self.store.get_failed_sync(product.ref)
                    result.failures.append((product.ref, failure.reason if failure else outcome.detail))

    def _link(self, product: Product, item: Item, entry: ProductPlanEntry, result: ProductBackfillResult) -> None:
        try:
            self.products.link(product, item, f"backfill ({'; '.join(entry.reasons)})")
        except FatalError as exc:
            self.products.trail.fail(product.ref, None, str(exc), type(exc).__name__)
            result.failures.append((product.ref, str(exc)))

    def _put_review(self, product: Product, entry: ProductPlanEntry) -> None:
        current = self.store.get_review(product.ref, self.system)
        if current is not None and current.status == "pending" and current.candidate_id == entry.item_id:
            return  # asked already: the list keeps the day it was first asked
        self.store.put_review(
            ReviewItem(
                ref=product.ref,
                system=self.system,
                candidate_id=entry.item_id,
                score=entry.score,
                reasons=entry.reasons,
                crm_name=product.name,
                candidate_name=entry.item_name,
                created_at=self.now(),
            )
        )


def _entry(
    action: ProductAction,
    product: Product | None,
    code: str | None,
    item: Item | None,
    reasons: tuple[str, ...],
    score: float = 0.0,
    *,
    item_id: str = "",
) -> ProductPlanEntry:
    return ProductPlanEntry(
        action=action,
        ref=product.ref if product is not None else None,
        sku=product.sku if product is not None else "",
        name=product.name if product is not None else "",
        item_id=item_id or (item_key(item) if item is not None else ""),
        item_code=item.code if item is not None else (code or ""),
        item_name=item.name if item is not None else "",
        score=score,
        reasons=reasons,
    )


def product_plan_rows(plan: Iterable[ProductPlanEntry]) -> list[list[str]]:
    """The plan as table rows (header first), for the CLI."""
    rows = [["action", "crm product", "sku", "name", "item code", "item", "item name", "score", "why"]]
    for e in plan:
        rows.append(
            [
                e.action,
                str(e.ref or ""),
                e.sku,
                e.name,
                e.item_code,
                e.item_id,
                e.item_name,
                f"{e.score:.2f}" if e.score else "",
                "; ".join(e.reasons),
            ]
        )
    return rows


__all__ = [
    "NAME_SCORE",
    "ProductBackfill",
    "ProductBackfillResult",
    "ProductPlanEntry",
    "normalise_product_name",
    "product_plan_rows",
]
