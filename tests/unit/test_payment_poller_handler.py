"""The payment poller's handler: the CRM and accounting catch-ups fail independently."""

from __future__ import annotations

import importlib.util
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


class Ran:
    def __init__(self, fails: bool = False) -> None:
        self.fails = fails
        self.runs = 0

    def run(self) -> Any:
        self.runs += 1
        if self.fails:
            raise RuntimeError("CRM search is down")
        return SimpleNamespace(queued={}, watermark="w", complete=True, status_changes=[])


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
    context = SimpleNamespace(function_name="f", memory_limit_in_mb=128, invoked_function_arn="arn", aws_request_id="r")
    # When the poller runs, Then it still fails (so the schedule's retries and DLQ see it)
    with pytest.raises(RuntimeError):
        app.handler({}, context)
    # And the accounting catch-up ran all the same
    assert (crm.runs, books.runs) == (1, 1)
