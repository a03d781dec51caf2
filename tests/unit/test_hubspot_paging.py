"""HubSpot's paged reads on the shared paginate (closeloop.paging): the same requests in the same order, and
a cursor HubSpot hands back twice refused (PagingLoop) instead of followed forever.

A small HubSpot double (httpx.MockTransport, no sockets) answers the v4 association reads and CRM search.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ClassVar

import httpx
import pytest

from closeloop.paging import PagingLoop
from closeloop.vendors.hubspot.adapter import HubSpotCrm

Answer = Callable[[httpx.Request], dict[str, Any]]


class Double:
    """Answers each request with ``answer(request)`` and records it; refuses to answer more than ``limit``
    requests (the old loops would otherwise spin forever: the test fails instead)."""

    def __init__(self, answer: Answer, limit: int = 20) -> None:
        self.requests: list[httpx.Request] = []
        self._answer = answer
        self._limit = limit

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if len(self.requests) > self._limit:
            raise AssertionError(f"more than {self._limit} requests: the adapter is looping")
        return httpx.Response(200, json=self._answer(request))

    def bodies(self) -> list[Any]:
        return [json.loads(r.content) for r in self.requests]


def adapter(double: Double, cls: type[HubSpotCrm] = HubSpotCrm) -> HubSpotCrm:
    return cls(
        client_secret="secret",
        access_token="token",
        base_url="https://api.hubspot.test",
        transport=httpx.MockTransport(double),
        sleep=lambda _: None,
        portal_id=1,
    )


def test_a_line_item_cursor_given_twice_is_refused_after_two_reads() -> None:
    # Given HubSpot answering every page of a deal's line items with the same next cursor
    double = Double(lambda _: {"results": [{"toObjectId": 7}], "paging": {"next": {"after": "7"}}})

    # When the line items are read (through get_deal's association read)
    with pytest.raises(PagingLoop, match="line items of deal 5"):
        adapter(double)._line_items("5")

    # Then the second read, which handed back the cursor already followed, was the last
    assert [r.url.params.get("after") for r in double.requests] == [None, "7"]


def test_association_batches_keep_their_inputs_and_follow_each_objects_cursor() -> None:
    # Given 1,001 companies: none of the first 1,000 has contacts; the last has two pages of them
    def answer(request: httpx.Request) -> dict[str, Any]:
        inputs = json.loads(request.content)["inputs"]
        results = []
        for item in inputs:
            if item["id"] == "1000":
                page = item.get("after")
                to = [{"toObjectId": 9 if page else 8, "associationTypes": [{"typeId": 2 if page else 1}]}]
                paging = {} if page else {"paging": {"next": {"after": "p2"}}}
                results.append({"from": {"id": "1000"}, "to": to, **paging})
        return {"results": results}

    double = Double(answer)

    # When their contacts are read
    found = adapter(double)._associations("company", "contact", [str(i) for i in range(1001)])

    # Then an empty first batch did not end the read: the second batch and the cursor page followed
    assert [len(b["inputs"]) for b in double.bodies()] == [1000, 1, 1]
    assert double.bodies()[2]["inputs"] == [{"id": "1000", "after": "p2"}]
    # And the last company's contacts came from both pages, the primary one (typeId 1) first
    assert found["1000"] == ["8", "9"]
    assert not any(found.get(str(i)) for i in range(1000))


def test_an_association_cursor_given_twice_is_refused() -> None:
    # Given HubSpot handing back the same cursor for company 1 every time
    double = Double(
        lambda _: {"results": [{"from": {"id": "1"}, "to": [{"toObjectId": 2}], "paging": {"next": {"after": "c"}}}]}
    )

    # When its contacts are read, Then the read stops with PagingLoop after the repeated cursor
    with pytest.raises(PagingLoop, match="company to contact associations"):
        adapter(double)._associations("company", "contact", ["1"])
    assert [b["inputs"] for b in double.bodies()] == [[{"id": "1"}], [{"id": "1", "after": "c"}]]


class SmallCap(HubSpotCrm):
    SEARCH_RESULT_CAP: ClassVar[int] = 4
    SEARCH_PAGE_SIZE: ClassVar[int] = 2
    SEARCH_MIN_INTERVAL: ClassVar[float] = 0.0


def test_the_change_scan_restarts_at_the_last_time_seen_past_the_result_cap() -> None:
    # Given five companies changed at t=1..5 s (ms 1000..5000), and a search capped at 4 results, 2 a page
    times = {str(n): n * 1000 for n in range(1, 6)}

    def answer(request: httpx.Request) -> dict[str, Any]:
        body = json.loads(request.content)
        if not request.url.path.endswith("/companies/search"):
            return {"results": []}
        start = int(body["filterGroups"][0]["filters"][0]["value"])
        rows = [i for i, ms in times.items() if ms >= start]
        offset = int(body.get("after", 0))
        page = rows[offset : offset + 2]
        more = offset + 2 < len(rows)
        iso = {i: datetime.fromtimestamp(times[i] / 1000, UTC).isoformat() for i in page}
        results = [{"id": i, "properties": {"hs_lastmodifieddate": iso[i]}} for i in page]
        return {"results": results, **({"paging": {"next": {"after": str(offset + 2)}}} if more else {})}

    double = Double(answer)

    # When changes since t=0 are read
    events = list(adapter(double, SmallCap).iter_changes_since(datetime.fromtimestamp(0, UTC)))

    # Then every company came once, oldest first
    assert [e.ref.object_id for e in events if e.ref.object_type == "company"] == ["1", "2", "3", "4", "5"]
    # And the company searches were: pages 1-2 from t=0, then from t=4 s (the last seen), pages 1 and 2
    searches = [
        (b["filterGroups"][0]["filters"][0]["value"], b.get("after"))
        for r, b in zip(double.requests, double.bodies(), strict=True)
        if r.url.path.endswith("/companies/search")
    ]
    assert searches == [("0", None), ("0", "2"), ("4000", None)]
