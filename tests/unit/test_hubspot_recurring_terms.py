"""HubSpot recurring line item properties -> LineItem's recurring terms (mapping.recurring_terms)."""

from __future__ import annotations

from datetime import date

import pytest

from closeloop.errors import ValidationFailed
from closeloop.vendors.hubspot.mapping import line_item, recurring_terms, term_periods


@pytest.mark.parametrize(
    ("term", "frequency", "periods"),
    [
        ("P12M", "monthly", 12),
        ("P1Y", "monthly", 12),
        ("P1Y6M", "quarterly", 6),
        ("P6M", "semi_annual", 1),
        ("P3Y", "annual", 3),
        ("P52W", "weekly", 52),
        ("P28D", "fortnightly", 2),
        ("p24m", "biennial", 1),
    ],
)
def test_an_iso_term_is_a_number_of_billing_periods(term: str, frequency: str, periods: int) -> None:
    assert term_periods(term, frequency, "line item 1") == periods


@pytest.mark.parametrize(
    ("term", "frequency"),
    [
        ("P5M", "quarterly"),
        ("P12M", "weekly"),
        ("P10D", "weekly"),
        ("P0M", "monthly"),
        ("12", "monthly"),
        ("P", "monthly"),
    ],
)
def test_a_term_that_is_not_whole_periods_names_the_line(term: str, frequency: str) -> None:
    with pytest.raises(ValidationFailed, match="line item 7"):
        term_periods(term, frequency, "line item 7")


def test_hubspot_s_frequencies_and_the_start_date() -> None:
    props = {"recurringbillingfrequency": "per_six_months", "hs_recurring_billing_start_date": "2026-05-01"}
    assert recurring_terms(props, "line item 1") == {
        "recurring_frequency": "semi_annual",
        "recurring_start": date(2026, 5, 1),
    }
    assert recurring_terms({"hs_recurring_billing_period": "P12M"}, "line item 1") == {}  # no frequency: one-off
    with pytest.raises(ValidationFailed, match="unknown billing frequency 'hourly'"):
        recurring_terms({"recurringbillingfrequency": "hourly"}, "line item 1")
    with pytest.raises(ValidationFailed, match="billing start date"):
        recurring_terms({"recurringbillingfrequency": "monthly", "hs_recurring_billing_start_date": "soon"}, "x")


def test_a_start_delay_counts_from_the_close_date_and_a_start_date_wins() -> None:
    delayed = {
        "recurringbillingfrequency": "monthly",
        "hs_billing_start_delay_months": "1",
        "hs_billing_start_delay_days": "3",
    }
    assert recurring_terms(delayed, "x", date(2026, 1, 31))["recurring_start"] == date(2026, 3, 3)  # 28 Feb + 3 days
    assert recurring_terms(delayed, "x", None)["recurring_start"] is None
    dated = {**delayed, "hs_recurring_billing_start_date": "2026-06-01"}
    assert recurring_terms(dated, "x", date(2026, 1, 31))["recurring_start"] == date(2026, 6, 1)


def test_a_line_item_carries_its_terms() -> None:
    obj = {
        "id": "9",
        "properties": {"price": "10", "recurringbillingfrequency": "annually", "hs_recurring_billing_period": "P2Y"},
    }
    line = line_item(obj, date(2026, 2, 1))
    assert (line.recurring_frequency, line.recurring_periods, line.recurring_start) == ("annual", 2, None)
