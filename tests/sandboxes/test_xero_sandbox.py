"""XeroSandbox over real HTTP: identity, auth, rate limits, idempotency, contacts, invoices and payments."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from closeloop_local.sandboxes.base import SandboxServer
from closeloop_local.sandboxes.xero import (
    DEFAULT_REFRESH_TOKEN,
    DEFAULT_TENANT_ID,
    Endpoint,
    XeroSandbox,
    serve,
)

CLIENT = ("sandbox-client-id", "sandbox-client-secret")
GENEROUS: dict[str, Any] = {"minute_limit": 10_000, "day_limit": 100_000, "concurrent_limit": 50}


class Xero:
    """A started sandbox plus an HTTP client and a valid access token for it."""

    def __init__(self, sandbox: XeroSandbox, server: SandboxServer, client: httpx.Client) -> None:
        self.sandbox = sandbox
        self.server = server
        self.http = client
        self.token = ""

    def refresh(self, refresh_token: str, auth: tuple[str, str] = CLIENT) -> httpx.Response:
        data = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        return self.http.post("/connect/token", data=data, auth=auth)

    def login(self) -> Xero:
        reply = self.refresh(DEFAULT_REFRESH_TOKEN)
        assert reply.status_code == 200, reply.text
        self.token = reply.json()["access_token"]
        return self

    def headers(
        self, token: str | None = None, tenant: str | None = DEFAULT_TENANT_ID, extra: dict[str, str] | None = None
    ) -> dict[str, str]:
        out = {"Authorization": f"Bearer {token if token is not None else self.token}", **(extra or {})}
        if tenant is not None:
            out["xero-tenant-id"] = tenant
        return out

    def get(
        self,
        path: str,
        params: dict[str, Any] | None = None,
        *,
        token: str | None = None,
        tenant: str | None = DEFAULT_TENANT_ID,
        extra: dict[str, str] | None = None,
    ) -> httpx.Response:
        headers = self.headers(token, tenant, extra)
        return self.http.get(f"/api.xro/2.0/{path}", params=params, headers=headers)

    def send(
        self, method: str, path: str, body: Any, params: dict[str, Any] | None = None, key: str | None = None
    ) -> httpx.Response:
        """PUT/POST ``body``; ``key`` is sent as the Idempotency-Key header."""
        extra = {"Idempotency-Key": key} if key is not None else None
        return self.http.request(
            method, f"/api.xro/2.0/{path}", params=params, json=body, headers=self.headers(extra=extra)
        )

    def create_contact(self, **fields: Any) -> dict[str, Any]:
        reply = self.send("PUT", "Contacts", {"Contacts": [fields]})
        assert reply.status_code == 200, reply.text
        contact: dict[str, Any] = exact(reply)["Contacts"][0]
        return contact

    def create_invoice(self, params: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
        reply = self.send("PUT", "Invoices", {"Invoices": [fields]}, params=params)
        assert reply.status_code == 200, reply.text
        invoice: dict[str, Any] = exact(reply)["Invoices"][0]
        return invoice

    def invoice(self, invoice_id: str) -> dict[str, Any]:
        """GET /Invoices/{id}, numbers as Decimal."""
        reply = self.get(f"Invoices/{invoice_id}")
        assert reply.status_code == 200, reply.text
        invoice: dict[str, Any] = exact(reply)["Invoices"][0]
        return invoice

    def email(self, invoice_id: str, key: str | None = None) -> httpx.Response:
        """POST /Invoices/{id}/Email with the spec's empty body."""
        return self.send("POST", f"Invoices/{invoice_id}/Email", {}, key=key)


@pytest.fixture
def start() -> Iterator[Callable[..., Xero]]:
    """Start sandboxes on free ports; every server and client is closed after the test."""
    opened: list[tuple[SandboxServer, httpx.Client]] = []

    def _start(**options: Any) -> Xero:
        sandbox, server = serve(XeroSandbox(**options))
        client = httpx.Client(base_url=server.url, timeout=5.0)
        opened.append((server, client))
        return Xero(sandbox, server, client)

    yield _start
    for server, client in opened:
        client.close()
        server.stop()


@pytest.fixture(scope="module")
def shared() -> Iterator[Xero]:
    """One generously limited sandbox for the module; each test gets it reset (stopping a server costs 0.5 s)."""
    sandbox, server = serve(XeroSandbox(**GENEROUS))
    with httpx.Client(base_url=server.url, timeout=5.0) as client:
        yield Xero(sandbox, server, client)
    server.stop()


@pytest.fixture
def xero(shared: Xero) -> Xero:
    shared.sandbox.reset()
    return shared.login()


def exact(reply: httpx.Response) -> Any:
    """The body with its numbers parsed as Decimal, as the adapter reads Xero (never through float)."""
    return json.loads(reply.text, parse_float=Decimal)


def money(value: Any) -> Decimal:
    assert isinstance(value, Decimal | int), f"{value!r} was not read exactly"
    return Decimal(value)


# ---- identity ---------------------------------------------------------------------------------------------


def test_refresh_rotates_and_the_old_token_dies_after_the_grace_period(start: Callable[..., Xero]) -> None:
    # Given a sandbox holding the initial refresh token
    x = start()

    # When the app refreshes with it
    first = x.refresh(DEFAULT_REFRESH_TOKEN)

    # Then it gets a full token set with a new refresh token
    body = first.json()
    assert first.status_code == 200
    assert set(body) >= {"id_token", "access_token", "expires_in", "token_type", "refresh_token", "scope"}
    assert body["expires_in"] == 1800 and body["token_type"] == "Bearer"
    assert body["refresh_token"] != DEFAULT_REFRESH_TOKEN
    assert len(body["access_token"].split(".")) == 3  # JWT-shaped like Xero's
    assert first.headers["Cache-Control"] == "no-store"
    assert x.sandbox.current_refresh_token == body["refresh_token"]

    # When the old token is used again after the 30-minute grace period
    x.sandbox.state.clock.advance(1801)
    late = x.refresh(DEFAULT_REFRESH_TOKEN)

    # Then Xero refuses it, while the new one still works
    assert late.status_code == 400 and late.json() == {"error": "invalid_grant"}
    assert x.refresh(body["refresh_token"]).status_code == 200


def test_reusing_the_previous_refresh_token_within_grace_replays_the_same_token_set(start: Callable[..., Xero]) -> None:
    # Given a refresh whose response the app lost
    x = start()
    lost = x.refresh(DEFAULT_REFRESH_TOKEN).json()

    # When the app retries with the previous token within the grace period
    x.sandbox.state.clock.advance(600)
    retry = x.refresh(DEFAULT_REFRESH_TOKEN)

    # Then it gets the very same token set back
    assert retry.status_code == 200
    assert retry.json() == lost

    # When the new token has been used in turn, the previous one is dead even within the grace period
    assert x.refresh(lost["refresh_token"]).status_code == 200
    assert x.refresh(DEFAULT_REFRESH_TOKEN).json() == {"error": "invalid_grant"}


def test_only_the_newest_token_refreshes_and_unknown_tokens_are_invalid_grant(start: Callable[..., Xero]) -> None:
    # Given two rotations
    x = start()
    second = x.refresh(x.refresh(DEFAULT_REFRESH_TOKEN).json()["refresh_token"]).json()["refresh_token"]

    # When the app uses the original (now two generations old) token or a made-up one
    # Then both are invalid_grant, the newest one still works
    assert x.refresh(DEFAULT_REFRESH_TOKEN).json() == {"error": "invalid_grant"}
    assert x.refresh("not-a-token").json() == {"error": "invalid_grant"}
    assert x.refresh(second).status_code == 200


@pytest.mark.parametrize("how", ["basic", "form"])
def test_a_wrong_client_secret_is_invalid_client(start: Callable[..., Xero], how: str) -> None:
    # Given wrong client credentials sent as HTTP Basic or as form fields
    x = start()
    data = {"grant_type": "refresh_token", "refresh_token": DEFAULT_REFRESH_TOKEN}
    if how == "basic":
        reply = x.http.post("/connect/token", data=data, auth=("sandbox-client-id", "wrong"))
    else:
        reply = x.http.post("/connect/token", data={**data, "client_id": CLIENT[0], "client_secret": "wrong"})

    # Then the identity server answers 400 invalid_client and the refresh token survives
    assert reply.status_code == 400 and reply.json() == {"error": "invalid_client"}
    form = {**data, "client_id": CLIENT[0], "client_secret": CLIENT[1]}
    assert x.http.post("/connect/token", data=form).status_code == 200


def test_unsupported_grant_type(start: Callable[..., Xero]) -> None:
    x = start()
    reply = x.http.post("/connect/token", data={"grant_type": "password"}, auth=CLIENT)
    assert reply.status_code == 400 and reply.json() == {"error": "unsupported_grant_type"}


def test_authorize_redirects_with_a_single_use_code_and_connections_list_the_tenant(
    start: Callable[..., Xero],
) -> None:
    # Given the consent URL on login.xero.com
    x = start()
    params = {
        "response_type": "code",
        "client_id": CLIENT[0],
        "redirect_uri": "https://app.example.com/callback",
        "scope": "openid offline_access accounting.contacts",
        "state": "xyz",
    }

    # When the user consents
    redirect = x.http.get("/identity/connect/authorize", params=params)

    # Then the browser goes back with a code and the state
    assert redirect.status_code == 302
    location = urlsplit(redirect.headers["Location"])
    query = parse_qs(location.query)
    assert f"{location.scheme}://{location.netloc}{location.path}" == "https://app.example.com/callback"
    assert query["state"] == ["xyz"]

    # When the code is exchanged (twice)
    exchange = {"grant_type": "authorization_code", "code": query["code"][0], "redirect_uri": params["redirect_uri"]}
    tokens = x.http.post("/connect/token", data=exchange, auth=CLIENT)
    again = x.http.post("/connect/token", data=exchange, auth=CLIENT)

    # Then the first exchange issues tokens with the granted scope and the second is invalid_grant
    assert tokens.status_code == 200 and tokens.json()["scope"] == params["scope"]
    assert again.json() == {"error": "invalid_grant"}

    # And /connections lists the organisation for that token
    connections = x.http.get("/connections", headers={"Authorization": f"Bearer {tokens.json()['access_token']}"})
    assert connections.status_code == 200
    [connection] = connections.json()
    assert connection["tenantId"] == DEFAULT_TENANT_ID and connection["tenantType"] == "ORGANISATION"
    assert set(connection) >= {"id", "authEventId", "tenantName", "createdDateUtc", "updatedDateUtc"}


def test_a_revoked_refresh_token_is_invalid_grant(start: Callable[..., Xero]) -> None:
    # Given the user disconnected the app (all refresh tokens revoked)
    x = start()
    x.sandbox.revoke_refresh_tokens()

    # Then refreshing fails and there is no token to bootstrap with
    assert x.refresh(DEFAULT_REFRESH_TOKEN).json() == {"error": "invalid_grant"}
    assert x.sandbox.current_refresh_token is None
    assert x.http.get("/_sandbox/refresh-token").status_code == 404


def test_deleting_the_connection_or_revoking_the_token_cuts_the_app_off(xero: Xero) -> None:
    # Given a connected app
    auth = {"Authorization": f"Bearer {xero.token}"}
    [connection] = xero.http.get("/connections", headers=auth).json()

    # When it disconnects the tenant
    assert xero.http.delete(f"/connections/{connection['id']}", headers=auth).status_code == 204

    # Then the tenant is gone from /connections and the API answers 403
    assert xero.http.get("/connections", headers=auth).json() == []
    assert xero.get("Contacts").status_code == 403

    # When the refresh token is revoked, refreshing is invalid_grant
    current = xero.sandbox.current_refresh_token
    assert current is not None
    revoked = xero.http.post("/connect/revocation", data={"token": current}, auth=CLIENT)
    assert revoked.status_code == 200
    assert xero.refresh(current).json() == {"error": "invalid_grant"}


# ---- accounting API auth ------------------------------------------------------------------------------------


def test_missing_or_unknown_bearer_token_is_401_problem_details(xero: Xero) -> None:
    # When the API is called without a token, then with a made-up one
    missing = xero.http.get("/api.xro/2.0/Contacts", headers={"xero-tenant-id": DEFAULT_TENANT_ID})
    bogus = xero.get("Contacts", token="nope")

    # Then both are 401 with Xero's problem-details body and a WWW-Authenticate challenge
    for reply in (missing, bogus):
        assert reply.status_code == 401
        body = reply.json()
        assert {k: body[k] for k in ("Type", "Title", "Status", "Detail", "Extensions")} == {
            "Type": None,
            "Title": "Unauthorized",
            "Status": 401,
            "Detail": "AuthenticationUnsuccessful",
            "Extensions": {},
        }
        assert body["Instance"]
        assert reply.headers["WWW-Authenticate"].startswith("Bearer")


def test_an_expired_access_token_is_401_token_expired(xero: Xero) -> None:
    # Given 30 minutes have passed since the token was issued
    xero.sandbox.state.clock.advance(1800)

    # When it is used
    reply = xero.get("Contacts")

    # Then Xero says TokenExpired
    assert reply.status_code == 401
    assert reply.json()["Detail"].startswith("TokenExpired: token expired at ")


def test_expire_tokens_control_endpoint_kills_live_access_tokens(xero: Xero) -> None:
    assert xero.get("Contacts").status_code == 200
    assert xero.http.post("/_sandbox/expire-tokens").status_code == 200
    assert xero.get("Contacts").status_code == 401


@pytest.mark.parametrize("tenant", [None, "", "11111111-2222-3333-4444-555555555555"])
def test_missing_or_unknown_tenant_is_403(xero: Xero, tenant: str | None) -> None:
    # When a valid token is used without the org's xero-tenant-id
    reply = xero.get("Contacts", tenant=tenant)

    # Then Xero answers 403 AuthenticationUnsuccessful
    assert reply.status_code == 403
    body = reply.json()
    assert (body["Title"], body["Status"], body["Detail"]) == ("Forbidden", 403, "AuthenticationUnsuccessful")


def test_a_token_without_the_scope_is_401_authorization_unsuccessful(start: Callable[..., Xero]) -> None:
    # Given a token granted only accounting.contacts
    x = start()
    redirect = x.http.get(
        "/identity/connect/authorize",
        params={
            "response_type": "code",
            "client_id": CLIENT[0],
            "redirect_uri": "https://app.example.com/cb",
            "scope": "offline_access accounting.contacts",
        },
    )
    code = parse_qs(urlsplit(redirect.headers["Location"]).query)["code"][0]
    exchange = {"grant_type": "authorization_code", "code": code, "redirect_uri": "https://app.example.com/cb"}
    token = x.http.post("/connect/token", data=exchange, auth=CLIENT).json()["access_token"]

    # When it reads contacts and invoices
    # Then contacts work and invoices are refused
    assert x.get("Contacts", token=token).status_code == 200
    refused = x.get("Invoices", token=token)
    assert refused.status_code == 401 and refused.json()["Detail"] == "AuthorizationUnsuccessful"


# ---- contacts -----------------------------------------------------------------------------------------------


def test_put_contacts_creates_a_contact_in_xeros_shape(xero: Xero) -> None:
    # When a contact is created
    reply = xero.send(
        "PUT",
        "Contacts",
        {
            "Contacts": [
                {
                    "Name": "Acme Ltd",
                    "ContactNumber": "HS-1",
                    "EmailAddress": "ap@acme.test",
                    "Phones": [{"PhoneType": "MOBILE", "PhoneNumber": "555-1212"}],
                    "Addresses": [{"AddressType": "POBOX", "City": "Wellington"}],
                    "IsCustomer": True,  # read-only: ignored
                }
            ]
        },
    )

    # Then the envelope and the contact look like Xero's
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("application/json")
    body = reply.json()
    assert list(body)[:4] == ["Id", "Status", "ProviderName", "DateTimeUTC"]
    assert body["Status"] == "OK" and body["DateTimeUTC"].startswith("/Date(")
    [contact] = body["Contacts"]
    assert contact["ContactStatus"] == "ACTIVE" and contact["Name"] == "Acme Ltd"
    assert contact["UpdatedDateUTC"].startswith("/Date(") and contact["UpdatedDateUTC"].endswith("+0000)/")
    assert [a["AddressType"] for a in contact["Addresses"]] == ["STREET", "POBOX"]
    assert [p["PhoneType"] for p in contact["Phones"]] == ["DEFAULT", "DDI", "FAX", "MOBILE"]
    assert contact["Phones"][3]["PhoneNumber"] == "555-1212"
    assert contact["IsCustomer"] is False and contact["HasValidationErrors"] is False
    assert xero.sandbox.contacts()[0]["ContactID"] == contact["ContactID"]


def test_a_single_contact_object_is_accepted(xero: Xero) -> None:
    reply = xero.send("PUT", "Contacts", {"Name": "Solo Ltd"})
    assert reply.status_code == 200 and reply.json()["Contacts"][0]["Name"] == "Solo Ltd"


def test_creating_a_duplicate_name_is_a_validation_exception(xero: Xero) -> None:
    # Given an active contact
    xero.create_contact(Name="Acme Ltd")

    # When another is created with the same name in another case
    reply = xero.send("PUT", "Contacts", {"Contacts": [{"Name": "ACME LTD", "EmailAddress": "x@acme.test"}]})

    # Then Xero answers 400 ValidationException echoing the element with its errors
    assert reply.status_code == 400
    body = reply.json()
    assert (body["ErrorNumber"], body["Type"], body["Message"]) == (
        10,
        "ValidationException",
        "A validation exception occurred",
    )
    [element] = body["Elements"]
    assert element["Name"] == "ACME LTD" and element["HasValidationErrors"] is True
    assert element["ValidationErrors"] == [
        {
            "Message": "The contact name ACME LTD is already assigned to another contact. "
            "The contact name must be unique across all active contacts."
        }
    ]
    assert len(xero.sandbox.contacts()) == 1


def test_an_archived_contact_frees_its_name_but_contact_numbers_stay_unique(xero: Xero) -> None:
    # Given an archived contact with a contact number
    old = xero.create_contact(Name="Acme Ltd", ContactNumber="HS-1")
    archived = xero.send("POST", f"Contacts/{old['ContactID']}", {"ContactStatus": "ARCHIVED"})
    assert archived.json()["Contacts"][0]["ContactStatus"] == "ARCHIVED"

    # When a new contact takes the name, and another the number
    # Then the name is free, the number is not
    assert xero.send("PUT", "Contacts", {"Name": "Acme Ltd"}).status_code == 200
    clash = xero.send("PUT", "Contacts", {"Name": "Other", "ContactNumber": "HS-1"})
    assert clash.status_code == 400
    assert clash.json()["Elements"][0]["ValidationErrors"] == [
        {"Message": "The contact number HS-1 is already assigned to another contact."}
    ]


def test_name_is_required_and_at_most_five_contact_persons(xero: Xero) -> None:
    persons = [{"FirstName": f"P{i}", "EmailAddress": f"p{i}@x.test"} for i in range(6)]
    reply = xero.send("PUT", "Contacts", {"Contacts": [{"EmailAddress": "not-an-email", "ContactPersons": persons}]})
    assert reply.status_code == 400
    messages = [e["Message"] for e in reply.json()["Elements"][0]["ValidationErrors"]]
    assert messages == [
        "Contact Name cannot be empty.",
        "Email address must be valid.",
        "A contact can have a maximum of 5 contact persons.",
    ]


def test_summarize_errors_false_returns_200_with_per_element_status(xero: Xero) -> None:
    # Given an existing contact
    xero.create_contact(Name="Taken")

    # When a batch mixes a good and a bad element with summarizeErrors=false
    reply = xero.send(
        "PUT", "Contacts", {"Contacts": [{"Name": "Fresh"}, {"Name": "Taken"}]}, params={"summarizeErrors": "false"}
    )

    # Then it is a 200 listing both, each with its StatusAttributeString; the good one is saved
    assert reply.status_code == 200
    good, bad = reply.json()["Contacts"]
    assert (good["StatusAttributeString"], bad["StatusAttributeString"]) == ("OK", "ERROR")
    assert bad["HasValidationErrors"] is True and bad["ValidationErrors"]
    assert sorted(c["Name"] for c in xero.sandbox.contacts()) == ["Fresh", "Taken"]


def test_invalid_json_is_a_post_data_invalid_exception(xero: Xero) -> None:
    reply = xero.http.put("/api.xro/2.0/Contacts", content=b"{nope", headers=xero.headers())
    assert reply.status_code == 400 and reply.json()["Type"] == "PostDataInvalidException"


def test_post_contacts_updates_the_matching_contact_and_only_the_fields_sent(xero: Xero) -> None:
    # Given a contact with an email and a phone
    made = xero.create_contact(
        Name="Acme Ltd",
        ContactNumber="HS-1",
        EmailAddress="a@acme.test",
        Phones=[{"PhoneType": "DEFAULT", "PhoneNumber": "1"}],
    )
    xero.sandbox.state.clock.advance(5)

    # When POST /Contacts names it by ContactNumber with a new email, then by Name with a tax number
    by_number = xero.send("POST", "Contacts", {"Contacts": [{"ContactNumber": "HS-1", "EmailAddress": "b@acme.test"}]})
    by_name = xero.send("POST", "Contacts", {"Contacts": [{"Name": "acme ltd", "TaxNumber": "12-345-678"}]})

    # Then the same contact is updated each time; untouched fields survive and UpdatedDateUTC moves on
    assert by_number.status_code == 200 and by_name.status_code == 200
    [stored] = xero.sandbox.contacts()
    assert stored["ContactID"] == made["ContactID"]
    assert (stored["EmailAddress"], stored["TaxNumber"], stored["Name"]) == ("b@acme.test", "12-345-678", "acme ltd")
    assert stored["Phones"][0]["PhoneNumber"] == "1"
    assert stored["UpdatedDateUTC"] != made["UpdatedDateUTC"]

    # And POST /Contacts without a match creates
    assert xero.send("POST", "Contacts", {"Name": "New Co"}).status_code == 200
    assert len(xero.sandbox.contacts()) == 2


def test_post_contact_by_id_and_get_by_id_or_number(xero: Xero) -> None:
    made = xero.create_contact(Name="Acme Ltd", ContactNumber="HS-9")
    updated = xero.send("POST", f"Contacts/{made['ContactID']}", {"Contacts": [{"FirstName": "Ann"}]})
    assert updated.json()["Contacts"][0]["FirstName"] == "Ann"

    by_id = xero.get(f"Contacts/{made['ContactID']}").json()["Contacts"][0]
    by_number = xero.get("Contacts/HS-9").json()["Contacts"][0]
    assert by_id["ContactID"] == by_number["ContactID"] == made["ContactID"]
    assert by_id["Balances"]["AccountsReceivable"] == {"Outstanding": 0.0, "Overdue": 0.0}


@pytest.mark.parametrize("path", ["Contacts/7d0b8e7e-0000-4000-8000-000000000000", "Contacts/NOPE-1"])
def test_an_unknown_contact_is_xeros_plain_text_404(xero: Xero, path: str) -> None:
    reply = xero.get(path)
    assert reply.status_code == 404
    assert reply.text == "The resource you're looking for cannot be found"
    assert xero.send("POST", path, {"Name": "x"}).status_code == 404


def seed_people(x: Xero) -> None:
    x.sandbox.seed_contact(Name="Alice Smith", EmailAddress="alice@example.com", ContactNumber="C-1", TaxNumber="T1")
    x.sandbox.seed_contact(Name="Bob Jones", EmailAddress="bob@example.com", ContactNumber="C-2", FirstName="Bobby")
    x.sandbox.seed_contact(Name='Carol "CJ" Ltd', EmailAddress="carol@example.com", ContactNumber="C-3")
    x.sandbox.seed_contact(Name="Dormant Ltd", ContactStatus="ARCHIVED")


@pytest.mark.parametrize(
    ("where", "names"),
    [
        ('Name=="Alice Smith"', ["Alice Smith"]),
        ('Name=="alice smith"', ["Alice Smith"]),
        ('EmailAddress=="bob@example.com"', ["Bob Jones"]),
        ('ContactNumber=="C-3"', ['Carol "CJ" Ltd']),
        ('TaxNumber=="T1"', ["Alice Smith"]),
        ('Name=="Carol ""CJ"" Ltd"', ['Carol "CJ" Ltd']),
        ('ContactStatus=="ACTIVE" && EmailAddress=="alice@example.com"', ["Alice Smith"]),
        ('ContactStatus=="ACTIVE" AND (ContactNumber=="C-1" OR ContactNumber=="C-2")', ["Alice Smith", "Bob Jones"]),
        ('Name.StartsWith("b")', ["Bob Jones"]),
        ('EmailAddress!=null && Name.Contains("ol")', ['Carol "CJ" Ltd']),
    ],
)
def test_where_filters(xero: Xero, where: str, names: list[str]) -> None:
    # Given some contacts (one archived)
    seed_people(xero)

    # When listing with a where clause
    reply = xero.get("Contacts", params={"where": where})

    # Then only the matching active contacts come back
    assert reply.status_code == 200, reply.text
    assert [c["Name"] for c in reply.json()["Contacts"]] == names


def test_where_on_an_unknown_field_is_a_query_parse_exception(xero: Xero) -> None:
    reply = xero.get("Contacts", params={"where": 'Nickname=="x"'})
    assert reply.status_code == 400
    assert reply.json() == {
        "ErrorNumber": 16,
        "Type": "QueryParseException",
        "Message": "No property or field 'Nickname' exists in type 'Contact'",
    }


def test_search_term_ids_include_archived_and_summary_only(xero: Xero) -> None:
    seed_people(xero)
    everyone = {c["Name"]: c for c in xero.sandbox.contacts()}

    # searchTerm is case-insensitive over Name, FirstName, LastName, ContactNumber and EmailAddress
    def search(term: str) -> list[str]:
        return [c["Name"] for c in xero.get("Contacts", params={"searchTerm": term}).json()["Contacts"]]

    assert search("ALICE") == ["Alice Smith"]
    assert search("bobby") == ["Bob Jones"]
    assert search("c-3") == ['Carol "CJ" Ltd']
    assert search("EXAMPLE.COM") == ["Alice Smith", "Bob Jones", 'Carol "CJ" Ltd']

    ids = f"{everyone['Alice Smith']['ContactID']},{everyone['Bob Jones']['ContactID']}"
    assert len(xero.get("Contacts", params={"IDs": ids}).json()["Contacts"]) == 2
    assert len(xero.get("Contacts").json()["Contacts"]) == 3
    assert len(xero.get("Contacts", params={"includeArchived": "true"}).json()["Contacts"]) == 4

    summary = xero.get("Contacts", params={"summaryOnly": "true"}).json()
    assert "Addresses" not in summary["Contacts"][0] and summary["pagination"]["page"] == 1


def test_paging_is_100_by_default_up_to_1000_with_a_pagination_object(xero: Xero) -> None:
    # Given 150 contacts
    for i in range(150):
        xero.sandbox.seed_contact(Name=f"Customer {i:03d}")

    # When pages are requested
    first = xero.get("Contacts", params={"page": 1}).json()
    second = xero.get("Contacts", params={"page": 2}).json()
    big = xero.get("Contacts", params={"page": 1, "pageSize": 5000}).json()
    unpaged = xero.get("Contacts").json()

    # Then 100 + 50 in name order, pagination describes it, and no page means everything without pagination
    assert len(first["Contacts"]) == 100 and len(second["Contacts"]) == 50
    assert first["pagination"] == {"page": 1, "pageSize": 100, "pageCount": 2, "itemCount": 150}
    assert second["Contacts"][0]["Name"] == "Customer 100"
    assert big["pagination"]["pageSize"] == 1000 and len(big["Contacts"]) == 150
    assert "pagination" not in unpaged and len(unpaged["Contacts"]) == 150


def test_if_modified_since_returns_only_later_changes(xero: Xero) -> None:
    # Given a contact created now and another ten minutes later
    xero.create_contact(Name="Early")
    xero.sandbox.state.clock.advance(600)
    later = xero.create_contact(Name="Later")
    cutoff_ms = int(later["UpdatedDateUTC"][6:-7]) - 1000
    from datetime import UTC, datetime

    since = datetime.fromtimestamp(cutoff_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S")

    # When listing with If-Modified-Since between them
    reply = xero.http.get("/api.xro/2.0/Contacts", headers=xero.headers(extra={"If-Modified-Since": since}))

    # Then only the later one comes back
    assert [c["Name"] for c in reply.json()["Contacts"]] == ["Later"]


# ---- idempotency ------------------------------------------------------------------------------------------------


def test_idempotency_key_replays_the_first_response(xero: Xero) -> None:
    # Given a create sent with an Idempotency-Key
    body = {"Contacts": [{"Name": "Once Ltd"}]}
    first = xero.send("PUT", "Contacts", body, key="key-1")

    # When the same request is retried with the same key
    retry = xero.send("PUT", "Contacts", body, key="key-1")

    # Then the first response is replayed and only one contact exists
    assert first.status_code == retry.status_code == 200
    assert retry.json() == first.json()
    assert len(xero.sandbox.contacts()) == 1

    # When the key is reused with a different body
    other = xero.send("PUT", "Contacts", {"Contacts": [{"Name": "Twice Ltd"}]}, key="key-1")

    # Then Xero refuses it
    assert other.status_code == 400
    assert other.json()["Detail"] == "Idempotency key key-1 is used with a different request"

    # When six minutes have passed the key is forgotten and the request runs again (here: a duplicate)
    xero.sandbox.state.clock.advance(361)
    late = xero.send("PUT", "Contacts", body, key="key-1")
    assert late.status_code == 400 and late.json()["Type"] == "ValidationException"


def test_idempotency_caches_errors_too_and_limits_key_length(xero: Xero) -> None:
    # Given a request that fails
    xero.create_contact(Name="Taken")
    body = {"Name": "Taken"}
    failed = xero.send("PUT", "Contacts", body, key="k-err")

    # When the cause goes away and the same request is retried with the same key
    taken = xero.sandbox.contacts()[0]["ContactID"]
    xero.send("POST", f"Contacts/{taken}", {"Name": "Renamed"})
    retry = xero.send("PUT", "Contacts", body, key="k-err")

    # Then the cached error is replayed
    assert failed.status_code == retry.status_code == 400 and retry.json() == failed.json()

    # And a key longer than 128 characters is refused
    assert xero.send("PUT", "Contacts", {"Name": "Z"}, key="k" * 129).status_code == 400


# ---- rate limits -------------------------------------------------------------------------------------------------


def test_minute_limit_answers_429_with_retry_after_until_the_window_rolls(start: Callable[..., Xero]) -> None:
    # Given a tenant limited to 3 calls a minute
    x = start(minute_limit=3).login()

    # When it makes 4 calls
    replies = [x.get("Contacts") for _ in range(4)]

    # Then the first 3 count down the remaining headers and the 4th is a minute-limit 429
    assert [r.status_code for r in replies] == [200, 200, 200, 429]
    assert [r.headers["X-MinLimit-Remaining"] for r in replies[:3]] == ["2", "1", "0"]
    assert replies[0].headers["X-DayLimit-Remaining"] == "4999"
    assert replies[0].headers["X-AppMinLimit-Remaining"] == "9999"
    limited = replies[3]
    assert limited.headers["X-Rate-Limit-Problem"] == "minute"
    assert 1 <= int(limited.headers["Retry-After"]) <= 60

    # When the sandbox clock moves past the window
    x.sandbox.state.clock.advance(61)

    # Then calls go through again
    assert x.get("Contacts").status_code == 200


def test_a_time_scaled_sandbox_keeps_xeros_limits_on_a_faster_clock(start: Callable[..., Xero]) -> None:
    # Given Xero's real 60 calls a minute on a clock 30 times faster (a minute lasts 2 s)
    x = start(minute_limit=60, time_scale=30).login()

    # When 61 calls are made at once
    replies = [x.get("Contacts") for _ in range(61)]

    # Then the 61st is a minute-limit 429 whose Retry-After is in Xero's seconds (up to 60), not real ones
    assert [r.status_code for r in replies].count(200) == 60
    limited = replies[60]
    assert limited.status_code == 429 and limited.headers["X-Rate-Limit-Problem"] == "minute"
    assert 2 <= int(limited.headers["Retry-After"]) <= 60

    # When that many Xero seconds have passed (in real time: Retry-After / 30)
    threading.Event().wait(int(limited.headers["Retry-After"]) / 30 + 0.05)

    # Then calls go through again
    assert x.get("Contacts").status_code == 200


def test_day_and_app_minute_limits(start: Callable[..., Xero]) -> None:
    day = start(day_limit=2).login()
    assert [day.get("Contacts").status_code for _ in range(3)] == [200, 200, 429]
    third = day.get("Contacts")
    assert third.headers["X-Rate-Limit-Problem"] == "day" and int(third.headers["Retry-After"]) > 3600

    app = start(app_minute_limit=1).login()
    app.get("Contacts")
    assert app.get("Contacts").headers["X-Rate-Limit-Problem"] == "appminute"


def test_concurrent_limit(start: Callable[..., Xero]) -> None:
    # Given a tenant allowed 1 call in flight and a slow API (a status-0 fault only delays)
    x = start(concurrent_limit=1).login()
    x.http.post("/_sandbox/faults", json={"path_glob": "/api.xro/2.0/Contacts", "status": 0, "delay": 2.0})
    logged = len(x.sandbox.state.requests)

    # When a second call arrives while the first is still running (it has reached the sandbox: it is logged, and
    # its 2-second delay runs inside the concurrency limit)
    with ThreadPoolExecutor(max_workers=1) as pool:
        slow = pool.submit(x.get, "Contacts")
        deadline = time.monotonic() + 5
        while len(x.sandbox.state.requests) == logged and time.monotonic() < deadline:
            threading.Event().wait(0.01)
        threading.Event().wait(0.1)
        with httpx.Client(base_url=x.server.url, timeout=5.0) as other:
            second = other.get("/api.xro/2.0/Contacts", headers=x.headers())

    # Then the second is refused as concurrent and the first completes
    assert second.status_code == 429 and second.headers["X-Rate-Limit-Problem"] == "concurrent"
    assert slow.result().status_code == 200


# ---- faults and the control API ------------------------------------------------------------------------------


def test_injected_faults_come_before_auth_and_are_logged(xero: Xero) -> None:
    # Given two 503s injected on the contacts path
    fault = {"path_glob": "/api.xro/2.0/Contacts*", "status": 503, "times": 2, "body": "The Xero API is offline"}
    assert xero.http.post("/_sandbox/faults", json=fault).status_code == 201

    # When calls are made, the first without any credentials
    unauthenticated = xero.http.get("/api.xro/2.0/Contacts")
    second = xero.get("Contacts")
    third = xero.get("Contacts")

    # Then the fault answers twice regardless of auth, then normal service resumes
    assert (unauthenticated.status_code, second.status_code, third.status_code) == (503, 503, 200)
    assert unauthenticated.text == "The Xero API is offline"

    # And the request log has every non-control request with its final status
    log = xero.http.get("/_sandbox/requests").json()["requests"]
    assert [(r["method"], r["path"], r["status"]) for r in log] == [
        ("POST", "/connect/token", 200),
        ("GET", "/api.xro/2.0/Contacts", 503),
        ("GET", "/api.xro/2.0/Contacts", 503),
        ("GET", "/api.xro/2.0/Contacts", 200),
    ]


def test_a_429_fault_carries_rate_limit_headers_and_a_delay_fault_times_out(xero: Xero) -> None:
    xero.sandbox.state.faults.append(
        __import__("closeloop_local.sandboxes.base", fromlist=["Fault"]).Fault("/api.xro/2.0/Invoices", 429)
    )
    limited = xero.get("Invoices")
    assert limited.status_code == 429 and limited.headers["X-Rate-Limit-Problem"] == "minute"
    assert limited.headers["Retry-After"] == "60"

    xero.http.post("/_sandbox/faults", json={"path_glob": "/api.xro/2.0/Items", "status": 504, "delay": 0.6})
    with pytest.raises(httpx.ReadTimeout):
        xero.http.get("/api.xro/2.0/Items", headers=xero.headers(), timeout=0.2)


def test_control_api_clock_reset_and_refresh_token(start: Callable[..., Xero]) -> None:
    x = start()
    # the demo bootstraps from the current refresh token
    assert x.http.get("/_sandbox/refresh-token").json()["refresh_token"] == DEFAULT_REFRESH_TOKEN
    new = x.refresh(DEFAULT_REFRESH_TOKEN).json()["refresh_token"]
    assert x.http.get("/_sandbox/refresh-token").json()["refresh_token"] == new

    before = x.sandbox.state.clock.now()
    assert x.http.post("/_sandbox/clock", json={"advance": 120}).json()["now"] >= before + 120

    x.http.post("/_sandbox/contacts", json={"Name": "Seeded"})
    assert [c["Name"] for c in x.http.get("/_sandbox/contacts").json()["Contacts"]] == ["Seeded"]

    assert x.http.post("/_sandbox/revoke-refresh-tokens").status_code == 200
    assert x.refresh(new).json() == {"error": "invalid_grant"}

    assert x.http.post("/_sandbox/reset").status_code == 200
    assert x.http.get("/_sandbox/contacts").json() == {"Contacts": []}
    assert x.http.get("/_sandbox/requests").json() == {"requests": []}
    assert x.refresh(DEFAULT_REFRESH_TOKEN).status_code == 200


# ---- thread safety -----------------------------------------------------------------------------------------------


def test_concurrent_creates_of_the_same_name_make_exactly_one_contact(xero: Xero) -> None:
    # Given 20 threads creating the same contact at once, each with its own connection
    def create(_: int) -> int:
        with httpx.Client(base_url=xero.server.url, timeout=5.0) as client:
            reply = client.put("/api.xro/2.0/Contacts", json={"Name": "Race Ltd"}, headers=xero.headers())
            return reply.status_code

    with ThreadPoolExecutor(max_workers=20) as pool:
        statuses = list(pool.map(create, range(20)))

    # Then exactly one wins and the rest see the duplicate-name validation error
    assert sorted(statuses) == [200] + [400] * 19
    assert len(xero.sandbox.contacts()) == 1


# ---- invoices, items, payments -------------------------------------------------------------------------------------


def line(description: str, quantity: Any, unit: Any, **extra: Any) -> dict[str, Any]:
    return {"Description": description, "Quantity": quantity, "UnitAmount": unit, "AccountCode": "200", **extra}


def test_invoice_totals_round_tax_per_line_like_xero(xero: Xero) -> None:
    # Given Xero's rounding example: three lines at 15% GST
    contact = xero.create_contact(Name="Acme Ltd")

    # When the invoice is created
    invoice = xero.create_invoice(
        Type="ACCREC",
        Contact={"ContactID": contact["ContactID"]},
        LineItems=[line("A", 1, 25.06, TaxType="OUTPUT2"), line("B", 1, 25.61), line("C", 1, 25.63)],
        Reference="DEAL-1",
        Url="https://crm.example.com/deals/1",
        DueDate="2030-01-31",
    )

    # Then tax is rounded per line (3.76 + 3.84 + 3.84) rather than on the total (11.45)
    assert [money(li["TaxAmount"]) for li in invoice["LineItems"]] == [
        Decimal("3.76"),
        Decimal("3.84"),
        Decimal("3.84"),
    ]
    assert (money(invoice["SubTotal"]), money(invoice["TotalTax"]), money(invoice["Total"])) == (
        Decimal("76.30"),
        Decimal("11.44"),
        Decimal("87.74"),
    )
    assert money(invoice["AmountDue"]) == Decimal("87.74") and money(invoice["AmountPaid"]) == 0
    assert invoice["InvoiceNumber"] == "INV-0001" and invoice["Status"] == "DRAFT"
    assert invoice["LineAmountTypes"] == "Exclusive" and invoice["CurrencyCode"] == "NZD"
    assert invoice["DueDate"] == "/Date(1896048000000+0000)/" and invoice["DueDateString"] == "2030-01-31T00:00:00"
    assert invoice["Contact"]["ContactID"] == contact["ContactID"]
    # the contact becomes a customer
    assert xero.get(f"Contacts/{contact['ContactID']}").json()["Contacts"][0]["IsCustomer"] is True


def test_inclusive_and_no_tax_lines_and_unitdp(xero: Xero) -> None:
    contact = {"Name": "Walk-in Customer"}  # a new name creates the contact, as Xero does

    inclusive = xero.create_invoice(
        Type="ACCREC", Contact=contact, LineAmountTypes="Inclusive", LineItems=[line("X", 1, 115)]
    )
    assert (money(inclusive["SubTotal"]), money(inclusive["TotalTax"]), money(inclusive["Total"])) == (
        Decimal("100.00"),
        Decimal("15.00"),
        Decimal("115.00"),
    )

    no_tax = xero.create_invoice(Type="ACCREC", Contact=contact, LineAmountTypes="NoTax", LineItems=[line("Y", 3, 10)])
    assert money(no_tax["TotalTax"]) == 0 and no_tax["LineItems"][0]["TaxType"] == "NONE"

    # unit prices are rounded to 2 dp unless unitdp=4
    two = xero.create_invoice(Type="ACCREC", Contact=contact, LineItems=[line("Z", 1000, "0.061171")])
    four = xero.create_invoice(
        params={"unitdp": 4}, Type="ACCREC", Contact=contact, LineItems=[line("Z", 1000, "0.061171")]
    )
    assert money(two["LineItems"][0]["UnitAmount"]) == Decimal("0.06") and money(two["SubTotal"]) == Decimal("60.00")
    assert money(four["LineItems"][0]["UnitAmount"]) == Decimal("0.0612") and money(four["SubTotal"]) == Decimal(
        "61.20"
    )
    assert [c["Name"] for c in xero.sandbox.contacts()] == ["Walk-in Customer"]


def test_invoice_numbers_are_unique_for_accrec(xero: Xero) -> None:
    contact = {"ContactID": xero.create_contact(Name="Acme Ltd")["ContactID"]}
    xero.create_invoice(Type="ACCREC", Contact=contact, InvoiceNumber="CRM-7", LineItems=[line("A", 1, 10)])
    clash = xero.send(
        "PUT", "Invoices", {"Invoices": [{"Type": "ACCREC", "Contact": contact, "InvoiceNumber": "crm-7"}]}
    )
    assert clash.status_code == 400
    element = clash.json()["Elements"][0]
    assert element["HasErrors"] is True
    assert element["ValidationErrors"] == [{"Message": "Invoice # must be unique."}]


def test_invoice_validation_errors(xero: Xero) -> None:
    reply = xero.send(
        "PUT",
        "Invoices",
        {"Invoices": [{"Type": "ACCREC", "LineItems": [line("A", 1, 10, AccountCode="999", TaxType="BOGUS")]}]},
    )
    assert reply.status_code == 400
    messages = [e["Message"] for e in reply.json()["Elements"][0]["ValidationErrors"]]
    assert messages == [
        "A Contact must be specified for this type of transaction",
        "Account code '999' is not a valid code for this document.",
        "The TaxType code 'BOGUS' does not exist or cannot be used for this type of transaction.",
    ]


def test_payments_make_an_invoice_paid(xero: Xero) -> None:
    # Given an authorised invoice for 115.00
    contact = {"ContactID": xero.create_contact(Name="Acme Ltd")["ContactID"]}
    invoice = xero.create_invoice(Type="ACCREC", Contact=contact, Status="AUTHORISED", LineItems=[line("A", 1, 100)])
    ref = {"InvoiceID": invoice["InvoiceID"]}

    # When a part payment is made
    part = xero.send(
        "PUT", "Payments", {"Invoice": ref, "Account": {"Code": "090"}, "Date": "2030-02-01", "Amount": 15}
    )
    assert part.status_code == 200, part.text
    after_part = xero.invoice(invoice["InvoiceID"])

    # Then the invoice is still AUTHORISED with less due
    assert after_part["Status"] == "AUTHORISED"
    assert (money(after_part["AmountPaid"]), money(after_part["AmountDue"])) == (Decimal("15.00"), Decimal("100.00"))

    # When more than is due is paid, it is refused
    over = xero.send("PUT", "Payments", {"Payments": [{"Invoice": ref, "Account": {"Code": "090"}, "Amount": 100.01}]})
    assert over.status_code == 400
    assert over.json()["Elements"][0]["ValidationErrors"] == [
        {"Message": "Payment amount exceeds the amount outstanding on this document"}
    ]

    # When the rest is paid
    rest = xero.send(
        "PUT",
        "Payments",
        {"Payments": [{"Invoice": ref, "Account": {"Code": "090"}, "Date": "2030-02-03", "Amount": 100}]},
    )
    payment = rest.json()["Payments"][0]
    assert payment["PaymentType"] == "ACCRECPAYMENT" and payment["Invoice"]["InvoiceID"] == invoice["InvoiceID"]

    # Then the invoice is PAID on that date and shows both payments
    paid = xero.invoice(invoice["InvoiceID"])
    assert paid["Status"] == "PAID" and money(paid["AmountDue"]) == 0 and money(paid["AmountPaid"]) == Decimal("115")
    assert paid["FullyPaidOnDate"] == "/Date(1896307200000+0000)/"
    assert len(paid["Payments"]) == 2
    assert len(xero.get("Payments").json()["Payments"]) == 2

    # And a paid invoice can no longer be edited
    edit = xero.send("POST", f"Invoices/{invoice['InvoiceID']}", {"Reference": "late"})
    assert edit.json()["Elements"][0]["ValidationErrors"] == [
        {"Message": "Invoice not of valid status for modification"}
    ]

    # When a payment is deleted the invoice is AUTHORISED again
    xero.send("POST", f"Payments/{payment['PaymentID']}", {"Status": "DELETED"})
    reopened = xero.invoice(invoice["InvoiceID"])
    assert reopened["Status"] == "AUTHORISED" and money(reopened["AmountDue"]) == Decimal("100.00")


def test_payments_need_an_authorised_invoice_and_a_bank_account(xero: Xero) -> None:
    contact = {"ContactID": xero.create_contact(Name="Acme Ltd")["ContactID"]}
    draft = xero.create_invoice(Type="ACCREC", Contact=contact, LineItems=[line("A", 1, 10)])
    reply = xero.send(
        "PUT", "Payments", {"Invoice": {"InvoiceID": draft["InvoiceID"]}, "Account": {"Code": "200"}, "Amount": 1}
    )
    assert [e["Message"] for e in reply.json()["Elements"][0]["ValidationErrors"]] == [
        "Payments can only be made against Authorised documents",
        "Account type is invalid for making a payment to/from.",
    ]


def test_items_fill_invoice_lines_and_codes_are_unique(xero: Xero) -> None:
    # Given an item with sales details
    made = xero.send(
        "PUT",
        "Items",
        {
            "Items": [
                {
                    "Code": "WIDGET",
                    "Name": "Widget",
                    "Description": "A widget",
                    "SalesDetails": {"UnitPrice": 19.99, "AccountCode": "200", "TaxType": "OUTPUT2"},
                }
            ]
        },
    )
    assert made.status_code == 200
    price = exact(made)["Items"][0]["SalesDetails"]["UnitPrice"]
    assert price == Decimal("19.99") and str(price) == "19.99"
    assert xero.send("PUT", "Items", {"Code": "widget"}).status_code == 400

    # When an invoice line names only the item code and quantity
    contact = {"ContactID": xero.create_contact(Name="Acme Ltd")["ContactID"]}
    invoice = xero.create_invoice(Type="ACCREC", Contact=contact, LineItems=[{"ItemCode": "WIDGET", "Quantity": 3}])

    # Then Xero fills description, price, account and tax from the item
    [filled] = invoice["LineItems"]
    assert (filled["Description"], filled["AccountCode"], filled["TaxType"]) == ("A widget", "200", "OUTPUT2")
    assert money(filled["LineAmount"]) == Decimal("59.97") and money(filled["TaxAmount"]) == Decimal("9.00")
    assert xero.get("Items/WIDGET").json()["Items"][0]["Code"] == "WIDGET"


def test_invoice_listing_filters_and_line_items_only_when_paging(xero: Xero) -> None:
    # Given three invoices, one authorised
    contact = {"ContactID": xero.create_contact(Name="Acme Ltd")["ContactID"]}
    xero.create_invoice(Type="ACCREC", Contact=contact, Reference="DEAL-1", LineItems=[line("A", 1, 10)])
    xero.create_invoice(
        Type="ACCREC", Contact=contact, Reference="DEAL-2", LineItems=[line("B", 1, 20)], Status="AUTHORISED"
    )
    xero.sandbox.state.clock.advance(60)
    third = xero.create_invoice(Type="ACCREC", Contact=contact, Reference="DEAL-3", LineItems=[line("C", 1, 30)])

    # Then an unpaged list omits line items, a paged one has them
    unpaged = xero.get("Invoices").json()
    assert "LineItems" not in unpaged["Invoices"][0] and "pagination" not in unpaged
    paged = xero.get("Invoices", params={"page": 1}).json()
    assert paged["Invoices"][0]["LineItems"] and paged["pagination"]["itemCount"] == 3

    def refs(params: dict[str, Any], extra: dict[str, str] | None = None) -> list[str]:
        return [i["Reference"] for i in xero.get("Invoices", params=params, extra=extra).json()["Invoices"]]

    assert refs({"where": 'Reference=="DEAL-2"'}) == ["DEAL-2"]
    assert refs({"where": 'Status=="DRAFT" && Type=="ACCREC"'}) == ["DEAL-1", "DEAL-3"]
    assert refs({"Statuses": "AUTHORISED"}) == ["DEAL-2"]
    assert refs({"InvoiceNumbers": "INV-0001,INV-0003"}) == ["DEAL-1", "DEAL-3"]
    assert refs({"ContactIDs": contact["ContactID"]}) == ["DEAL-1", "DEAL-2", "DEAL-3"]
    assert refs({"IDs": third["InvoiceID"]}) == ["DEAL-3"]
    assert refs({"where": "Total>=20"}) == ["DEAL-2", "DEAL-3"]
    assert refs({"where": f'Contact.ContactID==Guid("{contact["ContactID"]}") && Reference!="DEAL-1"'}) == [
        "DEAL-2",
        "DEAL-3",
    ]
    assert refs({"where": "Date>=DateTime(2000, 01, 01) && Date<DateTime(2100,1,1)"}) == ["DEAL-1", "DEAL-2", "DEAL-3"]
    assert refs({"where": "Date<DateTime(2000,1,1)"}) == []
    assert refs({"order": "Total DESC"}) == ["DEAL-3", "DEAL-2", "DEAL-1"]
    cutoff = third["UpdatedDateUTCString"].replace("Z", "")
    assert refs({}, {"If-Modified-Since": cutoff}) == ["DEAL-3"]

    # And GET by number works, with the line item's UnitAmount at 2 dp unless unitdp=4
    by_number = xero.invoice("INV-0002")
    assert by_number["Reference"] == "DEAL-2" and str(by_number["LineItems"][0]["UnitAmount"]) == "20.00"
    four = exact(xero.get("Invoices/INV-0002", params={"unitdp": 4}))["Invoices"][0]
    assert str(four["LineItems"][0]["UnitAmount"]) == "20.0000"


def test_invoice_updates_and_status_transitions(xero: Xero) -> None:
    contact = {"ContactID": xero.create_contact(Name="Acme Ltd")["ContactID"]}
    draft = xero.create_invoice(Type="ACCREC", Contact=contact, LineItems=[line("A", 2, 50)])

    # POST /Invoices matches by InvoiceNumber, and re-sent lines replace the old ones
    updated = xero.send(
        "POST",
        "Invoices",
        {"InvoiceNumber": draft["InvoiceNumber"], "Status": "AUTHORISED", "LineItems": [line("B", 1, 10)]},
    )
    body = exact(updated)["Invoices"][0]
    assert body["InvoiceID"] == draft["InvoiceID"] and body["Status"] == "AUTHORISED"
    assert money(body["Total"]) == Decimal("11.50")

    # An authorised invoice cannot go back to draft, but can be voided
    back = xero.send("POST", f"Invoices/{draft['InvoiceID']}", {"Status": "DRAFT"})
    assert back.status_code == 400
    voided = xero.send("POST", f"Invoices/{draft['InvoiceID']}", {"Status": "VOIDED"})
    assert voided.json()["Invoices"][0]["Status"] == "VOIDED"


def test_tax_rates_and_wire_numbers(xero: Xero) -> None:
    rates = exact(xero.get("TaxRates"))["TaxRates"]
    by_type = {r["TaxType"]: r for r in rates}
    assert by_type["OUTPUT2"]["EffectiveRate"] == Decimal("15") and by_type["OUTPUT2"]["Name"] == "15% GST on Income"
    assert str(by_type["OUTPUT2"]["EffectiveRate"]) == "15.0000"  # Xero writes rates with 4 dp
    assert [r["TaxType"] for r in xero.get("TaxRates", params={"where": 'TaxType=="NONE"'}).json()["TaxRates"]] == [
        "NONE"
    ]

    # money is a JSON number on the wire, never a string
    contact = {"ContactID": xero.create_contact(Name="Acme Ltd")["ContactID"]}
    raw = xero.send(
        "PUT", "Invoices", {"Invoices": [{"Type": "ACCREC", "Contact": contact, "LineItems": [line("A", 1, 10)]}]}
    ).text
    assert isinstance(json.loads(raw)["Invoices"][0]["Total"], float)
    assert isinstance(xero.sandbox.invoices()[0]["Total"], Decimal)
    # written exactly, with its scale, as Xero's JSON has it: 10.00 and 1.0000, never 10.0 via float
    assert '"Total": 11.50' in raw and '"SubTotal": 10.00' in raw and '"TotalTax": 1.50' in raw
    assert '"UnitAmount": 10.00' in raw and '"Quantity": 1.0000' in raw and '"CurrencyRate": 1.000000' in raw
    invoice = json.loads(raw, parse_float=Decimal)["Invoices"][0]
    assert [str(invoice[key]) for key in ("SubTotal", "TotalTax", "Total", "AmountDue", "AmountPaid")] == [
        "10.00",
        "1.50",
        "11.50",
        "11.50",
        "0.00",
    ]

    # and a 4-dp unit price or a thirds-of-a-cent amount keeps every digit (a float would not: 0.1 + 0.2)
    thirds = xero.send(
        "PUT",
        "Invoices",
        {"Type": "ACCREC", "Contact": contact, "LineItems": [line("B", 3, "0.3333"), line("C", 1, "0.1")]},
        params={"unitdp": 4},
    ).text
    assert '"UnitAmount": 0.3333' in thirds and '"LineAmount": 1.00' in thirds and '"UnitAmount": 0.1000' in thirds
    assert '"SubTotal": 1.10' in thirds and '"Total": 1.27' in thirds  # tax 0.15 + 0.02, per line


# ---- emailing invoices and the online invoice ----------------------------------------------------------------


def customer(xero: Xero, **fields: Any) -> dict[str, str]:
    """A contact reference for an invoice; the contact has an email address unless told otherwise."""
    contact = xero.create_contact(**{"Name": "Acme Ltd", "EmailAddress": "ap@acme.test", **fields})
    return {"ContactID": contact["ContactID"]}


def authorised(xero: Xero, contact: dict[str, str], **fields: Any) -> dict[str, Any]:
    return xero.create_invoice(
        Type="ACCREC", Contact=contact, Status="AUTHORISED", LineItems=[line("A", 1, 100)], **fields
    )


def refusal(reply: httpx.Response) -> list[str]:
    """The messages of a 400 ValidationException about one invoice."""
    body = reply.json()
    assert (reply.status_code, body["Type"], body["ErrorNumber"]) == (400, "ValidationException", 10), reply.text
    [element] = body["Elements"]
    assert element["HasErrors"] is True
    return [error["Message"] for error in element["ValidationErrors"]]


def test_emailing_an_authorised_invoice_is_204_records_the_email_and_marks_it_sent(xero: Xero) -> None:
    # Given an authorised sales invoice whose contact has an address and two contact persons, one in emails
    persons = [
        {"FirstName": "Pat", "LastName": "Payer", "EmailAddress": "pat@acme.test", "IncludeInEmails": True},
        {"FirstName": "Sam", "LastName": "Sales", "EmailAddress": "sam@acme.test", "IncludeInEmails": False},
    ]
    invoice = authorised(xero, customer(xero, ContactPersons=persons))
    assert "SentToContact" not in invoice or invoice["SentToContact"] is False
    before = xero.sandbox.state.clock.now()

    # When Xero is asked to email it
    reply = xero.email(invoice["InvoiceID"])

    # Then it answers 204 No Content, counted against the rate limits like any call
    assert reply.status_code == 204 and reply.content == b""
    assert reply.headers["X-MinLimit-Remaining"] and reply.headers["Xero-Correlation-Id"]
    # And the email went to the contact's address and the person included in emails, at the sandbox's time
    [sent] = xero.sandbox.emails()
    assert (sent["InvoiceID"], sent["To"]) == (invoice["InvoiceID"], ["ap@acme.test", "pat@acme.test"])
    assert before <= sent["at"] <= xero.sandbox.state.clock.now()
    assert xero.http.get("/_sandbox/emails").json()["emails"] == [sent]
    # And the invoice is now marked as sent to the contact
    assert xero.invoice(invoice["InvoiceID"])["SentToContact"] is True
    assert xero.sandbox.invoices()[0]["SentToContact"] is True


@pytest.mark.parametrize("status", ["SUBMITTED", "PAID"])
def test_submitted_and_paid_invoices_can_be_emailed_too(xero: Xero, status: str) -> None:
    # Given a sales invoice that is SUBMITTED (awaiting approval) or PAID in full
    contact = customer(xero)
    if status == "SUBMITTED":
        invoice = xero.create_invoice(Type="ACCREC", Contact=contact, Status="SUBMITTED", LineItems=[line("A", 1, 10)])
    else:
        invoice = authorised(xero, contact)
        payment = {"Invoice": {"InvoiceID": invoice["InvoiceID"]}, "Account": {"Code": "090"}, "Amount": "115.00"}
        assert xero.send("PUT", "Payments", payment).status_code == 200
    assert xero.invoice(invoice["InvoiceID"])["Status"] == status

    # When it is emailed, Then Xero sends it
    assert xero.email(invoice["InvoiceID"]).status_code == 204
    assert [e["InvoiceID"] for e in xero.sandbox.emails()] == [invoice["InvoiceID"]]


@pytest.mark.parametrize("status", ["DRAFT", "VOIDED", "DELETED"])
def test_an_invoice_that_is_not_approved_cannot_be_emailed(xero: Xero, status: str) -> None:
    # Given a sales invoice that is a draft, or was voided or deleted
    contact = customer(xero)
    if status == "VOIDED":
        invoice = authorised(xero, contact)
    else:
        invoice = xero.create_invoice(Type="ACCREC", Contact=contact, LineItems=[line("A", 1, 10)])
    if status != "DRAFT":
        assert xero.send("POST", f"Invoices/{invoice['InvoiceID']}", {"Status": status}).status_code == 200

    # When it is emailed
    reply = xero.email(invoice["InvoiceID"])

    # Then Xero refuses with a ValidationException naming the status, and nothing is sent or marked
    assert refusal(reply) == [
        f"Invoice Status '{status}' is not valid for sending. It must be SUBMITTED, AUTHORISED or PAID."
    ]
    assert reply.json()["Elements"][0]["InvoiceID"] == invoice["InvoiceID"]
    assert xero.sandbox.emails() == []
    assert "SentToContact" not in xero.invoice(invoice["InvoiceID"])


def test_a_contact_without_an_email_address_is_a_validation_exception(xero: Xero) -> None:
    # Given an authorised invoice to a contact with no email address (and no contact person in emails)
    persons = [{"FirstName": "Sam", "EmailAddress": "sam@acme.test", "IncludeInEmails": False}]
    invoice = authorised(xero, customer(xero, EmailAddress="", ContactPersons=persons))

    # When it is emailed, Then Xero refuses and sends nothing
    reply = xero.email(invoice["InvoiceID"])
    assert refusal(reply) == ["The contact for this invoice does not have an email address."]
    assert xero.sandbox.emails() == []
    assert "SentToContact" not in xero.invoice(invoice["InvoiceID"])

    # When the contact gets an address, Then the same invoice can be emailed
    contact_id = reply.json()["Elements"][0]["Contact"]["ContactID"]
    assert xero.send("POST", f"Contacts/{contact_id}", {"EmailAddress": "ap@acme.test"}).status_code == 200
    assert xero.email(invoice["InvoiceID"]).status_code == 204
    assert [e["To"] for e in xero.sandbox.emails()] == [["ap@acme.test"]]


def test_a_draft_to_a_contact_without_email_gets_both_reasons_and_a_bill_cannot_be_emailed(xero: Xero) -> None:
    no_email = customer(xero, Name="Quiet Ltd", EmailAddress="")
    draft = xero.create_invoice(Type="ACCREC", Contact=no_email, LineItems=[line("A", 1, 10)])
    assert refusal(xero.email(draft["InvoiceID"])) == [
        "Invoice Status 'DRAFT' is not valid for sending. It must be SUBMITTED, AUTHORISED or PAID.",
        "The contact for this invoice does not have an email address.",
    ]

    bill = xero.create_invoice(Type="ACCPAY", Contact=customer(xero), Status="AUTHORISED", LineItems=[line("B", 1, 5)])
    assert refusal(xero.email(bill["InvoiceID"])) == ["Only sales invoices (ACCREC) can be emailed."]
    assert xero.sandbox.emails() == []


def test_emailing_an_unknown_invoice_is_xeros_plain_text_404(xero: Xero) -> None:
    reply = xero.email("8a3c1f5e-0000-4000-8000-000000000000")
    assert reply.status_code == 404 and reply.text == "The resource you're looking for cannot be found"
    # the path takes the InvoiceID only, not the InvoiceNumber that GET /Invoices/{ref} also accepts
    authorised(xero, customer(xero))
    assert xero.email("INV-0001").status_code == 404
    assert xero.sandbox.emails() == []


def test_email_idempotency_key_replays_the_204_without_a_second_email(xero: Xero) -> None:
    # Given an invoice emailed with an Idempotency-Key
    invoice = authorised(xero, customer(xero))
    first = xero.email(invoice["InvoiceID"], key="email-1")

    # When the same request is retried with the same key
    retry = xero.email(invoice["InvoiceID"], key="email-1")

    # Then the 204 is replayed and only one email was sent
    assert first.status_code == retry.status_code == 204 and retry.content == b""
    assert len(xero.sandbox.emails()) == 1
    assert len(xero.sandbox.state.calls("POST", f"/api.xro/2.0/Invoices/{invoice['InvoiceID']}/Email")) == 2

    # When the key is reused for another invoice, Then Xero refuses it
    other = authorised(xero, customer(xero, Name="Other Ltd", EmailAddress="ap@other.test"))
    reused = xero.email(other["InvoiceID"], key="email-1")
    assert reused.status_code == 400
    assert reused.json()["Detail"] == "Idempotency key email-1 is used with a different request"

    # When a new key is used (or six minutes have passed), Then it is a new request and a second email
    assert xero.email(invoice["InvoiceID"], key="email-2").status_code == 204
    xero.sandbox.state.clock.advance(361)
    assert xero.email(invoice["InvoiceID"], key="email-1").status_code == 204
    assert [e["InvoiceID"] for e in xero.sandbox.emails()] == [invoice["InvoiceID"]] * 3


def test_an_email_refusal_is_replayed_for_its_key_too(xero: Xero) -> None:
    # Given a draft emailed with a key, refused
    contact = customer(xero)
    draft = xero.create_invoice(Type="ACCREC", Contact=contact, LineItems=[line("A", 1, 10)])
    failed = xero.email(draft["InvoiceID"], key="email-draft")

    # When it is approved and the same request retried with the same key
    assert xero.send("POST", f"Invoices/{draft['InvoiceID']}", {"Status": "AUTHORISED"}).status_code == 200
    retry = xero.email(draft["InvoiceID"], key="email-draft")

    # Then the cached refusal is replayed, and nothing was sent
    assert failed.status_code == retry.status_code == 400 and retry.json() == failed.json()
    assert xero.sandbox.emails() == []


def test_emailing_counts_against_the_rate_limit(start: Callable[..., Xero]) -> None:
    # Given a tenant allowed 2 calls a minute, which spends one creating an invoice
    x = start(minute_limit=2).login()
    contact = x.sandbox.seed_contact(Name="Acme Ltd", EmailAddress="ap@acme.test")
    invoice = authorised(x, {"ContactID": contact["ContactID"]})

    # When it emails the invoice twice
    first, second = x.email(invoice["InvoiceID"]), x.email(invoice["InvoiceID"])

    # Then the first is sent with the last call of the minute, the second is a 429 and sends nothing
    assert first.status_code == 204 and first.headers["X-MinLimit-Remaining"] == "0"
    assert second.status_code == 429 and second.headers["X-Rate-Limit-Problem"] == "minute"
    assert len(x.sandbox.emails()) == 1


def test_emailing_needs_a_write_scope(start: Callable[..., Xero]) -> None:
    # Given an authorised invoice, and a token that may only read transactions
    x = start().login()
    invoice = authorised(x, customer(x))
    redirect = x.http.get(
        "/identity/connect/authorize",
        params={
            "response_type": "code",
            "client_id": CLIENT[0],
            "redirect_uri": "https://app.example.com/cb",
            "scope": "offline_access accounting.transactions.read",
        },
    )
    code = parse_qs(urlsplit(redirect.headers["Location"]).query)["code"][0]
    exchange = {"grant_type": "authorization_code", "code": code, "redirect_uri": "https://app.example.com/cb"}
    read_only = x.http.post("/connect/token", data=exchange, auth=CLIENT).json()["access_token"]

    # When that token emails the invoice, Then it is refused and nothing is sent
    refused = x.http.post(
        f"/api.xro/2.0/Invoices/{invoice['InvoiceID']}/Email", json={}, headers=x.headers(token=read_only)
    )
    assert refused.status_code == 401 and refused.json()["Detail"] == "AuthorizationUnsuccessful"
    assert x.sandbox.emails() == []
    # And reading the online invoice URL is allowed with it
    assert x.get(f"Invoices/{invoice['InvoiceID']}/OnlineInvoice", token=read_only).status_code == 200


def test_online_invoice_url_is_an_in_xero_link_stable_per_invoice(xero: Xero) -> None:
    # Given two authorised sales invoices
    contact = customer(xero)
    first, second = authorised(xero, contact), authorised(xero, contact)

    # When their online invoice is asked for
    reply = xero.get(f"Invoices/{first['InvoiceID']}/OnlineInvoice")

    # Then it is the spec's envelope with one in.xero.com link, the same each time, and per invoice
    body = reply.json()
    assert reply.status_code == 200 and body["Status"] == "OK"
    [online] = body["OnlineInvoices"]
    assert list(online) == ["OnlineInvoiceUrl"]
    assert re.fullmatch(r"https://in\.xero\.com/[A-Za-z0-9]{40}", online["OnlineInvoiceUrl"])
    again = xero.get(f"Invoices/{first['InvoiceID']}/OnlineInvoice").json()["OnlineInvoices"][0]
    assert again == online
    other = xero.get(f"Invoices/{second['InvoiceID']}/OnlineInvoice").json()["OnlineInvoices"][0]
    assert other["OnlineInvoiceUrl"] != online["OnlineInvoiceUrl"]


def test_no_online_invoice_for_a_draft_a_bill_or_an_unknown_invoice(xero: Xero) -> None:
    contact = customer(xero)
    draft = xero.create_invoice(Type="ACCREC", Contact=contact, LineItems=[line("A", 1, 10)])
    assert refusal(xero.get(f"Invoices/{draft['InvoiceID']}/OnlineInvoice")) == [
        "An online invoice is not available for an invoice with status 'DRAFT'."
    ]
    bill = xero.create_invoice(Type="ACCPAY", Contact=contact, Status="AUTHORISED", LineItems=[line("B", 1, 5)])
    assert refusal(xero.get(f"Invoices/{bill['InvoiceID']}/OnlineInvoice")) == [
        "Online invoices are only available for sales invoices (ACCREC)."
    ]
    assert xero.get("Invoices/8a3c1f5e-0000-4000-8000-000000000000/OnlineInvoice").status_code == 404


# ---- items: the catalogue (XS Item, getItems, createItems, getItem, updateItem) ------------------------------


def item_errors(reply: httpx.Response) -> list[str]:
    return [e["Message"] for e in reply.json()["Elements"][0]["ValidationErrors"]]


def test_item_lengths_and_duplicate_codes_are_refused_as_the_spec_says(xero: Xero) -> None:
    # Given an item coded WIDGET
    assert xero.send("PUT", "Items", {"Items": [{"Code": "WIDGET", "Name": "Widget"}]}).status_code == 200

    # When items break XS Item's max lengths, Then each is a 400 naming the field and its limit
    for field_name, limit in (("Code", 30), ("Name", 50), ("Description", 4000), ("PurchaseDescription", 4000)):
        item = {"Code": "NEW", field_name: "x" * (limit + 1)}
        reply = xero.send("PUT", "Items", {"Items": [item]})
        assert reply.status_code == 400
        assert f"{field_name} must not be more than {limit} characters long." in item_errors(reply)

    # And a code taken in another case is refused with the spec's example message
    reply = xero.send("PUT", "Items", {"Items": [{"Code": "widget"}]})
    assert reply.status_code == 400
    assert item_errors(reply) == ["Price List Item with Code ''widget'' already exists"]
    assert len(xero.sandbox.items()) == 1


def test_an_item_s_unknown_account_or_tax_type_is_refused(xero: Xero) -> None:
    item = {
        "Code": "W",
        "SalesDetails": {"UnitPrice": 1, "AccountCode": "999", "TaxType": "BOGUS"},
        "PurchaseDetails": {"COGSAccountCode": "998"},
    }
    reply = xero.send("PUT", "Items", {"Items": [item]})
    assert reply.status_code == 400
    assert item_errors(reply) == [
        "Account code '999' is not a valid code for this document.",
        "The TaxType code 'BOGUS' does not exist or cannot be used for this type of transaction.",
        "Account code '998' is not a valid code for this document.",
    ]
    assert xero.sandbox.items() == []


def test_post_item_by_id_renames_its_code_and_keeps_what_is_not_sent(xero: Xero) -> None:
    # Given two items
    body = {"Code": "OLD", "Name": "Widget", "SalesDetails": {"UnitPrice": 10, "AccountCode": "200"}}
    item_id = exact(xero.send("PUT", "Items", {"Items": [body]}))["Items"][0]["ItemID"]
    xero.send("PUT", "Items", {"Items": [{"Code": "TAKEN"}]})

    # When the first one's code and price are posted to its ItemID
    reply = xero.send("POST", f"Items/{item_id}", {"Items": [{"Code": "NEW", "SalesDetails": {"UnitPrice": 12}}]})

    # Then the same item answers to the new code, its name and sales account kept
    assert reply.status_code == 200, reply.text
    [saved] = exact(reply)["Items"]
    assert (saved["ItemID"], saved["Code"], saved["Name"]) == (item_id, "NEW", "Widget")
    assert saved["SalesDetails"]["AccountCode"] == "200" and money(saved["SalesDetails"]["UnitPrice"]) == 12
    assert xero.get("Items", {"where": 'Code=="OLD"'}).json()["Items"] == []
    # And a rename to a taken code is refused, an unknown ItemID is Xero's plain-text 404
    assert xero.send("POST", f"Items/{item_id}", {"Items": [{"Code": "TAKEN"}]}).status_code == 400
    missing = xero.send("POST", "Items/0e9a2c4d-1111-4222-8333-444455556666", {"Items": [{"Code": "X"}]})
    assert missing.status_code == 404 and "cannot be found" in missing.text


def test_is_sold_or_is_purchased_false_nulls_their_values(xero: Xero) -> None:
    # Given an item sold and purchased, with both sides' values
    body = {
        "Code": "W",
        "Description": "Sales text",
        "PurchaseDescription": "Purchase text",
        "SalesDetails": {"UnitPrice": 10},
        "PurchaseDetails": {"UnitPrice": 4},
    }
    item_id = exact(xero.send("PUT", "Items", {"Items": [body]}))["Items"][0]["ItemID"]

    # When IsSold goes false, Then Description and SalesDetails are nulled (XS Item.IsSold); the purchase side stays
    [saved] = exact(xero.send("POST", f"Items/{item_id}", {"Items": [{"Code": "W", "IsSold": False}]}))["Items"]
    assert "Description" not in saved and saved["SalesDetails"] == {}
    assert saved["PurchaseDescription"] == "Purchase text" and money(saved["PurchaseDetails"]["UnitPrice"]) == 4

    # When IsPurchased goes false, Then PurchaseDescription and PurchaseDetails are nulled too
    [saved] = exact(xero.send("POST", f"Items/{item_id}", {"Items": [{"Code": "W", "IsPurchased": False}]}))["Items"]
    assert "PurchaseDescription" not in saved and saved["PurchaseDetails"] == {}


def test_get_items_answers_every_item_at_once_whatever_page_is_asked(xero: Xero) -> None:
    # Given three items
    for code in ("A", "B", "C"):
        xero.send("PUT", "Items", {"Items": [{"Code": code}]})

    # When GET /Items is asked for a page of one (XS getItems publishes no paging)
    reply = xero.get("Items", {"page": 2, "pageSize": 1})

    # Then every item comes back, with no pagination
    assert [i["Code"] for i in reply.json()["Items"]] == ["A", "B", "C"]
    assert "pagination" not in reply.json()


def test_a_repeated_item_create_with_one_key_makes_one_item(xero: Xero) -> None:
    first = xero.send("PUT", "Items", {"Items": [{"Code": "W", "Name": "Widget"}]}, key="k-1")
    again = xero.send("PUT", "Items", {"Items": [{"Code": "W", "Name": "Widget"}]}, key="k-1")
    assert first.status_code == again.status_code == 200
    assert again.json()["Items"][0]["ItemID"] == first.json()["Items"][0]["ItemID"]
    assert len(xero.sandbox.items()) == 1


# ---- routing: every route, Xero's case-insensitive paths, and the plain-text 404 for anything else ------------

HTML = "text/html; charset=utf-8"
PLAIN = "text/plain; charset=utf-8"
NOT_FOUND = (404, HTML, "The resource you're looking for cannot be found", False)
JSON = "application/json; charset=utf-8"
API = "/api.xro/2.0"
# (method, path, JSON body or None, the answer in brief: see ``routed``); {contact} {invoice} {draft} {item}
# {payment} {connection} are the seeded records' ids, {CONTACT} the contact's id in upper case.
ROUTE_ANSWERS: list[tuple[str, str, Any, tuple[int, str, str, bool]]] = [
    ("POST", "/connect/token", None, (400, JSON, "invalid_request", False)),
    ("POST", "/connect/revocation", None, (400, JSON, "invalid_client", False)),
    ("GET", "/identity/connect/authorize", None, (400, HTML, "Error: unauthorized_client", False)),
    ("GET", "/connections", None, (200, JSON, "list", False)),
    ("GET", f"{API}/Contacts", None, (200, JSON, "Contacts", True)),
    ("PUT", f"{API}/Contacts", {"Name": "Put Ltd"}, (200, JSON, "Contacts", True)),
    ("POST", f"{API}/Contacts", {"Name": "Post Ltd"}, (200, JSON, "Contacts", True)),
    ("GET", f"{API}/Contacts/{{contact}}", None, (200, JSON, "Contacts", True)),
    ("POST", f"{API}/Contacts/{{contact}}", {"FirstName": "Ann"}, (200, JSON, "Contacts", True)),
    ("GET", f"{API}/Invoices", None, (200, JSON, "Invoices", True)),
    ("PUT", f"{API}/Invoices", "invoice", (200, JSON, "Invoices", True)),
    ("POST", f"{API}/Invoices", "invoice", (200, JSON, "Invoices", True)),
    ("GET", f"{API}/Invoices/{{invoice}}", None, (200, JSON, "Invoices", True)),
    ("POST", f"{API}/Invoices/{{draft}}", {"Reference": "R-1"}, (200, JSON, "Invoices", True)),
    ("POST", f"{API}/Invoices/{{invoice}}/Email", {}, (204, PLAIN, "", True)),
    ("GET", f"{API}/Invoices/{{invoice}}/OnlineInvoice", None, (200, JSON, "OnlineInvoices", True)),
    ("GET", f"{API}/Items", None, (200, JSON, "Items", True)),
    ("PUT", f"{API}/Items", {"Code": "PUT-1"}, (200, JSON, "Items", True)),
    ("POST", f"{API}/Items", {"Code": "POST-1"}, (200, JSON, "Items", True)),
    ("GET", f"{API}/Items/{{item}}", None, (200, JSON, "Items", True)),
    ("POST", f"{API}/Items/{{item}}", {"Name": "Renamed"}, (200, JSON, "Items", True)),
    ("GET", f"{API}/Payments", None, (200, JSON, "Payments", True)),
    ("PUT", f"{API}/Payments", "payment", (200, JSON, "Payments", True)),
    ("GET", f"{API}/Payments/{{payment}}", None, (200, JSON, "Payments", True)),
    ("POST", f"{API}/Payments/{{payment}}", {"Status": "DELETED"}, (200, JSON, "Payments", True)),
    ("GET", f"{API}/TaxRates", None, (200, JSON, "TaxRates", True)),
    ("GET", f"{API}/Accounts", None, (200, JSON, "Accounts", True)),
    ("GET", f"{API}/Organisation", None, (200, JSON, "Organisations", True)),
    # Xero's paths are case-insensitive; the path's arguments reach the handler as sent
    ("GET", "/API.XRO/2.0/CONTACTS", None, (200, JSON, "Contacts", True)),
    ("GET", "/Api.Xro/2.0/contacts/{CONTACT}", None, (200, JSON, "Contacts", True)),
    ("GET", "/api.xro/2.0/contacts/rt-1", None, (200, JSON, "Contacts", True)),  # by ContactNumber RT-1
    ("POST", "/API.xro/2.0/invoices/{invoice}/EMAIL", {}, (204, PLAIN, "", True)),
    ("GET", "/api.xro/2.0/INVOICES/{invoice}/onlineinvoice", None, (200, JSON, "OnlineInvoices", True)),
    ("GET", "/api.xro/2.0/taxrates", None, (200, JSON, "TaxRates", True)),
    ("POST", "/CONNECT/Token", None, (400, JSON, "invalid_request", False)),
    ("GET", "/Connections", None, (200, JSON, "list", False)),
    # anything else: no such path, a method the path does not take, extra or missing segments
    ("GET", "/", None, NOT_FOUND),
    ("GET", f"{API}/Nothing", None, NOT_FOUND),
    ("GET", f"{API}", None, NOT_FOUND),
    ("GET", "/api.xro/2.1/Contacts", None, NOT_FOUND),
    ("GET", "/apixxro/2x0/Contacts", None, NOT_FOUND),
    ("GET", f"{API}/Contacts/", None, NOT_FOUND),
    ("GET", f"{API}//Contacts", None, NOT_FOUND),
    ("GET", f"{API}/Contacts//{{contact}}", None, NOT_FOUND),
    ("GET", f"{API}/Contacts/{{contact}}/x", None, NOT_FOUND),
    ("DELETE", f"{API}/Contacts", None, NOT_FOUND),
    ("PATCH", f"{API}/Contacts/{{contact}}", None, NOT_FOUND),
    ("PUT", f"{API}/Contacts/{{contact}}", {"Name": "x"}, NOT_FOUND),
    ("GET", f"{API}/Invoices/{{invoice}}/Email", None, NOT_FOUND),
    ("POST", f"{API}/Invoices/{{invoice}}/OnlineInvoice", {}, NOT_FOUND),
    ("PUT", f"{API}/Items/{{item}}", {"Name": "x"}, NOT_FOUND),
    ("POST", f"{API}/Payments", "payment", NOT_FOUND),
    ("DELETE", f"{API}/Payments/{{payment}}", None, NOT_FOUND),
    ("PUT", f"{API}/TaxRates", {}, NOT_FOUND),
    ("POST", f"{API}/Organisation", {}, NOT_FOUND),
    ("OPTIONS", f"{API}/Contacts", None, NOT_FOUND),
    ("GET", "/connect/token", None, NOT_FOUND),
    ("POST", "/identity/connect/authorize", None, NOT_FOUND),
    ("GET", "/connections/", None, NOT_FOUND),
    ("POST", "/connections", None, NOT_FOUND),
    ("DELETE", "/connections", None, NOT_FOUND),
    ("GET", "/connections/{connection}", None, NOT_FOUND),
    ("DELETE", "/connections/{connection}/x", None, NOT_FOUND),
    ("DELETE", "/connections/not-the-connection", None, NOT_FOUND),
    ("DELETE", "/CONNECTIONS/{connection}", None, (204, PLAIN, "", False)),  # last: it disconnects
]
ENVELOPE = {"Id", "Status", "ProviderName", "DateTimeUTC"}


def routed(reply: httpx.Response) -> tuple[int, str, str, bool]:
    """An answer in brief: status, content type, what tells the handlers apart (the envelope's collections, the
    OAuth error, the text), and whether the accounting pipeline answered (it adds a Xero-Correlation-Id)."""
    if not reply.content or reply.headers["content-type"].startswith("text/"):
        brief = reply.text
    elif isinstance(reply.json(), list):
        brief = "list"
    elif "error" in reply.json():
        brief = reply.json()["error"]
    else:
        brief = ",".join(key for key in reply.json() if key not in ENVELOPE)
    return reply.status_code, reply.headers.get("content-type", ""), brief, "xero-correlation-id" in reply.headers


def test_every_route_answers_and_anything_else_is_xeros_plain_text_404(xero: Xero) -> None:
    # Given one of each record: a contact with a number, an authorised and a draft invoice, an item, a payment
    contact = customer(xero, ContactNumber="RT-1")
    invoice = authorised(xero, contact)
    draft = xero.create_invoice(Type="ACCREC", Contact=contact, LineItems=[line("A", 1, 10)])
    item = xero.send("PUT", "Items", {"Code": "Rt-Item"}).json()["Items"][0]
    payment_body = {"Invoice": {"InvoiceID": invoice["InvoiceID"]}, "Account": {"Code": "090"}, "Amount": 1}
    payment = xero.send("PUT", "Payments", payment_body).json()["Payments"][0]
    [connection] = xero.http.get("/connections", headers=xero.headers()).json()
    ids = {
        "contact": contact["ContactID"],
        "CONTACT": contact["ContactID"].upper(),
        "invoice": invoice["InvoiceID"],
        "draft": draft["InvoiceID"],
        "item": item["ItemID"],
        "payment": payment["PaymentID"],
        "connection": connection["id"],
    }
    bodies = {
        "invoice": {"Type": "ACCREC", "Contact": contact, "LineItems": [line("A", 1, 10)]},
        "payment": payment_body,
    }

    # When each route is called with a valid token for the tenant
    for method, path, body, expected in ROUTE_ANSWERS:
        sent = bodies.get(body, body) if isinstance(body, str) else body
        reply = xero.http.request(method, path.format(**ids), json=sent, headers=xero.headers())

        # Then it answers as that route's handler does, and anything else is the plain-text 404
        assert routed(reply) == expected, (method, path, reply.text)

    # And routing comes before auth: an unknown path without a token is still the 404, a known one is 401
    assert routed(xero.http.get(f"{API}/Nothing")) == NOT_FOUND
    assert xero.http.get(f"{API}/Contacts").status_code == 401
    # And HEAD takes no route (werkzeug would answer it with a GET rule)
    assert xero.http.head(f"{API}/Contacts", headers=xero.headers()).status_code == 404
    assert xero.http.head("/connections", headers=xero.headers()).status_code == 404
    assert [r.status for r in xero.sandbox.state.calls("HEAD")] == [404, 404]


def test_a_rule_is_lower_case_and_its_arguments_keep_the_case_they_were_sent_in() -> None:
    # Given the route of an invoice's email
    rule, endpoint = Endpoint.of("/api.xro/2.0/Invoices/<ref>/Email", print, "invoices")

    # Then the rule matches lower-cased paths, and the argument is read from the path as sent
    assert rule == "/api.xro/2.0/invoices/<ref>/email"
    assert (endpoint.resource, endpoint.arguments) == ("invoices", ((4, "ref"),))
    assert endpoint.arguments_in("/API.XRO/2.0/INVOICES/INV-0001/Email") == {"ref": "INV-0001"}
