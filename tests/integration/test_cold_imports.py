"""A function's cold start imports what its own path needs: webhook functions share a module with a worker."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from bench.lambda_env import ROOT, lambda_environment

_PROBE = """
import importlib, json, sys
importlib.import_module("app")
from closeloop import models
unbuilt = sorted(name for name, value in vars(models).items()
                 if isinstance(value, type) and issubclass(value, models.BaseModel)
                 and value.__module__ == models.__name__ and not value.__pydantic_complete__)
print(json.dumps({"modules": sorted(sys.modules), "unbuilt": unbuilt}))
"""


def _imported_at_init(function: str) -> dict[str, list[str]]:
    path = os.pathsep.join([str(ROOT / "functions" / function), os.environ.get("PYTHONPATH", ""), str(ROOT)])
    completed = subprocess.run(  # noqa: S603 - our interpreter, our code
        [sys.executable, "-c", _PROBE],
        env={**os.environ, **lambda_environment({"PYTHONPATH": path})},
        capture_output=True,
        text=True,
        check=True,
    )
    answer: dict[str, list[str]] = json.loads(completed.stdout)
    return answer


@pytest.mark.parametrize(
    ("function", "worker_only"),
    [
        (
            "on_contact",
            {
                "closeloop.sync.accounting_changes",
                "closeloop.sync.backfill",
                "closeloop.sync.contact_queue",
                "closeloop.rules",
                "yaml",
                "aws_lambda_powertools.utilities.batch",
                "aws_lambda_powertools.utilities.batch.base",
            },
        ),
        ("on_deal_won", {"aws_lambda_powertools.utilities.batch", "aws_lambda_powertools.utilities.batch.base"}),
    ],
)
def test_webhook_cold_start_skips_what_only_the_worker_uses(function: str, worker_only: set[str]) -> None:
    # Given the module the webhook function and the worker function share
    # When a fresh process imports it, as Lambda's init does
    imported = _imported_at_init(function)
    # Then the worker's own dependencies are not loaded yet
    assert worker_only.isdisjoint(imported["modules"])
    # And no canonical model has built its validator yet: each builds on first use
    assert "Customer" in imported["unbuilt"]
    assert "SyncEvent" in imported["unbuilt"]


def test_reconcile_cold_start_does_not_load_the_workbook_writer() -> None:
    # Given the reconcile function, the only one that writes a workbook (once a month)
    # When a fresh process imports its handler module, as Lambda's init does
    imported = _imported_at_init("reconcile")
    # Then XlsxWriter and the report renderers wait until a report is actually rendered
    assert {"xlsxwriter", "closeloop.reports.xlsx", "closeloop.reports.monthly"}.isdisjoint(imported["modules"])


@pytest.mark.parametrize("function", ["on_contact", "on_deal_won", "payment_poller", "reconcile"])
def test_no_cold_start_loads_the_xray_sdk(function: str) -> None:
    # Given any function, the workers among them traced with Powertools Tracer (closeloop.observability)
    # When a fresh process imports its handler module, as Lambda's init does
    imported = _imported_at_init(function)
    # Then the X-Ray SDK is not loaded yet: the tracer is made, and patches botocore, on the first invocation
    assert not {name for name in imported["modules"] if name.split(".")[0] == "aws_xray_sdk"}
    # And the metrics the workers flush per invocation are ready at init (Powertools loads them with its Logger)
    assert "aws_lambda_powertools.metrics" in imported["modules"]
