"""Tax by customer location: a rule table, configured per deployment, picks how each invoice is taxed.

Tax codes belong to the accounting organisation (a UK Xero org's OUTPUT2 is 20% VAT, a NZ org's is 15%
GST), so rules name the accounting system's own codes. The first rule that matches the customer's country
(ISO code or name, case-insensitive), region, and — for reverse charge — a tax number, wins:

- ``standard``: each line carries ``tax_type`` (empty: the item's own default code);
- ``exempt``: each line carries ``tax_type`` (the org's exempt/zero code);
- ``reverse_charge``: B2B supply to a customer with a VAT number abroad: the org's reverse-charge code;
- ``sales_tax_line``: US-style sales tax as a separate line: lines untaxed (``tax_type``), plus one line
  of ``sales_tax_rate`` percent of the net total, on ``sales_tax_account_code``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from closeloop.models import Customer, LineAmountTypes

Treatment = Literal["standard", "exempt", "reverse_charge", "sales_tax_line"]


class TaxRule(BaseModel):
    model_config = ConfigDict(frozen=True)

    countries: tuple[str, ...] = Field(("*",), description="ISO codes or names; '*' matches any")
    regions: tuple[str, ...] = ("*",)
    treatment: Treatment = "standard"
    tax_type: str = ""
    amounts: LineAmountTypes = "Exclusive"
    requires_tax_number: bool = False
    sales_tax_rate: Decimal | None = None
    sales_tax_account_code: str = ""
    sales_tax_description: str = "Sales tax"

    def matches(self, customer: Customer) -> bool:
        country = customer.address.country.strip().lower()
        region = customer.address.region.strip().lower()
        if "*" not in self.countries and country not in {c.lower() for c in self.countries}:
            return False
        if "*" not in self.regions and region not in {r.lower() for r in self.regions}:
            return False
        return not (self.requires_tax_number and not customer.tax_number)


#: Used when a deployment configures none: lines take each item's own default tax code, amounts exclusive.
DEFAULT_RULES: tuple[TaxRule, ...] = (TaxRule(),)

_RULES = TypeAdapter(tuple[TaxRule, ...])


def parse_rules(text: str) -> tuple[TaxRule, ...]:
    """Rules from JSON (the TAX_RULES setting); a catch-all rule is appended when none is given."""
    if not text.strip():
        return DEFAULT_RULES
    rules = _RULES.validate_python(json.loads(text))
    if not any("*" in r.countries and "*" in r.regions and not r.requires_tax_number for r in rules):
        rules = (*rules, TaxRule())
    return rules


def rule_for(customer: Customer, rules: Sequence[TaxRule]) -> TaxRule:
    """The first rule matching the customer's location (the table ends with a catch-all)."""
    for rule in rules:
        if rule.matches(customer):
            return rule
    return TaxRule()
