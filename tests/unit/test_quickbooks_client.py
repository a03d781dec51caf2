"""The QuickBooks adapter's query paging and error reading, against a recorded transport (no sandbox)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from closeloop.oauth import RefreshingTokens
from closeloop.paging import PagingLoop
from closeloop.vendors.quickbooks.adapter import QuickBooksAccounting

REALM = "9341452391187452"


class StaticTokens:
    def access_token(self, stale: str | None = None) -> str:
        return "token"


def books(
    answer: Callable[[httpx.Request], httpx.Response], cls: type[QuickBooksAccounting] = QuickBooksAccounting
) -> QuickBooksAccounting:
    return cls(
        base_url="https://qbo.test",
        tokens=cast(RefreshingTokens, StaticTokens()),
        realm_id=lambda: REALM,
        transport=httpx.MockTransport(answer),
        sleep=lambda _: None,
    )


def statement(request: httpx.Request) -> str:
    return parse_qs(urlsplit(str(request.url)).query)["query"][0]


def customers(*ids: int) -> dict[str, Any]:
    return {"QueryResponse": {"Customer": [{"Id": str(i), "DisplayName": f"C{i}"} for i in ids]}}


class TwoPerPage(QuickBooksAccounting):
    MAX_RESULTS = 2


def test_a_query_is_paged_by_startposition_until_a_short_page() -> None:
    sent: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(statement(request))
        pages = {1: customers(1, 2), 3: customers(3, 4), 5: customers(5)}
        start = int(sent[-1].split("STARTPOSITION ")[1].split()[0])
        return httpx.Response(200, json=pages[start])

    # When a name lookup matches five customers, two to a page
    found = books(answer, TwoPerPage).find_customers(name="Acme Ltd")
    # Then three pages were read, in order, each STARTPOSITION after the rows read, and the short one ended it
    assert [c.id for c in found] == ["1", "2", "3", "4", "5"]
    assert [s.split("ORDERBY Id ")[1] for s in sent] == [
        "STARTPOSITION 1 MAXRESULTS 2",
        "STARTPOSITION 3 MAXRESULTS 2",
        "STARTPOSITION 5 MAXRESULTS 2",
    ]


def test_the_same_rows_again_stop_the_paging_with_a_fatal_error() -> None:
    sent: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(statement(request))
        return httpx.Response(200, json=customers(1, 2))  # STARTPOSITION ignored

    # When QBO answers every page with the first page's rows
    with pytest.raises(PagingLoop, match="same Customer rows at position 3"):
        books(answer, TwoPerPage).find_customers(name="Acme Ltd")
    # Then the second answer stopped it: no third request
    assert len(sent) == 2


def fault(status: int, *errors: tuple[str, str], lower: bool = False) -> httpx.Response:
    key, error = ("fault", "error") if lower else ("Fault", "Error")
    body = {
        key: {error: [{"Message": m, "Detail": f"{m} detail", "code": c} for c, m in errors], "type": "ValidationFault"}
    }
    return httpx.Response(status, content=json.dumps(body).encode(), headers={"intuit_tid": "tid-1"})
