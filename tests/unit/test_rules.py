"""Declarative field rules: the packaged default, per-deployment overrides, every verdict, clear errors."""

from __future__ import annotations

import itertools
import re
from importlib import resources
from pathlib import Path

import pytest

from closeloop.errors import ConfigurationError
from closeloop.models import CUSTOMER_FIELDS, DEAL_SYNC_FIELDS, InvoiceDraft
from closeloop.rules import (
    CUSTOMER_SUMMARY_FIELDS,
    DIRECTIONS,
    OBJECT_FIELDS,
    OBJECTS,
    SYSTEMS,
    Direction,
    FieldRules,
    SyncObject,
    System,
)
from closeloop.sync.invoices import CUSTOMER_PROPERTIES
from tests.source_scan import vendor_mentions

RULES_MODULE = Path(__file__).resolve().parents[2] / "layers" / "common" / "closeloop" / "rules.py"


def _rules(direction: Direction, source: System) -> FieldRules:
    """Rules whose customer object has ``direction`` and every field owned by ``source``."""
    return FieldRules.load(f"customer:\n  direction: {direction}\n  source_of_truth: {source}\n")


def _error(text: str) -> str:
    with pytest.raises(ConfigurationError) as caught:
        FieldRules.load(text)
    return str(caught.value)


# -- the packaged default ----------------------------------------------------------------------------


def test_the_default_says_what_the_issue_says() -> None:
    # Given the rules that ship with the package
    # When they are loaded without an override
    rules = FieldRules.load()

    # Then customers sync both ways, deals become invoices, and payments come back to the CRM
    assert rules.direction("customer") == "both"
    assert rules.direction("invoice") == "crm_to_accounting"
    assert rules.direction("payment") == "accounting_to_crm"
    # And the CRM owns every contact detail, which flows to accounting only
    for field in CUSTOMER_FIELDS:
        assert rules.source_of_truth("customer", field) == "crm"
        assert rules.may_write("customer", field, "accounting")
        assert not rules.may_write("customer", field, "crm")
    # And accounting owns payment status, amounts and balances, which flow to the CRM only
    for field in ("closeloop_payment_status", "closeloop_amount_due", *CUSTOMER_SUMMARY_FIELDS):
        assert rules.source_of_truth("payment", field) == "accounting"
        assert rules.may_write("payment", field, "crm")
        assert not rules.may_write("payment", field, "accounting")
    # And the invoice is decided from the deal
    assert rules.fields_to_write("invoice", "accounting") == tuple(InvoiceDraft.model_fields)
    assert rules.fields_to_write("invoice", "crm") == ()


def test_the_default_makes_accounting_side_edits_of_contact_details_conflicts() -> None:
    # Given the default rules
    rules = FieldRules.load()

    # When the email is edited in each system
    # Then the CRM's edit is applied, accounting's is a conflict; a CRM edit of a payment status is one too
    assert rules.verdict("customer", "email", "crm") == "apply"
    assert rules.verdict("customer", "email", "accounting") == "conflict"
    assert rules.verdict("payment", "closeloop_payment_status", "accounting") == "apply"
    assert rules.verdict("payment", "closeloop_payment_status", "crm") == "conflict"


def test_a_blank_override_is_the_default_and_the_default_is_read_once() -> None:
    # Given no FIELD_RULES (the setting is empty) or one holding only a comment
    # When loaded
    # Then each is the packaged default, the same object every time
    assert FieldRules.load("") is FieldRules.load()
    assert FieldRules.load("  \n") is FieldRules.load(None)
    assert FieldRules.load("# nothing to change\n").objects == FieldRules.load().objects


def test_the_rules_govern_exactly_the_fields_the_code_syncs() -> None:
    # Given the fields the models and the poller name
    written_back = [f for f in DEAL_SYNC_FIELDS if f != "closeloop_sync_issue"]

    # When compared with what each object's rules may name
    # Then they agree, so a field added to the code cannot escape the rules unnoticed
    assert OBJECT_FIELDS["customer"] == CUSTOMER_FIELDS
    assert OBJECT_FIELDS["invoice"] == tuple(InvoiceDraft.model_fields)
    assert OBJECT_FIELDS["payment"] == (*written_back, *CUSTOMER_SUMMARY_FIELDS)
    assert tuple(p.name for p in CUSTOMER_PROPERTIES) == CUSTOMER_SUMMARY_FIELDS


def test_the_packaged_file_is_found_as_package_data_and_names_no_vendor() -> None:
    # Given the rules module and the YAML shipped beside it
    shipped = resources.files("closeloop").joinpath("field_rules.yaml").read_text(encoding="utf-8")

    # When both are checked for vendor names
    # Then neither names one (the rules are vendor-free, like the sync logic)
    assert vendor_mentions(RULES_MODULE.read_text()) == []
    assert not re.search(r"hubspot|pipedrive|sugar|xero|quickbooks|zoho", shipped, re.IGNORECASE)


# -- overrides ---------------------------------------------------------------------------------------


def test_an_override_replaces_only_the_objects_it_names() -> None:
    # Given a deployment where finance owns the customer's legal name and billing email
    text = """
customer:
  direction: both
  source_of_truth: crm
  fields:
    name: accounting
    email: accounting
"""
    # When loaded
    rules = FieldRules.load(text)

    # Then those two flow to the CRM, the rest of the customer still flows to accounting
    assert rules.source_of_truth("customer", "name") == "accounting"
    assert rules.may_write("customer", "name", "crm")
    assert not rules.may_write("customer", "name", "accounting")
    assert rules.verdict("customer", "email", "crm") == "conflict"
    assert rules.verdict("customer", "phone", "crm") == "apply"
    assert rules.fields_to_write("customer", "crm") == ("name", "email")
    # And the objects it does not name keep the packaged rules
    assert rules.objects["invoice"] == FieldRules.load().objects["invoice"]
    assert rules.objects["payment"] == FieldRules.load().objects["payment"]


def test_a_named_object_is_replaced_whole_so_its_default_owner_applies_to_every_unlisted_field() -> None:
    # Given an override of the customer that lists no fields, owned by accounting
    rules = FieldRules.load("customer: {direction: accounting_to_crm, source_of_truth: accounting}")

    # When asked about fields the packaged file lists as CRM-owned
    # Then the override's default owner applies to them all
    assert {rules.source_of_truth("customer", f) for f in CUSTOMER_FIELDS} == {"accounting"}
    assert rules.fields_to_write("customer", "crm") == CUSTOMER_FIELDS


def test_a_bare_off_is_read_as_written_not_as_a_yaml_boolean() -> None:
    # Given YAML 1.1, where a bare off would mean false
    text = "payment:\n  direction: off\n  source_of_truth: accounting\n  fields:\n"

    # When payments are switched off
    rules = FieldRules.load(text)

    # Then the direction is off and nothing flows or is flagged
    assert rules.direction("payment") == "off"
    assert rules.fields_to_write("payment", "crm") == ()
    assert rules.verdict("payment", "closeloop_amount_paid", "crm") == "ignore"


def test_a_field_the_direction_does_not_carry_stays_where_it_is() -> None:
    # Given customers synced one way to accounting, with the legal name owned by accounting
    rules = FieldRules.load(
        "customer:\n  direction: crm_to_accounting\n  source_of_truth: crm\n  fields: {name: accounting}"
    )

    # When the name changes on either side
    # Then nothing is written or flagged: it simply does not sync; the other fields still do
    assert rules.verdict("customer", "name", "crm") == "ignore"
    assert rules.verdict("customer", "name", "accounting") == "ignore"
    assert not rules.may_write("customer", "name", "accounting")
    assert "name" not in rules.fields_to_write("customer", "accounting")
    assert rules.verdict("customer", "email", "crm") == "apply"


# -- every combination -------------------------------------------------------------------------------

#: (direction, source of truth, changed in) -> verdict. A field flows from its owner only, when the direction
#: carries that way; a change in the owner is applied, one in the other system is a conflict.
VERDICTS = {
    ("both", "crm", "crm"): "apply",
    ("both", "crm", "accounting"): "conflict",
    ("both", "accounting", "accounting"): "apply",
    ("both", "accounting", "crm"): "conflict",
    ("crm_to_accounting", "crm", "crm"): "apply",
    ("crm_to_accounting", "crm", "accounting"): "conflict",
    ("crm_to_accounting", "accounting", "accounting"): "ignore",
    ("crm_to_accounting", "accounting", "crm"): "ignore",
    ("accounting_to_crm", "crm", "crm"): "ignore",
    ("accounting_to_crm", "crm", "accounting"): "ignore",
    ("accounting_to_crm", "accounting", "accounting"): "apply",
    ("accounting_to_crm", "accounting", "crm"): "conflict",
    ("off", "crm", "crm"): "ignore",
    ("off", "crm", "accounting"): "ignore",
    ("off", "accounting", "accounting"): "ignore",
    ("off", "accounting", "crm"): "ignore",
}

#: (direction, source of truth) -> the one system a field may be written to, or None.
WRITES_TO = {
    ("both", "crm"): "accounting",
    ("both", "accounting"): "crm",
    ("crm_to_accounting", "crm"): "accounting",
    ("crm_to_accounting", "accounting"): None,
    ("accounting_to_crm", "crm"): None,
    ("accounting_to_crm", "accounting"): "crm",
    ("off", "crm"): None,
    ("off", "accounting"): None,
}


def test_the_tables_cover_every_combination() -> None:
    # Given every direction, owner and side
    # When compared with the expectation tables
    # Then none is missing
    assert set(VERDICTS) == set(itertools.product(DIRECTIONS, SYSTEMS, SYSTEMS))
    assert set(WRITES_TO) == set(itertools.product(DIRECTIONS, SYSTEMS))


@pytest.mark.parametrize(("direction", "source", "changed_in"), sorted(VERDICTS))
def test_every_verdict(direction: Direction, source: System, changed_in: System) -> None:
    # Given a customer object with this direction and owner
    rules = _rules(direction, source)

    # When its email changes in one system
    verdict = rules.verdict("customer", "email", changed_in)

    # Then the verdict is the table's
    assert verdict == VERDICTS[(direction, source, changed_in)]


@pytest.mark.parametrize(("direction", "source"), sorted(WRITES_TO))
def test_every_write_permission(direction: Direction, source: System) -> None:
    # Given a customer object with this direction and owner
    rules = _rules(direction, source)

    # When asked whether the email may be written to each system
    allowed = {to for to in SYSTEMS if rules.may_write("customer", "email", to)}

    # Then at most the non-owner, and only when the direction carries it
    expected = WRITES_TO[(direction, source)]
    assert allowed == ({expected} if expected else set())
    assert source not in allowed


@pytest.mark.parametrize("obj", OBJECTS)
def test_each_object_follows_its_own_direction(obj: SyncObject) -> None:
    # Given every object but one switched off, and that one both ways, owned by accounting
    lines = [f"{o}: {{direction: {'both' if o == obj else 'off'}, source_of_truth: accounting}}" for o in OBJECTS]
    rules = FieldRules.load("\n".join(lines))

    # When each object's first field is asked about
    # Then only that object's field flows
    for other in OBJECTS:
        field = OBJECT_FIELDS[other][0]
        assert rules.verdict(other, field, "accounting") == ("apply" if other == obj else "ignore")


# -- errors ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "customer:\n  direction: both\n  source_of_truth: crm\n  fields: [\n",
            r"^FIELD_RULES line \d+: not valid YAML",
        ),
        ("- customer\n", r"^FIELD_RULES line 1: the rules must be a mapping of keys to values, not a list$"),
        (
            "customers:\n  direction: both\n",
            r"^FIELD_RULES line 1: unknown object 'customers' \(did you mean 'customer'\?\)$",
        ),
        (
            "deal:\n  direction: both\n",
            r"^FIELD_RULES line 1: unknown object 'deal'; known: customer, invoice, payment, product$",
        ),
        (
            "invoice:\n  direction: crm_to_accounting\n  source: crm\n",
            r"^FIELD_RULES line 3: unknown invoice setting 'source'",
        ),
        ("invoice:\n  direction: crm_to_accounting\n", r"^FIELD_RULES line 1: invoice must declare source_of_truth$"),
        ("invoice:\n  source_of_truth: crm\n", r"^FIELD_RULES line 1: invoice must declare direction$"),
        (
            "invoice:\n  direction: crm-to-accounting\n  source_of_truth: crm\n",
            r"^FIELD_RULES line 2: invoice direction is 'crm-to-accounting' \(did you mean 'crm_to_accounting'\?\); "
            r"expected one of: crm_to_accounting, accounting_to_crm, both, off$",
        ),
        (
            "invoice:\n  direction: both\n  source_of_truth: finance\n",
            r"^FIELD_RULES line 3: invoice source_of_truth is 'finance'",
        ),
        (
            "customer:\n  direction: both\n  source_of_truth: crm\n  fields:\n    phone: crm\n    emial: crm\n",
            r"^FIELD_RULES line 6: unknown customer field 'emial' \(did you mean 'email'\?\)$",
        ),
        (
            "payment:\n  direction: both\n  source_of_truth: crm\n  fields:\n    closeloop_sync_issue: crm\n",
            r"^FIELD_RULES line 5: unknown payment field 'closeloop_sync_issue'",
        ),
        (
            "customer:\n  direction: both\n  source_of_truth: crm\n  fields:\n    email: [crm]\n",
            r"^FIELD_RULES line 5: customer field email is a list; expected one of: crm, accounting$",
        ),
        (
            "customer:\n  direction: both\n  source_of_truth: crm\n  fields:\n    email: crm\n    email: accounting\n",
            r"^FIELD_RULES line 6: customer fields has 'email' twice \(first on line 5\)$",
        ),
        ("customer: both\n", r"^FIELD_RULES line 1: customer must be a mapping of keys to values, not a plain value$"),
        (
            "customer:\n  direction: both\n  source_of_truth: crm\n  fields: email\n",
            r"^FIELD_RULES line 4: customer fields must be",
        ),
    ],
)
def test_a_bad_override_names_the_key_and_its_line(text: str, message: str) -> None:
    # Given an override with one mistake
    # When it is loaded
    # Then a ConfigurationError says which key, on which line, and what would be right
    assert re.search(message, _error(text))


def test_an_error_names_its_source() -> None:
    # Given a caller that loads rules from a file of its own
    # When the file is wrong
    with pytest.raises(ConfigurationError, match=r"^rules\.yaml line 1: unknown object"):
        FieldRules.load("invoices: {}\n", source="rules.yaml")


def test_asking_about_an_ungoverned_field_or_object_is_a_programming_error() -> None:
    # Given the default rules
    rules = FieldRules.load()

    # When code asks about a field or object no rule governs
    # Then it fails loudly instead of guessing an owner
    with pytest.raises(ValueError, match="no field rule governs customer field 'emial'"):
        rules.source_of_truth("customer", "emial")
    with pytest.raises(ValueError, match="no field rules for object 'deal'"):
        rules.direction("deal")  # type: ignore[arg-type]
