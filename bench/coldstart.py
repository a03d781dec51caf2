"""Cold init: each function module imported in a fresh process, as Lambda does, against ``import boto3``.

A child interpreter gets the function's environment (template.yaml Globals, dummy resource ids, region and
role credentials), puts ``functions/<name>`` and ``layers/common`` first on ``sys.path`` (as ``/var/task``
and ``/opt/python`` are), and times only the import of ``app.py`` by path: interpreter start-up is the
same for every process and is left out. The floor is ``import boto3`` + ``boto3.client("sqs")`` timed the
same way: boto3 ships with the runtime, and any function that touches AWS pays for it once.

One discarded round first (bytecode caches and the page cache warm, as on a warm Lambda host), then the
processes run round-robin, so that drift on the machine touches every target alike.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from bench.lambda_env import ROOT, lambda_environment
from bench.report import Row, median

FUNCTIONS = ("on_contact", "on_deal_won", "payment_poller", "reconcile")
LAYER = ROOT / "layers" / "common"
TARGET_RATIO = 1.5

_CHILD = """
import importlib.util, json, sys, time
sys.path[:0] = [{function_dir!r}, {layer!r}]
started = time.perf_counter()
{body}
print(json.dumps({{"ms": (time.perf_counter() - started) * 1000, "boto3": "boto3" in sys.modules}}))
"""

_IMPORT_APP = """
spec = importlib.util.spec_from_file_location("app", {path!r})
module = importlib.util.module_from_spec(spec)
sys.modules["app"] = module
spec.loader.exec_module(module)
"""

_FLOOR = """
import boto3
boto3.client("sqs")
"""


def _child_code(function: str | None) -> str:
    function_dir = ROOT / "functions" / (function or FUNCTIONS[0])
    body = _IMPORT_APP.format(path=str(function_dir / "app.py")) if function else _FLOOR
    return _CHILD.format(function_dir=str(function_dir), layer=str(LAYER), body=body.strip())


def _environment() -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")}
    return {**keep, **lambda_environment()}


def time_import(function: str | None) -> tuple[float, bool]:
    """Milliseconds one fresh process spends importing ``function``'s app.py (None: the boto3 floor), and
    whether boto3 was imported by then."""
    completed = subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", _child_code(function)],
        env=_environment(),
        cwd=str(ROOT),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"cold import of {function or 'boto3'} failed:\n{completed.stderr[-2000:]}")
    answer = json.loads(completed.stdout.strip().splitlines()[-1])
    return float(answer["ms"]), bool(answer["boto3"])


def measure(runs: int = 5) -> list[Row]:
    """One row per function: median cold init vs the median boto3 floor, both over ``runs`` processes."""
    targets: list[str | None] = [None, *FUNCTIONS]
    for target in targets:  # warm-up round, discarded
        time_import(target)
    samples: dict[str | None, list[float]] = {target: [] for target in targets}
    imports_boto3: dict[str | None, bool] = {}
    for _ in range(runs):
        for target in targets:
            ms, imports_boto3[target] = time_import(target)
            samples[target].append(ms)
    floor = median(samples[None])
    lazy = [function for function in FUNCTIONS if not imports_boto3[function]]
    note = (
        f"{', '.join(lazy)} import no boto3 at init; their first call that touches AWS pays the floor then"
        if lazy
        else ""
    )
    return [
        Row(
            f"cold init {function} (fresh process, median of {runs})",
            median(samples[function]),
            floor,
            "ms",
            target=TARGET_RATIO,
            bound="ratio",
            digits=0,
            note=note if index == 0 else "",
        )
        for index, function in enumerate(FUNCTIONS)
    ]
