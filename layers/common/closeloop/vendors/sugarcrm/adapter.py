"""SugarCRM adapter: REST API v11 (OAuth2 password grant on a dedicated platform), web logic hooks, catch-up.

Vendor facts this module encodes (Sugar developer guide 13/14: REST API endpoints, API exceptions, web logic
hooks; see also docs/vendors crm.md section 4):
- Every call goes to ``<instance>/rest/v11_<n>/...`` with the header ``OAuth-Token``, where v11_<n> is the
  highest version both the instance and this adapter know (each Sugar release raises its maximum, 14.0:
  v11_24, 13.3: v11_23, and refuses higher ones with 301 ``incorrect_version``): ``ApiVersion`` discovers it
  once per process, or SUGARCRM_API_VERSION fixes it. Unverified assumptions are listed in ``GUESSES``.
  Tokens come from
  ``POST /oauth2/token``: ``grant_type=password`` with ``client_id`` "sugar", an empty secret, username,
  password and ``platform``; then ``grant_type=refresh_token``. Access tokens live 1 hour, refresh tokens
  2 weeks. Sugar keeps ONE session per user and platform: a new login (or refresh) on the same platform
  invalidates the previous tokens, which is why Closeloop logs in on its own platform (``SUGARCRM_PLATFORM``,
  registered under Admin > Configure API Platforms) and shares one token pair through the token store.
- Errors are ``{"error": "<label>", "error_message": "..."}``: 401 ``invalid_grant`` (token invalid or
  expired) or ``need_login``, 404 ``not_found``, 422 ``missing_parameter``/``invalid_parameter``.
- Reads: ``GET /<module>/<id>``; batches and lists: ``POST /<module>/filter`` with ``filter``, ``fields``,
  ``max_num``, ``offset`` and ``order_by``; the answer's ``next_offset`` is -1 on the last page. Related
  records: ``GET /<module>/<id>/link/<link>`` (same paging). Values are strings; money is parsed to Decimal.
- ``PUT /<module>/<id>`` SILENTLY IGNORES fields that do not exist; custom (Studio) fields end in ``_c``.
  The answer is the saved record, so a written field missing from it means the field does not exist.
- Studio fields cannot be created through the REST API: ``ensure_properties`` reads ``GET /metadata`` and
  names what a Sugar admin must add.
- Web logic hooks POST one record per request: ``{"bean", "event", "isUpdate", "data", "dataChanges"}``,
  with no signature and NO retry (a failed delivery is lost). Authenticity is a secret last path segment;
  ``iter_changes_since`` is the catch-up poll for lost deliveries, with the same dedupe keys.
- Revenue line items (Opportunities + RLIs mode) are the deal's lines: ``discount_price`` is the unit price,
  ``likely_case`` the line total, ``discount_amount`` a total or (``discount_select``) a percentage; the SKU is
  the product template's manufacturer part number (``mft_part_num``).

httpx is imported lazily: the webhook route only verifies and parses, and must start fast.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import threading
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, Protocol
from urllib.parse import quote, unquote, urlsplit

from closeloop.errors import (
    AuthRevoked,
    ConfigurationError,
    Conflict,
    FatalError,
    IntegrationError,
    NotFound,
    ValidationFailed,
    WebhookRejected,
)
from closeloop.models import (
    CUSTOMER_FIELDS,
    DEAL_SYNC_FIELDS,
    Address,
    CrmRef,
    Customer,
    Deal,
    LineItem,
    Person,
    SyncEvent,
)
from closeloop.oauth import TokenEndpoint, TokenGrant
from closeloop.paging import Page, paginate
from closeloop.ports import PropertyDefinition, WebhookRequest
from closeloop.vendors.sugarcrm.guesses import GUESSES
from closeloop.wire import path_secret, webhook_json

if TYPE_CHECKING:
    import httpx

    from closeloop.http import Fault, VendorHttp

#: The newest REST API version this adapter knows (v11_24: Sugar 14.0). A server that answers newer ones
#: still answers this one (Sugar serves every version from v10 up to its maximum); older servers get theirs.
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


class ChangesPosition(NamedTuple):
    """Where the catch-up poll of one module stands: the records modified at or after ``since`` (a keyset on
    ``date_modified``), less the first ``offset`` of them. Sugar keeps whole seconds, so more than a page of
    records can share one ``since``: within it the poll moves by offset, and past it by the keyset again."""

    since: datetime
    offset: int

    def after(self, modified: Sequence[datetime | None]) -> ChangesPosition:
        """The position after a page whose records were modified at ``modified`` (None: unreadable)."""
        last = max((moment for moment in modified if moment is not None), default=self.since)
        return (
            ChangesPosition(last, 0) if last > self.since else ChangesPosition(self.since, self.offset + len(modified))
        )


class SugarCrm:
    """CrmPort for SugarCRM (Sell/Serve/Enterprise, REST API v11)."""

    name = "sugarcrm"
    #: canonical object type -> Sugar module.
    MODULES: ClassVar[dict[str, str]] = {"company": "Accounts", "contact": "Contacts", "deal": "Opportunities"}
    #: web logic hook ``bean`` (bean class; module names accepted too) -> canonical object type.
    HOOK_BEANS: ClassVar[dict[str, str]] = {
        "Account": "company",
        "Accounts": "company",
        "Contact": "contact",
        "Contacts": "contact",
        "Opportunity": "deal",
        "Opportunities": "deal",
    }
    HOOK_KINDS: ClassVar[dict[str, str]] = {
        "after_delete": "deleted",
        "after_relationship_add": "associated",
        "after_relationship_delete": "associated",
    }
    WON_STAGES: ClassVar[tuple[str, ...]] = ("Closed Won",)
    PAGE_SIZE: ClassVar[int] = 100
    #: ids per ``$in`` filter (keeps request bodies and SQL IN lists modest).
    IN_CHUNK: ClassVar[int] = 100
    #: Contacts are ordered oldest first: the first is the company's main person (Sugar has no primary flag).
    PEOPLE_ORDER: ClassVar[str] = "date_entered:ASC,id:ASC"
    ACCOUNT_FIELDS: ClassVar[tuple[str, ...]] = (
        "name",
        "email",
        "email1",
        "phone_office",
        "billing_address_street",
        "billing_address_city",
        "billing_address_state",
        "billing_address_postalcode",
        "billing_address_country",
        "date_modified",
    )
    CONTACT_FIELDS: ClassVar[tuple[str, ...]] = (
        "first_name",
        "last_name",
        "email",
        "email1",
        "phone_work",
        "phone_mobile",
        "primary_address_street",
        "primary_address_city",
        "primary_address_state",
        "primary_address_postalcode",
        "primary_address_country",
        "account_id",
        "date_entered",
        "date_modified",
    )
    DEAL_FIELDS: ClassVar[tuple[str, ...]] = (
        "name",
        "amount",
        "currency_id",
        "sales_stage",
        "date_closed",
        "account_id",
        "assigned_user_id",
        "date_modified",
        *(f"{name}_c" for name in DEAL_SYNC_FIELDS),
    )
    LINE_FIELDS: ClassVar[tuple[str, ...]] = (
        "name",
        "product_template_id",
        "quantity",
        "discount_price",
        "discount_amount",
        "discount_select",
        "likely_case",
    )
    CHANGE_FIELDS: ClassVar[tuple[str, ...]] = ("date_entered", "date_modified", "modified_user_id")
    #: PropertyDefinition.type -> what to pick in Studio (and the vardef type a package declares).
    STUDIO_TYPES: ClassVar[dict[str, tuple[str, str]]] = {
        "string": ("TextField", "varchar"),
        "number": ("Decimal", "decimal"),
        "date": ("Date", "date"),
        "datetime": ("Datetime", "datetime"),
        "enumeration": ("DropDown", "enum"),
    }

    def __init__(
        self,
        *,
        instance_url: str,
        tokens: AccessTokens,
        webhook_token: str | Callable[[], str],
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] | None = None,
        tax_number_field: str = "vat_number_c",
        api_version: str = DISCOVER,
    ) -> None:
        """``tax_number_field``: Sugar has no stock tax-id field; this Accounts field holds it (Studio).

        ``api_version``: SUGARCRM_API_VERSION, "discover" (default) or a fixed ``v11_<n>`` (see ApiVersion).
        """
        if not instance_url:
            raise ConfigurationError(
                "SUGARCRM_URL is not set (the SugarCRM instance, e.g. https://acme.sugarondemand.com)"
            )
        self.instance_url = instance_url.rstrip("/")
        self._tokens = tokens
        self._webhook_token = webhook_token
        self._transport = transport
        self._sleep = sleep
        self._http: VendorHttp | None = None
        self.tax_number_field = tax_number_field
        self._currencies: dict[str, str] = {}
        self._version = ApiVersion(self.instance_url, api_version)

    # -- webhooks (web logic hooks) ----------------------------------------------------------------

    def _token(self) -> str:
        return self._webhook_token() if callable(self._webhook_token) else self._webhook_token

    def verify_webhook(self, request: WebhookRequest) -> None:
        """The URL's last path segment must equal SUGARCRM_WEBHOOK_TOKEN (compared in constant time)."""
        expected = path_secret("SUGARCRM_WEBHOOK_TOKEN", self._token())
        segment = unquote(urlsplit(request.uri).path.rstrip("/").rpartition("/")[2])
        if not hmac.compare_digest(segment.encode(), expected.encode()):
            raise WebhookRejected(401, "missing or wrong SugarCRM webhook token in the URL")

    def parse_webhook(self, body: bytes) -> list[SyncEvent]:
        """One web logic hook delivery -> at most one event (modules other than ours are ignored)."""
        payload = webhook_json(body)
        if not isinstance(payload, dict):
            raise WebhookRejected(400, "expected a JSON object (a SugarCRM web logic hook payload)")
        bean = payload.get("bean")
        if not isinstance(bean, str) or not bean:
            raise WebhookRejected(400, "bean: Field required")
        object_type = self.HOOK_BEANS.get(bean)
        if object_type is None:
            return []
        event = payload.get("event") or "after_save"
        data = payload.get("data")
        if not isinstance(event, str) or not isinstance(data, dict):
            raise WebhookRejected(400, "data: expected the record as a JSON object")
        record_id = data.get("id")
        if not isinstance(record_id, str) or not record_id:
            raise WebhookRejected(400, "data.id: Field required")
        try:
            modified = _parse_time(data.get("date_modified"))
        except ValueError as exc:
            raise WebhookRejected(400, "data.date_modified: not an ISO 8601 date-time") from exc
        if modified is None:
            raise WebhookRejected(400, "data.date_modified: Field required")
        if event == "after_save":
            kind = "changed" if _truthy(payload.get("isUpdate")) else "created"
        else:
            kind = self.HOOK_KINDS.get(event, "other")
        if _truthy(data.get("deleted")):
            kind = "deleted"
        changes = payload.get("dataChanges")
        changed = list(changes) if isinstance(changes, dict) else []
        suffix = "" if event == "after_save" else f":{event}"
        if kind == "changed" and changed:
            # Two saves within one second share date_modified: the changes' fingerprint tells them apart, so
            # the replay check and the worker's idempotency never take the second save for the first.
            suffix += ":" + hashlib.sha256(json.dumps(changes, sort_keys=True, default=str).encode()).hexdigest()[:16]
        return [
            self._event(
                object_type,
                record_id,
                modified,
                kind=kind,
                source_type=f"{bean}.{event}",
                change_source="WEB_LOGIC_HOOK",
                actor=_clean(data.get("modified_user_id")),
                property_name=changed[0] if len(changed) == 1 else None,
                suffix=suffix,
            )
        ]

    def _event(
        self,
        object_type: str,
        record_id: str,
        modified: datetime,
        *,
        kind: str,
        source_type: str,
        change_source: str,
        actor: str,
        property_name: str | None = None,
        suffix: str = "",
    ) -> SyncEvent:
        # A creation has the same key whether a hook or the catch-up poll reports it. Sugar keeps date_modified
        # to the second, so a hook's update adds the fingerprint of its dataChanges (two saves within one second
        # are two changes); the poll, which has no dataChanges, keys the update without it, and the worker,
        # reading the record as it is, finds that one unchanged.
        key = f"{self.MODULES[object_type]}:{record_id}:{_stamp(modified)}{suffix}"
        return SyncEvent.model_validate(
            {
                "ref": self._ref(object_type, record_id),
                "event_id": key,
                "kind": kind,
                "occurred_at": modified,
                "source_type": source_type,
                "property_name": property_name,
                "change_source": change_source,
                "actor": f"userId:{actor}" if actor else None,
                "dedupe_key": key,
            }
        )

    # -- HTTP ----------------------------------------------------------------------------------------

    @property
    def http(self) -> VendorHttp:
        if self._http is None:
            from closeloop.http import VendorHttp  # noqa: PLC0415 - keep httpx off the webhook path

            kwargs: dict[str, Any] = {"transport": self._transport}
            if self._sleep is not None:
                kwargs["sleep"] = self._sleep
            self._http = VendorHttp(
                self.name, self.instance_url + "/rest", auth=_auth(self._tokens), read_fault=read_fault, **kwargs
            )
        return self._http

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One call under the instance's REST version (``ApiVersion``: discovered, cached, re-discovered)."""
        # The token first: a first login learns the version, so the call is not sent under a refused one.
        self._tokens.access_token()
        return self._version.request(self.http, method, path, **kwargs)

    def _get(self, module: str, record_id: str, fields: Sequence[str]) -> dict[str, Any] | None:
        try:
            response = self._request("GET", f"/{module}/{_seg(record_id)}", params={"fields": ",".join(fields)})
        except NotFound:
            return None
        body = response.json()
        return body if isinstance(body, dict) else None

    def _page(self, path: str, *, method: str, body: dict[str, Any], offset: int) -> Page[dict[str, Any], int]:
        """One page of a filter or link listing, and where the next starts (Sugar's ``next_offset``: -1 on the
        last page, read as None)."""
        if method == "POST":
            response = self._request("POST", path, json={**body, "offset": offset})
        else:
            response = self._request("GET", path, params={**body, "offset": str(offset)})
        page = response.json()
        records = [r for r in page.get("records") or [] if isinstance(r, dict)]
        try:
            next_offset = int(page.get("next_offset", -1))
        except (TypeError, ValueError):
            next_offset = -1
        return Page(records, next_offset if next_offset >= 0 else None)

    def _all(self, path: str, *, method: str, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        return paginate(
            lambda offset: self._page(path, method=method, body=body, offset=offset),
            0,
            vendor=self.name,
            what=f"{method} {path}",
        )

    def _filter(
        self, module: str, flt: list[dict[str, Any]], fields: Sequence[str], order_by: str = "id:ASC"
    ) -> Iterator[dict[str, Any]]:
        body = {"filter": flt, "fields": ",".join(fields), "max_num": self.PAGE_SIZE, "order_by": order_by}
        return self._all(f"/{module}/filter", method="POST", body=body)

    def _by_ids(self, module: str, ids: Collection[str], fields: Sequence[str]) -> dict[str, dict[str, Any]]:
        unique = sorted(set(ids))
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(unique), self.IN_CHUNK):
            chunk = unique[start : start + self.IN_CHUNK]
            for record in self._filter(module, [{"id": {"$in": chunk}}], fields):
                found[str(record["id"])] = record
        return found

    def _link(
        self, module: str, record_id: str, link: str, fields: Sequence[str], order_by: str
    ) -> Iterator[dict[str, Any]]:
        body = {"fields": ",".join(fields), "max_num": str(self.PAGE_SIZE), "order_by": order_by}
        return self._all(f"/{module}/{_seg(record_id)}/link/{link}", method="GET", body=body)

    def _ref(self, object_type: str, object_id: str) -> CrmRef:
        return CrmRef.model_validate({"crm": self.name, "object_type": object_type, "object_id": object_id})

    # -- customers -----------------------------------------------------------------------------------

    def _account_fields(self) -> tuple[str, ...]:
        return (*self.ACCOUNT_FIELDS, self.tax_number_field) if self.tax_number_field else self.ACCOUNT_FIELDS

    def resolve_customer(self, ref: CrmRef) -> Customer | None:
        """A company with its contacts, or a contact's company (its ``account_id``), or the contact alone."""
        if ref.object_type == "company":
            return self._account_customer(ref.object_id)
        if ref.object_type != "contact":
            raise ValueError(f"no customer for a {ref.object_type}")
        contact = self._get("Contacts", ref.object_id, self.CONTACT_FIELDS)
        if contact is None:
            return None
        account_id = _clean(contact.get("account_id"))
        if account_id:
            return self._account_customer(account_id)
        return self._contact_customer(contact)

    def _account_customer(self, account_id: str) -> Customer | None:
        account = self._get("Accounts", account_id, self._account_fields())
        if account is None:
            return None
        people = list(self._link("Accounts", account_id, "contacts", self.CONTACT_FIELDS, self.PEOPLE_ORDER))
        return self._company(account, people)

    def resolve_customers(self, refs: Sequence[CrmRef]) -> dict[CrmRef, Customer | None]:
        """Batch reads: contacts by id, then their accounts and the requested ones, then all their people."""
        for ref in refs:
            if ref.object_type not in ("company", "contact"):
                raise ValueError(f"no customer for a {ref.object_type}")
        contacts = self._by_ids(
            "Contacts", [r.object_id for r in refs if r.object_type == "contact"], self.CONTACT_FIELDS
        )
        account_ids = {r.object_id for r in refs if r.object_type == "company"}
        account_ids |= {_clean(c.get("account_id")) for c in contacts.values()} - {""}
        accounts = self._by_ids("Accounts", account_ids, self._account_fields())
        people: dict[str, list[dict[str, Any]]] = {account_id: [] for account_id in accounts}
        ids = sorted(accounts)
        for start in range(0, len(ids), self.IN_CHUNK):
            flt = [{"account_id": {"$in": ids[start : start + self.IN_CHUNK]}}]
            for person in self._filter("Contacts", flt, self.CONTACT_FIELDS, self.PEOPLE_ORDER):
                people.setdefault(_clean(person.get("account_id")), []).append(person)
        result: dict[CrmRef, Customer | None] = {}
        for ref in refs:
            if ref.object_type == "company":
                account = accounts.get(ref.object_id)
                result[ref] = self._company(account, people[ref.object_id]) if account else None
                continue
            contact = contacts.get(ref.object_id)
            account_id = _clean(contact.get("account_id")) if contact else ""
            if contact is None:
                result[ref] = None
            elif account_id:
                account = accounts.get(account_id)
                result[ref] = self._company(account, people[account_id]) if account else None
            else:
                result[ref] = self._contact_customer(contact)
        return result

    def _company(self, account: Mapping[str, Any], contacts: Sequence[Mapping[str, Any]]) -> Customer:
        people = [self._person(c) for c in contacts]
        primary = people[0] if people else None
        return Customer(
            ref=self._ref("company", str(account["id"])),
            name=_clean(account.get("name")),
            email=primary.email if primary and primary.email else _email(account),
            phone=primary.phone if primary and primary.phone else _clean(account.get("phone_office")),
            tax_number=_clean(account.get(self.tax_number_field)) if self.tax_number_field else "",
            first_name=primary.first_name if primary else "",
            last_name=primary.last_name if primary else "",
            address=_address(account, "billing_address"),
            people=tuple(people[1:]),
            updated_at=_parse_time(account.get("date_modified")),
        )

    def _contact_customer(self, contact: Mapping[str, Any]) -> Customer:
        person = self._person(contact)
        return Customer(
            ref=self._ref("contact", person.crm_id),
            name=" ".join(p for p in (person.first_name, person.last_name) if p),
            email=person.email,
            phone=person.phone,
            first_name=person.first_name,
            last_name=person.last_name,
            address=_address(contact, "primary_address"),
            updated_at=_parse_time(contact.get("date_modified")),
        )

    @staticmethod
    def _person(contact: Mapping[str, Any]) -> Person:
        return Person(
            crm_id=str(contact["id"]),
            first_name=_clean(contact.get("first_name")),
            last_name=_clean(contact.get("last_name")),
            email=_email(contact),
            phone=_clean(contact.get("phone_work")) or _clean(contact.get("phone_mobile")),
        )

    # -- deals ----------------------------------------------------------------------------------------

    def get_deal(self, deal_id: str) -> Deal | None:
        """The opportunity with its revenue line items, account (or first contact) and currency resolved.

        Reads the opportunity, its ``revenuelineitems`` link (paged), the product templates of those lines
        (one filter) and, once per process, each currency. None when the opportunity does not exist.
        """
        record = self._get("Opportunities", deal_id, self.DEAL_FIELDS)
        if record is None:
            return None
        contact = None
        if not _clean(record.get("account_id")):
            first = next(self._link("Opportunities", deal_id, "contacts", ("id",), self.PEOPLE_ORDER), None)
            contact = self._ref("contact", str(first["id"])) if first else None
        return self._deal(record, contact=contact, line_items=self._line_items(deal_id))

    def iter_won_deals(self, closed_from: datetime, closed_before: datetime) -> Iterator[Deal]:
        """Closed Won opportunities whose ``date_closed`` (a date: its UTC midnight) is in the range, paged.

        Without line items or contact: reconcile compares amounts and currencies only.
        """
        start, end = _first_day_at_or_after(closed_from), _first_day_at_or_after(closed_before)
        if start >= end:
            return
        flt: list[dict[str, Any]] = [
            {"sales_stage": {"$in": list(self.WON_STAGES)}},
            {"date_closed": {"$gte": start.isoformat()}},
            {"date_closed": {"$lt": end.isoformat()}},
        ]
        seen: set[str] = set()
        for record in self._filter("Opportunities", flt, self.DEAL_FIELDS, "date_closed:ASC,id:ASC"):
            if str(record["id"]) not in seen:
                seen.add(str(record["id"]))
                yield self._deal(record)

    def _deal(
        self, record: Mapping[str, Any], *, contact: CrmRef | None = None, line_items: tuple[LineItem, ...] = ()
    ) -> Deal:
        deal_id = str(record["id"])
        stage = _clean(record.get("sales_stage"))
        account_id = _clean(record.get("account_id"))
        return Deal(
            ref=self._ref("deal", deal_id),
            name=_clean(record.get("name")),
            amount=_decimal(record.get("amount"), f"opportunity {deal_id} amount"),
            currency=self._currency(_clean(record.get("currency_id"))),
            stage=stage,
            is_won=stage in self.WON_STAGES,
            close_date=_date(record.get("date_closed"), deal_id),
            owner_id=_clean(record.get("assigned_user_id")),
            company=self._ref("company", account_id) if account_id else None,
            contact=contact,
            line_items=line_items,
            url=f"{self.instance_url}/#Opportunities/{quote(deal_id, safe='')}",
            updated_at=_parse_time(record.get("date_modified")),
            synced={
                name: _clean(record.get(f"{name}_c"))
                for name in DEAL_SYNC_FIELDS
                if record.get(f"{name}_c") is not None
            },
        )

    def _currency(self, currency_id: str) -> str:
        """The ISO code of a Sugar currency id ("-99" is the system currency), cached for the process."""
        if not currency_id:
            return ""
        if currency_id not in self._currencies:
            record = self._get("Currencies", currency_id, ("iso4217",))
            iso = _clean(record.get("iso4217")).upper() if record else ""
            if not iso:
                raise ValidationFailed(f"SugarCRM currency {currency_id} has no ISO code", vendor=self.name)
            self._currencies[currency_id] = iso
        return self._currencies[currency_id]

    def _line_items(self, deal_id: str) -> tuple[LineItem, ...]:
        lines = list(
            self._link("Opportunities", deal_id, "revenuelineitems", self.LINE_FIELDS, "date_entered:ASC,id:ASC")
        )
        template_ids = {_clean(line.get("product_template_id")) for line in lines} - {""}
        products = self._by_ids("ProductTemplates", template_ids, ("name", "mft_part_num")) if template_ids else {}
        return tuple(self._line_item(line, products) for line in lines)

    @staticmethod
    def _line_item(line: Mapping[str, Any], products: Mapping[str, Mapping[str, Any]]) -> LineItem:
        item_id = str(line["id"])
        what = f"revenue line item {item_id}"
        product = products.get(_clean(line.get("product_template_id"))) or {}
        quantity = _decimal(line.get("quantity"), f"{what} quantity")
        quantity = quantity if quantity is not None else Decimal(1)
        price = _decimal(line.get("discount_price"), f"{what} unit price") or Decimal(0)
        discount = _decimal(line.get("discount_amount"), f"{what} discount") or Decimal(0)
        percent: Decimal | None = None
        if discount and _truthy(line.get("discount_select")):
            percent = discount
        elif discount:
            # A discount in money is for the whole line; LineItem has no such field, so it is folded into the
            # unit price when that is exact, and refused (never rounded into a wrong invoice) otherwise.
            per_unit = discount / quantity if quantity else None
            if per_unit is None or per_unit.quantize(Decimal("0.0001")) != per_unit:
                raise ValidationFailed(
                    f"{what}: a discount of {discount} over a quantity of {quantity} is not an exact unit price",
                    vendor="sugarcrm",
                )
            price -= per_unit
        return LineItem(
            crm_id=item_id,
            name=_clean(line.get("name")) or _clean(product.get("name")),
            sku=_clean(product.get("mft_part_num")),
            quantity=quantity,
            unit_price=price,
            discount_percent=percent,
            amount=_decimal(line.get("likely_case"), f"{what} likely case"),
        )

    # -- catch-up --------------------------------------------------------------------------------------

    def iter_changes_since(self, since: datetime) -> Iterator[SyncEvent]:
        """Accounts, Contacts and Opportunities with ``date_modified >= since``, oldest first, per module.

        Pages by the modification time itself (keyset), not by a growing offset, so records modified while
        we page are not skipped; an offset is used only within one second holding more than a page. Sugar's
        filter API does not return deleted records: a deletion whose hook was lost is not caught up here.
        """
        floor = _utc(since).replace(microsecond=0)
        for object_type, module in self.MODULES.items():
            yield from self._changes(object_type, module, floor)

    def _changes(self, object_type: str, module: str, since: datetime) -> Iterator[SyncEvent]:
        body = {
            "fields": ",".join(self.CHANGE_FIELDS),
            "max_num": self.PAGE_SIZE,
            "order_by": "date_modified:ASC,id:ASC",
        }

        def fetch(position: ChangesPosition) -> Page[tuple[dict[str, Any], datetime | None], ChangesPosition]:
            filtered = {**body, "filter": [{"date_modified": {"$gte": _sugar_time(position.since)}}]}
            page = self._page(f"/{module}/filter", method="POST", body=filtered, offset=position.offset)
            rows = [(record, _parse_time(record.get("date_modified"))) for record in page.items]
            return Page(rows, None if page.next is None else position.after([modified for _, modified in rows]))

        seen: set[tuple[str, str]] = set()
        start = ChangesPosition(since, 0)
        for record, modified in paginate(fetch, start, vendor=self.name, what=f"{module} changes since"):
            if modified is None:
                continue
            key = (str(record["id"]), _stamp(modified))
            if key in seen:
                continue
            seen.add(key)
            created = _parse_time(record.get("date_entered")) == modified
            yield self._event(
                object_type,
                key[0],
                modified,
                kind="created" if created else "changed",
                source_type=f"{module}.date_modified",
                change_source="CATCH_UP_POLL",
                actor=_clean(record.get("modified_user_id")),
            )

    # -- writes ---------------------------------------------------------------------------------------

    def update_deals(self, updates: Mapping[str, Mapping[str, str]]) -> None:
        """``PUT /Opportunities/<id>`` per deal with Closeloop's ``_c`` fields; "" clears (null).

        Every deal is written even when one fails; then the first fatal failure is raised: NotFound for a
        missing opportunity, ValidationFailed for a refused value or for fields the instance does not have
        (Sugar ignores those silently, so the saved record is checked). Retriable errors raise at once.
        """
        self._raise_first([e for deal_id, values in updates.items() if (e := self._put("deal", deal_id, values))])

    def update_customers(self, updates: Mapping[CrmRef, Mapping[str, str]]) -> None:
        """``PUT /Accounts/<id>`` or ``/Contacts/<id>`` per customer, as ``update_deals``."""
        for ref in updates:
            if ref.object_type not in ("company", "contact"):
                raise ValueError(f"{ref} is not a customer (company or contact)")
        self._raise_first(
            [e for ref, values in updates.items() if (e := self._put(ref.object_type, ref.object_id, values))]
        )

    @staticmethod
    def _raise_first(errors: Sequence[FatalError]) -> None:
        if errors:
            raise errors[0]

    def _put(self, object_type: str, record_id: str, values: Mapping[str, str]) -> FatalError | None:
        module = self.MODULES[object_type]
        body = {_custom(name): (value if value != "" else None) for name, value in values.items()}
        if not body:
            return None
        try:
            saved = self._request("PUT", f"/{module}/{_seg(record_id)}", json=body).json()
        except NotFound:
            return NotFound(f"SugarCRM has no {module} record {record_id}", vendor=self.name, status=404)
        except FatalError as exc:
            return exc
        missing = sorted(name for name in body if not isinstance(saved, dict) or name not in saved)
        if missing:
            return ValidationFailed(
                f"SugarCRM {module} has no field(s) {', '.join(missing)}: the values were not saved",
                vendor=self.name,
                status=200,
            )
        return None

    #: Canonical address field -> the suffix of the Sugar address field group (street lines handled apart).
    ADDRESS_SUFFIXES: ClassVar[dict[str, str]] = {
        "address.city": "city",
        "address.region": "state",
        "address.postal_code": "postalcode",
        "address.country": "country",
    }

    def update_customer_fields(self, ref: CrmRef, values: Mapping[str, str]) -> list[str]:
        """Write canonical customer fields where ``resolve_customer`` reads them; return those it cannot hold.

        A contact with an account is written as that account (the billable customer). On an account: name,
        billing address and tax number (``tax_number_field``) on it; first and last name on its main (oldest)
        contact, returned when it has none; email and phone where they are read from (the main contact's when
        it has one, else the account's; "" clears both). On a contact billed alone: its own fields and
        primary address; its name is first + last name (returned unless it already equals that), and it
        holds no tax number. Street lines share one field, so a second line without a first is returned.
        Emails replace the primary address of Sugar's ``email`` list and keep the others. Fields the saved
        record lacks (Sugar ignores unknown fields, e.g. a missing tax field) are returned. "people" is
        always returned. One ``PUT`` per record written (at most two). Raises NotFound when the record is
        gone, ValueError for an unknown field name or a deal ref, IntegrationError subclasses.
        """
        unknown = sorted(set(values) - set(CUSTOMER_FIELDS))
        if unknown:
            raise ValueError(f"not customer fields: {', '.join(unknown)}")
        if ref.object_type not in ("company", "contact"):
            raise ValueError(f"no customer for a {ref.object_type}")
        account_id, contact = ref.object_id, None
        if ref.object_type == "contact":
            contact = self._get("Contacts", ref.object_id, self.CONTACT_FIELDS)
            if contact is None:
                raise NotFound(f"SugarCRM has no Contacts record {ref.object_id}", vendor=self.name, status=404)
            account_id = _clean(contact.get("account_id"))
        writes: dict[tuple[str, str], dict[str, Any]] = {}
        origin: dict[tuple[str, str, str], str] = {}  # (module, id, Sugar field) -> canonical name
        if account_id:
            unwritable = self._account_writes(account_id, values, writes, origin)
        else:
            assert contact is not None
            unwritable = self._contact_writes(contact, values, writes, origin)
        for (module, record_id), body in writes.items():
            if not body:
                continue
            try:
                saved = self._request("PUT", f"/{module}/{_seg(record_id)}", json=body).json()
            except NotFound as exc:
                raise NotFound(f"SugarCRM has no {module} record {record_id}", vendor=self.name, status=404) from exc
            ignored = [f for f in body if not isinstance(saved, dict) or f not in saved]
            unwritable += [origin[(module, record_id, f)] for f in ignored if (module, record_id, f) in origin]
        return [n for n in values if n in unwritable]

    def _account_writes(
        self,
        account_id: str,
        values: Mapping[str, str],
        writes: dict[tuple[str, str], dict[str, Any]],
        origin: dict[tuple[str, str, str], str],
    ) -> list[str]:
        account = self._get("Accounts", account_id, self._account_fields())
        if account is None:
            raise NotFound(f"SugarCRM has no Accounts record {account_id}", vendor=self.name, status=404)
        main = next(iter(self._link("Accounts", account_id, "contacts", self.CONTACT_FIELDS, self.PEOPLE_ORDER)), None)
        company = _Writes(writes, origin, "Accounts", account_id)
        people = _Writes(writes, origin, "Contacts", str(main["id"])) if main is not None else None
        unwritable: list[str] = []
        for name, value in values.items():
            if name == "name":
                company.put(name, "name", value)
            elif name == "tax_number" and self.tax_number_field:
                company.put(name, self.tax_number_field, value)
            elif name in ("first_name", "last_name") and people is not None:
                people.put(name, name, value)
            elif name in ("email", "phone"):
                _shared_detail(name, value, account, main, company, people)
            elif not name.startswith("address."):
                unwritable.append(name)
        return unwritable + _address_writes(company, account, "billing_address", values)

    def _contact_writes(
        self,
        contact: Mapping[str, Any],
        values: Mapping[str, str],
        writes: dict[tuple[str, str], dict[str, Any]],
        origin: dict[tuple[str, str, str], str],
    ) -> list[str]:
        own = _Writes(writes, origin, "Contacts", str(contact["id"]))
        person = self._person(contact)
        first, last = values.get("first_name", person.first_name), values.get("last_name", person.last_name)
        unwritable: list[str] = []
        for name, value in values.items():
            if name in ("first_name", "last_name"):
                own.put(name, name, value)
            elif name == "email":
                own.put(name, "email", _email_list(contact, value))
            elif name == "phone":
                _phone(own, contact, value)
            elif name == "name" and value == " ".join(p.strip() for p in (first, last) if p.strip()):
                continue  # a contact's name is its first and last name: already what it will read
            elif not name.startswith("address."):
                unwritable.append(name)
        return unwritable + _address_writes(own, contact, "primary_address", values)

    def ensure_properties(self, object_type: str, definitions: Collection[PropertyDefinition]) -> list[str]:
        """Check the module's fields in ``GET /metadata``; Sugar's REST API cannot create Studio fields.

        Returns [] when every ``<name>_c`` exists. Otherwise raises ConfigurationError naming each missing
        field, its Studio type and how to add it. Raises ValueError for an object type without custom fields.
        """
        module = self.MODULES.get(object_type)
        if module is None:
            raise ValueError(f"no custom properties for a {object_type}")
        response = self._request("GET", "/metadata", params={"type_filter": "modules", "module_filter": module})
        fields = ((response.json().get("modules") or {}).get(module) or {}).get("fields") or {}
        missing = [d for d in definitions if _custom(d.name) not in fields]
        if not missing:
            return []
        described = []
        for definition in missing:
            studio, _ = self.STUDIO_TYPES.get(definition.type, ("TextField", "varchar"))
            options = f" with options {', '.join(definition.options)}" if definition.options else ""
            described.append(f"{_custom(definition.name)} ({studio}, label {definition.label!r}{options})")
        raise ConfigurationError(
            f"SugarCRM {module} lacks Closeloop's custom fields: {'; '.join(described)}. The REST API cannot "
            f"create fields: an admin adds them in Admin > Studio > {module} > Fields > Add Field (enter the name "
            f"without _c, Sugar appends it), or installs a module loadable package with these vardefs through "
            f"Admin > Module Loader.",
            vendor=self.name,
        )


class _Writes:
    """The fields to ``PUT`` on one record, remembering which canonical field each one carries."""

    def __init__(
        self,
        writes: dict[tuple[str, str], dict[str, Any]],
        origin: dict[tuple[str, str, str], str],
        module: str,
        record_id: str,
    ) -> None:
        self.body = writes.setdefault((module, record_id), {})
        self._origin = origin
        self._key = (module, record_id)

    def put(self, canonical: str, field: str, value: Any) -> None:
        self.body[field] = value
        self._origin.setdefault((*self._key, field), canonical)


def _shared_detail(
    name: str,
    value: str,
    account: Mapping[str, Any],
    main: Mapping[str, Any] | None,
    company: _Writes,
    person: _Writes | None,
) -> None:
    """An account's email or phone: read from its main contact when that has one, else from the account.

    Written where it is read from; "" clears both, so that neither is read.
    """
    on_person = main is not None and person is not None and bool(getattr(SugarCrm._person(main), name))
    if on_person and main is not None and person is not None:
        if name == "email":
            person.put(name, "email", _email_list(main, value))
        else:
            _phone(person, main, value)
    if not on_person or not value:
        if name == "email":
            company.put(name, "email", _email_list(account, value))
        else:
            company.put(name, "phone_office", value)


def _phone(target: _Writes, contact: Mapping[str, Any], value: str) -> None:
    """A contact's phone is ``phone_work``, else ``phone_mobile``: clearing it clears both."""
    target.put("phone", "phone_work", value)
    if not value and _clean(contact.get("phone_mobile")):
        target.put("phone", "phone_mobile", "")


def _email_list(record: Mapping[str, Any], value: str) -> list[dict[str, Any]]:
    """Sugar's ``email`` list with the address ``_email`` reads replaced by ``value``; "" empties it."""
    if not value:
        return []
    entries = [dict(e) for e in record.get("email") or [] if isinstance(e, dict) and _clean(e.get("email_address"))]
    valid = [e for e in entries if not _truthy(e.get("invalid_email"))]
    chosen = next((e for e in valid if _truthy(e.get("primary_address"))), valid[0] if valid else None)
    if chosen is None:
        chosen = {"email_address": value}
        entries.insert(0, chosen)
    for entry in entries:
        entry["primary_address"] = entry is chosen
    chosen["email_address"] = value
    return entries


def _address_writes(target: _Writes, record: Mapping[str, Any], prefix: str, values: Mapping[str, str]) -> list[str]:
    """Put the address fields of ``values`` on ``target``; return those it cannot hold.

    Both street lines live in one field, one per row: a second line without a first cannot be held.
    """
    for name, suffix in SugarCrm.ADDRESS_SUFFIXES.items():
        if name in values:
            target.put(name, f"{prefix}_{suffix}", values[name])
    streets = [n for n in ("address.line1", "address.line2") if n in values]
    if not streets:
        return []
    current = _address(record, prefix)
    line1 = values.get("address.line1", current.line1).strip()
    line2 = values.get("address.line2", current.line2).strip()
    if line2 and not line1:
        return streets
    target.put(streets[0], f"{prefix}_street", "\n".join(p for p in (line1, line2) if p))
    return []


def _seg(value: str) -> str:
    """A record id as one path segment (ids are UUIDs; anything else is escaped, never a path)."""
    return quote(value, safe="")


def _custom(name: str) -> str:
    return name if name.endswith("_c") else f"{name}_c"


def _clean(value: Any) -> str:
    return str(value).strip() if value not in (None, "") else ""


def _truthy(value: Any) -> bool:
    return value is True or str(value).strip().lower() in ("1", "true", "yes", "on")


def _email(record: Mapping[str, Any]) -> str:
    """The primary, valid address of Sugar's ``email`` list, else ``email1``; lower-cased."""
    addresses = [e for e in record.get("email") or [] if isinstance(e, dict) and not _truthy(e.get("invalid_email"))]
    primary = [e for e in addresses if _truthy(e.get("primary_address"))]
    for entry in (*primary, *addresses):
        if _clean(entry.get("email_address")):
            return _clean(entry.get("email_address")).lower()
    return _clean(record.get("email1")).lower()


def _address(record: Mapping[str, Any], prefix: str) -> Address:
    """Sugar keeps street lines in one text field, one line per row: the first is line1, the rest line2."""
    lines = [line.strip() for line in _clean(record.get(f"{prefix}_street")).splitlines() if line.strip()]
    return Address(
        line1=lines[0] if lines else "",
        line2=", ".join(lines[1:]),
        city=_clean(record.get(f"{prefix}_city")),
        region=_clean(record.get(f"{prefix}_state")),
        postal_code=_clean(record.get(f"{prefix}_postalcode")),
        country=_clean(record.get(f"{prefix}_country")),
    )


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _parse_time(value: Any) -> datetime | None:
    """Sugar's ISO 8601 date-times (``2024-05-01T10:23:28-04:00``) as aware UTC datetimes."""
    text = _clean(value)
    if not text:
        return None
    return _utc(datetime.fromisoformat(text.replace("Z", "+00:00")))


def _stamp(moment: datetime) -> str:
    return _utc(moment).strftime("%Y-%m-%dT%H:%M:%SZ")


def _sugar_time(moment: datetime) -> str:
    return _utc(moment).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def _first_day_at_or_after(moment: datetime) -> date:
    moment = _utc(moment)
    day = moment.date()
    return day if moment == datetime(day.year, day.month, day.day, tzinfo=UTC) else day + timedelta(days=1)


def _date(value: Any, deal_id: str) -> date | None:
    text = _clean(value)
    if not text:
        return None
    try:
        return date.fromisoformat(text[:10])
    except ValueError as exc:
        raise ValidationFailed(
            f"SugarCRM opportunity {deal_id} date_closed is not a date: {text[:40]!r}", vendor="sugarcrm"
        ) from exc


def _decimal(value: Any, what: str) -> Decimal | None:
    """A Sugar number (sent as a string such as "1200.000000") as an exact Decimal; None when empty."""
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        number = None
    if number is None or not number.is_finite():
        raise ValidationFailed(f"SugarCRM {what} is not a number: {str(value)[:40]!r}", vendor="sugarcrm")
    return number


__all__ = [
    "API_PREFIX",
    "DISCOVER",
    "GUESSES",
    "AccessTokens",
    "ApiVersion",
    "SugarCrm",
    "forget_api_versions",
    "parse_api_version",
    "password_grant",
]
