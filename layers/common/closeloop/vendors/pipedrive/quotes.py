"""The quote port (``QuoteCrm``) of the Pipedrive adapter (mixed into PipedriveCrm): Pipedrive has no quotes
(its API v2 has deals, products, organizations and persons, no quote object), so the deal stands in.

- A deal is its own quote: ``get_quote(deal_id)`` reads it (``GET /api/v2/deals/{id}``) with its deal products
  as lines (the same lines ``get_deal`` reads, billing terms included), its organization and person as the
  parties, its currency and title. Its quote ref names the deal's id (``pipedrive/quote/<deal id>``) and its
  ``deal`` is the deal, so quote events ride on the deals queue and QuoteSync keeps a mapping apart from the
  deal's invoice.
- A deal is ``ready`` (quoted) while it is open in one of the stages the deployment names
  (``PIPEDRIVE_QUOTE_STAGES``: stage ids, e.g. the "Proposal made" stage); with none named nothing is quoted.
  A won or lost deal is not ready: its invoice (or nothing) follows, and the accounting quote made earlier stays.
- No expiry: a deal carries none (``expected_close_date`` is when the salesperson hopes to close, not how
  long an offer stands), so the accounting system's default applies.
- Closeloop's write-back fields (``closeloop_quote_*``) are deal custom fields, made through ``dealFields``
  like the other ``closeloop_*`` deal fields and written by hash key with one PATCH.
- Events: a deal webhook (or catch-up entry) of a deal open in a quote stage also gives a ``quote`` event
  (``webhooks.delivery_events``, ``PipedriveCrm._recent_events``; see GUESSES["recents deal stage"]). An
  edit of the deal's products reaches it as a deal change (see GUESSES["deal product changes reach the deal"]).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any

from closeloop.dates import parse_timestamp
from closeloop.models import QUOTE_SYNC_FIELDS, CrmQuoteStatus, CrmRef, LineItem, Quote
from closeloop.ports import PropertyDefinition
from closeloop.vendors.pipedrive.mapping import clean

if TYPE_CHECKING:
    from closeloop.vendors.pipedrive.client import PipedriveApi


def quoted(record: Mapping[str, Any] | None, stages: Collection[str]) -> bool:
    """Whether a deal record (v2 ``data`` or a v1 recents row) is open in one of the quote ``stages``."""
    if not record or not stages:
        return False
    return clean(record.get("status")) == "open" and clean(record.get("stage_id")) in stages


class PipedriveQuotes:
    """QuoteCrm for Pipedrive: the deal stands in for its quote (module docstring)."""

    #: The stage ids in which an open deal is quoted (``PIPEDRIVE_QUOTE_STAGES``); empty: none is.
    _quote_stages: frozenset[str] = frozenset()
    #: Where Closeloop's quote fields are written (``closeloop setup`` says so): always on the deal.
    quote_fields_holder = "deal"

    if TYPE_CHECKING:  # PipedriveCrm's own, used here

        @property
        def api(self) -> PipedriveApi: ...

        def _line_items(self, deal_id: str) -> tuple[LineItem, ...]: ...

        def _synced(self, custom: Mapping[str, Any], names: Collection[str] = ...) -> dict[str, str]: ...

        def _deal_url(self, deal_id: str) -> str: ...

        def _write(self, object_type: str, updates: Mapping[str, Mapping[str, str]]) -> None: ...

        def _ref(self, object_type: str, object_id: str) -> CrmRef: ...

        def ensure_properties(self, object_type: str, definitions: Collection[PropertyDefinition]) -> list[str]: ...

    def quote_status(self, deal: Mapping[str, Any]) -> CrmQuoteStatus:
        """``ready`` while the deal is open in a quote stage, else ``draft`` (not quoted)."""
        return "ready" if quoted(deal, self._quote_stages) else "draft"

    def get_quote(self, quote_id: str) -> Quote | None:
        """The deal ``quote_id`` as its quote: lines (its deal products, read as ``get_deal`` reads them), parties,
        currency, title, status (``quote_status``) and Closeloop's quote fields; None when the deal is gone.
        Raises IntegrationError subclasses, ValidationFailed for a number or billing value Pipedrive sent that
        cannot be read."""
        deal = self.api.get_one("deals", quote_id)
        if deal is None or deal.get("is_deleted") is True:
            return None
        deal_id = str(deal["id"])
        org_id, person_id = deal.get("org_id"), deal.get("person_id")
        return Quote(
            ref=self._ref("quote", deal_id),
            deal=self._ref("deal", deal_id),
            title=clean(deal.get("title")),
            status=self.quote_status(deal),
            currency=clean(deal.get("currency")).upper(),
            company=self._ref("company", str(org_id)) if org_id else None,
            contact=self._ref("contact", str(person_id)) if person_id else None,
            line_items=self._line_items(deal_id),
            url=self._deal_url(deal_id),
            updated_at=parse_timestamp(deal.get("update_time")),
            synced=self._synced(deal.get("custom_fields") or {}, QUOTE_SYNC_FIELDS),
        )

    def quotes_of_deal(self, deal_id: str) -> list[Quote]:
        """The deal as its one quote (a deal that is gone has none). Without quote stages no deal is a quote,
        and nothing is read: every won deal asks (``QuoteFlow``), and a deployment that quotes nothing should
        not pay three reads a deal for it."""
        if not self._quote_stages:
            return []
        found = self.get_quote(deal_id)
        return [found] if found is not None else []

    def write_quote(self, quote_id: str, values: Mapping[str, str]) -> None:
        """Write Closeloop's quote fields on the deal standing in (one ``PATCH /api/v2/deals/{id}``). Raises
        ValidationFailed before anything is sent when a field does not exist yet (``ensure_quote_properties``
        makes them) or for a value Pipedrive refuses, NotFound for a deal that is gone."""
        self._write("deal", {quote_id: values})

    def ensure_quote_properties(self, definitions: Collection[PropertyDefinition]) -> list[str]:
        """Create the missing quote fields as deal custom fields (``POST /api/v2/dealFields``); the names created."""
        return self.ensure_properties("deal", definitions)
