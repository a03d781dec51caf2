"""Xero adapter: OAuth2 with rotating refresh tokens, the Accounting API's Contacts, Xero's rate limits.

Vendor facts encoded here (Xero's OpenAPI spec v16 and developer docs):
- every call carries ``Authorization: Bearer`` and ``xero-tenant-id``; access tokens live 30 minutes;
  refresh tokens rotate on each refresh and are single-use (see closeloop.oauth for the lease around it);
- ``PUT /Contacts`` creates, ``POST /Contacts/{ContactID}`` updates only the fields sent; contact names and
  ContactNumbers are unique, a duplicate is a 400 ValidationException; ContactNumber is "used to identify
  contacts in external systems", so it carries our CRM key and finds a contact created before a crash;
- ``Idempotency-Key`` (≤128 chars) on every create/update;
- 429 says which limit was hit in ``X-Rate-Limit-Problem``: a minute or concurrency limit is worth
  waiting ``Retry-After`` for, the daily limit is not (the queue retries much later).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Generator, Mapping
from typing import Any, ClassVar

import httpx

from closeloop.errors import AuthRevoked, Conflict, FatalError, ValidationFailed
from closeloop.http import RateLimitVerdict, VendorHttp, retry_after_header
from closeloop.models import AccountingCustomer, Customer, customer_fields
from closeloop.oauth import RefreshingTokens, TokenGrant
from closeloop.redaction import redact

API_PREFIX = "/api.xro/2.0"
MAX_CONTACT_PERSONS = 5
_DUPLICATE = re.compile(r"already (assigned to another contact|exists)|must be unique", re.IGNORECASE)


def xero_rate_limit(response: httpx.Response) -> RateLimitVerdict:
    """Xero's 429: retry minute/concurrent limits after Retry-After; the daily limit is not worth waiting for."""
    verdict = retry_after_header(response)
    problem = response.headers.get("x-rate-limit-problem", "").lower()
    return RateLimitVerdict(retry=problem != "day", retry_after=verdict.retry_after, problem=problem)


class XeroAuth(httpx.Auth):
    """Bearer token + tenant header on every request; one forced refresh when Xero answers 401."""

    def __init__(self, tokens: RefreshingTokens, tenant_id: Callable[[], str]) -> None:
        self._tokens = tokens
        self._tenant_id = tenant_id

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token = self._tokens.access_token()
        request.headers["Authorization"] = f"Bearer {token}"
        request.headers["xero-tenant-id"] = self._tenant_id()
        response = yield request
        if response.status_code == 401:
            request.headers["Authorization"] = f"Bearer {self._tokens.access_token(stale=token)}"
            yield request


def refresh_with_identity(
    identity_url: str,
    client_id: Callable[[], str],
    client_secret: Callable[[], str],
    transport: httpx.BaseTransport | None = None,
) -> Callable[[str], TokenGrant]:
    """A ``refresh`` callable for RefreshingTokens that calls Xero's token endpoint."""

    def refresh(refresh_token: str) -> TokenGrant:
        http = VendorHttp("xero-identity", identity_url, transport=transport)
        try:
            response = http.request(
                "POST",
                "/connect/token",
                data={"grant_type": "refresh_token", "refresh_token": refresh_token},
                headers={"Authorization": _basic(client_id(), client_secret())},
                ok=(200, 400, 401),
            )
        finally:
            http.close()
        body = response.json() if response.content else {}
        if response.status_code != 200:
            error = str(body.get("error", "unknown_error"))
            if error == "invalid_grant":
                raise AuthRevoked(
                    "Xero refused the refresh token (invalid_grant): reconnect with `closeloop connect xero`",
                    vendor="xero",
                    status=response.status_code,
                )
            raise FatalError(f"Xero token endpoint said {error}", vendor="xero", status=response.status_code)
        return TokenGrant(
            access_token=str(body["access_token"]),
            expires_in=float(body.get("expires_in", 1800)),
            refresh_token=str(body["refresh_token"]),
        )

    return refresh


def _basic(user: str, password: str) -> str:
    import base64  # noqa: PLC0415

    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _quote(value: str) -> str:
    """A string literal for Xero's ``where`` (Dynamic LINQ: a double quote is written twice)."""
    return '"' + value.replace('"', '""') + '"'


class XeroAccounting:
    """AccountingPort for Xero."""

    name = "xero"
    PAGE_SIZE: ClassVar[int] = 100

    def __init__(
        self,
        *,
        base_url: str,
        tokens: RefreshingTokens,
        tenant_id: Callable[[], str],
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        kwargs: dict[str, Any] = {"transport": transport}
        if sleep is not None:
            kwargs["sleep"] = sleep
        self.http = VendorHttp(
            self.name,
            base_url.rstrip("/") + API_PREFIX,
            auth=XeroAuth(tokens, tenant_id),
            rate_limit=xero_rate_limit,
            request_id_header="xero-correlation-id",
            **kwargs,
        )

    # -- reads -------------------------------------------------------------------------------------

    def _contacts(self, params: Mapping[str, str]) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        page = 1
        while True:
            response = self.http.request(
                "GET", "/Contacts", params={**params, "page": str(page), "pageSize": str(self.PAGE_SIZE)}
            )
            batch = response.json().get("Contacts") or []
            found.extend(batch)
            if len(batch) < self.PAGE_SIZE:
                return found
            page += 1

    def get_customer(self, customer_id: str) -> AccountingCustomer | None:
        contacts = self._contacts({"IDs": customer_id})
        active = [c for c in contacts if c.get("ContactStatus", "ACTIVE") == "ACTIVE"]
        return to_customer(active[0]) if active else None

    def find_customers(
        self,
        *,
        number: str | None = None,
        tax_number: str | None = None,
        email: str | None = None,
        name: str | None = None,
    ) -> list[AccountingCustomer]:
        if number:
            contacts = self._contacts({"where": f"ContactNumber=={_quote(number)}"})
        elif tax_number:
            contacts = self._contacts({"where": f"TaxNumber=={_quote(tax_number)}"})
        elif email:
            wanted = email.lower()
            contacts = [
                c for c in self._contacts({"searchTerm": email}) if str(c.get("EmailAddress", "")).lower() == wanted
            ]
        elif name:
            contacts = self._contacts({"searchTerm": _search_word(name)})
        else:
            return []
        return [to_customer(c) for c in contacts if c.get("ContactStatus", "ACTIVE") == "ACTIVE"]

    # -- writes ------------------------------------------------------------------------------------

    def create_customer(self, customer: Customer, *, number: str, idempotency_key: str) -> AccountingCustomer:
        body = {"ContactNumber": number, **to_xero(customer, customer_fields(customer).keys())}
        return self._write("PUT", "/Contacts", body, idempotency_key)

    def update_customer(
        self,
        customer_id: str,
        customer: Customer,
        fields: Collection[str],
        *,
        number: str | None,
        idempotency_key: str,
    ) -> AccountingCustomer:
        body: dict[str, Any] = {"ContactID": customer_id, **to_xero(customer, fields)}
        if number:
            body["ContactNumber"] = number
        return self._write("POST", f"/Contacts/{customer_id}", body, idempotency_key)

    def _write(self, method: str, path: str, contact: dict[str, Any], idempotency_key: str) -> AccountingCustomer:
        response = self.http.request(
            method,
            path,
            params={"summarizeErrors": "true"},
            json={"Contacts": [contact]},
            headers={"Idempotency-Key": idempotency_key[:128]},
            ok=(200, 400),  # a 400 ValidationException is read here: its messages say which rule failed
        )
        if response.status_code == 400:
            messages = _validation_messages(response.text)
            context: dict[str, Any] = {
                "vendor": self.name,
                "status": 400,
                "request_id": response.headers.get("xero-correlation-id"),
            }
            if any(_DUPLICATE.search(m) for m in messages):
                raise Conflict("Xero already has a contact with this name or number", **context)
            reason = "; ".join(redact(m) for m in messages) or "validation error"
            raise ValidationFailed(f"Xero rejected the contact: {reason}", **context)
        return to_customer((response.json().get("Contacts") or [{}])[0])


def _validation_messages(body: str) -> list[str]:
    import json  # noqa: PLC0415

    try:
        payload = json.loads(body)
    except ValueError:
        return re.findall(r'"Message"\s*:\s*"([^"]*)"', body)
    messages: list[str] = []
    for element in payload.get("Elements") or []:
        messages.extend(str(e.get("Message", "")) for e in element.get("ValidationErrors") or [])
    return messages or ([str(payload["Message"])] if payload.get("Message") else [])


_LEGAL_WORDS = frozenset({"the", "ltd", "limited", "inc", "llc", "gmbh", "plc", "pty", "co", "corp", "sa", "bv", "ag"})


def _search_word(name: str) -> str:
    """The longest significant word of a name: Xero's searchTerm is a substring match."""
    words = [w for w in re.findall(r"[\w']+", name) if w.lower() not in _LEGAL_WORDS]
    return max(words, key=len) if words else name


def to_xero(customer: Customer, fields: Collection[str]) -> dict[str, Any]:
    """The Xero Contact fields for the named canonical ``fields`` of ``customer``."""
    wanted = set(fields)
    body: dict[str, Any] = {}
    simple = {
        "name": ("Name", customer.name),
        "first_name": ("FirstName", customer.first_name),
        "last_name": ("LastName", customer.last_name),
        "email": ("EmailAddress", customer.email),
        "tax_number": ("TaxNumber", customer.tax_number),
    }
    for field, (xero_name, value) in simple.items():
        if field in wanted:
            body[xero_name] = value
    if "phone" in wanted:
        body["Phones"] = [{"PhoneType": "DEFAULT", "PhoneNumber": customer.phone}]
    if any(f.startswith("address.") for f in wanted):
        a = customer.address
        body["Addresses"] = [
            {
                "AddressType": "STREET",
                "AddressLine1": a.line1,
                "AddressLine2": a.line2,
                "City": a.city,
                "Region": a.region,
                "PostalCode": a.postal_code,
                "Country": a.country,
            }
        ]
    if "people" in wanted:
        body["ContactPersons"] = [
            {"FirstName": p.first_name, "LastName": p.last_name, "EmailAddress": p.email, "IncludeInEmails": True}
            for p in sorted(customer.people, key=lambda p: p.crm_id)[:MAX_CONTACT_PERSONS]
        ]
    return body


def to_customer(contact: Mapping[str, Any]) -> AccountingCustomer:
    """A Xero Contact as the comparable canonical fields."""
    phones = contact.get("Phones") or []
    phone: Mapping[str, Any] = next((p for p in phones if p.get("PhoneType") == "DEFAULT"), {})
    addresses = contact.get("Addresses") or []
    with_line = [a for a in addresses if a.get("AddressLine1")]
    street = [a for a in with_line if a.get("AddressType") == "STREET"]
    address: Mapping[str, Any] = (street or with_line or [{}])[0]
    people = ";".join(
        f"{p.get('FirstName', '')}|{p.get('LastName', '')}|{str(p.get('EmailAddress', '')).lower()}"
        for p in contact.get("ContactPersons") or []
    )
    fields = {
        "name": str(contact.get("Name", "")),
        "first_name": str(contact.get("FirstName", "")),
        "last_name": str(contact.get("LastName", "")),
        "email": str(contact.get("EmailAddress", "")).lower(),
        "phone": " ".join(
            str(phone.get(k, "")) for k in ("PhoneCountryCode", "PhoneAreaCode", "PhoneNumber") if phone.get(k)
        ),
        "tax_number": str(contact.get("TaxNumber", "")),
        "address.line1": str(address.get("AddressLine1", "")),
        "address.line2": str(address.get("AddressLine2", "")),
        "address.city": str(address.get("City", "")),
        "address.region": str(address.get("Region", "")),
        "address.postal_code": str(address.get("PostalCode", "")),
        "address.country": str(address.get("Country", "")),
        "people": people,
    }
    return AccountingCustomer(
        id=str(contact.get("ContactID", "")),
        name=fields["name"],
        number=str(contact.get("ContactNumber", "")),
        email=fields["email"],
        tax_number=fields["tax_number"],
        status=str(contact.get("ContactStatus", "ACTIVE")),
        fields=fields,
    )
