"""Quotes run for a pair only when both systems carry them: HubSpot, SugarCRM or Pipedrive (its deal standing in)
with Xero, QuickBooks or Zoho Books today (each adapter implements the whole quote port), not a CRM or accounting
system whose spec lacks ``quote``."""

from __future__ import annotations

import pytest

from closeloop import runtime
from closeloop.ports import QuoteAccounting, QuoteCrm
from closeloop.vendors.hubspot.adapter import HubSpotCrm
from closeloop.vendors.pipedrive.adapter import PipedriveCrm
from closeloop.vendors.sugarcrm.adapter import SugarCrm
from closeloop.vendors.xero.adapter import XeroAccounting


@pytest.mark.parametrize(
    ("crm", "books", "reason"),
    [
        ("hubspot", "xero", ""),
        ("pipedrive", "xero", ""),  # the deal stands in for Pipedrive's missing quotes
        ("hubspot", "quickbooks", ""),
        # SugarCRM's adapter implements the quote port (Quotes and their grouped lines) since issue 12.
        ("sugarcrm", "zohobooks", ""),
        ("sugarcrm", "xero", ""),
    ],
)
def test_quotes_are_on_only_where_both_specs_carry_them(
    monkeypatch: pytest.MonkeyPatch, crm: str, books: str, reason: str
) -> None:
    monkeypatch.setenv("CRM_PROVIDER", crm)
    monkeypatch.setenv("ACCOUNTING_PROVIDER", books)
    runtime.reset()
    try:
        assert runtime.quotes_off_reason().startswith(reason)
        assert bool(runtime.quotes_off_reason()) == bool(reason)
    finally:
        runtime.reset()


def test_the_crm_and_accounting_adapters_that_declare_quotes_implement_the_quote_ports() -> None:
    # The protocols' methods, each present on the adapter that declares ``quote`` (no stub left out)
    pairs = ((QuoteCrm, HubSpotCrm), (QuoteCrm, PipedriveCrm), (QuoteCrm, SugarCrm), (QuoteAccounting, XeroAccounting))
    for protocol, adapter in pairs:
        wanted = {name for name in vars(protocol) if not name.startswith("_") and callable(vars(protocol)[name])}
        assert wanted and all(callable(getattr(adapter, name, None)) for name in wanted), (protocol, adapter)
