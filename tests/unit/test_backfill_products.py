"""ProductBackfill: the catalogues linked by item code, name matches to review, the rest created; duplicates
reported; dry run, second run, checkpoints, resume and rate-limit pauses."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from closeloop.errors import RateLimited
from closeloop.rules import FieldRules
from closeloop.sync.backfill_products import normalise_product_name, product_plan_rows
from tests.catalogue_backfill_support import NOW, mixed, setup
from tests.fakes import ref

PLANNED = {
    "crm/product/1": "link",
    "crm/product/2": "review",
    "crm/product/3": "create",
    "crm/product/4": "invalid",
    "crm/product/5": "duplicate",
    "crm/product/6": "duplicate",
    "crm/product/7": "archived",
    "crm/product/8": "duplicate",
}


def test_a_dry_run_plans_every_product_and_writes_nothing() -> None:
    backfill, _, books, store = mixed()
    result = backfill.run(dry_run=True)
    # Then: SKU = item code links, a name-only match is for review, the rest is created; duplicates reported
    assert {str(e.ref): e.action for e in result.plan if e.ref} == PLANNED
    by_ref = {str(e.ref): e for e in result.plan}
    assert by_ref["crm/product/2"].item_code == "GAD" and by_ref["crm/product/2"].score == 0.8
    assert "products 5, 6 all ask for item code 'D'" in by_ref["crm/product/5"].reasons[0]
    assert "2 items have the code 'X': item-3, item-x2" in by_ref["crm/product/8"].reasons
    (unclaimed,) = [e for e in result.plan if e.ref is None]
    assert (unclaimed.action, unclaimed.item_code, unclaimed.item_id) == ("duplicate", "Y", "item-y1, item-y2")
    assert result.counts["duplicate"] == 4
    # And nothing was written anywhere
    assert books.writes == []
    assert (store.mappings, store.reviews, store.checkpoints, store.audit, store.failed) == ({}, {}, {}, [], {})


def test_a_run_links_reviews_and_creates_and_a_second_run_writes_nothing_new() -> None:
    backfill, _, books, store = mixed()
    result = backfill.run()
    assert {str(e.ref): e.action for e in result.plan if e.ref} == PLANNED
    widget = books.items["W-1"]
    assert store.get_mapping(ref("product", "1"), "books").accounting_id == widget.id  # type: ignore[union-attr]
    assert widget.fields["unit_price"] == "13" and widget.fields["description"] == "A widget"  # finance's stays
    assert store.list_audit(ref("product", "1"))[-1].detail.startswith("backfill (same item code)")
    # The name-only match waits for a person, never linked
    assert store.get_mapping(ref("product", "2"), "books") is None
    (review,) = store.list_reviews("books")
    assert (review.ref, review.candidate_id, review.candidate_name) == (ref("product", "2"), "item-2", "gadget ")
    assert books.items["NEW-1"].fields["unit_price"] == "7"
    assert "no SKU" in store.get_failed_sync(ref("product", "4")).reason  # type: ignore[union-attr]
    assert [f[0] for f in result.failures] == [ref("product", "4")]
    # Duplicates and the archived product are left alone
    assert all(store.get_mapping(ref("product", n), "books") is None for n in ("5", "6", "7", "8"))
    assert sorted(books.items) == ["GAD", "NEW-1", "W-1", "X"]
    assert store.checkpoints == {}
    # And a second run writes nothing new: no item, no update, the review not asked again
    writes, reviews = list(books.writes), dict(store.reviews)
    backfill.now = lambda: NOW + timedelta(days=1)
    again = backfill.run()
    assert books.writes == writes and store.reviews == reviews
    assert again.counts["mapped"] == 2 and again.counts["create"] == 0


def test_an_accepted_review_is_linked_giving_the_item_the_sku_and_a_rejected_one_gets_its_own_item() -> None:
    backfill, crm, books, store = setup()[:4]
    books.put("GAD", name="Gadget")
    books.put("BOLT", name="Bolt")
    crm.add("2", sku="GAD-1", name="Gadget", unit_price=Decimal("5"))
    crm.add("3", sku="BOLT-9", name="bolt")
    backfill.run()
    assert {r.ref.object_id for r in store.list_reviews("books")} == {"2", "3"}
    store.decide_review(ref("product", "2"), "books", "accepted", "finance@example")
    store.decide_review(ref("product", "3"), "books", "rejected", "finance@example")
    result = backfill.run()
    assert {str(e.ref): e.action for e in result.plan} == {"crm/product/2": "link", "crm/product/3": "create"}
    # The accepted item now carries the SKU as its code, so the live sync finds it; the rejected one is apart
    assert sorted(books.items) == ["BOLT", "BOLT-9", "GAD-1"]
    mapping = store.get_mapping(ref("product", "2"), "books")
    assert mapping is not None and mapping.accounting_id == books.items["GAD-1"].id
    assert "accepted in review" in store.list_audit(ref("product", "2"))[-1].detail


def test_two_products_named_like_one_item_both_wait_for_review_naming_each_other() -> None:
    backfill, crm, books, store = setup()[:4]
    books.put("OLD", name="Anvil")
    crm.add("1", sku="ANV-1", name="Anvil")
    crm.add("2", sku="ANV-2", name="ANVIL!")
    result = backfill.run(dry_run=True)
    assert [e.action for e in result.plan] == ["review", "review"]
    assert "also the name of products 2" in result.plan[0].reasons


def test_several_items_with_the_product_s_name_are_reported_not_guessed() -> None:
    backfill, crm, books, _ = setup()[:4]
    books.put("A1", name="Anvil")
    books.put("A2", name="anvil")
    crm.add("1", sku="ANV-1", name="Anvil")
    (entry,) = backfill.run().plan
    assert (entry.action, entry.reasons) == ("duplicate", ("2 items have its name: item-1, item-2",))
    assert sorted(books.items) == ["A1", "A2"] and books.writes == []


def test_an_item_linked_to_another_product_is_a_duplicate_and_sku_item_codes_apply() -> None:
    backfill, crm, books, store = setup(item_codes={"LONG-SKU-1": "LS1"})[:4]
    books.put("LS1", name="Long")
    crm.add("1", sku="LONG-SKU-1", name="Long")
    backfill.run()
    assert store.get_mapping(ref("product", "1"), "books") is not None  # linked through its SKU_ITEM_CODES code
    crm.add("2", sku="LS1", name="Long again")  # a second product asking for the same code, later
    plan = {str(e.ref): e for e in backfill.run(dry_run=True).plan}
    assert plan["crm/product/2"].action == "duplicate"


def test_a_killed_run_resumes_after_its_last_chunk_without_duplicates(monkeypatch: pytest.MonkeyPatch) -> None:
    backfill, crm, books, store, _ = setup()
    for n in range(25):
        crm.add(str(n), sku=f"S{n}", name=f"Product {n}")
    monkeypatch.setattr("closeloop.sync.backfill_products.CHUNK", 10)
    real = backfill._execute
    calls = {"n": 0}

    def dies_on_the_third_chunk(*args: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # the operator's Ctrl-C
        real(*args)

    monkeypatch.setattr(backfill, "_execute", dies_on_the_third_chunk)
    with pytest.raises(KeyboardInterrupt):
        backfill.run()
    assert store.get_checkpoint(backfill.checkpoint_name) == {"position": 20, "total": 25}
    assert len(books.items) == 20
    monkeypatch.setattr(backfill, "_execute", real)
    result = backfill.run(resume=True)
    assert result.resumed_at == 20 and len(books.items) == 25
    assert [w[0] for w in books.writes].count("create") == 25


def test_resume_without_an_interrupted_run_and_rules_keeping_products_out_are_refused() -> None:
    backfill = setup()[0]
    with pytest.raises(ValueError, match="no interrupted products backfill"):
        backfill.run(resume=True)
    off = setup(rules=FieldRules.load("product: {direction: 'off', source_of_truth: crm}"))[0]
    with pytest.raises(ValueError, match="do not sync products to accounting"):
        off.run(dry_run=True)


def test_a_rate_limit_pauses_for_as_long_as_the_vendor_says_then_goes_on() -> None:
    backfill, crm, books, _, pauses = setup()
    crm.add("1", sku="S1", name="One")
    real = books.create_item
    state = {"limited": False}

    def limited_once(*args: Any, **kwargs: Any) -> Any:
        if not state["limited"]:
            state["limited"] = True
            raise RateLimited("day limit", vendor="books", status=429, retry_after=3600.0, problem="day")
        return real(*args, **kwargs)

    books.create_item = limited_once  # type: ignore[method-assign]
    result = backfill.run()
    assert pauses == [3600.0] and result.counts["create"] == 1 and list(books.items) == ["S1"]


def test_plan_rows_and_name_key() -> None:
    assert normalise_product_name("  Café  Widget-Pro! ") == "cafe widget pro"
    backfill, *_ = mixed()
    header, *rows = product_plan_rows(backfill.run(dry_run=True).plan)
    assert header[:3] == ["action", "crm product", "sku"] and len(rows) == 9
