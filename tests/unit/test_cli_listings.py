"""The CLI's listings (backfill plans, the review list, status) print aligned columns a person can scan."""

from __future__ import annotations

import io

from closeloop.models import CrmRef
from closeloop.sync.backfill import BackfillResult, PlanEntry
from closeloop_local.backfill import PLAN_ROWS_SHOWN, _report_contacts
from closeloop_local.cli_support import table


def _entry(n: int, name: str, action: str = "create") -> PlanEntry:
    return PlanEntry(ref=CrmRef(crm="hubspot", object_type="company", object_id=str(n)), action=action, name=name)  # type: ignore[arg-type]


def test_a_dry_run_plan_prints_its_columns_aligned() -> None:
    # Given a dry run whose records have ids and names of different lengths
    plan = [
        _entry(7, "Acme"),
        _entry(1000001, "Northwind Stationers and Sons", "review"),
        _entry(42, "Zed", "link"),
    ]
    result = BackfillResult(dry_run=True, total=3, plan=plan)
    out = io.StringIO()

    # When its report is printed
    _report_contacts(result, out)

    # Then the plan is a header and one line per record, each column starting where its header starts
    lines = out.getvalue().splitlines()
    header = next(line for line in lines if "crm record" in line)
    rows = lines[lines.index(header) + 1 : lines.index(header) + 4]
    for column, cell_of in (("crm record", lambda e: str(e.ref)), ("name", lambda e: e.name)):
        start = header.index(column)
        assert [row[start:].split("  ")[0] for row in rows] == [cell_of(e) for e in plan]
    assert all(" | " not in line for line in lines)
    assert lines[-1] == "dry run: nothing was written"


def test_a_long_plan_shows_its_first_rows_and_counts_the_rest() -> None:
    # Given a dry run with more records than the report shows
    plan = [_entry(n, f"Company {n}") for n in range(PLAN_ROWS_SHOWN + 5)]
    out = io.StringIO()

    # When its report is printed
    _report_contacts(BackfillResult(dry_run=True, total=len(plan), plan=plan), out)

    # Then it shows PLAN_ROWS_SHOWN of them under the header and says how many more there are
    text = out.getvalue()
    assert f"hubspot/company/{PLAN_ROWS_SHOWN - 1} " in text
    assert f"hubspot/company/{PLAN_ROWS_SHOWN} " not in text
    assert "  ... and 5 more\n" in text


def test_a_table_right_aligns_the_columns_asked_and_prints_nothing_without_rows() -> None:
    # When a table with a numeric column is laid out
    lines = table(["queue", "visible"], [["ContactDLQ", "3"], ["Q", "120"]], right={1})
    # Then text is left-aligned, numbers right-aligned, no trailing spaces, indented two spaces
    assert lines == ["  queue       visible", "  ContactDLQ        3", "  Q" + " " * 15 + "120"]
    # And an empty listing prints no header at all
    assert table(["queue", "visible"], []) == []
