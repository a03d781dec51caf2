"""ContactBackfill: plan, dry run, link/review/create, checkpoints, resume, rate-limit pauses."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from closeloop.errors import RateLimited
from closeloop.models import AccountingCustomer, CrmRef, Customer
from closeloop.sync.backfill import ContactBackfill
from closeloop.sync.contacts import ContactSync, normalise_name
from tests.fakes import FakeAccounting, FakeCrm, MemoryStore, ref


@dataclass(frozen=True)
class Match:
    candidate_id: str
    score: float
    verdict: str
    reasons: tuple[str, ...]


class NameMatcher:
    """Confident on an equal normalised name; uncertain on an equal first word (enough for these tests)."""

    def __init__(self, candidates: list[AccountingCustomer]) -> None:
        self.candidates = candidates

    def match_all(self, customers: Sequence[Customer]) -> dict[CrmRef, Any]:
        found: dict[CrmRef, Any] = {}
        for customer in customers:
            wanted = normalise_name(customer.name)
            for c in self.candidates:
                if normalise_name(c.name) == wanted:
                    found[customer.ref] = Match(c.id, 0.97, "confident", ("same name",))
                    break
                if normalise_name(c.name).split()[0] == wanted.split()[0]:
                    found[customer.ref] = Match(c.id, 0.7, "uncertain", ("similar name",))
        return found


def company(n: int, name: str) -> Customer:
    return Customer(ref=ref("company", str(n)), name=name, email=f"ap@c{n}.test")


def setup(*customers: Customer) -> tuple[ContactBackfill, FakeAccounting, MemoryStore, list[float]]:
    crm = FakeCrm(customers={c.ref: c for c in customers})
    books = FakeAccounting()
    store = MemoryStore()
    pauses: list[float] = []
    sync = ContactSync(crm, books, store, owner="backfill")
    backfill = ContactBackfill(crm, books, store, sync, NameMatcher, pause=lambda s, why: pauses.append(s))
    return backfill, books, store, pauses


def messy() -> tuple[ContactBackfill, FakeAccounting, MemoryStore, list[float]]:
    customers = [company(1, "ACME, Ltd."), company(2, "Globex Holdings"), company(3, "Initech Inc"), company(4, "")]
    backfill, books, store, pauses = setup(*customers)
    books.add("Acme Limited")  # the same company, messier
    books.add("Globex Corporation")  # perhaps the same: a person decides
    return backfill, books, store, pauses


def test_a_dry_run_plans_every_customer_and_writes_nothing() -> None:
    backfill, books, store, _ = messy()
    result = backfill.run(dry_run=True)
    # Then the plan says link, review, create and invalid, and nothing was written anywhere
    assert {str(e.ref): e.action for e in result.plan} == {
        "crm/company/1": "link",
        "crm/company/2": "review",
        "crm/company/3": "create",
        "crm/company/4": "invalid",
    }
    assert [c for c in books.calls if c not in ("list",)] == []
    assert (store.mappings, store.reviews, store.checkpoints, store.audit) == ({}, {}, {}, [])


def test_a_run_links_confident_matches_queues_uncertain_ones_and_creates_the_rest_once() -> None:
    backfill, books, store, _ = messy()
    result = backfill.run()
    acme = next(r for r in books.records.values() if r.name == "Acme Limited")
    assert store.get_mapping(ref("company", "1"), "books").accounting_id == acme.id  # type: ignore[union-attr]
    assert store.get_mapping(ref("company", "2"), "books") is None
    (review,) = store.list_reviews("books")
    assert (review.ref, review.candidate_name, review.score) == (ref("company", "2"), "Globex Corporation", 0.7)
    assert [r.name for r in books.records.values()].count("Initech Inc") == 1
    assert store.get_failed_sync(ref("company", "4")) is not None  # nameless: a failed sync with its reason
    assert result.counts == {"link": 1, "review": 1, "create": 1, "invalid": 1}
    assert store.checkpoints == {}  # finished: no checkpoint left
    # And a second run changes nothing: no duplicate, the review is not asked twice
    before = dict(books.records)
    again = backfill.run()
    assert books.records == before
    assert again.counts["mapped"] == 2
    assert len(store.list_reviews("books")) == 1


def test_an_accepted_review_is_linked_and_a_rejected_one_is_created_on_the_next_run() -> None:
    backfill, books, store, _ = messy()
    backfill.run()
    store.decide_review(ref("company", "2"), "books", "accepted", "finance@example")
    backfill.run()
    globex = next(r for r in books.records.values() if r.name == "Globex Corporation")
    assert store.get_mapping(ref("company", "2"), "books").accounting_id == globex.id  # type: ignore[union-attr]


def test_a_killed_run_resumes_after_its_last_chunk_without_duplicates(monkeypatch: pytest.MonkeyPatch) -> None:
    customers = [company(n, f"Firm{n} Ltd") for n in range(250)]
    backfill, books, store, _ = setup(*customers)
    monkeypatch.setattr("closeloop.sync.backfill.CHUNK", 100)
    real_chunk = backfill._chunk
    calls = {"n": 0}

    def dies_on_the_third_chunk(*args: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # the operator's Ctrl-C, or a killed process
        real_chunk(*args)

    monkeypatch.setattr(backfill, "_chunk", dies_on_the_third_chunk)
    with pytest.raises(KeyboardInterrupt):
        backfill.run()
    assert store.get_checkpoint(backfill.checkpoint_name)["position"] == 200  # type: ignore[index]
    assert len(books.records) == 200
    monkeypatch.setattr(backfill, "_chunk", real_chunk)
    result = backfill.run(resume=True)
    assert result.resumed_at == 200
    assert len(books.records) == 250
    assert sorted(r.number for r in books.records.values()) == sorted(f"crm-company-{n}" for n in range(250))


def test_resume_without_an_interrupted_run_is_refused() -> None:
    backfill, *_ = messy()
    with pytest.raises(ValueError, match="nothing|no interrupted"):
        backfill.run(resume=True)


def test_a_daily_rate_limit_pauses_for_as_long_as_the_vendor_says_then_goes_on() -> None:
    backfill, books, _, pauses = messy()
    real = books.create_customer
    state = {"limited": False}

    def limited_once(*args: Any, **kwargs: Any) -> Any:
        if not state["limited"]:
            state["limited"] = True
            raise RateLimited("day limit", vendor="books", status=429, retry_after=3600.0, problem="day")
        return real(*args, **kwargs)

    books.create_customer = limited_once  # type: ignore[method-assign]
    result = backfill.run()
    assert pauses == [3600.0]
    assert result.counts["create"] == 1
    assert [r.name for r in books.records.values()].count("Initech Inc") == 1


def test_a_fanned_out_chunk_parks_on_a_long_rate_limit_and_retries_a_short_one() -> None:
    from closeloop.models import BackfillWorkMessage  # noqa: PLC0415
    from closeloop.sync.backfill import handle_backfill_messages  # noqa: PLC0415

    backfill, books, store, _ = messy()
    body = BackfillWorkMessage(run_id="r", refs=[ref("company", "3")]).model_dump_json()
    parked: list[tuple[str, int]] = []
    waits = iter([3600.0, 5.0])

    def limited(*args: Any, **kwargs: Any) -> Any:
        raise RateLimited("limit", vendor="books", status=429, retry_after=next(waits), problem="day")

    books.find_customers_any = limited  # type: ignore[method-assign]
    assert handle_backfill_messages(backfill, [("m1", body)], lambda b, d: parked.append((b, d))) == []
    assert parked == [(body, 900)]
    assert handle_backfill_messages(backfill, [("m2", body)], lambda b, d: parked.append((b, d))) == ["m2"]
    assert handle_backfill_messages(backfill, [("m3", "{bad")], lambda b, d: None) == ["m3"]
