"""The payment poller's handler: the CRM and accounting catch-ups fail independently."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

from closeloop import runtime

APP = Path(__file__).resolve().parents[2] / "functions" / "payment_poller" / "app.py"


def load_app() -> ModuleType:
    spec = importlib.util.spec_from_file_location("payment_poller_app", APP)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class Polled:
    watermark: str = "w"
    status_changes: list[str] = field(default_factory=list)
    deferred: str = ""


def a_context(remaining_ms: int = 300_000) -> SimpleNamespace:
    return SimpleNamespace(
        function_name="f",
        memory_limit_in_mb=128,
        invoked_function_arn="arn",
        aws_request_id="r",
        get_remaining_time_in_millis=lambda: remaining_ms,
    )


class Ran:
    def __init__(self, fails: bool = False) -> None:
        self.fails = fails
        self.runs = 0

    def run(self) -> Any:
        self.runs += 1
        if self.fails:
            raise RuntimeError("CRM search is down")
        return SimpleNamespace(queued={}, watermark="w", complete=True, status_changes=[], deferred="")


def test_a_failing_crm_catch_up_does_not_skip_the_accounting_catch_up(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the CRM catch-up raises
    crm, books = Ran(fails=True), Ran()
    monkeypatch.setattr(runtime, "crm_catch_up", lambda: crm)
    monkeypatch.setattr(runtime, "accounting_catch_up", lambda: books)
    monkeypatch.setattr(
        runtime,
        "payment_poller",
        lambda: SimpleNamespace(run=lambda: (_ for _ in ()).throw(RuntimeError("accounting down"))),
    )
    app = load_app()
    context = a_context()
    # When the poller runs, Then it still fails (so the schedule's retries and DLQ see it)
    with pytest.raises(RuntimeError):
        app.handler({}, context)
    # And the accounting catch-up ran all the same
    assert (crm.runs, books.runs) == (1, 1)


def test_the_poller_paces_by_its_own_invocation_not_a_deadline_another_function_left(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a worker invocation in this thread that ended with no time left (its deadline is now)
    runtime.register_lambda_context(a_context(remaining_ms=1_000))
    seen: list[float | None] = []

    def run() -> Any:
        seen.append(runtime._deadline())
        return Polled()

    for name in ("crm_catch_up", "accounting_catch_up", "quote_status_poll"):
        monkeypatch.setattr(runtime, name, Ran)
    monkeypatch.setattr(runtime, "payment_poller", lambda: SimpleNamespace(run=run))
    # When the poller runs with five minutes ahead of it
    load_app().handler({}, a_context(remaining_ms=300_000))
    # Then its paced calls may go on for its own time, less the reserve (not the worker's spent deadline)
    (deadline,) = seen
    assert deadline is not None
    assert deadline - runtime.clock().now() > (300 - runtime.DEADLINE_RESERVE_SECONDS - 5) * runtime.clock().scale


def test_a_catch_up_deferred_by_a_429_does_not_fail_the_scheduled_run(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a CRM catch-up that a 429 stopped early (its rest left to the next run)
    deferred = SimpleNamespace(
        run=lambda: SimpleNamespace(queued={"deals": 2}, watermark="w", complete=False, deferred="rate limited")
    )
    monkeypatch.setattr(runtime, "crm_catch_up", lambda: deferred)
    for name in ("accounting_catch_up", "quote_status_poll"):
        monkeypatch.setattr(runtime, name, Ran)
    monkeypatch.setattr(runtime, "payment_poller", lambda: SimpleNamespace(run=Polled))
    # When the poller runs, Then the run succeeds and its summary says the catch-up was deferred
    summary = load_app().handler({}, a_context())
    assert summary["catch_up"] == {
        "queued": {"deals": 2},
        "watermark": "w",
        "complete": False,
        "deferred": "rate limited",
    }
    assert summary["accounting_catch_up"]["complete"]
