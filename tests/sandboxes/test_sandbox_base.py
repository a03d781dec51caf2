"""The sandboxes' shared base on its own: the request pipeline, the control API, routing, limits, replays."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.test import Client
from werkzeug.wrappers import Request, Response

from closeloop_local.sandboxes.base import AccountingSandbox, Fault, Router, SandboxApp, SandboxState, json_response
from closeloop_local.sandboxes.limits import DailyBudget, InFlight, RollingWindow, WindowAndDay
from closeloop_local.sandboxes.outbound import hmac_sha256_base64, send
from closeloop_local.sandboxes.quickbooks import QuickBooksSandbox
from closeloop_local.sandboxes.replays import IdempotencyCache
from closeloop_local.sandboxes.xero import XeroSandbox
from closeloop_local.sandboxes.zohobooks import ZohoBooksSandbox


class EchoSandbox(SandboxApp):
    """The smallest vendor: ``GET /things/<ref>`` echoes the ref; ``/boom`` is a sandbox bug."""

    correlation_header = "X-Echo-Request-Id"

    def __init__(self) -> None:
        self.state = SandboxState()
        self.resets = 0
        self.routes = Router()
        self.routes.add("GET", "/things/<ref>", lambda request, ref: json_response({"ref": ref}))
        self.routes.add("GET", "/boom", lambda request: 1 / 0)

    def handle(self, request: Request, delay: float) -> Response:
        time.sleep(delay)
        try:
            handler, args = self.routes.match(request.method, request.path)
        except (NotFound, MethodNotAllowed) as exc:
            return json_response({"error": type(exc).__name__}, exc.code or 404)
        response: Response = handler(request, **args)
        return response

    def reset(self) -> None:
        self.resets += 1
        self.state.reset_log()

    def fault_error(self, status: int) -> Response:
        return json_response({"echo_error": status}, status)

    def internal_error(self) -> Response:
        return json_response({"echo_error": "internal"}, 500)


@pytest.fixture
def echo() -> tuple[EchoSandbox, Client]:
    sandbox = EchoSandbox()
    return sandbox, Client(sandbox)


def test_api_calls_are_logged_answered_and_carry_the_vendors_request_id(echo: tuple[EchoSandbox, Client]) -> None:
    # Given a sandbox on the base
    sandbox, client = echo
    # When the API is called, on a route, off the routes and with the wrong method
    found = client.get("/things/42")
    missing = client.get("/nothing")
    wrong = client.post("/things/42")
    # Then the handler answers, every answer has a request id, and the log holds each call with its status
    assert found.json == {"ref": "42"}
    assert (missing.status_code, wrong.status_code) == (404, 405)
    assert all(r.headers["X-Echo-Request-Id"] for r in (found, missing, wrong))
    assert [(r.method, r.path, r.status) for r in sandbox.state.requests] == [
        ("GET", "/things/42", 200),
        ("GET", "/nothing", 404),
        ("POST", "/things/42", 405),
    ]


def test_a_fault_answers_before_the_vendor_in_its_error_shape_then_runs_out(echo: tuple[EchoSandbox, Client]) -> None:
    # Given two faults: one without a body (the vendor's error shape), one with a text body and a header
    sandbox, client = echo
    sandbox.state.faults += [
        Fault("/things/*", 503),
        Fault("/things/*", 429, body="slow down", headers={"Retry-After": "7"}),
    ]
    # When the route is called three times
    first, second, third = (client.get("/things/1") for _ in range(3))
    # Then each fault answers once, in order, and the third call reaches the handler
    assert (first.status_code, first.json) == (503, {"echo_error": 503})
    assert (second.status_code, second.get_data(), second.headers["Retry-After"]) == (429, b"slow down", "7")
    assert third.json == {"ref": "1"}


def test_a_delay_only_fault_slows_the_call_and_lets_the_vendor_answer(echo: tuple[EchoSandbox, Client]) -> None:
    # Given a fault with status 0 and a delay
    sandbox, client = echo
    sandbox.state.faults.append(Fault("/things/*", 0, delay=0.2))
    # When the route is called
    started = time.monotonic()
    answer = client.get("/things/7")
    # Then the vendor answers, late
    assert answer.json == {"ref": "7"}
    assert time.monotonic() - started >= 0.2


def test_a_sandbox_bug_answers_the_vendors_500_and_is_logged(
    echo: tuple[EchoSandbox, Client], capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a route whose handler fails
    sandbox, client = echo
    # When it is called
    answer = client.get("/boom")
    # Then the vendor's 500 comes back, the traceback is printed and the log has the status
    assert (answer.status_code, answer.json) == (500, {"echo_error": "internal"})
    assert "ZeroDivisionError" in capsys.readouterr().err
    assert sandbox.state.requests[-1].status == 500


def test_the_control_api_injects_faults_moves_the_clock_reads_the_log_and_resets(
    echo: tuple[EchoSandbox, Client],
) -> None:
    # Given a sandbox with one API call made
    sandbox, client = echo
    client.get("/things/1", headers={"Authorization": "Bearer t"})
    before = sandbox.state.clock.now()
    # When the control API is used
    added = client.post("/_sandbox/faults", json=[{"path_glob": "/things/*", "status": 502}])
    refused = client.post("/_sandbox/faults", json={"status": 502})
    moved = client.post("/_sandbox/clock", json={"advance": 3600})
    log = json.loads(client.get("/_sandbox/requests").get_data())["requests"]
    faulted = client.get("/things/2")
    cleared = client.delete("/_sandbox/faults")
    unknown = client.get("/_sandbox/nothing")
    reset = client.post("/_sandbox/reset")
    # Then each answers as documented, and control calls are never logged nor faulted
    assert (added.status_code, added.json) == (201, {"ok": True, "faults": 1})
    assert refused.status_code == 400 and "path_glob" in json.loads(refused.get_data())["error"]
    assert json.loads(moved.get_data())["now"] >= before + 3600
    assert log == [
        {"method": "GET", "path": "/things/1", "query": "", "headers": log[0]["headers"], "body": "", "status": 200}
    ]
    assert log[0]["headers"]["authorization"] == "Bearer t"
    assert faulted.status_code == 502
    assert (cleared.json, sandbox.state.faults) == ({"ok": True}, [])
    assert (unknown.status_code, unknown.json) == (404, {"error": "no control endpoint GET /_sandbox/nothing"})
    assert (reset.json, sandbox.resets, sandbox.state.requests) == ({"ok": True}, 1, [])


def test_router_tells_a_missing_path_from_a_missing_method() -> None:
    # Given two rules on one path
    routes = Router()
    routes.add("GET", "/items/<ref>", lambda ref: ("get", ref))
    routes.add(["PUT", "PATCH"], "/items/<ref>", lambda ref: ("put", ref))
    # When paths are matched
    handler, args = routes.match("PATCH", "/items/a-1")
    # Then the rule's handler and arguments come back, and misses say why
    assert handler(**args) == ("put", "a-1")
    with pytest.raises(NotFound):
        routes.match("GET", "/other")
    with pytest.raises(MethodNotAllowed):
        routes.match("DELETE", "/items/a-1")


def test_rolling_window_counts_only_the_last_span() -> None:
    # Given a 10-second window with calls at 0, 4 and 9
    window = RollingWindow(10)
    for moment in (0, 4, 9):
        window.add(moment)
    # Then the count falls as each call leaves the window, exactly span after it was made
    assert window.count(9.5) == 3
    assert window.count(10) == 2
    assert window.oldest() == 4
    assert window.count(19) == 0


def test_daily_budget_starts_again_on_the_next_utc_day() -> None:
    # Given units spent late on one UTC day
    budget = DailyBudget()
    late = datetime(2026, 3, 1, 23, 59, tzinfo=UTC).timestamp()
    budget.spend(late, 5)
    budget.spend(late + 30, 2)
    # Then they count that day only
    assert budget.spent(late + 59) == 7
    assert budget.spent(late + 61) == 0


def test_in_flight_counts_per_key() -> None:
    running = InFlight()
    running.enter("a")
    running.enter("a")
    running.leave("a")
    running.leave("b")
    assert (running.count("a"), running.count("b")) == (1, 0)


def test_idempotency_cache_replays_the_first_answer_until_it_expires() -> None:
    # Given an answer remembered under a key for 60 seconds
    cache = IdempotencyCache(ttl=60)
    first = json_response({"id": 1}, 201, {"X-Extra": "yes"})
    cache.remember("key-1", first, now=1000.0, fingerprint="abc")
    # When the key is looked up before and after it expires
    replay = cache.get("key-1", now=1059.0)
    expired = cache.get("key-1", now=1060.0)
    # Then the replay is the same answer, and an expired key is unknown
    assert replay is not None and replay.fingerprint == "abc"
    answer = replay.response()
    assert (answer.status_code, json.loads(answer.get_data()), answer.headers["X-Extra"]) == (201, {"id": 1}, "yes")
    assert answer.headers["Content-Type"] == "application/json; charset=utf-8"
    assert expired is None


def test_send_reports_an_unreachable_subscriber_without_raising() -> None:
    # Given a URL nothing listens on
    attempt = send("http://127.0.0.1:9/hook", b"{}", {"Content-Type": "application/json"}, timeout=1.0)
    # Then the attempt failed, says why, and is not ok
    assert attempt.status is None and attempt.error and attempt.detail.startswith(attempt.error)
    assert not attempt.ok


def test_hmac_signature_matches_a_known_vector() -> None:
    # RFC 4231 test case 2 (key "Jefe"), base64 of the HMAC-SHA256 digest
    signature = hmac_sha256_base64("Jefe", b"what do ya want for nothing?")
    assert signature == "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM="


def test_window_and_day_checks_the_day_first_and_counts_only_admitted_calls() -> None:
    # Given 2 calls per 10 seconds and 7 units a day
    limits = WindowAndDay(2, 10, 7)
    # When calls of 2 units come at 0, 1, 2 (window full), 11 and 12 (day spent), and one more at 30
    answers = [limits.take(moment, cost=2) for moment in (0, 1, 2, 11, 12)]
    # Then the window refuses the third, the day the fifth (6 + 2 > 7), and refusals spend nothing
    assert answers == [None, None, "window", None, "day"]
    assert (limits.window_remaining(12), limits.day_remaining(12)) == (1, 1)
    # And when both limits refuse, the answer is "day": it is checked first
    tight = WindowAndDay(1, 10, 1)
    assert (tight.take(0), tight.take(1)) == (None, "day")


def test_window_and_day_in_milliseconds_rolls_the_day_over_in_seconds() -> None:
    # Given a limiter counting in milliseconds with 1 call a day, spent just before midnight UTC
    limits = WindowAndDay(10, 10_000, 1, per_second=1000)
    midnight_ms = int(datetime(2026, 3, 2, tzinfo=UTC).timestamp() * 1000)
    assert limits.take(midnight_ms - 1) is None
    # Then the next call that day is refused, and one a millisecond later (the next day) is not
    assert limits.take(midnight_ms - 1) == "day"
    assert limits.take(midnight_ms) is None


@pytest.mark.parametrize("sandbox_class", [XeroSandbox, QuickBooksSandbox, ZohoBooksSandbox])
def test_an_accounting_sandbox_knows_its_app_and_writes_money_exactly(sandbox_class: type[AccountingSandbox]) -> None:
    # Given an accounting sandbox made with its app's credentials, by keyword
    sandbox = sandbox_class(client_id="app-id", client_secret="app-s\u00e9cret", refresh_token="first-refresh")
    # Then it knows the app by its id and secret together, and nothing else (missing, wrong, half right)
    assert sandbox.is_client("app-id", "app-s\u00e9cret")
    assert not sandbox.is_client("app-id", "app-secret")
    assert not sandbox.is_client("other-id", "app-s\u00e9cret")
    assert not sandbox.is_client(None, None)
    assert not sandbox.is_client("app-id", None)
    assert (sandbox.client_id, sandbox.client_secret, sandbox.initial_refresh_token) == (
        "app-id",
        "app-s\u00e9cret",
        "first-refresh",
    )
    # And its JSON answers carry money with its exact scale, its fault text as plain text
    assert sandbox.json({"Total": Decimal("100.00"), "Rate": Decimal("0.3333")}).get_data() == (
        b'{"Total": 100.00, "Rate": 0.3333}'
    )
    fault = sandbox.fault_response(Fault("/x", 503, body="down"))
    assert (fault.status_code, fault.mimetype, fault.get_data()) == (503, "text/plain", b"down")
