"""The backfill and review commands refuse contradictory options with a clear message (exit 2), before any I/O."""

from __future__ import annotations

import pytest

from closeloop_local.cli import main


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["backfill", "deals", "--fan-out"], "--fan-out is for `closeloop backfill contacts`"),
        (["backfill", "contacts", "--create-missing"], "--create-missing is for `closeloop backfill deals`"),
        (["backfill", "contacts", "--resume", "--since", "2026-01-01"], "--resume continues the interrupted run"),
        (["backfill", "contacts", "--fan-out", "--dry-run"], "--fan-out queues a real contacts backfill"),
        (["backfill", "contacts", "--since", "01/02/2026"], "--since must look like 2026-01-31"),
    ],
)
def test_contradictory_options_are_refused_before_anything_runs(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert says in capsys.readouterr().err


def test_an_unknown_target_is_refused_by_the_parser(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["backfill", "everything"])
    assert exit_.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
