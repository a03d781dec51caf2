"""The one HTTP client: retries 429/5xx/timeouts with backoff and Retry-After, maps errors to types."""

from __future__ import annotations

import httpx
import pytest

from closeloop.errors import (
    AuthExpired,
    Conflict,
    FatalError,
    NotFound,
    RateLimited,
    Unanswered,
    Unavailable,
    ValidationFailed,
)
from closeloop.http import Fault, RetryPolicy, VendorHttp, typed_error
from closeloop.vendors.xero.client import xero_rate_limit


def client(responses: list[httpx.Response | Exception], sleeps: list[float], **kw: object) -> VendorHttp:
    queue = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        item = queue.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    return VendorHttp(
        "vendor",
        "https://api.example.com",
        transport=httpx.MockTransport(handler),
        sleep=sleeps.append,
        request_id_header="x-req",
        **kw,  # type: ignore[arg-type]
    )


def test_429_waits_retry_after_then_succeeds() -> None:
    sleeps: list[float] = []
    http = client([httpx.Response(429, headers={"Retry-After": "3"}), httpx.Response(200, json={})], sleeps)
    assert http.request("GET", "/x").status_code == 200
    assert sleeps[0] >= 3
    assert http.calls == 2


def test_5xx_and_timeouts_retry_with_capped_backoff_then_raise_unavailable() -> None:
    sleeps: list[float] = []
    http = client(
        [httpx.Response(503), httpx.ReadTimeout("slow"), httpx.Response(502), httpx.Response(500)],
        sleeps,
        policy=RetryPolicy(max_attempts=4, base_delay=1, max_delay=2),
    )
    with pytest.raises(Unavailable) as info:
        http.request("GET", "/x")
    assert len(sleeps) == 3
    assert all(0 <= s <= 2 for s in sleeps)
    assert info.value.status == 500


def test_retry_after_beyond_the_budget_raises_rate_limited_for_the_queue() -> None:
    sleeps: list[float] = []
    http = client([httpx.Response(429, headers={"Retry-After": "60"})], sleeps)
    with pytest.raises(RateLimited) as info:
        http.request("GET", "/x")
    assert info.value.retry_after == 60
    assert sleeps == []


@pytest.mark.parametrize("named", ["day", "Daily"])  # both spellings are reported (GUESSES of the Xero adapter)
def test_xero_daily_limit_is_not_retried(named: str) -> None:
    sleeps: list[float] = []
    limited = httpx.Response(429, headers={"Retry-After": "1", "X-Rate-Limit-Problem": named})
    http = client([limited], sleeps, rate_limit=xero_rate_limit)
    with pytest.raises(RateLimited) as info:
        http.request("GET", "/x")
    assert info.value.problem == "day"
    assert sleeps == []


@pytest.mark.parametrize(
    ("status", "error"), [(400, ValidationFailed), (401, AuthExpired), (404, NotFound), (409, Conflict)]
)
def test_client_errors_are_typed_and_not_retried(status: int, error: type[Exception]) -> None:
    sleeps: list[float] = []
    http = client([httpx.Response(status, json={"email": "a@b.example"}, headers={"x-req": "r-1"})], sleeps)
    with pytest.raises(error) as info:
        http.request("GET", "/x")
    assert sleeps == []
    assert info.value.request_id == "r-1"  # type: ignore[attr-defined]
    assert "a@b.example" not in (info.value.body or "")  # type: ignore[attr-defined]


# -- calls that must not be repeated once sent (an email send) ------------------------------------------


@pytest.mark.parametrize(
    "after_sending",
    [httpx.Response(503), httpx.Response(500), httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("dropped")],
    ids=["503", "500", "read-timeout", "connection-dropped"],
)
def test_a_call_not_safe_to_repeat_is_not_retried_once_sent(after_sending: httpx.Response | Exception) -> None:
    # Given a vendor that fails after receiving the request, then would succeed
    sleeps: list[float] = []
    http = client([after_sending, httpx.Response(204)], sleeps)
    # When a call that must not be repeated once sent is made
    with pytest.raises(Unanswered):
        http.request("POST", "/invoices/1/email", retry_sent=False)
    # Then it was sent once, never again
    assert (http.calls, sleeps) == (1, [])


@pytest.mark.parametrize(
    "never_sent",
    [
        httpx.ConnectError("refused"),
        httpx.ConnectTimeout("no route"),
        httpx.Response(429, headers={"Retry-After": "1"}),
    ],
    ids=["connect-error", "connect-timeout", "429"],
)
def test_a_call_not_safe_to_repeat_is_retried_when_the_request_never_took_effect(
    never_sent: httpx.Response | Exception,
) -> None:
    # Given a vendor that could not be reached (or refused the call with a 429), then answers
    sleeps: list[float] = []
    http = client([never_sent, httpx.Response(204)], sleeps)
    # When the call that must not be repeated once sent is made, Then it is tried again and succeeds
    assert http.request("POST", "/invoices/1/email", retry_sent=False).status_code == 204
    assert http.calls == 2


def test_a_call_not_safe_to_repeat_that_never_connects_is_unavailable_for_a_later_retry() -> None:
    sleeps: list[float] = []
    http = client([httpx.ConnectError("refused")] * 4, sleeps, policy=RetryPolicy(max_attempts=4, base_delay=0))
    with pytest.raises(Unavailable) as info:
        http.request("POST", "/invoices/1/email", retry_sent=False)
    assert not isinstance(info.value, Unanswered)
    assert http.calls == 4


# ---------------------------------------------------------------- one error mapping: status and the vendor's fault


def _duplicate_fault(response: httpx.Response) -> Fault | None:
    """A vendor whose 400 body ``{"code": ..., "message": ...}`` may mean a duplicate."""
    body = response.json()
    code = str(body["code"])
    return Fault(message=body["message"], code=code, error=Conflict if code == "6240" else None)


def test_the_vendor_s_fault_names_the_error_when_the_status_alone_does_not() -> None:
    # Given a vendor answering 400 with a duplicate-name code, naming a customer by email
    answer = httpx.Response(400, json={"code": 6240, "message": "Duplicate name jane@example.com"})
    http = client([answer], [], read_fault=_duplicate_fault)
    # When the call fails
    with pytest.raises(Conflict) as caught:
        http.request("POST", "/customers")
    # Then it is a Conflict, its message carries the vendor's code and redacted message
    assert str(caught.value.message) == "POST /customers failed: [6240] Duplicate name <email>"
    assert caught.value.status == 400 and caught.value.vendor == "vendor"


def test_a_fault_without_an_error_of_its_own_leaves_the_status_to_decide() -> None:
    answer = httpx.Response(400, json={"code": 2000, "message": "Amount must be positive"})
    with pytest.raises(ValidationFailed) as caught:
        client([answer], [], read_fault=_duplicate_fault).request("POST", "/invoices")
    assert caught.value.message == "POST /invoices failed: [2000] Amount must be positive"


def test_an_unreadable_error_body_falls_back_to_the_status() -> None:
    # Given a 404 whose body is not the vendor's documented fault shape (HTML from a proxy)
    answer = httpx.Response(404, text="<html>not here</html>")
    with pytest.raises(NotFound) as caught:
        client([answer], [], read_fault=_duplicate_fault).request("GET", "/customers/1")
    assert caught.value.message == "GET /customers/1 failed"
    assert caught.value.body == "<html>not here</html>"


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (400, ValidationFailed),
        (401, AuthExpired),
        (404, NotFound),
        (409, Conflict),
        (422, ValidationFailed),
        (403, FatalError),
        (503, Unavailable),
        (None, FatalError),
    ],
)
def test_typed_error_maps_a_status_the_same_way_for_http_answers_and_batch_items(
    status: int | None, expected: type[Exception]
) -> None:
    error = typed_error(status, None, "a batch item", vendor="vendor")
    assert type(error) is expected
    assert error.status == status


def test_typed_error_prefers_the_fault_s_error_for_a_fault_inside_a_200() -> None:
    error = typed_error(200, Fault(message="no such customer", code="610", error=NotFound), "batch item 3")
    assert isinstance(error, NotFound)
    assert error.message == "batch item 3: [610] no such customer"
