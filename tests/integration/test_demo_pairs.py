"""``closeloop demo --crm --accounting`` (``make demo CRM=.. ACCOUNTING=..``) plays the whole loop for other pairs.

Each case runs the real command in a subprocess, as ``make demo`` does, and checks its exit status and the
lines that say what happened (read back from the sandboxes and the stack by the demo itself).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.e2e


def run_demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "closeloop_local.cli", "demo", *args],
        cwd=ROOT,
        env={**os.environ, "POWERTOOLS_LOG_LEVEL": "ERROR"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


#: The quote-to-cash flows (as the demo names them) each pair carries; the others it names with their reason.
FLOWS = ("quotes", "repeating schedules", "purchase orders")


@pytest.mark.parametrize(
    ("crm", "accounting", "crm_title", "books_title", "carried"),
    [
        ("pipedrive", "quickbooks", "Pipedrive", "QuickBooks", FLOWS),
        ("sugarcrm", "zohobooks", "SugarCRM", "Zoho Books", FLOWS),  # Sugar: schedules from service line items
    ],
)
def test_the_demo_plays_the_whole_loop_for_a_non_default_pair(
    crm: str, accounting: str, crm_title: str, books_title: str, carried: tuple[str, ...]
) -> None:
    result = run_demo("--crm", crm, "--accounting", accounting)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr[-4000:]
    # The pair that was asked for, and nothing of the default pair it is not made of
    assert f"{books_title} sandbox http://127.0.0.1:" in out
    assert f"{crm_title} sandbox http://127.0.0.1:" in out
    for default_title in ("HubSpot", "Xero"):
        assert default_title in (crm_title, books_title) or default_title not in out
    # Company -> one customer, the existing one matched, redelivery and forgery change nothing
    assert re.search(rf"audit {crm}/company/\S+: matched \(matched by normalised name\)", out)
    assert re.search(rf"audit {crm}/company/\S+: updated fields: phone", out)
    assert "answered [200, 200, 200, 200, 200]" in out
    assert f"{books_title} customers before: 2, after: 2" in out
    assert re.search(rf"forged request to \S+/webhooks/{crm}/\S+ is refused: HTTP 401", out)
    assert f"OK: one {books_title} customer per {crm_title} company, matched not duplicated." in out
    # A CRM product -> one item coded by its SKU at its price; the price change follows on the same item
    assert re.search(rf"{books_title} item DEMO-CAT-1: Demo widget, price 25.00", out)
    assert re.search(rf"{books_title} item DEMO-CAT-1: Demo widget, price 27.50", out)
    assert f"OK: one {books_title} item for the product; its price followed." in out
    # Quote to cash: what the pair carries is made once and printed; what it does not is named with the reason
    for flow in FLOWS:
        off = re.search(rf"Quote to cash: no {flow} for this pair \((.+?) do(?:es)? not carry ", out)
        assert (off is None) == (flow in carried), flow
        if off is not None:
            assert books_title in off.group(1) or crm_title in off.group(1)
    if "quotes" in carried:
        assert re.search(rf"{books_title} quote \S+ \(SENT\): total \S+, reference '{crm}-quote-\S+ ", out)
        assert re.search(rf"{crm_title} quote now: .*quote_status=ACCEPTED", out)
        assert re.search(rf"{books_title} quote \S+ \(INVOICED\)", out)
    if "repeating schedules" in carried:
        assert re.search(rf"{books_title} repeating schedule \S+: every 1 \w+, reference '{crm}-deal-\S+/monthly', "
                         r"lines: Q2C-SUPPORT 1 x 30", out)  # fmt: skip
        assert re.search(rf"{crm_title} deal now: invoice_number=\S+, schedule_ids=\S+", out)
    if "purchase orders" in carried:
        assert re.search(
            rf"{books_title} purchase order \S+ to Router Wholesale Ltd \(\w+\): .* lines: Q2C-ROUTER 2", out
        )
    if carried:
        assert "OK: quote -> accepted -> won deal -> one invoice" in out
    # Won deal -> one invoice -> part payment on the deal -> the month's report (quote to cash's invoice first)
    invoices = 3 if carried else 2  # (the quoted deal's,) before, after
    assert len(re.findall(rf"{books_title} invoice \S+ \(\w+\): .*reference '{crm}-deal-", out)) == invoices
    assert re.search(rf"{crm_title} deal now: .*payment_status=partially_paid, amount_due=\S+, amount_paid=500", out)
    changed = 2 if carried else 1  # the quoted deal's invoice is changed in the poller's window too
    assert f"payment poller: {changed} changed invoice(s), 1 deal(s) updated" in out
    assert "discrepancies: none" in out
    assert "the presigned link answered HTTP 200" in out
    saved = re.search(r"a copy is saved in (\S+\.xlsx)", out)
    assert saved is not None
    assert saved.group(1).endswith(f"-{crm}-{accounting}.xlsx")
    assert Path(saved.group(1)).read_bytes()[:2] == b"PK"  # an xlsx is a zip
    assert "OK: won deal -> one invoice -> payment back on the deal -> report." in out
    assert "FAILED" not in out
    assert f"Demo ({crm} + {accounting}) finished in" in out


def test_an_unknown_pair_is_refused_before_anything_starts() -> None:
    result = run_demo("--crm", "salesforce")
    assert result.returncode == 2
    assert "invalid choice: 'salesforce'" in result.stderr
