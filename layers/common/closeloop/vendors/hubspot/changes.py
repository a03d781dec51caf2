"""HubSpot's catch-up poll (``iter_changes_since``): companies, contacts, deals, products and quotes modified since a
time, read by CRM search sorted on the modification time. A search query pages (``after``) to at most 10,000
results; past that the next query starts at the last modification time seen (a keyset), so any number of changes
is reachable. The paging position (``Keyset``) says both."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, ClassVar

from closeloop.errors import FatalError
from closeloop.models import CrmRef, SyncEvent
from closeloop.paging import Page, paginate
from closeloop.vendors.hubspot.client import HubSpotClient, next_after
from closeloop.vendors.hubspot.mapping import epoch_ms, parse_time


@dataclass(frozen=True)
class Keyset:
    """The change scan's paging position: keyset on the modification time (``start_ms``), and within one query
    (the ``query``-th of the scan) HubSpot's ``after`` cursor. A query stops at the search's result cap; the
    next one starts at the last modification time seen."""

    query: int
    start_ms: int
    after: str | None = None


@dataclass
class QueryTally:
    """One search query's results so far: how many, how many not seen before, the latest time among them."""

    last_ms: int
    count: int = 0
    fresh: int = 0


class HubSpotChanges(HubSpotClient):
    """The change scan of the HubSpot port (mixed into HubSpotCrm)."""

    #: The "last modified" property of each object type, as HubSpot's search filters and sorts on it.
    MODIFIED_PROPERTY: ClassVar[dict[str, str]] = {
        "company": "hs_lastmodifieddate",
        "contact": "lastmodifieddate",
        "deal": "hs_lastmodifieddate",
        "product": "hs_lastmodifieddate",
        # HubSpot sends no quote webhooks (the Webhooks v3 eventType enum has no quote.*): this scan is how
        # an approved or edited quote is found.
        "quote": "hs_lastmodifieddate",
    }
    #: Types whose scope an app may lack (``crm.objects.products.read``, which only the catalogue sync needs):
    #: HubSpot's 403 there ends that type's scan, never the poll of customers and deals.
    #: Likewise quotes (``crm.objects.quotes.read``, which only the quote sync needs).
    OPTIONAL_SCANS: ClassVar[frozenset[str]] = frozenset({"product", "quote"})

    def iter_changes_since(self, since: datetime) -> Iterator[SyncEvent]:
        """Companies, contacts, deals, products and quotes modified at or after ``since``, oldest first, per type.

        Keyset paging on the modification time: past the search's 10,000-result cap the next query starts
        at the last time seen, so any number of changes is reachable. Products and quotes are skipped when
        HubSpot refuses the app their scope (403); archived products are not searched (a deletion changes no
        item).
        """
        for object_type in self.MODIFIED_PROPERTY:
            events = paginate(
                self._changes_fetch(object_type, since),
                Keyset(query=0, start_ms=epoch_ms(since)),
                vendor=self.name,
                what=f"{object_type} changes",
            )
            try:
                yield from (event for event in events if event is not None)
            except FatalError as exc:
                if object_type not in self.OPTIONAL_SCANS or exc.status != 403:
                    raise

    def _changes_fetch(self, object_type: str, since: datetime) -> Callable[[Keyset], Page[SyncEvent | None, Keyset]]:
        """The page reader of one object type's change scan: each page's results as change events, None
        for a result an earlier query of the scan already gave (same id, same modification time)."""
        prop = self.MODIFIED_PROPERTY[object_type]
        seen: set[tuple[str, str]] = set()
        tally = QueryTally(last_ms=0)

        def fetch(position: Keyset) -> Page[SyncEvent | None, Keyset]:
            nonlocal tally
            if position.after is None:  # a new query: its own count of results and of fresh ones
                tally = QueryTally(last_ms=position.start_ms)
            body: dict[str, Any] = {
                "filterGroups": [
                    {"filters": [{"propertyName": prop, "operator": "GTE", "value": str(position.start_ms)}]}
                ],
                "properties": [prop],
                "sorts": [{"propertyName": prop, "direction": "ASCENDING"}],
                "limit": self.SEARCH_PAGE_SIZE,
            }
            if position.after is not None:
                body["after"] = position.after
            page = self._search(object_type, body)
            events: list[SyncEvent | None] = []
            for result in page.get("results") or []:
                tally.count += 1
                modified = parse_time((result.get("properties") or {}).get(prop)) or parse_time(result.get("updatedAt"))
                modified_ms = epoch_ms(modified) if modified else position.start_ms
                key = (str(result["id"]), str(modified_ms))
                tally.last_ms = max(tally.last_ms, modified_ms)
                if key in seen:
                    events.append(None)
                    continue
                seen.add(key)
                tally.fresh += 1
                events.append(self._change_event(object_type, key[0], modified or since))
            after = next_after(page)
            if after and tally.count < self.SEARCH_RESULT_CAP:
                return Page(events, replace(position, after=after))
            if tally.count >= self.SEARCH_RESULT_CAP and tally.fresh:  # past the cap: from the last time seen
                return Page(events, Keyset(query=position.query + 1, start_ms=tally.last_ms))
            return Page(events, None)

        return fetch

    def _change_event(self, object_type: str, object_id: str, modified: datetime) -> SyncEvent:
        ref = CrmRef(crm=self.name, object_type=object_type, object_id=object_id)
        return SyncEvent(
            ref=ref,
            event_id=f"poll:{ref}:{epoch_ms(modified)}",
            kind="changed",
            occurred_at=modified,
            source_type=f"{object_type}.poll",
            dedupe_key=f"poll:{ref}:{epoch_ms(modified)}",
        )
