"""QuickBooks Online's HTTP side: Intuit OAuth2, the v3 API paths, its query language and paging, /batch, and
how a refused answer is read (``read_fault``).

Vendor facts encoded here (developer.intuit.com Accounting API reference; see /work/shared/vendors/accounting.md):
- every path is ``/v3/company/{realmId}/…`` with ``minorversion`` (versions 1–74 are retired);
  ``Authorization: Bearer`` with a 1-hour access token; the token endpoint takes Basic client auth and its
  refresh token changes about once a day; ``invalid_grant`` means a person must reconnect (100 days unused,
  5-year hard limit, revoked);
- reads of many records go through the SQL-like query language (``GET /query?query=select …``): only
  ``AND`` (no ``OR``), ``=``/``<``/``>``/``IN``/``LIKE``, string literals in single quotes with ``\\'``,
  ``STARTPOSITION``/``MAXRESULTS`` (≤1000), and name-list entities answer only active records unless
  ``Active`` is in the filter; only documented "filterable" fields may be filtered on;
- ``?requestid=`` (≤50 chars, ≤36 on /batch) makes a write idempotent: a repeat answers the original
  response, so it carries a digest of our idempotency key;
- ``POST /batch`` runs up to 30 operations or queries (40 batch calls a minute per realm);
- faults are ``{"Fault":{"Error":[{"Message","Detail","code"}],"type"}}`` (the 401 gateway answers in
  lower case: ``{"fault":{"error":[…]}}``); 6240 = a DisplayName already used by a Customer, Vendor or
  Employee, 6140 = a duplicate DocNumber, 5010 = stale SyncToken, 610 = object not found;
- 429 ``ThrottleExceeded`` (500 requests/min per realm, 10 concurrent) sends no Retry-After: Intuit says to
  wait 60 s, which is longer than a worker should sleep, so the queue retries.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote

import httpx

from closeloop.errors import ConfigurationError, Conflict, IntegrationError, NotFound, ValidationFailed
from closeloop.http import AccessTokens, Fault, Pacer, RateLimitVerdict, TokenAuth, VendorHttp, retry_after_header
from closeloop.oauth import TokenEndpoint, TokenGrant
from closeloop.paging import Page, PagingLoop, next_offset, paginate
from closeloop.wire import dumps_exact, read_decimal_object

VENDOR = "quickbooks"
#: One minor version for every call (1–74 were retired on 1 Aug 2025).
MINOR_VERSION = "75"
TOKEN_PATH = "/oauth2/v1/tokens/bearer"
REQUEST_ID_HEADER = "intuit_tid"

#: QBO error codes the adapter acts on.
DUPLICATE_NAME = "6240"
DUPLICATE_DOC_NUMBER = "6140"
STALE_OBJECT = "5010"
OBJECT_NOT_FOUND = "610"


def quickbooks_rate_limit(response: httpx.Response) -> RateLimitVerdict:
    """QBO's 429 (ThrottleExceeded): no Retry-After is documented; Intuit says wait 60 s (the minute window)."""
    verdict = retry_after_header(response)
    return RateLimitVerdict(retry=True, retry_after=verdict.retry_after or 60.0, problem="minute")


#: Re-sending a refresh token whose answer was lost: never, by itself. Intuit's sources disagree. Its help article
#: "Validity of Refresh Token" (help.developer.intuit.com/s/article/Validity-of-Refresh-Token, quoted by Intuit staff
#: in github.com/intuit/QuickBooks-V3-PHP-SDK/issues/324) says that once a new value is returned "Refresh Token A
#: expires … will throw an invalid_grant error"; the older oauth-jsclient README (quoted in
#: github.com/intuit/oauth-jsclient/issues/74 and IntuitDeveloper/oauth2-nodejs/issues/2) says "previous refresh tokens
#: expire 24 hours after you receive a new one". No grace period is documented for certain, so a lost answer is
#: reported (RefreshAnswerLost) instead of re-sent; the next scheduled attempt relies on
#: GUESSES["refresh_token_resend_window"].
REFRESH_RESEND_WITHIN_SECONDS = 0.0


#: Intuit's token endpoint: HTTP Basic client authentication; the answer's refresh token may be the one sent (it
#: changes about daily), and RefreshingTokens stores whichever comes back.
TOKEN_ENDPOINT = TokenEndpoint(
    vendor=VENDOR,
    label="Intuit",
    client="intuit-oauth",
    path=TOKEN_PATH,
    reconnect="reconnect QuickBooks",
    misconfigured=frozenset({"invalid_client"}),
)


def refresh_with_intuit(
    oauth_url: str,
    client_id: Callable[[], str],
    client_secret: Callable[[], str],
    transport: httpx.BaseTransport | None = None,
) -> Callable[[str], TokenGrant]:
    """A ``refresh`` callable for RefreshingTokens that calls Intuit's token endpoint.

    ``POST {oauth_url}/oauth2/v1/tokens/bearer``, never re-sent once it may have reached Intuit (see
    REFRESH_RESEND_WITHIN_SECONDS). Raises AuthRevoked on ``invalid_grant``, ConfigurationError on
    ``invalid_client``, FatalError otherwise.
    """
    return TOKEN_ENDPOINT.refresher(oauth_url, client_id, client_secret, transport=transport)


def qbo_literal(value: str) -> str:
    """A string literal for QBO's query language: single quotes, with ``\\`` and ``'`` backslash-escaped."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def request_id(idempotency_key: str) -> str:
    """QBO's ``requestid`` for one of our idempotency keys: a 32-hex digest (≤36 chars, valid on /batch too)."""
    return hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]


class StaleSyncToken(ValidationFailed):
    """QBO's 5010: the update's SyncToken is not the record's current one (it changed since it was read)."""


class DuplicateDocNumber(ValidationFailed):
    """QBO's 6140: another invoice already holds this DocNumber."""


#: QBO error codes -> the error they mean; when a Fault holds several, the first in this order decides.
FAULT_ERRORS: Mapping[str, type[IntegrationError]] = {
    DUPLICATE_NAME: Conflict,
    OBJECT_NOT_FOUND: NotFound,
    STALE_OBJECT: StaleSyncToken,
    DUPLICATE_DOC_NUMBER: DuplicateDocNumber,
}


def fault_of(payload: Any, *, otherwise: type[IntegrationError] | None = None) -> Fault | None:
    """The ``Fault`` (or the gateway's lower-case ``fault``) of a QBO answer or batch item as one Fault: its
    Errors' codes and messages joined, and the error their code means (FAULT_ERRORS, else ``otherwise``).
    None when the payload holds no fault."""
    if not isinstance(payload, Mapping):
        return None
    fault = payload.get("Fault") or payload.get("fault")
    if not isinstance(fault, Mapping):
        return None
    errors = fault.get("Error") or fault.get("error") or []
    entries = [e for e in errors if isinstance(e, Mapping)] if isinstance(errors, list) else []
    codes = [str(e.get("code") or "") for e in entries]
    messages: list[str] = []
    for entry in entries:
        message = str(entry.get("Message") or entry.get("message") or "")
        detail = str(entry.get("Detail") or entry.get("detail") or "")
        messages.append(f"{message}: {detail}" if message and detail else message or detail)
    error = next((kind for code, kind in FAULT_ERRORS.items() if code in codes), otherwise)
    return Fault(message="; ".join(m for m in messages if m), code=",".join(c for c in codes if c), error=error)


def read_fault(response: httpx.Response) -> Fault | None:
    """QBO's error body (VendorHttp's ``read_fault``). A 5xx keeps its status's meaning (retriable) whatever
    codes it carries; a 4xx's codes decide the error (6240 Conflict, 610 NotFound, 5010 StaleSyncToken, 6140
    DuplicateDocNumber), else its status does."""
    fault = fault_of(response.json())
    if fault is not None and response.status_code >= 500:
        return replace(fault, error=None)
    return fault


@dataclass(frozen=True)
class _QueryPosition:
    """Where a query page starts (STARTPOSITION, 1-based) and the ids of the page read before it: QBO answering
    those same rows again means it ignored STARTPOSITION."""

    start: int
    previous_ids: tuple[str, ...] = ()


class QuickBooksClient:
    """One realm's API: paths under ``/v3/company/{realmId}``, JSON bodies with exact decimals, the query
    language paged by STARTPOSITION, and /batch. Failed answers raise the error ``read_fault`` and the status
    mean."""

    def __init__(
        self,
        *,
        base_url: str,
        tokens: AccessTokens,
        realm_id: Callable[[], str],
        max_results: int,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] | None = None,
        pacer: Pacer | None = None,
    ) -> None:
        self.realm_id = realm_id
        self.max_results = max_results
        self.http = VendorHttp(
            VENDOR,
            base_url,
            auth=TokenAuth(tokens),
            rate_limit=quickbooks_rate_limit,
            request_id_header=REQUEST_ID_HEADER,
            read_fault=read_fault,
            pacer=pacer,
            transport=transport,
            sleep=sleep,
        )

    def path(self, tail: str) -> str:
        realm = self.realm_id().strip()
        if not realm:
            raise ConfigurationError("QUICKBOOKS_REALM_ID is not set", vendor=VENDOR)
        return f"/v3/company/{quote(realm, safe='')}/{tail}"

    def call(
        self,
        method: str,
        tail: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        retry_sent: bool = True,
        ok: tuple[int, ...] = (200,),
    ) -> tuple[int, dict[str, Any]]:
        """One API call: its status (one of ``ok``) and JSON body. Other answers raise the error their Fault
        or status means (``read_fault``).

        ``retry_sent=False``: never repeated once sent (see VendorHttp.request)."""
        content = dumps_exact(body) if body is not None else None
        headers = {"Content-Type": content_type} if method != "GET" else None
        response = self.http.request(
            method,
            self.path(tail),
            params={**(params or {}), "minorversion": MINOR_VERSION},
            content=content,
            headers=headers,
            ok=ok,
            retry_sent=retry_sent,
        )
        return response.status_code, _read_json(response)

    def query_page(self, statement: str) -> dict[str, Any]:
        _, payload = self.call("GET", "query", params={"query": statement})
        result = payload.get("QueryResponse")
        return result if isinstance(result, dict) else {}

    def query_pages(self, entity: str, where: str = "", order: str = "Id") -> Iterator[list[dict[str, Any]]]:
        """The pages of ``select * from {entity} [where …] ORDERBY {order}``, ``max_results`` rows per call.

        A page shorter than ``max_results`` is the last. QBO answering the rows of the page before again (a
        STARTPOSITION it ignored) raises PagingLoop (a FatalError) instead of reading them forever.
        """
        base = f"select * from {entity}" + (f" where {where}" if where else "") + f" ORDERBY {order}"

        def fetch(position: _QueryPosition) -> Page[list[dict[str, Any]], _QueryPosition]:
            page = self.query_page(f"{base} STARTPOSITION {position.start} MAXRESULTS {self.max_results}")
            rows: list[dict[str, Any]] = page.get(entity) or []
            ids = tuple(row_id(r) for r in rows)
            if ids and ids == position.previous_ids:
                raise PagingLoop(
                    f"QuickBooks returned the same {entity} rows at position {position.start}", vendor=VENDOR
                )
            more = next_offset(position.start, len(rows), more=len(rows) >= self.max_results)
            return Page([rows] if rows else [], None if more is None else _QueryPosition(more, ids))

        yield from paginate(fetch, _QueryPosition(1), vendor=VENDOR, what=f"{entity} query")

    def query_all(self, entity: str, where: str = "", order: str = "Id") -> Iterator[dict[str, Any]]:
        """Every row of ``select * from {entity} [where …] ORDERBY {order}`` (see ``_query_pages``)."""
        for rows in self.query_pages(entity, where, order):
            yield from rows

    def batch(self, items: Sequence[dict[str, Any]], idempotency_key: str | None) -> dict[str, dict[str, Any]]:
        """POST /batch (≤ BATCH_SIZE items); the BatchItemResponses by bId."""
        params = {"requestid": request_id(idempotency_key)} if idempotency_key else None
        _, payload = self.call("POST", "batch", params=params, body={"BatchItemRequest": list(items)})
        return {str(r.get("bId")): r for r in payload.get("BatchItemResponse") or [] if isinstance(r, dict)}


def row_id(row: Mapping[str, Any]) -> str:
    """A query row's Id; a RecurringTransaction row holds its template under its type (``{"Invoice": {"Id"…}}``)."""
    if "Id" in row:
        return str(row["Id"])
    inner = [v for v in row.values() if isinstance(v, Mapping)]
    return str(inner[0].get("Id", "")) if len(inner) == 1 else ""


def _read_json(response: httpx.Response) -> dict[str, Any]:
    """A QBO answer with its numbers as Decimal (an empty body, e.g. a 204, is an empty object)."""
    if not response.content:
        return {}
    return read_decimal_object(response.text, who="QuickBooks", vendor=VENDOR, status=response.status_code)
