"""SugarCRM's REST API client: the version in every path, the password grant, the token header, the error body and
the paged listings.

- Every call goes to ``<instance>/rest/v11_<n>/...`` with the header ``OAuth-Token``, where v11_<n> is the highest
  version both the instance and this adapter know (each Sugar release raises its maximum, 14.0: v11_24, 13.3:
  v11_23, and refuses higher ones with 301 ``incorrect_version``): ``ApiVersion`` discovers it once per process,
  or SUGARCRM_API_VERSION fixes it.
- Tokens come from ``POST /oauth2/token`` (``password_grant``): ``grant_type=password`` with ``client_id`` "sugar",
  an empty secret, username, password and ``platform``; then ``grant_type=refresh_token``.
- Errors are ``{"error": "<label>", "error_message": "..."}`` (``read_fault``).
- Lists: ``POST /<module>/filter`` and ``GET /<module>/<id>/link/<link>`` page by ``offset``; the answer's
  ``next_offset`` is -1 on the last page (``SugarClient.listing``).

httpx is imported lazily: the webhook route builds the adapter (and so this client) but never calls Sugar.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

from closeloop.errors import (
    AuthRevoked,
    ConfigurationError,
    Conflict,
    IntegrationError,
    NotFound,
    ValidationFailed,
)
from closeloop.oauth import TokenEndpoint, TokenGrant
from closeloop.paging import Page, paginate

if TYPE_CHECKING:
    import httpx

    from closeloop.http import Fault, VendorHttp

NEWEST_API_VERSION: tuple[int, int] = (11, 24)
#: The prefix against a server that answers the newest version (the default sandbox); see ``ApiVersion``.
API_PREFIX = "/rest/v11_24"
TOKEN_PATH = "/oauth2/token"
DEFAULT_CLIENT_ID = "sugar"
#: ``SUGARCRM_API_VERSION`` value (and default) that asks for discovery instead of a fixed version.
DISCOVER = "discover"


class AccessTokens(Protocol):
    """Hands out a valid access token (``closeloop.oauth.RefreshingTokens`` in production)."""

    def access_token(self, stale: str | None = None) -> str: ...


#: Re-sending after a lost answer is always safe: a refused refresh token (Sugar replaced it in the answer we lost:
#: one session per user and platform) falls back to a password login, which the credentials can always repeat
#: (Sugar developer guide, "How to authenticate and log out"; /work/shared/vendors/crm.md, SugarCRM write-back).
REFRESH_RESEND_WITHIN_SECONDS = math.inf
#: Token endpoint calls one ``password_grant`` refresh makes at most (refresh grant, then password login).
TOKEN_POSTS_PER_REFRESH = 2


def parse_api_version(text: str) -> tuple[int, int]:
    """``v11_20``, ``11_20``, ``11.20`` or ``v11`` as (11, 20) / (11, 0); ValueError for anything else."""
    match = _VERSION.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"not a SugarCRM REST API version: {text[:20]!r} (expected e.g. v11_20)")
    return int(match.group(1)), int(match.group(2) or 0)


def api_version_path(version: tuple[int, int]) -> str:
    """(11, 20) -> ``v11_20``; (11, 0) -> ``v11``: the path segment Sugar expects."""
    major, minor = version
    return f"v{major}_{minor}" if minor else f"v{major}"


_VERSION = re.compile(r"v?(\d+)(?:[._](\d+))?")
#: Sugar's 301 message, "... API version to value between 10 and 11.20." (GUESSES["301 message names the range"]).
_RANGE = re.compile(r"between\s+v?\d+(?:[._]\d+)?\s+and\s+v?(\d+(?:[._]\d+)?)")
#: Every version tried, newest first, one minor version lower at a time when a 301 names no range.
_CANDIDATES = tuple((NEWEST_API_VERSION[0], minor) for minor in range(NEWEST_API_VERSION[1], -1, -1))
#: instance URL -> discovered version, for the life of the process (a Lambda container).
_discovered: dict[str, tuple[int, int]] = {}
_discovery_lock = threading.Lock()


def forget_api_versions() -> None:
    """Drop every discovered version (tests; a process otherwise keeps them until it ends)."""
    with _discovery_lock:
        _discovered.clear()


class ApiVersion:
    """Which REST API version the calls to one Sugar instance go under, learnt from Sugar's own refusal.

    Each Sugar release raises the highest ``/rest/v11_<n>`` version it answers, and a request for a higher
    one is refused with HTTP 301 and the error label ``incorrect_version`` (Sugar Developer Guide 12.0 and
    13.0, Integration > Web Services > REST API > API Exceptions: ``SugarApiExceptionIncorrectVersion``,
    301, ``incorrect_version``; each guide's REST API overview states its release's range, e.g. 13.3
    "v10 - v11.23"). So the first call goes under the newest version this adapter knows; a 301
    ``incorrect_version`` (returned before the request is processed, so repeating it is safe) names the
    server's range in its message, and the call is repeated under the server's maximum (without a range:
    one minor version lower at a time). The version that answered is cached per process and instance; a
    301 on a later call (the instance was moved to an older release) re-discovers the same way. Not used:
    ``<instance>/sugar_version.json`` (not an API, often blocked as a version disclosure, and it names the
    product release, not the REST range) and ``/metadata`` server info (needs a login, itself versioned).

    ``configured``: ``SUGARCRM_API_VERSION``, "discover" (the default) or a fixed version such as
    ``v11_20`` (used as is; a 301 then is a configuration error naming what the server answers).
    """

    def __init__(self, instance_url: str, configured: str = DISCOVER) -> None:
        self.instance_url = instance_url.rstrip("/")
        try:
            self._pinned = None if configured.strip() in ("", DISCOVER) else parse_api_version(configured)
        except ValueError as exc:
            raise ConfigurationError(f"SUGARCRM_API_VERSION: {exc}, or {DISCOVER!r}", vendor="sugarcrm") from exc

    def current(self) -> tuple[int, int]:
        """The configured version, else the one this process learnt for the instance, else the newest."""
        if self._pinned is not None:
            return self._pinned
        with _discovery_lock:
            return _discovered.get(self.instance_url, NEWEST_API_VERSION)

    def request(
        self, http: VendorHttp, method: str, path: str, *, ok: tuple[int, ...] = (200, 201, 204), **kwargs: Any
    ) -> httpx.Response:
        """``http.request`` under ``/<version>``; a 301 ``incorrect_version`` moves to a version Sugar answers.

        Raises ConfigurationError for a plain redirect (SUGARCRM_URL is not the final address), for a refused
        configured version, and when no known version is answered.
        """
        version = self.current()
        while True:
            response = http.request(method, f"/{api_version_path(version)}{path}", ok=(*ok, 301), **kwargs)
            if response.status_code != 301:
                if self._pinned is None:
                    with _discovery_lock:
                        _discovered[self.instance_url] = version
                return response
            version = self._lower(version, response)

    def _lower(self, version: tuple[int, int], response: httpx.Response) -> tuple[int, int]:
        """The version to try after ``version`` was answered 301; raises when there is none."""
        fault = read_fault(response)
        if fault is None or fault.code != "incorrect_version":
            raise ConfigurationError(
                f"SugarCRM redirects its REST API ({response.headers.get('location', 'no Location')[:120]}): "
                f"set SUGARCRM_URL to the instance's final https address",
                vendor="sugarcrm",
                status=301,
            )
        answered = _top_of_range(fault.message)
        refused = f"SugarCRM refuses REST API version {api_version_path(version)}"
        if self._pinned is not None:
            offer = f"; it answers up to {api_version_path(answered)}" if answered else ""
            raise ConfigurationError(
                f"{refused}{offer}: set SUGARCRM_API_VERSION to a version it answers, or to {DISCOVER!r}",
                vendor="sugarcrm",
                status=301,
            )
        with _discovery_lock:
            learnt = _discovered.get(self.instance_url)
        if learnt is not None and learnt < version:  # another call (the login) has just learnt it
            return learnt
        if answered is not None and answered < version:
            return answered
        lower = next((candidate for candidate in _CANDIDATES if candidate < version), None)
        if lower is None:
            raise ConfigurationError(
                f"{refused} and every older one down to {api_version_path(_CANDIDATES[-1])}: check SUGARCRM_URL, "
                f"or set SUGARCRM_API_VERSION",
                vendor="sugarcrm",
                status=301,
            )
        return lower


#: Sugar's error labels that say more than their status (SugarApiException subclasses, developer guide "API
#: Exceptions"): the rest are read by status alone.
LABEL_ERRORS: Mapping[str, type[IntegrationError]] = {
    "not_found": NotFound,
    "edit_conflict": Conflict,
    "missing_parameter": ValidationFailed,
    "invalid_parameter": ValidationFailed,
    "request_too_large": ValidationFailed,
}


def fault_of(body: Any) -> Fault | None:
    """Sugar's error body, ``{"error": "<label>", "error_message": "..."}``, as a Fault; None for anything else."""
    from closeloop.http import Fault  # noqa: PLC0415 - httpx stays off the webhook path

    if not isinstance(body, dict) or not isinstance(body.get("error"), str) or not body["error"]:
        return None
    label = body["error"]
    return Fault(message=str(body.get("error_message") or ""), code=label, error=LABEL_ERRORS.get(label))


def read_fault(response: httpx.Response) -> Fault | None:
    """The ``read_fault`` of Sugar's VendorHttp: its error body (``fault_of``), if the answer has one."""
    try:
        return fault_of(response.json())
    except ValueError:
        return None


def _top_of_range(message: str) -> tuple[int, int] | None:
    """The highest version a 301 ``incorrect_version`` message names, capped at the newest we know."""
    match = _RANGE.search(message)
    if match is None:
        return None
    return min(parse_api_version(match.group(1)), NEWEST_API_VERSION)


def password_grant(
    instance_url: str,
    *,
    username: Callable[[], str],
    password: Callable[[], str],
    platform: str,
    client_id: Callable[[], str] = lambda: DEFAULT_CLIENT_ID,
    client_secret: Callable[[], str] = lambda: "",
    transport: httpx.BaseTransport | None = None,
    api_version: str = DISCOVER,
) -> Callable[[str], TokenGrant]:
    """A ``refresh`` callable for RefreshingTokens: refresh-token grant, else a password login.

    Called with "" (no token yet: the credentials hold a username and password, not a refresh token) or
    with the stored refresh token. A refused refresh token (expired after two weeks, or replaced by a
    login elsewhere on the same platform) falls back to a password login. A refused login raises
    AuthRevoked with what to fix; it never logs or returns the credentials. The token endpoint is under the
    REST version like every call (``api_version``: SUGARCRM_API_VERSION, see ``ApiVersion``).
    """
    version = ApiVersion(instance_url, api_version)
    endpoint = TokenEndpoint(
        vendor="sugarcrm",
        label="SugarCRM",
        client="sugarcrm-oauth",
        path=TOKEN_PATH,
        reconnect="check SUGARCRM_USERNAME and SUGARCRM_PASSWORD",
        client_auth="body",
        encoding="json",
        extra=(("platform", platform),),
        ok=(200, 400, 401, 403, 422),
    )

    def post(grant: dict[str, str]) -> tuple[int, dict[str, Any]]:
        return endpoint.post(
            instance_url.rstrip("/") + "/rest",
            grant,
            lambda: client_id() or DEFAULT_CLIENT_ID,
            client_secret,
            transport=transport,
            send=version.request,
        )

    def refresh(refresh_token: str) -> TokenGrant:
        if refresh_token:
            status, body = post({"grant_type": "refresh_token", "refresh_token": refresh_token})
            if status == 200:
                return endpoint.answer(status, body, "")
        status, body = post({"grant_type": "password", "username": username(), "password": password()})
        if status == 200:
            return endpoint.answer(status, body, "")
        from closeloop.http import Fault, typed_error  # noqa: PLC0415 - httpx stays off the webhook path

        refused = fault_of(body) or Fault(code="unknown_error")
        raise typed_error(
            status,
            Fault(refused.message[:120], refused.code, AuthRevoked),
            "SugarCRM refused the login: check SUGARCRM_USERNAME/SUGARCRM_PASSWORD (and SUGARCRM_CLIENT_ID/SECRET), "
            f"that the user is active and that the API platform {platform!r} is registered under Admin > "
            "Configure API Platforms",
            vendor="sugarcrm",
        )

    return refresh


def _auth(tokens: AccessTokens) -> httpx.Auth:
    """``OAuth-Token`` on every request; one forced re-login when Sugar answers 401."""
    from closeloop.http import TokenAuth  # noqa: PLC0415 - httpx stays off the webhook path

    return TokenAuth(tokens, header="OAuth-Token", prefix="")


class SugarClient:
    """Calls to one Sugar instance under its REST version, with a token on each, and its paged listings.

    ``page_size`` records per page (``max_num``); ``in_chunk`` ids per ``$in`` filter.
    """

    vendor = "sugarcrm"

    def __init__(
        self,
        instance_url: str,
        tokens: AccessTokens,
        version: ApiVersion,
        *,
        page_size: int,
        in_chunk: int,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.instance_url = instance_url.rstrip("/")
        self.page_size = page_size
        self.in_chunk = in_chunk
        self._tokens = tokens
        self._version = version
        self._transport = transport
        self._sleep = sleep

    @cached_property
    def http(self) -> VendorHttp:
        """Built on first use: importing the adapter must not import httpx (the webhook path)."""
        from closeloop.http import VendorHttp  # noqa: PLC0415

        return VendorHttp(
            self.vendor,
            self.instance_url + "/rest",
            auth=_auth(self._tokens),
            read_fault=read_fault,
            transport=self._transport,
            sleep=self._sleep,
        )

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One call under the instance's REST version (``ApiVersion``: discovered, cached, re-discovered)."""
        # The token first: a first login learns the version, so the call is not sent under a refused one.
        self._tokens.access_token()
        return self._version.request(self.http, method, path, **kwargs)

    def get(self, module: str, record_id: str, fields: Sequence[str]) -> dict[str, Any] | None:
        try:
            response = self.request("GET", f"/{module}/{path_segment(record_id)}", params={"fields": ",".join(fields)})
        except NotFound:
            return None
        body = response.json()
        return body if isinstance(body, dict) else None

    def page(self, path: str, *, method: str, body: dict[str, Any], offset: int) -> Page[dict[str, Any], int]:
        """One page of a filter or link listing, and where the next starts (Sugar's ``next_offset``: -1 on the
        last page, read as None)."""
        if method == "POST":
            response = self.request("POST", path, json={**body, "offset": offset})
        else:
            response = self.request("GET", path, params={**body, "offset": str(offset)})
        page = response.json()
        records = [r for r in page.get("records") or [] if isinstance(r, dict)]
        try:
            next_offset = int(page.get("next_offset", -1))
        except (TypeError, ValueError):
            next_offset = -1
        return Page(records, next_offset if next_offset >= 0 else None)

    def listing(self, path: str, *, method: str, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        return paginate(
            lambda offset: self.page(path, method=method, body=body, offset=offset),
            0,
            vendor=self.vendor,
            what=f"{method} {path}",
        )

    def filter(
        self, module: str, flt: list[dict[str, Any]], fields: Sequence[str], order_by: str = "id:ASC"
    ) -> Iterator[dict[str, Any]]:
        """``POST /<module>/filter``, every page; an empty ``flt`` lists the whole module (no ``filter`` sent)."""
        body: dict[str, Any] = {"fields": ",".join(fields), "max_num": self.page_size, "order_by": order_by}
        if flt:
            body["filter"] = flt
        return self.listing(f"/{module}/filter", method="POST", body=body)

    def by_ids(self, module: str, ids: Collection[str], fields: Sequence[str]) -> dict[str, dict[str, Any]]:
        unique = sorted(set(ids))
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(unique), self.in_chunk):
            chunk = unique[start : start + self.in_chunk]
            for record in self.filter(module, [{"id": {"$in": chunk}}], fields):
                found[str(record["id"])] = record
        return found

    def link(
        self, module: str, record_id: str, link: str, fields: Sequence[str], order_by: str
    ) -> Iterator[dict[str, Any]]:
        body = {"fields": ",".join(fields), "max_num": str(self.page_size), "order_by": order_by}
        return self.listing(f"/{module}/{path_segment(record_id)}/link/{link}", method="GET", body=body)


def path_segment(value: str) -> str:
    """A record id as one path segment (ids are UUIDs; anything else is escaped, never a path)."""
    return quote(value, safe="")
