"""The one OAuth token-endpoint flow (closeloop.oauth.TokenEndpoint) and what each vendor sends through it.

The first tests pin every vendor's token request byte for byte (recorded from the adapters before they shared
the flow); the rest hold the shared flow to its rules: one POST, never re-sent once it may have reached the
vendor (Unanswered), refusals mapped to the error a person or the queue acts on, and rotation read right.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from closeloop.errors import AuthRevoked, ConfigurationError, FatalError, RateLimited, Unanswered
from closeloop.http import RetryPolicy
from closeloop.oauth import TokenEndpoint, TokenGrant
from closeloop.vendors.hubspot import client as hubspot
from closeloop.vendors.quickbooks import client as quickbooks
from closeloop.vendors.sugarcrm import client as sugarcrm
from closeloop.vendors.xero import client as xero
from closeloop.vendors.zohobooks import client as zohobooks

URL = "https://token.test"
ANSWER = {"access_token": "a2", "token_type": "Bearer", "expires_in": 1800, "refresh_token": "r2"}


class Recorder:
    """A token endpoint double: records every request and answers each with the next of ``answers``."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.requests: list[httpx.Request] = []
        self._answers = list(answers) or [httpx.Response(200, json=ANSWER)]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self._answers.pop(0) if len(self._answers) > 1 else self._answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def sent(recorder: Recorder) -> tuple[str, str, bytes, str | None, str | None]:
    (request,) = recorder.requests
    return (
        request.method,
        request.url.path,
        request.content,
        request.headers.get("content-type"),
        request.headers.get("authorization"),
    )


FORM = "application/x-www-form-urlencoded"


def test_xero_sends_the_refresh_token_in_a_form_with_basic_client_auth() -> None:
    recorder = Recorder()
    grant = xero.refresh_with_identity(URL, lambda: "id", lambda: "secret", transport=recorder.transport)("r1")
    assert sent(recorder) == (
        "POST",
        "/connect/token",
        b"grant_type=refresh_token&refresh_token=r1",
        FORM,
        basic("id", "secret"),
    )
    assert grant == TokenGrant(access_token="a2", expires_in=1800.0, refresh_token="r2")


def test_quickbooks_sends_the_refresh_token_in_a_form_with_basic_client_auth() -> None:
    recorder = Recorder()
    quickbooks.refresh_with_intuit(URL, lambda: "id", lambda: "secret", transport=recorder.transport)("r1")
    assert sent(recorder) == (
        "POST",
        "/oauth2/v1/tokens/bearer",
        b"grant_type=refresh_token&refresh_token=r1",
        FORM,
        basic("id", "secret"),
    )


def test_zoho_sends_the_client_credentials_as_form_fields_after_the_refresh_token() -> None:
    recorder = Recorder(httpx.Response(200, json={"access_token": "a2", "api_domain": "https://x", "expires_in": 3600}))
    grant = zohobooks.refresh_with_zoho(URL, lambda: "id", lambda: "secret", transport=recorder.transport)("r1")
    assert sent(recorder) == (
        "POST",
        "/oauth/v2/token",
        b"grant_type=refresh_token&refresh_token=r1&client_id=id&client_secret=secret",
        FORM,
        None,
    )
    assert grant.refresh_token == "r1"  # Zoho's do not rotate: the answer carries none


def test_hubspot_sends_the_client_credentials_as_form_fields_before_the_refresh_token() -> None:
    recorder = Recorder()
    hubspot.refresh_with_hubspot(URL, lambda: "id", lambda: "secret", transport=recorder.transport)("r1")
    assert sent(recorder) == (
        "POST",
        "/oauth/v1/token",
        b"grant_type=refresh_token&client_id=id&client_secret=secret&refresh_token=r1",
        FORM,
        None,
    )


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        (
            "r1",
            b'{"grant_type":"refresh_token","refresh_token":"r1","client_id":"sugar","client_secret":"",'
            b'"platform":"closeloop"}',
        ),
        (
            "",
            b'{"grant_type":"password","username":"u","password":"p","client_id":"sugar","client_secret":"",'
            b'"platform":"closeloop"}',
        ),
    ],
)
def test_sugar_sends_a_json_grant_with_its_platform(stored: str, expected: bytes) -> None:
    recorder = Recorder()
    refresh = sugarcrm.password_grant(
        f"https://sugar-{len(stored)}.test",
        username=lambda: "u",
        password=lambda: "p",
        platform="closeloop",
        transport=recorder.transport,
        api_version="v11_24",
    )
    grant = refresh(stored)
    method, path, content, content_type, authorization = sent(recorder)
    assert (method, path, content, content_type, authorization) == (
        "POST",
        "/rest/v11_24/oauth2/token",
        expected,
        "application/json",
        None,
    )
    assert grant == TokenGrant(access_token="a2", expires_in=1800.0, refresh_token="r2")


def test_sugar_falls_back_to_a_password_login_when_the_refresh_token_is_refused() -> None:
    # Given Sugar refuses the stored refresh token (a login elsewhere on the platform replaced it)
    recorder = Recorder(httpx.Response(400, json={"error": "invalid_grant"}), httpx.Response(200, json=ANSWER))
    refresh = sugarcrm.password_grant(
        "https://sugar-fallback.test",
        username=lambda: "u",
        password=lambda: "p",
        platform="closeloop",
        transport=recorder.transport,
        api_version="v11_24",
    )
    # When it refreshes, Then it logs in with the password and takes that session
    assert refresh("r1").access_token == "a2"
    assert [json.loads(r.content)["grant_type"] for r in recorder.requests] == ["refresh_token", "password"]


ENDPOINT = TokenEndpoint(vendor="acme", label="Acme", client="acme-oauth", path="/token", reconnect="reconnect Acme")


def refresh_with(endpoint: TokenEndpoint, recorder: Recorder) -> Callable[[str], TokenGrant]:
    return endpoint.refresher(URL, lambda: "id", lambda: "secret", transport=recorder.transport)


def test_invalid_grant_is_auth_revoked_naming_what_to_do() -> None:
    recorder = Recorder(httpx.Response(400, json={"error": "invalid_grant"}))
    with pytest.raises(AuthRevoked, match=r"Acme refused the refresh token \(invalid_grant\): reconnect Acme") as info:
        refresh_with(ENDPOINT, recorder)("r1")
    assert (info.value.vendor, info.value.status) == ("acme", 400)
    assert len(recorder.requests) == 1


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (httpx.Response(400, json={"status": "BAD_REFRESH_TOKEN", "message": "missing or invalid"}), AuthRevoked),
        (httpx.Response(400, json={"status": "error", "category": "BAD_CLIENT_ID"}), FatalError),
        (httpx.Response(200, json={}), FatalError),
    ],
)
def test_hubspot_reads_its_refusal_from_status_then_error_then_category(
    answer: httpx.Response, error: type[Exception]
) -> None:
    recorder = Recorder(answer)
    refresh = hubspot.refresh_with_hubspot(URL, lambda: "id", lambda: "secret", transport=recorder.transport)
    with pytest.raises(error):
        refresh("r1")


def test_zoho_refusals_come_with_status_200_and_throttling_is_rate_limited() -> None:
    # Given Zoho answers refusals with status 200 and an error field
    revoked = Recorder(httpx.Response(200, json={"error": "invalid_code"}))
    throttled = Recorder(httpx.Response(400, json={"error": "Access Denied"}))
    # Then a revoked token is AuthRevoked and too many refreshes wait out Zoho's minute
    with pytest.raises(AuthRevoked, match="invalid_code"):
        zohobooks.refresh_with_zoho(URL, lambda: "id", lambda: "s", transport=revoked.transport)("r1")
    with pytest.raises(RateLimited) as info:
        zohobooks.refresh_with_zoho(URL, lambda: "id", lambda: "s", transport=throttled.transport)("r1")
    assert (info.value.retry_after, info.value.problem) == (zohobooks.MINUTE_WINDOW_SECONDS, "token")


def test_a_wrong_intuit_client_is_a_configuration_error_not_a_reconnect() -> None:
    recorder = Recorder(httpx.Response(401, json={"error": "invalid_client"}))
    with pytest.raises(ConfigurationError, match="client id or secret"):
        quickbooks.refresh_with_intuit(URL, lambda: "id", lambda: "s", transport=recorder.transport)("r1")


@pytest.mark.parametrize(
    "lost",
    [httpx.ReadTimeout("the answer never came"), httpx.RemoteProtocolError("dropped"), httpx.Response(502)],
    ids=["read timeout", "dropped connection", "502"],
)
@pytest.mark.parametrize("vendor_refresh", ["xero", "hubspot", "zoho", "generic"])
def test_a_lost_answer_is_unanswered_after_exactly_one_post(
    lost: httpx.Response | Exception, vendor_refresh: str
) -> None:
    # Given a token endpoint that acts on the POST but whose answer never arrives
    recorder = Recorder(lost, httpx.Response(200, json=ANSWER))
    builders: dict[str, Callable[[], Callable[[str], TokenGrant]]] = {
        "xero": lambda: xero.refresh_with_identity(URL, lambda: "i", lambda: "s", transport=recorder.transport),
        "hubspot": lambda: hubspot.refresh_with_hubspot(URL, lambda: "i", lambda: "s", transport=recorder.transport),
        "zoho": lambda: zohobooks.refresh_with_zoho(URL, lambda: "i", lambda: "s", transport=recorder.transport),
        "generic": lambda: refresh_with(ENDPOINT, recorder),
    }
    # When it refreshes, Then the POST is not re-sent by the client (RefreshingTokens decides) and says so
    with pytest.raises(Unanswered):
        builders[vendor_refresh]()("r1")
    assert len(recorder.requests) == 1


def test_a_refused_connection_is_retried_because_nothing_was_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(RetryPolicy, "backoff", lambda self, attempt: 0.0)
    # Given the first connection is refused (the POST never left this machine)
    recorder = Recorder(httpx.ConnectError("refused"), httpx.Response(200, json=ANSWER))
    # When it refreshes, Then the client sends it again and the grant comes back
    assert refresh_with(ENDPOINT, recorder)("r1").access_token == "a2"
    assert len(recorder.requests) == 2


def test_a_rotating_vendor_takes_the_new_refresh_token_and_refuses_an_answer_without_one() -> None:
    rotating = TokenEndpoint(vendor="acme", label="Acme", client="c", path="/token", reconnect="r", rotates=True)
    assert refresh_with(rotating, Recorder())("r1").refresh_token == "r2"
    without = Recorder(httpx.Response(200, json={"access_token": "a2", "expires_in": 60}))
    # a rotated token the answer does not carry is lost: say so rather than keep a single-use token that is spent
    with pytest.raises(FatalError, match="no refresh token"):
        refresh_with(rotating, without)("r1")


def test_a_non_rotating_vendor_keeps_the_token_it_sent_unless_the_answer_brings_another() -> None:
    answer: dict[str, Any] = {"access_token": "a2"}
    kept = refresh_with(ENDPOINT, Recorder(httpx.Response(200, json=answer)))("r1")
    assert kept == TokenGrant(access_token="a2", expires_in=ENDPOINT.default_expires_in, refresh_token="r1")
    renewed = refresh_with(ENDPOINT, Recorder(httpx.Response(200, json={**answer, "refresh_token": "r9"})))("r1")
    assert renewed.refresh_token == "r9"


def test_an_answer_that_is_not_json_is_a_fatal_error_naming_the_vendor() -> None:
    # Given Xero's token endpoint answers 400 with an HTML page (a proxy, an outage page)
    recorder = Recorder(httpx.Response(400, text="<html>bad request</html>"))
    refresh = xero.refresh_with_identity(URL, lambda: "id", lambda: "s", transport=recorder.transport)
    # Then it is a FatalError from Xero, not a JSON decoding crash
    with pytest.raises(FatalError, match="Xero token endpoint said unknown_error"):
        refresh("r1")


def test_an_unreadable_expiry_is_a_fatal_error() -> None:
    recorder = Recorder(httpx.Response(200, json={**ANSWER, "expires_in": "soon"}))
    with pytest.raises(FatalError, match="expires_in"):
        refresh_with(ENDPOINT, recorder)("r1")
