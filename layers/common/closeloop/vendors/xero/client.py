"""Xero's HTTP side: the API prefix, the token endpoint, how a 429 and an error body are read, and how a
``page=N`` list is paged.

Vendor facts encoded here (Xero's OpenAPI spec v16 and developer docs):
- every call carries ``Authorization: Bearer`` and ``xero-tenant-id``; access tokens live 30 minutes;
  refresh tokens rotate on each refresh and are single-use (see closeloop.oauth for the lease around it);
- a refused write is a 400 ValidationException whose ``Elements[].ValidationErrors[].Message`` say which rule
  failed (a duplicate name or ContactNumber among them); a ``summarizeErrors=false`` batch answers 200 with
  each element's errors on the element;
- 429 says which limit was hit in ``X-Rate-Limit-Problem``: a minute or concurrency limit is worth
  waiting ``Retry-After`` for, the daily limit is not (the queue retries much later);
- lists page only when ``page`` is given; money is a JSON number, so answers are read with
  ``parse_float=Decimal``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any

import httpx

from closeloop.errors import Conflict, ValidationFailed
from closeloop.http import Fault, RateLimitVerdict, VendorHttp, retry_after_header
from closeloop.oauth import TokenEndpoint, TokenGrant
from closeloop.paging import Page, paginate
from closeloop.wire import read_decimal_object

API_PREFIX = "/api.xro/2.0"
#: Xero's duplicate-name/number/code messages (GUESSES["duplicate_contact_number_message"] for the number).
_DUPLICATE = re.compile(r"already (assigned to another contact|exists)|must be unique", re.IGNORECASE)


def xero_rate_limit(response: httpx.Response) -> RateLimitVerdict:
    """Xero's 429: retry minute/concurrent limits after Retry-After; the daily limit is not worth waiting for.

    The header's values: GUESSES["rate_limit_problem_values"].
    """
    verdict = retry_after_header(response)
    problem = response.headers.get("x-rate-limit-problem", "").lower()
    problem = {"daily": "day"}.get(problem, problem)  # both spellings are reported
    return RateLimitVerdict(retry=problem != "day", retry_after=verdict.retry_after, problem=problem)


def xero_fault(response: httpx.Response) -> Fault | None:
    """What a Xero error body says: the ``ValidationErrors`` messages of a ValidationException's
    ``Elements`` (else its ``Message``), or a problem-details ``Detail`` (an Idempotency-Key reused for another
    request: GUESSES["idempotency_replay"]); a duplicate name or number is a Conflict. None for a body with
    neither (Xero's 404 is a plain-text page)."""
    try:
        payload = json.loads(response.text)
    except ValueError:  # not JSON: the messages Xero's shape would carry, if any
        messages = re.findall(r'"Message"\s*:\s*"([^"]*)"', response.text)
        return _validation_fault(messages) if messages else None
    if not isinstance(payload, dict):
        return None
    messages = [message for element in payload.get("Elements") or [] for message in _element_messages(element)]
    messages = messages or [str(payload.get(key)) for key in ("Message", "Detail") if payload.get(key)][:1]
    code = str(payload.get("Type") or payload.get("Title") or "")
    return _validation_fault(messages, code) if messages or code else None


def element_fault(element: Mapping[str, Any]) -> Fault | None:
    """The refusal of one element of a ``summarizeErrors=false`` batch answered 200 (None: it was saved): its
    ValidationErrors, a Conflict when they name a duplicate, else a ValidationFailed."""
    if not element.get("HasValidationErrors") and element.get("StatusAttributeString", "OK") != "ERROR":
        return None
    fault = _validation_fault(_element_messages(element))
    return fault if fault.error is not None else Fault(fault.message, fault.code, ValidationFailed)


def _element_messages(element: Mapping[str, Any]) -> list[str]:
    return [str(error.get("Message", "")) for error in element.get("ValidationErrors") or []]


def _validation_fault(messages: Sequence[str], code: str = "") -> Fault:
    duplicate = any(_DUPLICATE.search(message) for message in messages)
    return Fault("; ".join(messages) or "validation error", code, Conflict if duplicate else None)


#: Re-sending a refresh token whose answer was lost is safe for this long. Xero's OAuth FAQ
#: (developer.xero.com/faq/oauth2, quoted in /work/shared/vendors/accounting.md §1 and reliability.md §4): refresh
#: tokens rotate and are single-use, but "if … you don't receive the response you can retry refreshing your existing
#: refresh token for a grace period of 30 minutes". Our sandbox answers such a replay with the same new token set.
REFRESH_RESEND_WITHIN_SECONDS = 30 * 60.0


#: Xero's token endpoint (identity.xero.com/connect/token): HTTP Basic client authentication, and a new refresh
#: token in every answer (single-use, rotating).
TOKEN_ENDPOINT = TokenEndpoint(
    vendor="xero",
    label="Xero",
    client="xero-identity",
    path="/connect/token",
    reconnect="reconnect with `closeloop connect xero`",
    default_expires_in=1800.0,
    rotates=True,
)


def refresh_with_identity(
    identity_url: str,
    client_id: Callable[[], str],
    client_secret: Callable[[], str],
    transport: httpx.BaseTransport | None = None,
) -> Callable[[str], TokenGrant]:
    """A ``refresh`` callable for RefreshingTokens that calls Xero's token endpoint.

    Never re-sends a POST that may have reached Xero (Unanswered: RefreshingTokens decides, within the grace
    period above). Raises AuthRevoked on ``invalid_grant``, FatalError on any other refusal.
    """
    return TOKEN_ENDPOINT.refresher(identity_url, client_id, client_secret, transport=transport)


@dataclass(frozen=True)
class PageAfter:
    """Where a ``page=N`` list goes on: page ``number``, after the page whose row ids were ``after``.

    Two positions are the same when they follow the same rows (``number`` is not compared): a server that
    ignores ``page`` hands back the rows just read, so the position after them repeats and ``paginate``
    refuses it instead of reading the same page for ever.
    """

    number: int = dataclass_field(compare=False)
    after: tuple[str, ...]

    def __repr__(self) -> str:
        return f"page {self.number} (after the same {len(self.after)} rows again)"


def page_rows(
    http: VendorHttp,
    path: str,
    collection: str,
    id_field: str,
    params: Mapping[str, str],
    headers: Mapping[str, str] | None = None,
    *,
    page_size: int,
) -> Iterator[dict[str, Any]]:
    """Every row of a ``page=N`` list (JSON numbers as Decimal), ``page_size`` per call, until a short page.

    A page repeating the previous one (a server ignoring ``page``) would loop for ever: ``PageAfter``
    makes it a repeated position, which ``paginate`` refuses (PagingLoop).
    """

    def fetch(at: PageAfter) -> Page[dict[str, Any], PageAfter]:
        query = {**params, "page": str(at.number), "pageSize": str(page_size)}
        rows: list[dict[str, Any]] = (
            read_json(http.request("GET", path, params=query, headers=headers)).get(collection) or []
        )
        following = PageAfter(at.number + 1, tuple(str(row.get(id_field, "")) for row in rows))
        return Page(rows, following if len(rows) >= page_size else None)

    return paginate(fetch, PageAfter(1, ()), vendor=http.vendor, what=f"GET {path}")


def read_json(response: httpx.Response) -> dict[str, Any]:
    """A Xero answer as a JSON object with its numbers as Decimal; FatalError when it is not one."""
    return read_decimal_object(response.text, who="Xero", vendor="xero", status=response.status_code)
