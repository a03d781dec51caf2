"""``make bench``: every benchmark beside its floor, measured in the same run, as one table.

    .venv/bin/python -m bench.run            # full sizes (about 3-4 minutes on 2 cores)
    .venv/bin/python -m bench.run --quick    # reduced sizes, for a quick local look
    .venv/bin/python -m bench.run --only cold,webhook

The timed measures (cold init, warm webhook ack, reconcile) run one after the other with nothing else
running. The two call-count measures (contacts burst, payment poller) do not depend on timing, so they
then run side by side in two child processes, one per core. A child prints its rows as JSON
(``--child NAME``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from bench.report import Row, machine, render_notes, render_table

Measure = Callable[[bool], list[Row]]


def _cold(quick: bool) -> list[Row]:
    from bench import coldstart  # noqa: PLC0415 - each measure imports only what it needs

    return coldstart.measure(runs=3 if quick else 5)


def _webhook(quick: bool) -> list[Row]:
    from bench import webhook  # noqa: PLC0415

    return webhook.measure(calls=50 if quick else 200)


def _contacts(quick: bool) -> list[Row]:
    from bench import sync_calls  # noqa: PLC0415

    return sync_calls.measure(companies=200 if quick else 1000, deals=20 if quick else 100)


def _poller(quick: bool) -> list[Row]:
    from bench import poller_calls  # noqa: PLC0415

    return poller_calls.measure(invoices=2_000 if quick else 10_000, changed=50)


def _rate_limits(quick: bool) -> list[Row]:
    from bench import rate_limits  # noqa: PLC0415

    return rate_limits.measure(deals=60 if quick else 200)


def _reconcile(quick: bool) -> list[Row]:
    from bench import reconcile_scale  # noqa: PLC0415

    return reconcile_scale.measure(count=20_000 if quick else 100_000)


def _matching(quick: bool) -> list[Row]:
    from bench import matching  # noqa: PLC0415

    return matching.measure(count=20_000 if quick else 100_000)


#: name -> (measure, timed): timed measures run alone; call counts may run side by side.
MEASURES: dict[str, tuple[Measure, bool]] = {
    "cold": (_cold, True),
    "webhook": (_webhook, True),
    "contacts": (_contacts, False),
    "poller": (_poller, False),
    "ratelimit": (_rate_limits, True),
    "reconcile": (_reconcile, True),
    "matching": (_matching, True),
}
ORDER = ("cold", "webhook", "contacts", "poller", "ratelimit", "reconcile", "matching")


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _child_command(name: str, quick: bool) -> list[str]:
    return [sys.executable, "-m", "bench.run", "--child", name, *(["--quick"] if quick else [])]


def _run_side_by_side(names: Sequence[str], quick: bool) -> dict[str, list[Row]]:
    """Run the call-count measures in child processes at once; their rows, by measure name."""
    children = {
        name: subprocess.Popen(  # noqa: S603 - our own interpreter and module
            _child_command(name, quick), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for name in names
    }
    results: dict[str, list[Row]] = {}
    for name, child in children.items():
        out, err = child.communicate()
        if child.returncode != 0:
            raise RuntimeError(f"measure {name} failed:\n{err[-3000:]}")
        results[name] = [Row(**row) for row in json.loads(out)]
    return results


def run(names: Sequence[str], quick: bool) -> list[Row]:
    """Timed measures one at a time, then the call counts side by side; rows in ORDER."""
    results: dict[str, list[Row]] = {}
    counted = [n for n in names if not MEASURES[n][1]]
    for name in (n for n in names if MEASURES[n][1]):
        _say(f"bench: {name} …")
        started = time.perf_counter()
        results[name] = MEASURES[name][0](quick)
        _say(f"bench: {name} done in {time.perf_counter() - started:.0f} s")
    if counted:
        _say(f"bench: {' and '.join(counted)} (side by side) …")
        started = time.perf_counter()
        results.update(_run_side_by_side(counted, quick) if len(counted) > 1 else {})
        for name in counted:
            if name not in results:
                results[name] = MEASURES[name][0](quick)
        _say(f"bench: {' and '.join(counted)} done in {time.perf_counter() - started:.0f} s")
    return [row for name in ORDER if name in results for row in results[name]]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="reduced sizes (the default is the full sizes)")
    parser.add_argument("--only", default=",".join(ORDER), help=f"comma-separated subset of {', '.join(ORDER)}")
    parser.add_argument("--child", choices=ORDER, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        rows = MEASURES[args.child][0](args.quick)
        print(json.dumps([dataclasses.asdict(row) for row in rows]))
        return 0

    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = sorted(set(names) - set(ORDER))
    if unknown:
        parser.error(f"unknown measure(s) {', '.join(unknown)}; known: {', '.join(ORDER)}")
    started = time.perf_counter()
    rows = run(names, args.quick)
    print(f"Closeloop benchmarks, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC{' (--quick sizes)' if args.quick else ''}")
    print(machine())
    print()
    print(render_table(rows))
    notes = render_notes(rows)
    if notes:
        print()
        print(notes)
    print()
    print(f"total {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
