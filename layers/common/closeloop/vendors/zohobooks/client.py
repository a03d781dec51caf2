"""Zoho Books' HTTP client: its OAuth token endpoint, the ``Zoho-oauthtoken`` auth with the organisation on
every call, the ``{"code", "message"}`` envelope read into typed errors, the 429 reading, and its paged lists.

Vendor facts encoded here (zoho.com/books/api/v3, Zoho Accounts OAuth docs, the vendor fact sheet):
- the API root is per data centre (``https://www.zohoapis.<dc>/books/v3``); every call carries
  ``Authorization: Zoho-oauthtoken <token>`` and the ``organization_id`` query parameter;
- ``POST <accounts>/oauth/v2/token`` with ``grant_type=refresh_token`` returns an access token for 1 hour
  and no new refresh token (refresh tokens do not rotate). Zoho answers a bad refresh token or client with
  HTTP 200 and ``{"error": "invalid_code" | "invalid_client"}``, and throttles refreshes (10 access tokens
  per refresh token per 10 minutes, 30 live ones) with ``{"error": "Access Denied"}``: tokens are cached
  for their hour in the store (closeloop.oauth), never refreshed per request;
- every answer is an envelope ``{"code": 0, "message": "success", "<entity>": {...}}``; a non-zero code
  is an error, also on HTTP 200: 3062 a contact name already taken (Conflict), 1001 a duplicate value
  (Conflict), 1002 does not exist (NotFound), 57 not authorised, 6041 an organisation the user does not
  belong to. ``read_fault`` is the one reading of it;
- 100 requests a minute per organisation and a daily cap by plan (1,000 on Free to 10,000); a 429 carries
  no Retry-After. A daily-cap 429 is not worth waiting for (like Xero's ``day`` problem);
- lists page with ``page``/``per_page`` (max 200) and ``page_context.has_more_page``;
- money is a JSON number: bodies are written with the exact decimal literal, answers read as Decimal.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import httpx

from closeloop.errors import ConfigurationError, Conflict, IntegrationError, NotFound, ValidationFailed
from closeloop.http import (
    Fault,
    Pacer,
    RateLimitVerdict,
    TokenAuth,
    VendorHttp,
    retry_after_header,
    typed_error,
)
from closeloop.oauth import RefreshingTokens, TokenEndpoint, TokenGrant
from closeloop.paging import Page, next_page, paginate
from closeloop.redaction import redact
from closeloop.wire import dumps_exact, read_decimal_object

API_PREFIX = "/books/v3"
VENDOR = "zohobooks"


#: Zoho's envelope codes the adapter acts on.
CODE_OK = 0
CODE_NOT_AUTHORISED = 57
CODE_DUPLICATE_VALUE = 1001
CODE_DOES_NOT_EXIST = 1002
CODE_DUPLICATE_CONTACT_NAME = 3062
CODE_UNKNOWN_ORGANISATION = 6041
#: The per-minute and per-day 429 codes (the daily one is also recognised by its message).
#: See GUESSES["rate_limit_codes"].
CODE_MINUTE_LIMIT = 44
CODE_DAY_LIMIT = 45
#: Without a Retry-After, the per-minute limit is a rolling minute: waiting less only burns calls.
MINUTE_WINDOW_SECONDS = 60.0

#: What a non-zero code means when the status alone does not say (Zoho answers some refusals with HTTP 200).
CODE_ERRORS: dict[int, type[IntegrationError]] = {
    CODE_DUPLICATE_VALUE: Conflict,
    CODE_DUPLICATE_CONTACT_NAME: Conflict,
    CODE_DOES_NOT_EXIST: NotFound,
    CODE_UNKNOWN_ORGANISATION: ConfigurationError,
}


def read_fault(response: httpx.Response) -> Fault | None:
    """Zoho's error body ``{"code": N, "message": ...}``; None for ``code`` 0 (or none) or a body of another shape.

    The code decides the error where it names one (CODE_ERRORS); any other non-zero code on a 2xx is a refusal
    (ValidationFailed, see GUESSES["invalid_value_code"]); on a failed status, the status decides. A 5xx stays
    an outage whatever its body says."""
    body = json.loads(response.text)
    if not isinstance(body, dict):
        return None
    code = body.get("code", CODE_OK)
    if code == CODE_OK or not isinstance(code, int):
        return None
    message = str(body.get("message") or "")
    error: type[IntegrationError] | None = None
    if response.status_code < 500:
        error = CODE_ERRORS.get(code, ValidationFailed if response.is_success else None)
    if code == CODE_UNKNOWN_ORGANISATION:
        message += " (check ZOHO_BOOKS_ORGANIZATION_ID)"
    return Fault(message=message, code=str(code), error=error)


def zoho_rate_limit(response: httpx.Response) -> RateLimitVerdict:
    """Zoho's 429: the daily cap is not worth waiting for; the minute limit is a rolling 60 seconds."""
    header = retry_after_header(response)
    try:
        fault = read_fault(response)
    except ValueError:  # not JSON: the status alone says it is a rate limit
        fault = None
    code, message = (fault.code, fault.message) if fault else ("", "")
    if code == str(CODE_DAY_LIMIT) or re.search(r"\bper day\b|\bdaily\b", message, re.IGNORECASE):
        return RateLimitVerdict(retry=False, retry_after=header.retry_after, problem="day")
    return RateLimitVerdict(retry=True, retry_after=header.retry_after or MINUTE_WINDOW_SECONDS, problem="minute")


@dataclasses.dataclass(frozen=True)
class PageAfter:
    """Where a Zoho list goes on: the page ``number`` to read, after a page whose rows hash to ``after``.

    Zoho's page numbers always advance, so a stuck list shows as the same rows answered again (a page number
    Zoho ignores). A position is therefore the same as another when the rows that led to it are: paginate's
    repeated-position guard then raises PagingLoop, after the repeated page's rows (already read once).
    """

    number: int = dataclasses.field(compare=False)
    after: str = ""


#: One page of a Zoho list: its rows, and where the next page starts.
ZohoPage = Page[dict[str, Any], PageAfter]


def _fingerprint(rows: Sequence[Mapping[str, Any]]) -> str:
    """A digest of a page's rows (no record content in an error message)."""
    return hashlib.sha256(json.dumps(rows, sort_keys=True, default=str).encode()).hexdigest()[:16]


def organisation_parameter(organization_id: Callable[[], str]) -> Callable[[httpx.Request], None]:
    """Put ``organization_id`` on every request (Zoho answers 400, code 6041, without it)."""

    def prepare(request: httpx.Request) -> None:
        organization = organization_id()
        if not organization:
            raise ConfigurationError("ZOHO_BOOKS_ORGANIZATION_ID is not set", vendor=VENDOR)
        request.url = request.url.copy_merge_params({"organization_id": organization})

    return prepare


#: Re-sending a refresh token whose answer was lost is always safe: Zoho's refresh tokens do not rotate and do
#: not expire (zoho.com/accounts/protocol/oauth/web-apps/access-token-expiry.html; /work/shared/vendors/accounting.md
#: §1). A re-send costs one of the 10 access tokens a refresh token may mint per 10 minutes.
REFRESH_RESEND_WITHIN_SECONDS = math.inf


#: Zoho's ``/oauth/v2/token``: the client id and secret are form fields, an error can come with status 200, and
#: too many refreshes are refused as ``Access Denied`` (at most 10 access tokens per refresh token in 10 minutes).
TOKEN_ENDPOINT = TokenEndpoint(
    vendor=VENDOR,
    label="Zoho",
    client="zoho-accounts",
    path="/oauth/v2/token",
    reconnect="reconnect Zoho Books and update the credentials",
    client_auth="body",
    revoked=frozenset({"invalid_code", "invalid_client"}),
    throttled=frozenset({"Access Denied"}),
    throttle_seconds=MINUTE_WINDOW_SECONDS,
)


def refresh_with_zoho(
    accounts_url: str,
    client_id: Callable[[], str],
    client_secret: Callable[[], str],
    transport: httpx.BaseTransport | None = None,
) -> Callable[[str], TokenGrant]:
    """A ``refresh`` callable for RefreshingTokens that calls Zoho's ``/oauth/v2/token``.

    The grant keeps the refresh token it was given (Zoho's do not rotate). Raises AuthRevoked on
    ``invalid_code``/``invalid_client`` (a person must reconnect), RateLimited when Zoho throttles
    refreshes (``Access Denied``), FatalError on any other refusal.
    """
    return TOKEN_ENDPOINT.refresher(accounts_url, client_id, client_secret, transport=transport)


class ZohoBooksClient:
    """Calls to one Zoho Books organisation: the envelope checked, the lists paged."""

    def __init__(
        self,
        *,
        base_url: str,
        tokens: RefreshingTokens,
        organization_id: Callable[[], str],
        page_size: int,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] | None = None,
        pacer: Pacer | None = None,
    ) -> None:
        """``page_size``: rows asked per page (``per_page``, at most 200); ``pacer``: the organisation's shared
        call budget (see closeloop.pacing)."""
        self.http = VendorHttp(
            VENDOR,
            base_url.rstrip("/") + API_PREFIX,
            auth=TokenAuth(tokens, prefix="Zoho-oauthtoken ", prepare=organisation_parameter(organization_id)),
            rate_limit=zoho_rate_limit,
            read_fault=read_fault,
            pacer=pacer,
            transport=transport,
            sleep=sleep,
        )
        self.page_size = page_size

    def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        retry_sent: bool = True,
    ) -> dict[str, Any]:
        """One call; the envelope read with Decimal numbers, a non-zero ``code`` raised as a typed error.

        ``retry_sent=False``: never repeated once sent (see VendorHttp.request)."""
        content = dumps_exact(body) if body is not None else None
        sent_headers = {**(headers or {}), **({"Content-Type": "application/json"} if content is not None else {})}
        response = self.http.request(
            method, path, params=params, content=content, headers=sent_headers, ok=(200, 201), retry_sent=retry_sent
        )
        payload = read_decimal_object(response.text, who=f"{method} {path}: Zoho", vendor=VENDOR)
        fault = self.http.fault(response)
        if fault is None:
            return payload
        raise typed_error(
            response.status_code,
            fault,
            f"{method} {path} failed",
            vendor=VENDOR,
            request_id=response.headers.get("x-request-id"),
            body=redact(response.text),
        )

    def fetch(self, path: str, key: str, params: Mapping[str, str]) -> Callable[[PageAfter], ZohoPage]:
        """How to read one page of a list: ``page``/``per_page``, the rows under ``key``, and a next position
        while ``page_context.has_more_page`` is true."""

        def fetch(position: PageAfter) -> ZohoPage:
            query = {**params, "page": str(position.number), "per_page": str(self.page_size)}
            payload = self.call("GET", path, params=query)
            rows: list[dict[str, Any]] = payload.get(key) or []
            more = bool((payload.get("page_context") or {}).get("has_more_page"))
            number = next_page(position.number, more=more)
            return Page(rows, None if number is None else PageAfter(number, _fingerprint(rows)))

        return fetch

    def pages(self, path: str, key: str, params: Mapping[str, str]) -> Iterator[dict[str, Any]]:
        """Rows of a paged list, page by page, until ``has_more_page`` is false (or a page is empty).

        Raises PagingLoop when Zoho answers a page with the rows of one already read (see PageAfter)."""
        return paginate(self.fetch(path, key, params), PageAfter(1), vendor=VENDOR, what=f"GET {path}")

    def pages_within(
        self, path: str, key: str, params: Mapping[str, str], max_pages: int
    ) -> list[dict[str, Any]] | None:
        """Every row of a paged list when it has at most ``max_pages`` pages; None when more are left (after
        reading ``max_pages`` pages: the caller then asks a cheaper way)."""
        fetch = self.fetch(path, key, params)
        last: list[ZohoPage] = []

        def remember(position: PageAfter) -> ZohoPage:
            last[:] = [fetch(position)]
            return last[0]

        rows = list(paginate(remember, PageAfter(1), vendor=VENDOR, what=f"GET {path}", max_pages=max_pages))
        # paginate stopped with a next page and rows on the last one read: max_pages cut the list short.
        return None if last and last[0].next is not None and last[0].items else rows
