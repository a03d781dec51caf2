"""SugarCRM quote conversions (vendors/sugarcrm/quotes.py, mapping.line_item for quoted lines): pure, no HTTP."""

from __future__ import annotations

from decimal import Decimal

import pytest

from closeloop.errors import ValidationFailed
from closeloop.vendors.sugarcrm.mapping import line_item
from closeloop.vendors.sugarcrm.quotes import by_position, quote_status, stage_list, valid_until


@pytest.mark.parametrize(
    ("stage", "status"),
    [
        ("Draft", "draft"),
        ("Negotiation", "pending_approval"),
        ("On Hold", "pending_approval"),
        ("Delivered", "ready"),
        ("Confirmed", "ready"),
        ("Closed Accepted", "ready"),
        (" closed accepted ", "ready"),  # compared without case or blanks
        ("Closed Lost", "rejected"),
        ("Closed Dead", "rejected"),
        ("", "draft"),
        ("Something Custom", "draft"),
    ],
)
def test_every_stock_quote_stage_has_a_canonical_status(stage: str, status: str) -> None:
    assert quote_status(stage) == status


def test_configured_stages_replace_the_stock_ones() -> None:
    ready, rejected = stage_list(" Sent , ,Won"), stage_list("Delivered")
    assert ready == ("Sent", "Won")
    assert [quote_status(s, ready, rejected) for s in ("Sent", "Delivered", "Confirmed")] == [
        "ready",
        "rejected",
        "draft",
    ]


def test_lines_sort_by_position_then_id_and_a_missing_position_goes_last() -> None:
    records = [{"id": "c", "position": 1}, {"id": "b"}, {"id": "a", "position": "1"}, {"id": "d", "position": 0}]
    assert [r["id"] for r in by_position(records)] == ["d", "a", "c", "b"]


def test_a_quoted_line_reads_its_own_sku_else_its_templates_and_its_total_amount() -> None:
    line = {"id": "l1", "product_template_id": "t1", "quantity": "2", "discount_price": "10.000000",
            "discount_amount": "10", "discount_select": True, "total_amount": "18.000000"}  # fmt: skip
    templates = {"t1": {"name": "Widget", "mft_part_num": "WID-1"}}
    read = line_item(line, templates, kind="quoted line item", total_field="total_amount")
    assert (read.name, read.sku, read.product_id, read.discount_percent, read.amount) == (
        "Widget", "WID-1", "t1", Decimal(10), Decimal(18),
    )  # fmt: skip
    own = line_item({**line, "mft_part_num": "OWN-1"}, templates, kind="quoted line item", total_field="total_amount")
    assert own.sku == "OWN-1"
    with pytest.raises(ValidationFailed, match="quoted line item l1 total amount"):
        line_item({**line, "total_amount": "n/a"}, templates, kind="quoted line item", total_field="total_amount")


def test_valid_until_is_a_date_or_a_failed_read() -> None:
    assert str(valid_until("2027-01-31", "q")) == "2027-01-31"
    assert valid_until("", "q") is None
    with pytest.raises(ValidationFailed, match="date_quote_expected_closed"):
        valid_until("next week", "q")
