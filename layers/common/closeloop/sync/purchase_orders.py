"""Purchase orders from a won deal: one draft purchase order per supplier, at unit cost, exactly once.

A ``WonDealFlow`` (see ``closeloop.sync.invoices``): after the deal's invoice (supplier lines stay on it: a
purchase order is the purchase side), the deal's lines are grouped by their CRM product's supplier (the
product's ``supplier``, compared by normalised name). Lines without a product, or whose product names no
supplier, are not bought from anyone. Every group is validated before anything is created, the deal's
invoice included (``off_invoice`` is asked before the invoice is made): a supplier product without a unit
cost, mixed currencies, or an item code the accounting system does not know is a failed sync of the deal
naming it, and nothing is created.

Per deal and supplier, under the deal's lease (DealSync holds it around every flow):
1. the stored mapping (system ``<accounting>#po#<digest of the supplier>``) -> the purchase order is known;
2. otherwise the purchase order is looked up by its reference (it carries the deal id and the supplier:
   ``hubspot-deal-3000001-po-acme-supplies``), so a crash between the vendor's create and our mapping write
   is healed;
3. otherwise the supplier is matched by normalised name among the accounting system's suppliers (two
   candidates: a failed sync naming them, never a guess; checked for every supplier before any create) or
   created, under a per-supplier lease and with an idempotency key per deal and supplier; then the draft
   purchase order is created with an idempotency key per deal and supplier, and mapped right away.
The purchase order numbers are written back to the deal (``closeloop_purchase_orders``) once, and again only
when a new one is added. Every supplier and purchase order created or linked is audited.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from closeloop.errors import Conflict, ValidationFailed
from closeloop.models import (
    CrmRef,
    Deal,
    LineItem,
    Product,
    PurchaseOrder,
    PurchaseOrderDraft,
    PurchaseOrderLine,
    Supplier,
    SyncEvent,
)
from closeloop.ports import CatalogueCrm, CrmPort, IdMapping, PropertyDefinition, PurchasingAccounting, SyncStore
from closeloop.sync.contacts import normalise_name
from closeloop.sync.invoices import deal_idempotency_key, money, write_to_deal
from closeloop.sync.leases import held
from closeloop.sync.trail import Trail

#: The deal property the purchase order numbers are written to (``closeloop setup`` creates it too).
PURCHASE_ORDERS_PROPERTY = "closeloop_purchase_orders"
PURCHASE_ORDER_PROPERTIES: tuple[PropertyDefinition, ...] = (
    PropertyDefinition(
        PURCHASE_ORDERS_PROPERTY, "Purchase orders", description="Set by Closeloop: one per supplier of the deal"
    ),
)
#: The longest supplier part of a reference; a longer one keeps its head and gets a digest tail.
MAX_SUPPLIER_SLUG = 40


@dataclass(frozen=True)
class PurchaseOrderPolicy:
    """How purchase orders are made, per deployment."""

    default_currency: str = ""
    sku_item_codes: Mapping[str, str] = field(default_factory=dict)


@dataclass
class SupplierGroup:
    """The lines of one won deal bought from one supplier."""

    key: str
    name: str
    currency: str
    lines: list[PurchaseOrderLine] = field(default_factory=list)


def supplier_slug(key: str) -> str:
    """A normalised supplier name as one reference word: ``acme-supplies``; bounded, unique by its digest."""
    slug = re.sub(r"[^a-z0-9]+", "-", key).strip("-")
    if len(slug) <= MAX_SUPPLIER_SLUG:
        return slug
    return f"{slug[: MAX_SUPPLIER_SLUG - 9]}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"


def purchase_order_reference(deal: CrmRef, supplier_key: str) -> str:
    """``hubspot-deal-3000001-po-acme-supplies``: the deal id first, then the supplier; one word, so a system
    whose searchable field is short keeps it whole (or its head and a digest)."""
    return f"{deal.crm}-deal-{deal.object_id}-po-{supplier_slug(supplier_key)}"


def mapping_system(accounting: str, supplier_key: str) -> str:
    """The mapping of one deal's purchase order for one supplier (the deal's invoice mapping is ``accounting``)."""
    return f"{accounting}#po#{hashlib.sha256(supplier_key.encode()).hexdigest()[:16]}"


class PurchaseOrderFlow:
    """Vendor-free won deal -> one draft purchase order per supplier, over the ports (a WonDealFlow).

    ``catalogue``: the CRM's products (where a line's supplier and unit cost are read); ``crm``: the deal
    write-back. Both are the CRM adapter in production.
    """

    name = "purchase_orders"

    def __init__(
        self,
        crm: CrmPort,
        catalogue: CatalogueCrm,
        accounting: PurchasingAccounting,
        store: SyncStore,
        policy: PurchaseOrderPolicy,
        *,
        owner: str,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.crm = crm
        self.catalogue = catalogue
        self.accounting = accounting
        self.store = store
        self.policy = policy
        self.owner = owner
        self.clock = clock
        self.trail = Trail(store, accounting.name, clock)

    def promised(self, deal: Deal) -> Deal:
        """Purchase orders change nothing the customer is billed."""
        return deal

    def off_invoice(self, deal: Deal) -> frozenset[str]:
        """Supplier lines are sold to the customer too: every line stays on the invoice. Asked before the
        invoice is made, so the supplier lines are validated here: a supplier product without a cost (or
        any other reason no purchase order can be made) fails the deal before anything, the invoice
        included, is created. Raises ValidationFailed naming every problem."""
        self._groups(deal)
        return frozenset()

    def follow(self, deal: Deal, customer_id: str, event: SyncEvent | None) -> None:
        """Make (or find) the deal's purchase orders, one per supplier, and write their numbers to the deal.

        Raises ValidationFailed (nothing created) for a supplier product without a cost, mixed currencies
        in one supplier's lines, an unknown item code or an ambiguous supplier; Conflict when the system
        refuses a new supplier's name; RetriableError subclasses as the ports raise them.
        """
        groups = self._groups(deal)
        if not groups:
            return
        orders: dict[str, IdMapping] = {}
        for group in groups:
            mapping = self.store.get_mapping(deal.ref, mapping_system(self.accounting.name, group.key))
            if mapping is not None:
                orders[group.key] = mapping
                continue
            reference = purchase_order_reference(deal.ref, group.key)
            found = self.accounting.find_purchase_order(reference, self._dated(deal))
            if found is not None:  # made by an attempt that died before mapping it
                orders[group.key] = self._remember(deal.ref, group, found)
                self.trail.audit(
                    deal.ref,
                    "linked",
                    found.id,
                    event,
                    _changes(found),
                    f"purchase order for {group.name}: by reference",
                )
        pending = [group for group in groups if group.key not in orders]
        suppliers = self._match_suppliers(pending)  # every ambiguity fails before the first create
        for group in pending:
            supplier = suppliers.get(group.key) or self._supplier(deal, group, event)
            order = self._create(deal, group, supplier, event)
            orders[group.key] = self._remember(deal.ref, group, order)
        self._write_back(deal, groups, orders)

    # -- validation -----------------------------------------------------------------------------------

    def _groups(self, deal: Deal) -> list[SupplierGroup]:
        """The deal's supplier lines grouped by supplier, all validated (raises ValidationFailed naming
        every problem found, so nothing is created)."""
        products: dict[str, Product | None] = {}
        groups: dict[str, SupplierGroup] = {}
        problems: list[str] = []
        codes: dict[str, str] = {}
        for line in deal.line_items:
            if not line.product_id:
                continue
            if line.product_id not in products:
                products[line.product_id] = self.catalogue.get_product(line.product_id)
            product = products[line.product_id]
            if product is None or not product.supplier.strip():
                continue
            key = normalise_name(product.supplier)
            label = product.name or line.name or product.ref.object_id
            if problem := _unbuyable(product, key, label):
                problems.append(problem)
                continue
            currency = (product.currency or deal.currency or self.policy.default_currency).upper()
            if not currency:
                problems.append(f"product {label!r}: no currency (product, deal or DEFAULT_CURRENCY)")
                continue
            group = groups.setdefault(key, SupplierGroup(key, product.supplier.strip(), currency))
            if group.currency != currency:
                problems.append(f"supplier {group.name!r} is bought from in {group.currency} and {currency}")
                continue
            code = self.policy.sku_item_codes.get(line.sku, line.sku) if line.sku else ""
            if code:
                codes[code] = label
            group.lines.append(_line(line, product, code))
        if codes and not problems:
            known = self.accounting.get_items(set(codes))
            problems += [
                f"product {codes[c]!r}: no accounting item with code {c!r}" for c in sorted(set(codes) - set(known))
            ]
        if problems:
            raise ValidationFailed("no purchase order made: " + "; ".join(problems))
        return [groups[key] for key in sorted(groups)]

    def _dated(self, deal: Deal) -> date:
        """The purchase order's date: the deal's close date (the same on every delivery), else today."""
        return deal.close_date or self.clock().date()

    # -- suppliers ------------------------------------------------------------------------------------

    def _candidates(self, group: SupplierGroup) -> list[Supplier]:
        return [s for s in self.accounting.find_suppliers(group.name) if normalise_name(s.name) == group.key]

    def _match_suppliers(self, groups: list[SupplierGroup]) -> dict[str, Supplier]:
        """The existing supplier of each group that has exactly one; raises ValidationFailed naming every
        supplier with several candidates (a person links one), before anything is created."""
        matched: dict[str, Supplier] = {}
        ambiguous: list[str] = []
        for group in groups:
            candidates = self._candidates(group)
            if len(candidates) > 1:
                ids = ", ".join(sorted(s.id for s in candidates))
                ambiguous.append(f"supplier {group.name!r} matches {len(candidates)} accounting suppliers ({ids})")
            elif candidates:
                matched[group.key] = candidates[0]
        if ambiguous:
            raise ValidationFailed(
                "no purchase order made: " + "; ".join(ambiguous) + ": merge them or rename one, then replay"
            )
        return matched

    def _supplier(self, deal: Deal, group: SupplierGroup, event: SyncEvent | None) -> Supplier:
        """Create the group's supplier, under a per-supplier lease (another deal may be creating it now):
        found again inside the lease first; a duplicate-name refusal is resolved by one lookup."""
        lease = f"supplier#{self.accounting.name}#{hashlib.sha256(group.key.encode()).hexdigest()[:16]}"
        with held(self.store, lease, self.owner, "the supplier is being created by another worker"):
            candidates = self._candidates(group)
            if len(candidates) > 1:
                raise ValidationFailed(f"supplier {group.name!r} matches {len(candidates)} accounting suppliers")
            if candidates:
                return candidates[0]
            try:
                supplier = self.accounting.create_supplier(
                    group.name, idempotency_key=deal_idempotency_key(deal.ref, f"supplier:{group.key}")
                )
            except Conflict:
                again = self._candidates(group)
                if len(again) != 1:
                    raise
                return again[0]
        self.trail.audit(
            deal.ref, "supplier_created", supplier.id, event, {"supplier": {"before": "", "after": supplier.name}}
        )
        return supplier

    # -- purchase orders ------------------------------------------------------------------------------

    def _create(self, deal: Deal, group: SupplierGroup, supplier: Supplier, event: SyncEvent | None) -> PurchaseOrder:
        draft = PurchaseOrderDraft(
            supplier_id=supplier.id,
            reference=purchase_order_reference(deal.ref, group.key),
            currency=group.currency,
            lines=tuple(group.lines),
            issue_date=self._dated(deal),
        )
        order = self.accounting.create_purchase_order(
            draft, idempotency_key=deal_idempotency_key(deal.ref, f"purchase_order:{group.key}")
        )
        self.trail.audit(deal.ref, "purchase_ordered", order.id, event, _changes(order), f"supplier {group.name}")
        return order

    def _remember(self, ref: CrmRef, group: SupplierGroup, order: PurchaseOrder) -> IdMapping:
        """Map the deal's purchase order for ``group`` (right after it is created or found); not written back yet."""
        mapping = IdMapping(
            ref=ref,
            system=mapping_system(self.accounting.name, group.key),
            accounting_id=order.id,
            snapshot={
                "kind": "purchase_order",
                "supplier": group.key,
                "supplier_id": order.supplier_id,
                "number": order.number or order.id,
                "currency": order.currency,
                "total": money(order.total),
                "written_back": "no",
            },
            updated_at=self.clock(),
        )
        self.store.put_mapping(mapping)
        return mapping

    def _write_back(self, deal: Deal, groups: list[SupplierGroup], orders: Mapping[str, IdMapping]) -> None:
        """Write every purchase order number to the deal when one of them has not been written yet."""
        mappings = [orders[group.key] for group in groups]
        if all(m.snapshot.get("written_back") == "yes" for m in mappings):
            return
        numbers = ", ".join(m.snapshot.get("number", "") for m in mappings)
        write_to_deal(self.crm, deal.ref.object_id, {PURCHASE_ORDERS_PROPERTY: numbers}, PURCHASE_ORDER_PROPERTIES)
        for mapping in mappings:
            if mapping.snapshot.get("written_back") != "yes":
                self.store.put_mapping(
                    IdMapping(
                        ref=mapping.ref,
                        system=mapping.system,
                        accounting_id=mapping.accounting_id,
                        snapshot={**mapping.snapshot, "written_back": "yes"},
                        updated_at=self.clock(),
                    )
                )


def _unbuyable(product: Product, key: str, label: str) -> str:
    """Why a supplier product cannot be ordered ("" when it can)."""
    if not key:
        return f"product {label!r} names a supplier without letters or digits"
    if product.unit_cost is None:
        return f"product {label!r} (supplier {product.supplier!r}) has no unit cost"
    if product.unit_cost < 0:
        return f"product {label!r} has a negative unit cost"
    return ""


def _line(line: LineItem, product: Product, code: str) -> PurchaseOrderLine:
    assert product.unit_cost is not None  # checked by the caller
    return PurchaseOrderLine(
        item_code=code,
        description=product.name or line.name or code,
        quantity=line.quantity,
        unit_cost=product.unit_cost,
    )


def _changes(order: PurchaseOrder) -> dict[str, dict[str, str]]:
    return {
        "purchase_order_number": {"before": "", "after": order.number},
        "purchase_order_total": {"before": "", "after": f"{money(order.total)} {order.currency}"},
    }
