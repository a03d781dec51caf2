"""Product catalogue: a CRM product and the accounting system's item are kept the same, matched by SKU.

For each changed CRM product, under a per-product lease so concurrent workers cannot both create:
1. a stored mapping -> write the fields that flow (the ``product`` field rules: by default the CRM owns
   name, description and price; the accounting system owns cost, tax code and accounts) and changed since
   the last sync; an accounting-side edit of a CRM-owned field is a conflict (audited, then overwritten
   from the CRM), a CRM edit of an accounting-owned field is a conflict too (audited, never written);
2. otherwise match by item code (the SKU, or its ``SKU_ITEM_CODES`` entry) -> link, filling in only what
   the item lacks (what finance entered stays; later CRM changes flow through the mapping);
3. otherwise create the item with the CRM's values (its cost too, as the starting value accounting then
   owns). A duplicate-code answer is resolved by one lookup, never by another create.
A product priced in another currency than the accounting system's (``base_currency``, the DEFAULT_CURRENCY
setting: no accounting port tells its organisation's base currency yet) never writes its price (nor its
cost) into the item: the other fields sync, the item's money is left alone, and the product is flagged
(audit ``flagged``) and kept as a failed sync naming both currencies until it syncs in the base currency.
A failed sync rather than a conflict: the cause stays until someone fixes it (a conflict is one edit, listed
in the month it happened), and the failed-sync list and the monthly report keep showing it. The outcome is
still the create/update/link, so a won deal whose line names the product is invoiced (its lines carry their
own prices, in the deal's currency).
The system's published limits are respected, not hit: a code longer than the system takes is a failed sync
naming the limit (a code is an identity, never cut); a longer name or description is shortened, and the
audit says so. Deleting or archiving a CRM product never deletes the item (invoices still name it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime

from closeloop.errors import Conflict, FatalError, RetriableError, ValidationFailed
from closeloop.models import PRODUCT_FIELDS, CrmRef, Item, ItemDraft, ItemLimits, Product, SyncEvent, item_fields
from closeloop.ports import CatalogueAccounting, CatalogueCrm, FailedSync, IdMapping, SyncStore
from closeloop.rules import FieldRules
from closeloop.sync.contacts import ACCOUNTING_VIEW, ContactSync, Outcome, idempotency_key
from closeloop.sync.leases import held
from closeloop.sync.trail import Trail

ELLIPSIS = "…"
#: The item fields that are money, in the product's currency.
MONEY_FIELDS = ("unit_price", "unit_cost")
#: How the live sync links a product to the item that already has its code.
BY_CODE = "matched by item code"


def fit(text: str, limit: int) -> str:
    """``text`` within ``limit`` characters (0: no limit), shortened with an ellipsis when longer."""
    if not limit or len(text) <= limit:
        return text
    return text[: limit - 1].rstrip() + ELLIPSIS


class ProductSync:
    """Vendor-free catalogue synchronisation over the catalogue ports."""

    def __init__(
        self,
        crm: CatalogueCrm,
        accounting: CatalogueAccounting,
        store: SyncStore,
        *,
        owner: str,
        item_codes: Mapping[str, str] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        rules: FieldRules | None = None,
        base_currency: str = "",
    ) -> None:
        self.crm = crm
        self.accounting = accounting
        self.store = store
        self.owner = owner
        self.item_codes = dict(item_codes or {})
        self.clock = clock
        self.rules = rules or FieldRules.load()
        #: The currency item prices are in ("" : unknown, prices are not compared).
        self.base_currency = base_currency.strip().upper()
        self.trail = Trail(store, accounting.name, clock)

    def item_code(self, sku: str) -> str:
        """The accounting item code of a CRM SKU (``SKU_ITEM_CODES`` maps the exceptions)."""
        return self.item_codes.get(sku, sku)

    def foreign_currency(self, product: Product) -> str:
        """The product's currency when it is set and is not the items' (``base_currency``), else ""."""
        currency = product.currency.strip().upper()
        return currency if currency and self.base_currency and currency != self.base_currency else ""

    def sync(self, ref: CrmRef, events: Iterable[SyncEvent] = ()) -> Outcome:
        """Bring the item of CRM product ``ref`` up to date. Raises RetriableError; records FatalError itself."""
        ordered = sorted(events, key=lambda e: e.occurred_at)
        trigger = ordered[-1] if ordered else None
        if self.rules.direction("product") in ("off", "accounting_to_crm"):
            return Outcome(ref, "skipped", detail="product sync to accounting is off in the field rules")
        if ordered and all(e.kind == "deleted" for e in ordered):
            self.trail.audit(ref, "ignored", "", trigger, {}, "a CRM product deletion never deletes the item")
            return Outcome(ref, "skipped", detail="deletion not propagated")
        try:
            product = self.crm.get_product(ref.object_id)
            if product is None:
                self.trail.audit(ref, "skipped", "", trigger, {}, "the CRM product no longer exists")
                return Outcome(ref, "skipped", detail="gone from CRM")
            if product.archived:
                self.trail.audit(ref, "ignored", "", trigger, {}, "the CRM product is archived; the item stays")
                return Outcome(ref, "skipped", detail="archived in CRM")
            with held(self.store, f"product#{ref}", self.owner, f"{ref} is being synced by another worker"):
                outcome = self._sync_product(product, trigger)
        except FatalError as exc:
            self.trail.fail(ref, trigger, str(exc), type(exc).__name__)
            return Outcome(ref, "failed", detail=type(exc).__name__)
        return self._settle(product, outcome, trigger)

    def _settle(self, product: Product, outcome: Outcome, event: SyncEvent | None) -> Outcome:
        """After a sync: clear the product's failed sync; or, when it is priced in another currency than the
        items, audit ``flagged`` and keep a failed sync naming both currencies (the price was not written)."""
        currency = self.foreign_currency(product)
        if not currency:
            self.store.clear_failed_sync(product.ref)
            return outcome
        reason = (
            f"the product is priced in {currency}, {self.accounting.name}'s items in {self.base_currency}: its "
            f"price was not written to item {self.item_code(product.sku.strip())!r} (the other fields were); set "
            f"the product's price in {self.base_currency} in the CRM, or price the item in accounting"
        )
        self.trail.audit(product.ref, "flagged", outcome.accounting_id, event, {}, reason)
        self.store.record_failed_sync(
            FailedSync(
                ref=product.ref,
                at=self.clock(),
                reason=reason,
                error_type="CurrencyMismatch",
                source_event=event.dedupe_key if event else "",
            )
        )
        return replace(outcome, detail=f"{outcome.detail};price not written ({currency})".lstrip(";"))

    def link(self, product: Product, item: Item, method: str, event: SyncEvent | None = None) -> Outcome:
        """Link CRM ``product`` to the accounting ``item`` the backfill or a person chose (``method`` says how).

        Under the product's lease, like a first match by code: an existing mapping wins (nothing is re-linked);
        the item is read again (a gone item, or one linked to another CRM product, is refused); only what it
        lacks is filled in, and an item under another code is given the product's code (the SKU is the
        identity the live sync finds it by, and the CRM owns it). Raises ValidationFailed (also: no SKU, a code
        over the limit), Busy and other RetriableError.
        """
        with held(self.store, f"product#{product.ref}", self.owner, f"{product.ref} is being synced by another worker"):
            mapping = self.store.get_mapping(product.ref, self.accounting.name)
            if mapping is not None:
                return Outcome(product.ref, "unchanged", mapping.accounting_id, detail="already mapped")
            draft, _ = self.draft(product)
            # An item without a code (a system where items need none) cannot be read again by code: it is linked
            # as the backfill read it, and given the product's code by the link.
            found = self.accounting.get_items([item.code]).get(item.code) if item.code else item
            if found is None or (item.id and found.id != item.id):
                raise ValidationFailed(f"item {item.code!r} is gone from {self.accounting.name}")
            outcome = self._link(product, found, draft, self._desired(product, draft), event, method)
            self.store.clear_failed_sync(product.ref)
            return outcome

    # -- one product ----------------------------------------------------------------------------------

    def _sync_product(self, product: Product, event: SyncEvent | None) -> Outcome:
        draft, shortened = self.draft(product)
        mapping = self.store.get_mapping(product.ref, self.accounting.name)
        if mapping is not None:
            outcome = self._update_mapped(product, mapping, draft, shortened, event)
            if outcome is not None:
                return outcome
        return self._match_or_create(product, draft, shortened, event)

    def draft(self, product: Product) -> tuple[ItemDraft, list[str]]:
        """The item the product asks for, within the system's limits; and the fields shortened to fit.
        Raises ValidationFailed: no SKU, or an item code longer than the system takes."""
        name = product.name.strip() or product.sku
        if not product.sku.strip():
            raise ValidationFailed("the product has no SKU, so no item code to match or create it by")
        code = self.item_code(product.sku.strip())
        foreign = self.foreign_currency(product)
        limits: ItemLimits = self.accounting.item_limits
        if limits.code and len(code) > limits.code:
            raise ValidationFailed(
                f"item code {code!r} is {len(code)} characters; {self.accounting.name} takes at most {limits.code}"
                " (map the SKU to a shorter code in SKU_ITEM_CODES)"
            )
        draft = ItemDraft(
            code=code,
            name=fit(name, limits.name),
            description=fit(product.description, limits.description),
            # Money in another currency than the items' is not written (see the module docstring).
            unit_price=None if foreign else product.unit_price,
            unit_cost=None if foreign else product.unit_cost,
        )
        shortened = [
            f for f, full in (("name", name), ("description", product.description)) if getattr(draft, f) != full
        ]
        return draft, shortened

    def _desired(self, product: Product, draft: ItemDraft) -> dict[str, str]:
        """The values the item should have from the CRM; without the money when it is in another currency
        (then neither written nor compared: the item keeps its own)."""
        desired = item_fields(draft)
        if self.foreign_currency(product):
            for money in MONEY_FIELDS:
                desired.pop(money, None)
        return desired

    def _update_mapped(
        self, product: Product, mapping: IdMapping, draft: ItemDraft, shortened: list[str], event: SyncEvent | None
    ) -> Outcome | None:
        desired = self._desired(product, draft)
        old_code = mapping.snapshot.get("code", draft.code)
        current = self.accounting.get_items([old_code]).get(old_code)
        if current is None or (current.id and current.id != mapping.accounting_id):
            return None  # deleted in accounting (or its code now names another item): match or create again
        writable = set(self.rules.fields_to_write("product", "accounting"))
        if self.foreign_currency(product):
            writable -= set(MONEY_FIELDS)
        changed = [f for f, value in desired.items() if mapping.snapshot.get(f, "") != value]
        held = [f for f in changed if f not in writable]
        if held:
            conflicts = {f: {"before": mapping.snapshot.get(f, ""), "after": desired[f]} for f in held}
            self.trail.audit(
                product.ref, "conflict", mapping.accounting_id, event, conflicts, f"{self.accounting.name} owns these"
            )
        # An edit in accounting of a field the CRM owns: noted, then the CRM's value is written back.
        edited = [
            f
            for f in writable
            if f in current.fields
            and current.fields[f] != mapping.snapshot.get(f"{ACCOUNTING_VIEW}{f}", current.fields[f])
        ]
        if edited:
            conflicts = {
                f: {"before": mapping.snapshot.get(f"{ACCOUNTING_VIEW}{f}", ""), "after": current.fields[f]}
                for f in sorted(edited)
            }
            self.trail.audit(
                product.ref,
                "conflict",
                mapping.accounting_id,
                event,
                conflicts,
                "edited in accounting; the CRM owns these",
            )
        to_write = [f for f in PRODUCT_FIELDS if f in writable and (f in changed or f in edited)]
        if draft.code != old_code:
            to_write.append("code")
        if not to_write:
            self._remember(product.ref, current, draft, desired, previous=mapping)
            return Outcome(product.ref, "unchanged", mapping.accounting_id, detail=",".join(held))
        saved = self.accounting.update_item(
            current, draft, to_write, idempotency_key=idempotency_key(product.ref, event, "item-update")
        )
        changes = {
            f: {"before": mapping.snapshot.get(f, old_code if f == "code" else ""), "after": desired.get(f, draft.code)}
            for f in to_write
        }
        self._remember(product.ref, saved, draft, desired)
        self.trail.audit(product.ref, "updated", saved.id or saved.code, event, changes, self._note(shortened))
        return Outcome(product.ref, "updated", saved.id or saved.code, detail=",".join(to_write))

    def _match_or_create(
        self, product: Product, draft: ItemDraft, shortened: list[str], event: SyncEvent | None
    ) -> Outcome:
        desired = self._desired(product, draft)
        found = self.accounting.get_items([draft.code]).get(draft.code)
        if found is not None:
            return self._link(product, found, draft, desired, event, BY_CODE)
        try:
            created = self.accounting.create_item(
                draft, idempotency_key=idempotency_key(product.ref, event, "item-create")
            )
        except Conflict:
            found = self.accounting.get_items([draft.code]).get(draft.code)
            if found is None:
                raise
            return self._link(product, found, draft, desired, event, BY_CODE)
        self._remember(product.ref, created, draft, desired)
        changes = {f: {"before": "", "after": v} for f, v in {"code": draft.code, **desired}.items() if v}
        self.trail.audit(product.ref, "created", created.id or created.code, event, changes, self._note(shortened))
        return Outcome(product.ref, "created", created.id or created.code)

    def _link(
        self,
        product: Product,
        found: Item,
        draft: ItemDraft,
        desired: dict[str, str],
        event: SyncEvent | None,
        method: str,
    ) -> Outcome:
        owner = self.store.find_ref(self.accounting.name, found.id or found.code)
        if owner is not None and owner != product.ref:
            raise ValidationFailed(
                f"item {found.code!r} is already linked to CRM product {owner.object_id}: two products share a SKU"
            )
        # First link: fill in what the item lacks; what finance entered stays (price drift is reported by the
        # reconciliation). Later CRM changes of the fields the CRM owns flow through the mapping.
        fill = [f for f, value in desired.items() if value and not found.fields.get(f, "")]
        if found.code != draft.code:
            fill.append("code")  # a link a person chose by name: the item takes the SKU the sync finds it by
        seen = found
        if fill:
            seen = self.accounting.update_item(
                found, draft, fill, idempotency_key=idempotency_key(product.ref, event, f"item-link:{found.code}")
            )
        differing = sorted(f for f, v in desired.items() if v and f not in fill and found.fields.get(f, "") != v)
        self._remember(product.ref, seen, draft, desired)
        changes = {
            f: {"before": found.code, "after": draft.code}
            if f == "code"
            else {"before": found.fields.get(f, ""), "after": desired[f]}
            for f in fill
        }
        detail = method + (f"; the item's own {', '.join(differing)} kept" if differing else "")
        self.trail.audit(product.ref, "matched", seen.id or seen.code, event, changes, detail)
        return Outcome(
            product.ref, "matched", seen.id or seen.code, detail="item code" if method == BY_CODE else method
        )

    def _remember(
        self,
        ref: CrmRef,
        item: Item,
        draft: ItemDraft,
        desired: dict[str, str],
        *,
        previous: IdMapping | None = None,
    ) -> None:
        """The link, the values synced, the code, and the item as last seen after our write (its accounting
        view tells a person's edit in accounting from the echo of our own write)."""
        view = {f"{ACCOUNTING_VIEW}{k}": v for k, v in item.fields.items()}
        if previous is not None and not view:
            view = {k: v for k, v in previous.snapshot.items() if k.startswith(ACCOUNTING_VIEW)}
        self.store.put_mapping(
            IdMapping(
                ref=ref,
                system=self.accounting.name,
                accounting_id=item.id or item.code,
                snapshot={**desired, "code": draft.code, **view},
                updated_at=self.clock(),
            )
        )

    def _note(self, shortened: list[str]) -> str:
        if not shortened:
            return ""
        limits = self.accounting.item_limits
        return "; ".join(
            f"{f} shortened to {getattr(limits, f)} characters ({self.accounting.name}'s limit)" for f in shortened
        )


class WithCatalogue:
    """The contacts queue's pipeline: products to ``ProductSync`` (None: catalogue sync off or not supported
    by this pair, and a product event is audited and skipped), companies and contacts to ``ContactSync`` (with
    its bulk path). A product's retriable error is its own result, as ``ContactSync.sync_many`` reports a
    customer's."""

    def __init__(self, contacts: ContactSync, products: ProductSync | None) -> None:
        self.contacts = contacts
        self.products = products
        self.rules = contacts.rules

    def sync(self, ref: CrmRef, events: Iterable[SyncEvent]) -> Outcome:
        if ref.object_type != "product":
            return self.contacts.sync(ref, events)
        if self.products is None:
            trigger = max(events, key=lambda e: e.occurred_at, default=None)
            self.contacts.trail.audit(ref, "ignored", "", trigger, {}, "catalogue sync is off (PRODUCT_SYNC)")
            return Outcome(ref, "skipped", detail="catalogue sync off")
        return self.products.sync(ref, events)

    def sync_many(self, groups: Mapping[CrmRef, Iterable[SyncEvent]]) -> dict[CrmRef, Outcome | RetriableError]:
        others = {ref: events for ref, events in groups.items() if ref.object_type != "product"}
        results: dict[CrmRef, Outcome | RetriableError] = self.contacts.sync_many(others) if others else {}
        for ref, events in groups.items():
            if ref.object_type == "product":
                try:
                    results[ref] = self.sync(ref, events)
                except RetriableError as exc:
                    results[ref] = exc
        return results
