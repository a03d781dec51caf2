"""HubSpot's HTTP side: the client (private-app token or refreshing OAuth tokens), how a 429 and an error body
are read (``hubspot_rate_limit``, ``read_hubspot_fault``), the token refresh, and the paged and batched CRM reads
every port method builds on (object reads, batch reads, v4 associations, search), on ``closeloop.paging``.

- v3 object reads embed at most 100 associations per type (the rest only behind that list's
  ``paging.next.after``: changelog "Announcing a change to how v3 CRM APIs return association data", 2020-10);
  a list that may be cut short is read again in full through the v4 batch read.
- v4 association batch reads page per input object (``results[i].paging.next.after``); the next page is
  asked for with ``inputs: [{id, after}]`` (HubSpot's "Batch read associations" reference).
- Auth: a private-app access token, or an OAuth app whose access tokens expire after 30 minutes and are
  refreshed at ``POST /oauth/v1/token`` (form-encoded ``grant_type=refresh_token``). HubSpot's refresh
  tokens are long-lived and are not replaced on refresh ("This change will have no effect on refresh
  tokens", changelog on the 30-minute expiry); a refresh token in the answer is kept all the same.
- CRM search: at most 10,000 results per query and 5 requests/second per account.

httpx (through closeloop.http) is imported lazily: the adapter is built on the webhook route too.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, ClassVar

from closeloop.errors import ConfigurationError, IntegrationError, NotFound, ValidationFailed
from closeloop.paging import Page, next_cursor, paginate
from closeloop.vendors.hubspot.mapping import id_order

if TYPE_CHECKING:
    import httpx

    from closeloop.http import AccessTokens, Fault, VendorHttp
    from closeloop.oauth import TokenGrant


#: HubSpot's refresh tokens do not rotate (its changelog: the 30-minute access-token expiry has "no effect on
#: refresh tokens"), so re-sending a refresh whose answer was lost is always safe.
REFRESH_RESEND_WITHIN_SECONDS = math.inf


#: HubSpot's 429 body names the policy that refused the call (developers.hubspot.com, "API usage guidelines and
#: limits": burst limits per ten seconds, and a daily limit that resets at midnight in the account's time zone).
#: SECONDLY (the per-second search limit) is waited out for one second: see GUESSES["secondly_wait"].
_RATE_LIMIT_WAITS = {"TEN_SECONDLY_ROLLING": 10.0, "SECONDLY": 1.0}


def hubspot_rate_limit(response: Any) -> Any:
    """What a HubSpot 429 means: wait out the ten-second window, or stop for the day (``retry=False``)."""
    from closeloop.http import RateLimitVerdict, retry_after_header  # noqa: PLC0415

    verdict = retry_after_header(response)
    try:
        policy = str(response.json().get("policyName") or "")
    except (ValueError, AttributeError):
        policy = ""
    if policy == "DAILY":
        return RateLimitVerdict(retry=False, retry_after=verdict.retry_after, problem="daily limit")
    if verdict.retry_after is None and policy in _RATE_LIMIT_WAITS:
        return RateLimitVerdict(retry=True, retry_after=_RATE_LIMIT_WAITS[policy], problem=policy.lower())
    return verdict


#: HubSpot error categories that name the error whatever the 4xx status (HubSpot's "API error responses": every
#: error body may carry ``category``, e.g. VALIDATION_ERROR; batch answers report OBJECT_NOT_FOUND per item).
_CATEGORY_ERRORS: Mapping[str, type[IntegrationError]] = {
    "VALIDATION_ERROR": ValidationFailed,
    "OBJECT_NOT_FOUND": NotFound,
}


def hubspot_fault(error: Mapping[str, Any], *, default: type[IntegrationError] | None = None) -> Fault:
    """One HubSpot error object (a failed answer's body, or an item of a batch answer's ``errors``): its
    ``message``, its ``category`` as the code and the error the category names (else ``default``).
    HubSpot's docs treat every field as optional."""
    from closeloop.http import Fault  # noqa: PLC0415 - keep httpx off the webhook path

    category = str(error.get("category") or "")
    return Fault(message=str(error.get("message") or ""), code=category, error=_CATEGORY_ERRORS.get(category, default))


def read_hubspot_fault(response: httpx.Response) -> Fault | None:
    """What a failed HubSpot answer says (``VendorHttp``'s ``read_fault``). Its category decides the error
    only for a 4xx that is not about access (401, 403): a 5xx stays Unavailable, a 401 AuthExpired."""
    body = response.json()
    if not isinstance(body, dict):
        return None
    fault = hubspot_fault(body)
    if response.status_code >= 500 or response.status_code in (401, 403):
        return replace(fault, error=None)
    return fault


def refresh_with_hubspot(
    api_url: str,
    client_id: Callable[[], str],
    client_secret: Callable[[], str],
    transport: httpx.BaseTransport | None = None,
) -> Callable[[str], TokenGrant]:
    """A ``refresh`` callable for RefreshingTokens that calls HubSpot's ``POST /oauth/v1/token``.

    The client id and secret are form fields (before the refresh token, as HubSpot's example sends them).
    Never re-sent by itself once it may have reached HubSpot (Unanswered: RefreshingTokens re-sends, safe as
    the tokens do not rotate). Raises AuthRevoked when HubSpot refuses the refresh token
    (``BAD_REFRESH_TOKEN``, ``invalid_grant``: the app was uninstalled or the token revoked), FatalError on any
    other refusal (e.g. a wrong client id).
    """
    from closeloop.oauth import TokenEndpoint  # noqa: PLC0415 - keep the token machinery off the webhook path

    endpoint = TokenEndpoint(
        vendor="hubspot",
        label="HubSpot",
        client="hubspot-oauth",
        path="/oauth/v1/token",
        reconnect="reinstall the app and update HUBSPOT_REFRESH_TOKEN",
        client_auth="body",
        credentials_first=True,
        revoked=frozenset({"BAD_REFRESH_TOKEN", "invalid_grant"}),
        error_keys=("status", "error", "category"),
        default_expires_in=1800.0,
    )
    return endpoint.refresher(api_url, client_id, client_secret, transport=transport)


#: The v4 association batch read's paging position: the inputs still to send, (object id, "after" cursor or "").
_InputQueue = tuple[tuple[str, str], ...]


def next_after(answer: Mapping[str, Any]) -> str | None:
    """The ``paging.next.after`` cursor of a HubSpot answer (a list page, or one input's batch result)."""
    return next_cursor(((answer.get("paging") or {}).get("next") or {}).get("after") or None)


class HubSpotClient:
    """The HTTP half of the HubSpot port (mixed into HubSpotCrm): the client, and the reads it pages."""

    name: str = "hubspot"
    _http: VendorHttp | None
    _access_token: str | Callable[[], str]
    _oauth_tokens: Callable[[], AccessTokens] | None
    _base_url: str
    _transport: httpx.BaseTransport | None
    _sleep: Callable[[float], None] | None
    _clock: Callable[[], float]
    _last_search: float | None

    #: Objects in one batch read or update, at most.
    MAX_BATCH: ClassVar[int] = 100
    #: canonical object type -> CRM v3 path segment.
    PATHS: ClassVar[dict[str, str]] = {
        "contact": "contacts",
        "company": "companies",
        "deal": "deals",
        "line_item": "line_items",
        "product": "products",
        "quote": "quotes",
    }
    #: v4 association pages hold at most 500 results.
    ASSOCIATION_PAGE_SIZE: ClassVar[int] = 500
    SEARCH_PAGE_SIZE: ClassVar[int] = 100
    #: A search query pages to at most this many results (HubSpot answers 400 beyond); wider ranges are split.
    SEARCH_RESULT_CAP: ClassVar[int] = 10_000
    #: CRM search allows 5 requests/second per account: keep this far apart within one process.
    SEARCH_MIN_INTERVAL: ClassVar[float] = 0.2
    #: v4 typeIds of the primary company associations (contact -> its primary company, and back; a deal's
    #: primary company), as the v3 "types" contact_to_company, company_to_contact and deal_to_company.
    PRIMARY_ASSOCIATION_IDS: ClassVar[frozenset[int]] = frozenset({1, 2, 5})
    #: v4 batch association reads take up to 1,000 inputs.
    MAX_ASSOCIATION_BATCH: ClassVar[int] = 1000

    @property
    def http(self) -> VendorHttp:
        if self._http is None:
            from closeloop.http import TokenAuth, VendorHttp  # noqa: PLC0415 - keep httpx off the webhook path

            token = self._access_token() if callable(self._access_token) else self._access_token
            kwargs: dict[str, Any] = {"transport": self._transport, "sleep": self._sleep}
            if token:  # a private app's token wins when both are configured
                kwargs["headers"] = {"Authorization": f"Bearer {token}"}
            elif self._oauth_tokens is not None:
                kwargs["auth"] = TokenAuth(self._oauth_tokens())
            else:
                raise ConfigurationError(
                    "HubSpot needs HUBSPOT_ACCESS_TOKEN (private app) or HUBSPOT_CLIENT_ID, HUBSPOT_CLIENT_SECRET "
                    "and HUBSPOT_REFRESH_TOKEN (OAuth app)"
                )
            self._http = VendorHttp(
                self.name,
                self._base_url,
                request_id_header="x-hubspot-correlation-id",
                rate_limit=hubspot_rate_limit,
                read_fault=read_hubspot_fault,
                **kwargs,
            )
        return self._http

    def _get_object(
        self, object_type: str, object_id: str, properties: Sequence[str], associations: str, *, archived: bool = False
    ) -> Any:
        """One object (None when HubSpot has none by that id): a live one, or with ``archived`` an archived one
        (HubSpot's ``archived`` parameter: "whether to return only results that have been archived")."""
        params = {"properties": ",".join(properties), "archived": "true" if archived else "false"}
        if associations:
            params["associations"] = associations
        try:
            response = self.http.request("GET", f"/crm/v3/objects/{self.PATHS[object_type]}/{object_id}", params=params)
        except NotFound:
            return None
        return response.json()

    #: Objects in one page of a v3 list read, at most.
    LIST_PAGE_SIZE: ClassVar[int] = 100

    def _list_objects(self, object_type: str, properties: Sequence[str], *, archived: bool) -> Iterator[Any]:
        """Every object of a type, live ones or (``archived``) archived ones, ``LIST_PAGE_SIZE`` a page, in
        HubSpot's order, following ``paging.next.after`` (``GET /crm/v3/objects/{type}``)."""
        path = f"/crm/v3/objects/{self.PATHS[object_type]}"
        params: dict[str, Any] = {
            "limit": self.LIST_PAGE_SIZE,
            "properties": ",".join(properties),
            "archived": "true" if archived else "false",
        }

        def fetch(after: str | None) -> Page[Any, str | None]:
            page = self.http.request("GET", path, params=params if after is None else {**params, "after": after})
            body = page.json()
            return Page(body.get("results") or [], next_after(body))

        what = f"{'archived ' if archived else ''}{object_type} list"
        yield from paginate(fetch, None, vendor=self.name, what=what)

    def _batch_read(self, object_type: str, ids: Sequence[str], properties: Sequence[str]) -> list[Any]:
        results: list[Any] = []
        for start in range(0, len(ids), self.MAX_BATCH):
            response = self.http.request(
                "POST",
                f"/crm/v3/objects/{self.PATHS[object_type]}/batch/read",
                json={
                    "properties": list(properties),
                    "inputs": [{"id": i} for i in ids[start : start + self.MAX_BATCH]],
                },
                ok=(200, 207),
            )
            results.extend(response.json().get("results", []))
        return results

    #: v3 object reads embed at most this many associations per type (HubSpot's changelog, 2020-10).
    #: Counted in entries, the cautious reading: see GUESSES["embedded_association_count"].
    EMBEDDED_ASSOCIATION_CAP: ClassVar[int] = 100

    def _associated(self, obj: Any, from_type: str, to_type: str, primary_type: str | None) -> list[str]:
        """Ids of the ``to_type`` objects associated with ``obj`` (a ``from_type`` read with its
        associations), primary-labelled ones first, then ascending id.

        Taken from the associations embedded in the v3 read when that list is complete; when it may have
        been cut short (a ``paging.next`` cursor, or as many entries as HubSpot embeds), every page is read
        through the v4 batch read instead: one or more extra calls, for crowded objects only.
        """
        embedded = (obj.get("associations") or {}).get(self.PATHS[to_type]) or {}
        results = embedded.get("results") or []
        if ((embedded.get("paging") or {}).get("next")) or len(results) >= self.EMBEDDED_ASSOCIATION_CAP:
            return self._associations(from_type, to_type, [str(obj["id"])]).get(str(obj["id"]), [])
        primary = {str(r["id"]) for r in results if r.get("type") == primary_type}
        ids = {str(r["id"]) for r in results}
        return sorted(ids, key=lambda i: (i not in primary, id_order(i)))

    def _associations(self, from_type: str, to_type: str, ids: Sequence[str]) -> dict[str, list[str]]:
        """Associated ids per object (v4 batch read, every page), primary ones first, then ascending id.

        An object with more associations than fit one page comes back with ``paging.next.after``; its next
        page is asked for with ``{"id", "after"}`` among the inputs of a later call. The paging position is
        the queue of inputs still to send (``_InputQueue``): raises PagingLoop (a FatalError) when HubSpot
        hands back cursors it already gave (the queue repeats), as it would loop forever.
        """
        path = f"/crm/v4/associations/{self.PATHS[from_type]}/{self.PATHS[to_type]}/batch/read"
        queue: _InputQueue = tuple((i, "") for i in dict.fromkeys(ids))
        if not queue:
            return {}

        def fetch(queue: _InputQueue) -> Page[tuple[str, list[Any]], _InputQueue]:
            batch, rest = queue[: self.MAX_ASSOCIATION_BATCH], queue[self.MAX_ASSOCIATION_BATCH :]
            inputs = [{"id": i, "after": after} if after else {"id": i} for i, after in batch]
            # 207: some objects have no associations, which is not an error here
            response = self.http.request("POST", path, json={"inputs": inputs}, ok=(200, 207))
            to: dict[str, list[Any]] = {i: [] for i, _ in batch}
            cursors: list[tuple[str, str]] = []
            for result in response.json().get("results") or []:
                from_id = str((result.get("from") or {}).get("id"))
                to.setdefault(from_id, []).extend(result.get("to") or [])
                after = next_after(result)
                if after:
                    cursors.append((from_id, after))
            # One item per object asked about (even with no associations): a batch of such objects is not
            # the end of the list while inputs remain.
            return Page(list(to.items()), (*rest, *cursors) or None)

        targets: dict[str, list[Any]] = {}
        for from_id, to in paginate(fetch, queue, vendor=self.name, what=f"{from_type} to {to_type} associations"):
            targets.setdefault(from_id, []).extend(to)
        found: dict[str, list[str]] = {}
        for from_id, to in targets.items():
            primary = {
                str(t["toObjectId"])
                for t in to
                if any(a.get("typeId") in self.PRIMARY_ASSOCIATION_IDS for a in t.get("associationTypes") or [])
            }
            found[from_id] = sorted({str(t["toObjectId"]) for t in to}, key=lambda i: (i not in primary, id_order(i)))
        return found

    def _search(self, object_type: str, body: Mapping[str, Any]) -> Any:
        if self._last_search is not None:
            wait = self.SEARCH_MIN_INTERVAL - (self._clock() - self._last_search)
            if wait > 0:
                (self._sleep or time.sleep)(min(wait, self.SEARCH_MIN_INTERVAL))
        try:
            response = self.http.request("POST", f"/crm/v3/objects/{self.PATHS[object_type]}/search", json=body)
        finally:
            self._last_search = self._clock()
        return response.json()
