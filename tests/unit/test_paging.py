"""One paginator for every paging style: cursor, offset, page number and keyset."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from closeloop.paging import Page, PagingLoop, next_cursor, next_offset, next_page, paginate

ROWS = list(range(7))


def test_offset_paging_reads_every_row_once_and_stops_when_the_vendor_says_no_more() -> None:
    asked: list[int] = []

    def fetch(offset: int) -> Page[int, int]:
        asked.append(offset)
        rows = ROWS[offset : offset + 3]
        return Page(rows, next_offset(offset, len(rows), more=offset + 3 < len(ROWS)))

    assert list(paginate(fetch, 0, vendor="v", what="GET /rows")) == ROWS
    assert asked == [0, 3, 6]


def test_page_number_paging_honours_max_pages_and_fetches_lazily() -> None:
    asked: list[int] = []

    def fetch(number: int) -> Page[int, int]:
        asked.append(number)
        return Page(ROWS[(number - 1) * 2 : number * 2], next_page(number, more=True))

    rows = paginate(fetch, 1, vendor="v", what="GET /rows", max_pages=2)
    assert next(rows) == 0 and asked == [1]  # nothing beyond the page being read is fetched
    assert list(rows) == [1, 2, 3] and asked == [1, 2]


def test_cursor_paging_ends_on_no_cursor_and_on_an_empty_page() -> None:
    pages = {"": (["a", "b"], "c1"), "c1": (["c"], ""), "c2": ([], "c3")}

    def fetch(cursor: str) -> Page[str, str]:
        rows, following = pages[cursor]
        return Page(rows, next_cursor(following))

    assert list(paginate(fetch, "", vendor="v", what="GET /rows")) == ["a", "b", "c"]
    assert list(paginate(fetch, "c2", vendor="v", what="GET /rows")) == []  # an empty page ends the list


def test_a_repeated_position_is_refused_after_the_rows_before_it() -> None:
    # Given a vendor that hands back its first cursor again on the second page
    def fetch(cursor: str) -> Page[str, str]:
        return Page([f"row@{cursor}"], "one" if cursor == "start" else "start")

    read: list[str] = []
    with pytest.raises(PagingLoop) as caught:
        read.extend(paginate(fetch, "start", vendor="vendor", what="GET /deals"))
    # Then the rows before the loop were read, and the error says which list looped where
    assert read == ["row@start", "row@one"]
    assert caught.value.message == "GET /deals: vendor repeated the paging position 'start'"


def test_keyset_paging_moves_on_by_the_last_key_and_an_offset_within_one_key() -> None:
    # Rows sorted by modification second; a page of 2; the keyset is (second, rows already read in that second)
    stamps = [1, 1, 1, 2, 3]

    def fetch(position: tuple[int, int]) -> Page[int, tuple[int, int]]:
        second, skip = position
        rows: Sequence[int] = [s for s in stamps if s >= second][skip : skip + 2]
        if len(rows) < 2:
            return Page(rows, None)
        last = rows[-1]
        return Page(rows, (last, skip + 2) if last == second else (last, sum(1 for r in rows if r == last)))

    assert list(paginate(fetch, (0, 0), vendor="v", what="keyset")) == stamps


def test_the_position_helpers() -> None:
    assert next_offset(10, 5, more=True) == 15
    assert next_offset(10, 0, more=True) is None  # an empty page cannot advance
    assert next_offset(10, 5, more=False) is None
    assert next_page(3, more=True) == 4 and next_page(3, more=False) is None
    assert next_cursor(None) is None and next_cursor("") is None and next_cursor(42) == "42"
