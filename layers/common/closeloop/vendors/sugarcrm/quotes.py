"""SugarCRM's Quotes module as the quote port (``QuoteCrm``) of the SugarCRM adapter (mixed into SugarCrm).

Sugar's quotes (Sugar 12.0 Quotes, ProductBundles and Products vardefs; Application Guide "Quotes"):

- the header ``Quotes``: ``name``, ``quote_num`` (an auto-increment number), ``quote_stage`` (dropdown
  ``quote_stage_dom``: Draft, Negotiation, Delivered, On Hold, Confirmed, Closed Accepted, Closed Lost, Closed
  Dead), ``date_quote_expected_closed`` ("Valid Until"), ``currency_id``, ``billing_account_id`` /
  ``billing_contact_id`` (the buyer), ``opportunity_id`` (the deal);
- its lines are ``Products`` (quoted line items) grouped in ``ProductBundles``: ``GET /Quotes/<id>/link/
  product_bundles``, then ``GET /ProductBundles/<id>/link/products``; each group and line has a ``position``
  (GUESSES["line order is position"]); a line carries its own ``mft_part_num`` and prices (copied from the
  catalogue product when it was added), ``discount_amount`` a percentage when ``discount_select``, and
  ``total_amount`` (its net total);
- an opportunity's quotes: ``GET /Opportunities/<id>/link/quotes``.

Which stages mean "approved or published" (the canonical ``ready``): Sugar has no approval state on a quote;
its stages are a sales dropdown an admin can edit in Studio. By the stages' meaning, a quote is with the
customer once it is Delivered, and agreed when Confirmed or Closed Accepted: those three are ``ready``
(SUGARCRM_QUOTE_READY_STAGES changes them); Closed Lost and Closed Dead are ``rejected``
(SUGARCRM_QUOTE_REJECTED_STAGES); Negotiation and On Hold are ``pending_approval`` (its terms are still being
settled); Draft and any other stage are ``draft``.

Closeloop's write-back fields (``closeloop_quote_*``) are Studio fields on Quotes (``closeloop_quote_number_c``
...): the REST API cannot create them, so ``ensure_quote_properties`` names what an admin must add.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from datetime import date
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote as url_quote

from closeloop.errors import FatalError, ValidationFailed
from closeloop.models import QUOTE_SYNC_FIELDS, CrmQuoteStatus, LineItem, Quote
from closeloop.ports import PropertyDefinition
from closeloop.vendors.sugarcrm.mapping import clean, crm_ref, line_item, parse_time

if TYPE_CHECKING:
    from closeloop.vendors.sugarcrm.client import SugarClient

#: Sugar's stock quote stages (quote_stage_dom) that are with the customer or agreed: canonical ``ready``.
READY_STAGES: tuple[str, ...] = ("Delivered", "Confirmed", "Closed Accepted")
#: Stock stages of a quote the customer turned down or that was abandoned: canonical ``rejected``.
REJECTED_STAGES: tuple[str, ...] = ("Closed Lost", "Closed Dead")
#: Stock stages whose terms are still being settled: canonical ``pending_approval``.
PENDING_STAGES: tuple[str, ...] = ("Negotiation", "On Hold")


def stage_list(text: str) -> tuple[str, ...]:
    """A comma-separated stage setting as its stages (blank ones dropped)."""
    return tuple(stage.strip() for stage in text.split(",") if stage.strip())


def quote_status(
    stage: str,
    ready: Iterable[str] = READY_STAGES,
    rejected: Iterable[str] = REJECTED_STAGES,
    pending: Iterable[str] = PENDING_STAGES,
) -> CrmQuoteStatus:
    """``quote_stage`` as the canonical status, compared without case or surrounding blanks."""
    key = stage.strip().casefold()

    def among(stages: Iterable[str]) -> bool:
        return key in {s.strip().casefold() for s in stages}

    if among(ready):
        return "ready"
    if among(rejected):
        return "rejected"
    if among(pending):
        return "pending_approval"
    return "draft"


def valid_until(value: Any, quote_id: str) -> date | None:
    """``date_quote_expected_closed`` ("Valid Until"), a Sugar date (``YYYY-MM-DD``)."""
    text = clean(value)
    if not text:
        return None
    try:
        return date.fromisoformat(text[:10])
    except ValueError as exc:
        raise ValidationFailed(
            f"SugarCRM quote {quote_id} date_quote_expected_closed is not a date: {text[:40]!r}", vendor="sugarcrm"
        ) from exc


def by_position(records: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Groups or lines in their quote's order: by ``position``, then id (a missing position sorts last);
    see GUESSES["line order is position"]."""

    def key(record: Mapping[str, Any]) -> tuple[int, int, str]:
        try:
            return (0, int(record.get("position")), str(record["id"]))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return (1, 0, str(record["id"]))

    return sorted(records, key=key)


class SugarQuotes:
    """QuoteCrm for SugarCRM: quotes read with their grouped lines, buyer and opportunity; Closeloop's
    ``_c`` fields written on the quote."""

    QUOTE_FIELDS: ClassVar[tuple[str, ...]] = (
        "name",
        "quote_num",
        "quote_stage",
        "date_quote_expected_closed",
        "currency_id",
        "billing_account_id",
        "billing_contact_id",
        "opportunity_id",
        "date_modified",
        *(f"{name}_c" for name in QUOTE_SYNC_FIELDS),
    )
    QUOTE_LINE_FIELDS: ClassVar[tuple[str, ...]] = (
        "name",
        "product_template_id",
        "mft_part_num",
        "quantity",
        "discount_price",
        "discount_amount",
        "discount_select",
        "total_amount",
        "position",
    )
    GROUP_FIELDS: ClassVar[tuple[str, ...]] = ("name", "position")
    LINK_ORDER: ClassVar[str] = "date_entered:ASC,id:ASC"

    #: Stages read as ``ready`` / ``rejected`` (SUGARCRM_QUOTE_READY_STAGES / _REJECTED_STAGES).
    quote_ready_stages: tuple[str, ...] = READY_STAGES
    quote_rejected_stages: tuple[str, ...] = REJECTED_STAGES

    if TYPE_CHECKING:  # SugarCrm's own, used here
        name: str
        instance_url: str

        @property
        def client(self) -> SugarClient: ...

        def _currency(self, currency_id: str) -> str: ...

        def _put(self, object_type: str, record_id: str, values: Mapping[str, str]) -> FatalError | None: ...

        def ensure_properties(self, object_type: str, definitions: Collection[PropertyDefinition]) -> list[str]: ...

    def get_quote(self, quote_id: str) -> Quote | None:
        """``GET /Quotes/<id>`` with its groups' lines in order; None when Sugar has none (404 or deleted).

        The buyer is the quote's billing account and contact, else its opportunity's account. Raises
        ValidationFailed for a number, date or currency Sugar holds unreadably, IntegrationError subclasses.
        """
        record = self.client.get("Quotes", quote_id, self.QUOTE_FIELDS)
        if record is None:
            return None
        found_id = str(record["id"])
        deal_id = clean(record.get("opportunity_id"))
        account_id = clean(record.get("billing_account_id"))
        contact_id = clean(record.get("billing_contact_id"))
        if not (account_id or contact_id) and deal_id:
            deal = self.client.get("Opportunities", deal_id, ("account_id",))
            account_id = clean(deal.get("account_id")) if deal else ""
        stage = clean(record.get("quote_stage"))
        return Quote(
            ref=crm_ref("quote", found_id),
            deal=crm_ref("deal", deal_id) if deal_id else None,
            title=clean(record.get("name")),
            number=clean(record.get("quote_num")),  # see GUESSES["quote_num numbering"]
            status=quote_status(stage, self.quote_ready_stages, self.quote_rejected_stages),
            currency=self._currency(clean(record.get("currency_id"))),
            expiry=valid_until(record.get("date_quote_expected_closed"), found_id),
            company=crm_ref("company", account_id) if account_id else None,
            contact=crm_ref("contact", contact_id) if contact_id else None,
            line_items=self._quote_lines(found_id),
            url=f"{self.instance_url}/#Quotes/{url_quote(found_id, safe='')}",
            updated_at=parse_time(record.get("date_modified")),
            synced={
                name: clean(record.get(f"{name}_c"))
                for name in QUOTE_SYNC_FIELDS
                if record.get(f"{name}_c") is not None
            },
        )

    def quotes_of_deal(self, deal_id: str) -> list[Quote]:
        """``GET /Opportunities/<id>/link/quotes`` (every page), each quote read whole; oldest first."""
        ids = [str(r["id"]) for r in self.client.link("Opportunities", deal_id, "quotes", ("id",), self.LINK_ORDER)]
        return [found for quote_id in dict.fromkeys(ids) if (found := self.get_quote(quote_id)) is not None]

    def write_quote(self, quote_id: str, values: Mapping[str, str]) -> None:
        """``PUT /Quotes/<id>`` with Closeloop's ``_c`` fields ("" clears). Raises ValidationFailed when the
        saved quote lacks one of them (Sugar ignores unknown fields: the Studio field is missing), NotFound for
        a quote gone, IntegrationError subclasses otherwise."""
        error = self._put("quote", quote_id, values)
        if error is not None:
            raise error

    def ensure_quote_properties(self, definitions: Collection[PropertyDefinition]) -> list[str]:
        """Check Quotes' fields in ``GET /metadata``: [] when every ``<name>_c`` exists (none can be created
        through the REST API); raises ConfigurationError naming each missing Studio field otherwise."""
        return self.ensure_properties("quote", definitions)

    def _quote_lines(self, quote_id: str) -> tuple[LineItem, ...]:
        """The quote's lines, group by group, each group's in order (``by_position``)."""
        groups = by_position(
            self.client.link("Quotes", quote_id, "product_bundles", self.GROUP_FIELDS, self.LINK_ORDER)
        )
        lines = [
            line
            for group in groups
            for line in by_position(
                self.client.link(
                    "ProductBundles", str(group["id"]), "products", self.QUOTE_LINE_FIELDS, self.LINK_ORDER
                )
            )
        ]
        # A line without its own part number takes its template's:
        # see GUESSES["quoted line copies its product template"].
        wanted = {clean(line.get("product_template_id")) for line in lines if not clean(line.get("mft_part_num"))}
        wanted.discard("")
        templates = self.client.by_ids("ProductTemplates", wanted, ("name", "mft_part_num")) if wanted else {}
        return tuple(line_item(line, templates, kind="quoted line item", total_field="total_amount") for line in lines)
