"""Pipedrive's HTTP API as the adapter calls it: the token header, the 429 and error-body readings, JSON with
exact Decimals, and the two paging styles (v2 lists by ``cursor``, ``/v1/recents`` by ``start``).

- Auth: the company API token in the ``x-api-token`` header. It does not expire or refresh: a 401 means the
  token was revoked or replaced, so it is a setup error (``AuthRevoked``), not a retry.
- Rate limits: a daily token budget per company (each endpoint costs tokens) plus a rolling 2-second burst
  window per token. A 429 carries ``x-ratelimit-*`` headers and ``Retry-After``; an exhausted daily budget
  (``x-daily-ratelimit-token-remaining: 0``) is not worth waiting for.
- Paging: v2 lists take ``cursor`` and answer ``additional_data.next_cursor`` (at most 500 per page);
  ``/v1/recents`` takes ``start``/``limit`` and answers ``additional_data.pagination``.

httpx is imported lazily (``VendorHttp`` is built on the first call): the webhook route never calls out.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterator, Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any

from closeloop.errors import AuthRevoked, NotFound
from closeloop.paging import Page, next_cursor, paginate
from closeloop.vendors.pipedrive.mapping import clean
from closeloop.wire import dumps_exact, read_decimal_object

if TYPE_CHECKING:
    import httpx

    from closeloop.http import Fault, RateLimitVerdict, VendorHttp

VENDOR = "pipedrive"

Secret = str | Callable[[], str]


def secret_value(secret: Secret) -> str:
    """A credential given as a value or as a function reading it (read on each use: rotation is seen)."""
    return secret() if callable(secret) else secret


def pipedrive_rate_limit(response: httpx.Response) -> RateLimitVerdict:
    """Pipedrive's 429: wait out a burst window (Retry-After, else x-ratelimit-reset); a spent daily budget fails."""
    from closeloop.http import RateLimitVerdict, retry_after_header  # noqa: PLC0415

    # The daily budget is spent when it says so, or when the burst window still had room: either way only
    # tomorrow helps, and waiting inside a Lambda would not.
    burst_room = response.headers.get("x-ratelimit-remaining", "").strip()
    daily_left = response.headers.get("x-daily-ratelimit-token-remaining", "").strip()
    if daily_left == "0" or (burst_room.isdigit() and int(burst_room) > 0):
        return RateLimitVerdict(retry=False, retry_after=None, problem="daily")
    verdict = retry_after_header(response)
    seconds = verdict.retry_after
    if seconds is None:
        try:
            seconds = float(response.headers.get("x-ratelimit-reset", ""))
        except ValueError:
            seconds = None
    return RateLimitVerdict(retry=True, retry_after=seconds, problem="burst")


def pipedrive_fault(response: httpx.Response) -> Fault | None:
    """Pipedrive's error body, ``{"success": false, "error": …, "errorCode": …}`` (GUESSES["error body"]).

    A 401 is a revoked or replaced API token (it never expires or refreshes): a setup error, not a retry.
    """
    from closeloop.http import Fault  # noqa: PLC0415

    try:
        body = json.loads(response.content or b"{}")
    except ValueError:
        body = None
    body = body if isinstance(body, dict) else {}
    message = clean(body.get("error"))
    code = clean(body.get("errorCode") if body.get("errorCode") is not None else body.get("code"))
    if response.status_code == 401:
        said = f"; Pipedrive says: {message[:80]}" if message else ""
        return Fault(
            f"Pipedrive refused the API token (revoked or replaced): set a valid PIPEDRIVE_API_TOKEN{said}",
            code,
            AuthRevoked,
        )
    return Fault(message, code) if message or code else None


class PipedriveApi:
    """Calls to one Pipedrive company: single records, v2 lists (``page_size`` rows a page, ``ids_per_call``
    ids per ``ids=`` filter) and ``/v1/recents``. Raises the ``closeloop.errors`` tree (see ``VendorHttp``)."""

    def __init__(
        self,
        *,
        api_token: Secret,
        base_url: str,
        page_size: int,
        ids_per_call: int,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self._api_token = api_token
        self._base_url = base_url
        self.page_size = page_size
        self.ids_per_call = ids_per_call
        self._transport = transport
        self._sleep = sleep

    @cached_property
    def http(self) -> VendorHttp:
        """Built on first use: importing the adapter must not import httpx (the webhook path)."""
        from closeloop.http import VendorHttp  # noqa: PLC0415

        return VendorHttp(
            VENDOR,
            self._base_url,
            headers={"x-api-token": secret_value(self._api_token)},
            rate_limit=pipedrive_rate_limit,
            read_fault=pipedrive_fault,
            request_id_header="x-correlation-id",
            transport=self._transport,
            sleep=self._sleep,
        )

    def call(
        self, method: str, path: str, *, params: Mapping[str, Any] | None = None, body: Any = None
    ) -> dict[str, Any]:
        """One API call; the JSON answer with exact Decimals. A refused token is a setup error (``pipedrive_fault``)."""
        content = dumps_exact(body) if body is not None else None
        headers = {"Content-Type": "application/json"} if content is not None else None
        response = self.http.request(method, path, params=params, content=content, headers=headers)
        return read_decimal_object(response.text or "{}", who=f"{method} {path}: Pipedrive", vendor=VENDOR)

    def get_one(self, collection: str, object_id: str) -> dict[str, Any] | None:
        """A v2 record, or None when it does not exist or was deleted."""
        if not object_id.isdigit():
            return None  # Pipedrive ids are integers: anything else cannot exist
        try:
            data = self.call("GET", f"/api/v2/{collection}/{object_id}").get("data")
        except NotFound:
            return None
        if not isinstance(data, dict) or data.get("is_deleted"):
            return None
        return data

    def pages(self, path: str, params: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        """Every record of a v2 list, following ``additional_data.next_cursor`` (a repeated cursor: PagingLoop)."""
        query: dict[str, Any] = {**params, "limit": self.page_size}

        def fetch(cursor: str) -> Page[Any, str]:
            page = self.call("GET", path, params={**query, "cursor": cursor} if cursor else query)
            following = (page.get("additional_data") or {}).get("next_cursor")
            return Page(page.get("data") or [], next_cursor(following or None))

        for record in paginate(fetch, "", vendor=VENDOR, what=f"GET {path}"):
            if isinstance(record, dict):
                yield record

    def by_ids(self, collection: str, ids: Collection[str]) -> dict[str, dict[str, Any]]:
        """Live records of ``collection`` by id, ``ids_per_call`` ids per list call (missing ids are absent)."""
        wanted = sorted({i for i in ids if i.isdigit()}, key=int)
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(wanted), self.ids_per_call):
            chunk = ",".join(wanted[start : start + self.ids_per_call])
            for record in self.pages(f"/api/v2/{collection}", {"ids": chunk}):
                if not record.get("is_deleted"):
                    found[str(record["id"])] = record
        return found

    def recents(self, since_timestamp: str, items: str) -> Iterator[dict[str, Any]]:
        """The ``/v1/recents`` rows of ``items`` changed since ``since_timestamp``, page by page from ``start`` 0."""

        def fetch(start: int) -> Page[Any, int]:
            params = {"since_timestamp": since_timestamp, "items": items, "start": start, "limit": self.page_size}
            page = self.call("GET", "/v1/recents", params=params)
            pagination = (page.get("additional_data") or {}).get("pagination") or {}
            more, next_start = pagination.get("more_items_in_collection"), pagination.get("next_start")
            following = int(next_start) if more and next_start is not None else None
            # A next_start that does not advance would re-read pages: it is this page again, which paginate
            # refuses (GUESSES["recents paging"]).
            return Page(page.get("data") or [], start if following is not None and following <= start else following)

        for entry in paginate(fetch, 0, vendor=VENDOR, what="GET /v1/recents"):
            if isinstance(entry, dict):
                yield entry
