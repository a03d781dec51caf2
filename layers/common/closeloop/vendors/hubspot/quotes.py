"""HubSpot's quotes, the quote port (``QuoteCrm``) of the HubSpot adapter (mixed into HubSpotCrm).

HubSpot's quotes guide (developers.hubspot.com/docs/guides/api/crm/objects/quotes) and
``PublicApiSpecs/CRM/Quotes/Rollouts/424/v3/quotes.json`` (the generic CRM object components, scopes
``crm.objects.quotes.read``/``.write``):

- a quote's properties: ``hs_title``, ``hs_status`` (DRAFT, APPROVAL_NOT_NEEDED, PENDING_APPROVAL, APPROVED,
  REJECTED: a quote is published when APPROVAL_NOT_NEEDED or APPROVED), ``hs_expiration_date``,
  ``hs_quote_number``, ``hs_currency``, ``hs_quote_link`` (its public page, set on publishing);
- associations: quote -> deal, quote -> line items (a quote's own copies of the deal's lines), quote ->
  contacts and companies (its buyers);
- no webhooks: the Webhooks v3 ``eventType`` enum names no ``quote.*`` event, so quote changes are found by
  the change scan (``changes.py``: search on ``hs_lastmodifieddate``).

Closeloop's write-back properties (``closeloop_quote_*``) go on the quote. Whether HubSpot lets an app create
custom quote properties is GUESSES["custom_quote_properties"]: when it refuses, they go on the quote's deal.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from closeloop.errors import FatalError, IntegrationError, ValidationFailed
from closeloop.models import QUOTE_SYNC_FIELDS, CrmQuoteStatus, CrmRef, LineItem, Quote
from closeloop.paging import Page, paginate
from closeloop.ports import PropertyDefinition
from closeloop.vendors.hubspot.client import HubSpotClient, next_after
from closeloop.vendors.hubspot.mapping import clean, id_order, line_item, parse_time


class HubSpotQuotes(HubSpotClient):
    """QuoteCrm for HubSpot: quotes read with their lines, parties and deal; Closeloop's fields written."""

    QUOTE_PROPERTIES: ClassVar[tuple[str, ...]] = (
        "hs_title",
        "hs_status",
        "hs_expiration_date",
        "hs_quote_number",
        "hs_currency",
        "hs_quote_link",
        "hs_lastmodifieddate",
        *QUOTE_SYNC_FIELDS,
    )
    #: hs_status -> the canonical status: published (approved, or needing no approval) is ``ready``.
    QUOTE_STATUSES: ClassVar[dict[str, CrmQuoteStatus]] = {
        "DRAFT": "draft",
        "PENDING_APPROVAL": "pending_approval",
        "APPROVED": "ready",
        "APPROVAL_NOT_NEEDED": "ready",
        "REJECTED": "rejected",
    }
    #: Where ``write_quote`` writes: False on the quote, True on its deal (HubSpot refused custom quote
    #: properties: GUESSES["custom_quote_properties"]). Set per process by ``ensure_quote_properties``.
    _quote_fields_on_deal: bool = False

    if TYPE_CHECKING:  # HubSpotCrm's own, used here

        def ensure_properties(self, object_type: str, definitions: Collection[PropertyDefinition]) -> list[str]: ...

        def _batch_update(
            self, object_type: str, updates: Mapping[str, Mapping[str, str]]
        ) -> list[IntegrationError]: ...

        def _associated(self, obj: Any, from_type: str, to_type: str, primary_type: str | None) -> list[str]: ...

        def _ref(self, object_type: str, object_id: str) -> CrmRef: ...

        DEAL_PRIMARY_COMPANY_TYPE: ClassVar[str]
        DEAL_PRIMARY_CONTACT_TYPE: ClassVar[str | None]
        LINE_ITEM_PROPERTIES: ClassVar[tuple[str, ...]]

    @property
    def quote_fields_holder(self) -> str:
        """Where Closeloop's quote fields are written: ``quote``, or ``deal`` (custom quote properties refused)."""
        return "deal" if self._quote_fields_on_deal else "quote"

    def get_quote(self, quote_id: str) -> Quote | None:
        """The quote with its line items (quote -> line items), deal (quote -> deal, the first), parties (its
        companies and contacts, else its deal's primary company and first contact) and canonical status;
        None when HubSpot has none by that id. Raises IntegrationError subclasses, ValidationFailed for a
        line's number or the expiry date HubSpot sent that cannot be parsed."""
        found = self._get_object("quote", quote_id, self.QUOTE_PROPERTIES, "deals,companies,contacts")
        if found is None:
            return None
        deals = self._associated(found, "quote", "deal", None)
        companies = self._associated(found, "quote", "company", None)
        contacts = self._associated(found, "quote", "contact", None)
        deal: Any = None
        if deals and (not (companies or contacts) or self._quote_fields_on_deal):
            deal = self._get_object("deal", deals[0], QUOTE_SYNC_FIELDS, "companies,contacts")
        if deal is not None and not (companies or contacts):
            companies = self._associated(deal, "deal", "company", self.DEAL_PRIMARY_COMPANY_TYPE)
            contacts = self._associated(deal, "deal", "contact", self.DEAL_PRIMARY_CONTACT_TYPE)
        props = found.get("properties") or {}
        synced_from = (deal.get("properties") or {}) if self._quote_fields_on_deal and deal is not None else props
        return Quote(
            ref=self._ref("quote", str(found["id"])),
            deal=self._ref("deal", deals[0]) if deals else None,
            title=clean(props.get("hs_title")),
            number=clean(props.get("hs_quote_number")),
            status=self.QUOTE_STATUSES.get(clean(props.get("hs_status")).upper(), "draft"),
            currency=clean(props.get("hs_currency")).upper(),
            expiry=expiry_date(props.get("hs_expiration_date"), str(found["id"])),
            company=self._ref("company", companies[0]) if companies else None,
            contact=self._ref("contact", contacts[0]) if contacts else None,
            line_items=self._quote_lines(str(found["id"])),
            url=clean(props.get("hs_quote_link")),
            updated_at=parse_time(props.get("hs_lastmodifieddate") or found.get("updatedAt")),
            synced={k: clean(synced_from.get(k)) for k in QUOTE_SYNC_FIELDS if synced_from.get(k) is not None},
        )

    def quotes_of_deal(self, deal_id: str) -> list[Quote]:
        """The deal's quotes (deal -> quotes, v4, every page), each read whole; oldest id first."""
        ids = sorted(set(self._associated_ids("deal", deal_id, "quotes")), key=id_order)
        return [found for quote_id in ids if (found := self.get_quote(quote_id)) is not None]

    def write_quote(self, quote_id: str, values: Mapping[str, str]) -> None:
        """Write Closeloop's quote fields on the quote (a batch update of one), or on its deal where HubSpot
        refused custom quote properties. Raises ValidationFailed when HubSpot refuses them (a property that
        does not exist yet), NotFound for a quote gone, IntegrationError subclasses otherwise."""
        if not self._quote_fields_on_deal:
            self._first_error(self._batch_update("quote", {quote_id: dict(values)}))
            return
        deals = self._associated_ids("quote", quote_id, "deals")
        if not deals:
            raise ValidationFailed(
                f"HubSpot quote {quote_id} has no deal to hold Closeloop's quote fields", vendor=self.name
            )
        self._first_error(self._batch_update("deal", {sorted(deals, key=id_order)[0]: dict(values)}))

    def ensure_quote_properties(self, definitions: Collection[PropertyDefinition]) -> list[str]:
        """Create the missing quote properties on quotes; when HubSpot refuses custom quote properties (400
        or 403 on POST /crm/v3/properties/quotes: GUESSES["custom_quote_properties"]), on deals instead, and
        ``write_quote`` writes there from now on (every name is returned then: all are now where it writes).
        Returns the names created (or made reachable). Raises ValidationFailed when deals refuse them too."""
        if not self._quote_fields_on_deal:
            try:
                return self.ensure_properties("quote", definitions)
            except FatalError as exc:
                if exc.status not in (400, 403):
                    raise
                self._quote_fields_on_deal = True
        self.ensure_properties("deal", definitions)
        return [definition.name for definition in definitions]

    # -- reads -------------------------------------------------------------------------------------

    def _associated_ids(self, from_type: str, object_id: str, to_path: str) -> list[str]:
        """Every associated id (v4 list, ``ASSOCIATION_PAGE_SIZE`` a page), in HubSpot's order."""
        path = f"/crm/v4/objects/{self.PATHS[from_type]}/{object_id}/associations/{to_path}"

        def fetch(after: str | None) -> Page[str, str | None]:
            params: dict[str, Any] = {"limit": self.ASSOCIATION_PAGE_SIZE}
            if after is not None:
                params["after"] = after
            page = self.http.request("GET", path, params=params).json()
            return Page([str(r["toObjectId"]) for r in page.get("results") or []], next_after(page))

        return list(paginate(fetch, None, vendor=self.name, what=f"{to_path} of {from_type} {object_id}"))

    def _quote_lines(self, quote_id: str) -> tuple[LineItem, ...]:
        """The quote's own line items (quote -> line items), in id order."""
        unique = sorted(set(self._associated_ids("quote", quote_id, "line_items")), key=id_order)
        if not unique:
            return ()
        # The deal's line properties, recurring terms included: a quote's recurring line is scheduled, not
        # billed once, when the deal is invoiced from the quote.
        read = self._batch_read("line_item", unique, self.LINE_ITEM_PROPERTIES)
        return tuple(line_item(r) for r in sorted(read, key=lambda r: id_order(str(r["id"]))))

    @staticmethod
    def _first_error(errors: Sequence[IntegrationError]) -> None:
        if errors:
            raise errors[0]


def expiry_date(value: Any, quote_id: str) -> date | None:
    """``hs_expiration_date``: an ISO date, an ISO datetime or ms since the epoch (the UTC day)."""
    text = clean(value)
    if not text:
        return None
    try:
        if text.lstrip("-").isdigit():
            return datetime.fromtimestamp(int(text) / 1000, UTC).date()
        if len(text) == 10:
            return date.fromisoformat(text)
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError) as exc:
        raise ValidationFailed(
            f"HubSpot quote {quote_id} hs_expiration_date is not a date: {text[:40]!r}", vendor="hubspot"
        ) from exc
    return moment.astimezone(UTC).date() if moment.tzinfo else moment.date()
