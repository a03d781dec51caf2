"""One way to read a paged vendor list, whatever the vendor pages by.

Vendors page four ways: an opaque cursor (HubSpot ``after``, Pipedrive ``next_cursor``), an offset (SugarCRM
``next_offset``, QuickBooks ``STARTPOSITION``), a page number (Xero, Zoho Books ``page``) or a keyset (the last
row's sort key, e.g. a modification time). An adapter says only how to fetch the page at one position and where
the next one starts; ``paginate`` does the rest the same way for all of them: it follows positions until there is
none, stops on an empty page, and refuses a position it has already read (a vendor that hands back an old cursor
or does not advance would otherwise page forever).

The ``next_*`` helpers compute the next position of the common styles, so an adapter's fetch stays one call and
one line: ``return Page(rows, next_page(page, more=...))``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from closeloop.errors import FatalError

Item = TypeVar("Item")
Position = TypeVar("Position", bound=Hashable)


@dataclass(frozen=True)
class Page(Generic[Item, Position]):
    """One page of a list: its ``items`` and where the next page starts (None: this is the last)."""

    items: Sequence[Item]
    next: Position | None


class PagingLoop(FatalError):
    """The vendor sent a position already read: following it would read the same pages forever."""


def paginate(
    fetch: Callable[[Position], Page[Item, Position]],
    start: Position,
    *,
    vendor: str,
    what: str,
    max_pages: int | None = None,
) -> Iterator[Item]:
    """Every item of a paged list, page by page (lazily: stop iterating and no further page is fetched).

    ``fetch(position)`` reads one page. The list ends when a page has no next position, when a page is empty,
    or after ``max_pages`` pages. A next position already read raises ``PagingLoop`` (``what`` names the list
    in its message), after the items of the pages before it were yielded.
    """
    seen: set[Position] = {start}
    position = start
    pages = 0
    while True:
        page = fetch(position)
        pages += 1
        yield from page.items
        if page.next is None or not page.items or (max_pages is not None and pages >= max_pages):
            return
        if page.next in seen:
            raise PagingLoop(f"{what}: {vendor} repeated the paging position {page.next!r}", vendor=vendor)
        seen.add(page.next)
        position = page.next


def next_offset(offset: int, count: int, *, more: bool) -> int | None:
    """Offset paging: the next page starts ``count`` rows on, if the vendor says there are more."""
    return offset + count if more and count else None


def next_page(number: int, *, more: bool) -> int | None:
    """Page-number paging: the next page's number, if the vendor says there are more."""
    return number + 1 if more else None


def next_cursor(cursor: object) -> str | None:
    """Cursor paging: the vendor's cursor for the next page, as a string; None or empty: the last page."""
    return None if cursor is None or cursor == "" else str(cursor)
