"""Quotes run for a pair only when both systems carry them: HubSpot or Pipedrive (its deal standing in) with Xero,
QuickBooks or Zoho Books today (each adapter implements the whole quote port), not a CRM or accounting system
whose spec lacks ``quote``."""

from __future__ import annotations

import pytest

from closeloop import runtime
from closeloop.ports import QuoteAccounting, QuoteCrm
from closeloop.vendors.hubspot.adapter import HubSpotCrm
from closeloop.vendors.pipedrive.adapter import PipedriveCrm
from closeloop.vendors.xero.adapter import XeroAccounting


@pytest.mark.parametrize(
    ("crm", "books", "reason"),
    [
        ("hubspot", "xero", ""),
        ("pipedrive", "xero", ""),  # the deal stands in for Pipedrive's missing quotes
        ("hubspot", "quickbooks", ""),
        ("sugarcrm", "zohobooks", "SugarCRM does not carry quotes yet"),
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


def test_the_hubspot_pipedrive_and_xero_adapters_implement_the_quote_ports() -> None:
    # The protocols' methods, each present on the adapter that declares ``quote`` (no stub left out)
    for protocol, adapter in ((QuoteCrm, HubSpotCrm), (QuoteCrm, PipedriveCrm), (QuoteAccounting, XeroAccounting)):
        wanted = {name for name in vars(protocol) if not name.startswith("_") and callable(vars(protocol)[name])}
        assert wanted and all(callable(getattr(adapter, name, None)) for name in wanted), (protocol, adapter)
