"""Backfill: existing CRM customers meet existing accounting customers once, before ongoing sync starts.

The CRM's companies and contacts (modified since ``--since``, or all) are listed, resolved 100 at a time into
billable customers and matched against every active accounting customer (read once, in the accounting system's
largest pages) by the matcher: a confident match is linked, an uncertain one goes to the review list for a
person to decide (``closeloop review``), and the rest go through the contact pipeline's bulk path, which still
applies the exact rules (stamp, tax number, email, normalised name) before it creates anything. Customers that
are already mapped are left alone, so a second run, or a resumed one, duplicates nothing.

A dry run reads and plans, and writes nothing anywhere: no mapping, no checkpoint, no review item, no vendor
write. A real run stores a checkpoint after every chunk; ``resume`` continues after the last finished chunk. A
vendor's rate limit pauses the run for as long as the vendor says (a day's limit included) and then retries the
same chunk: it never fails the run.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol, TypeVar

from aws_lambda_powertools import Logger
from pydantic import ValidationError

from closeloop.errors import FatalError, RateLimited, RetriableError
from closeloop.models import AccountingCustomer, BackfillWorkMessage, CrmRef, Customer
from closeloop.ports import AccountingPort, CrmPort, IdMapping, ReviewItem
from closeloop.sync.contacts import ContactSync, Outcome, external_number, validate

logger = Logger(child=True)

CHUNK = 100
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: How long to wait when a vendor rate-limits without saying for how long.
DEFAULT_PAUSE_SECONDS = 60.0
#: A run gives up on a chunk that keeps failing for another reason than a rate limit after this many tries.
MAX_TRIES = 5

PlanAction = Literal["link", "create", "review", "mapped", "invalid"]
T = TypeVar("T")


class MatchLike(Protocol):
    candidate_id: str
    score: float
    verdict: str
    reasons: tuple[str, ...]


class MatcherLike(Protocol):
    def match_all(self, customers: Sequence[Customer]) -> dict[CrmRef, Any]: ...


class BackfillStore(Protocol):
    def get_mapping(self, ref: CrmRef, system: str) -> IdMapping | None: ...

    def find_ref(self, system: str, accounting_id: str) -> CrmRef | None: ...

    def get_checkpoint(self, name: str) -> dict[str, Any] | None: ...

    def put_checkpoint(self, name: str, data: dict[str, Any]) -> None: ...

    def delete_checkpoint(self, name: str) -> None: ...

    def put_review(self, item: ReviewItem) -> None: ...

    def get_review(self, ref: CrmRef, system: str) -> ReviewItem | None: ...


@dataclass(frozen=True)
class PlanEntry:
    """What the backfill does (or, in a dry run, would do) with one customer. Ids and company names only."""

    ref: CrmRef
    action: PlanAction
    name: str
    candidate_id: str = ""
    candidate_name: str = ""
    score: float = 0.0
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class Progress:
    done: int
    total: int
    started: float
    now: float

    @property
    def rate(self) -> float:
        elapsed = self.now - self.started
        return self.done / elapsed if elapsed > 0 else 0.0

    @property
    def eta_seconds(self) -> float | None:
        return (self.total - self.done) / self.rate if self.rate > 0 else None


@dataclass
class BackfillResult:
    dry_run: bool
    total: int
    counts: Counter[str] = field(default_factory=Counter)
    plan: list[PlanEntry] = field(default_factory=list)
    failures: list[tuple[CrmRef, str]] = field(default_factory=list)
    resumed_at: int = 0


class ContactBackfill:
    """Backfill of companies and contacts into accounting customers (see the module docstring)."""

    def __init__(
        self,
        crm: CrmPort,
        accounting: AccountingPort,
        store: BackfillStore,
        sync: ContactSync,
        matcher: Callable[[list[AccountingCustomer]], MatcherLike],
        *,
        progress: Callable[[Progress], None] = lambda p: None,
        pause: Callable[[float, str], None] = lambda seconds, why: time.sleep(seconds),
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.crm = crm
        self.accounting = accounting
        self.store = store
        self.sync = sync
        self.make_matcher = matcher
        self.progress = progress
        self.pause = pause
        self.clock = clock
        self.now = now

    @property
    def checkpoint_name(self) -> str:
        return f"backfill-contacts-{self.crm.name}-{self.accounting.name}"

    def run(self, *, since: datetime | None = None, dry_run: bool = False, resume: bool = False) -> BackfillResult:
        position = 0
        if resume:
            checkpoint = self.store.get_checkpoint(self.checkpoint_name)
            if checkpoint is None:
                raise ValueError("there is no interrupted contacts backfill to resume")
            position = int(checkpoint["position"])
            since = datetime.fromisoformat(checkpoint["since"]) if checkpoint.get("since") else None
        refs = self._with_limits(lambda: self.crm_refs(since))
        result = BackfillResult(dry_run=dry_run, total=len(refs), resumed_at=position)
        candidates = self._with_limits(lambda: list(self.accounting.iter_customers_changed_since(EPOCH)))
        active = [c for c in candidates if c.status == "ACTIVE"]
        names = {c.id: c.name for c in active}
        matcher = self.make_matcher(active)
        started = self.clock()
        for start in range(position, len(refs), CHUNK):
            chunk = refs[start : start + CHUNK]
            self._with_limits(lambda chunk=chunk: self._chunk(chunk, matcher, names, result))  # type: ignore[misc]
            if not dry_run:
                self.store.put_checkpoint(
                    self.checkpoint_name,
                    {"since": since.isoformat() if since else "", "position": start + len(chunk), "total": len(refs)},
                )
            self.progress(Progress(start + len(chunk) - position, len(refs) - position, started, self.clock()))
        if not dry_run:
            self.store.delete_checkpoint(self.checkpoint_name)
        return result

    def crm_refs(self, since: datetime | None) -> list[CrmRef]:
        """Every company and contact changed since ``since``, once each, in a stable order."""
        refs = {
            e.ref for e in self.crm.iter_changes_since(since or EPOCH) if e.ref.object_type in ("company", "contact")
        }
        return sorted(refs, key=lambda r: (r.object_type != "company", r.object_id.zfill(24)))

    def _with_limits(self, work: Callable[[], T]) -> T:
        return with_limits(work, self.pause)

    def run_chunk(self, refs: Sequence[CrmRef]) -> BackfillResult:
        """One chunk of a backfill fanned out over the work queue (in AWS, past one Lambda's 15 minutes).

        The candidates are read for this chunk only, with the accounting system's bulk lookup (stamps, tax
        numbers, emails, name words), then matched as in ``run``. Raises RetriableError (the message is
        retried or parked); a chunk done twice duplicates nothing (mapped customers are left alone).
        """
        result = BackfillResult(dry_run=False, total=len(refs))
        customers = self._resolve(refs)
        wanted = list(customers.values())
        candidates = self.accounting.find_customers_any(
            numbers=[external_number(c.ref) for c in wanted],
            tax_numbers=[c.tax_number for c in wanted if c.tax_number],
            emails=[c.email for c in wanted if c.email],
            names=[c.name for c in wanted],
        )
        active = [c for c in candidates if c.status == "ACTIVE"]
        self._plan_chunk(customers, self.make_matcher(active), {c.id: c.name for c in active}, result)
        return result

    def _resolve(self, refs: Sequence[CrmRef]) -> dict[CrmRef, Customer]:
        resolved = self.crm.resolve_customers(list(refs))
        customers: dict[CrmRef, Customer] = {}
        for customer in resolved.values():
            if customer is not None:
                customers.setdefault(customer.ref, customer)
        return customers

    def _chunk(
        self, refs: Sequence[CrmRef], matcher: MatcherLike, names: dict[str, str], result: BackfillResult
    ) -> None:
        self._plan_chunk(self._resolve(refs), matcher, names, result)

    def _plan_chunk(
        self,
        customers: dict[CrmRef, Customer],
        matcher: MatcherLike,
        names: dict[str, str],
        result: BackfillResult,
    ) -> None:
        system = self.accounting.name
        plan: list[PlanEntry] = []
        unmapped: list[Customer] = []
        for customer in customers.values():
            if self.store.get_mapping(customer.ref, system) is not None:
                plan.append(PlanEntry(customer.ref, "mapped", customer.name))
            elif problems := validate(customer):
                plan.append(PlanEntry(customer.ref, "invalid", customer.name, reasons=tuple(problems)))
            else:
                unmapped.append(customer)
        matches = matcher.match_all(unmapped) if unmapped else {}
        for customer in unmapped:
            entry = self._plan(customer, matches.get(customer.ref), names)
            plan.append(entry)
        if not result.dry_run:
            self._execute(plan, customers, result)  # a retried chunk is planned again: counted once, when done
        result.plan.extend(plan)
        result.counts.update(e.action for e in plan)

    def _plan(self, customer: Customer, match: MatchLike | None, names: dict[str, str]) -> PlanEntry:
        system = self.accounting.name
        decided = self.store.get_review(customer.ref, system)
        if decided is not None and decided.status == "accepted":
            return PlanEntry(
                customer.ref,
                "link",
                customer.name,
                decided.candidate_id,
                decided.candidate_name,
                1.0,
                ("accepted in review",),
            )
        if decided is not None and decided.status == "rejected":
            return PlanEntry(customer.ref, "create", customer.name, reasons=("rejected in review",))
        if match is None:
            return PlanEntry(customer.ref, "create", customer.name)
        owner = self.store.find_ref(system, match.candidate_id)
        verdict = match.verdict
        reasons = tuple(match.reasons)
        if owner is not None and owner != customer.ref:
            verdict, reasons = "uncertain", (*reasons, f"already linked to {owner}")
        action: PlanAction = "link" if verdict == "confident" else "review"
        candidate_name = names.get(match.candidate_id, "")
        return PlanEntry(
            customer.ref, action, customer.name, match.candidate_id, candidate_name, float(match.score), reasons
        )

    def _execute(self, plan: Sequence[PlanEntry], customers: dict[CrmRef, Customer], result: BackfillResult) -> None:
        system = self.accounting.name
        for entry in plan:
            customer = customers.get(entry.ref)
            if customer is None:
                continue
            if entry.action == "link":
                try:
                    self.sync.link(customer, entry.candidate_id, f"backfill ({', '.join(entry.reasons)})")
                except FatalError as exc:
                    result.failures.append((entry.ref, str(exc)))
            elif entry.action == "review":
                self.store.put_review(
                    ReviewItem(
                        ref=entry.ref,
                        system=system,
                        candidate_id=entry.candidate_id,
                        score=entry.score,
                        reasons=entry.reasons,
                        crm_name=entry.name,
                        candidate_name=entry.candidate_name,
                        created_at=self.now(),
                    )
                )
        creates = [e.ref for e in plan if e.action in ("create", "invalid")]
        if creates:
            outcomes = self.sync.sync_many({ref: [] for ref in creates})
            for ref, outcome in outcomes.items():
                if isinstance(outcome, Exception):
                    raise outcome  # retriable: the whole chunk is tried again (mapped ones are skipped)
                if isinstance(outcome, Outcome) and outcome.action == "failed":
                    result.failures.append((ref, outcome.detail))


def with_limits(work: Callable[[], T], pause: Callable[[float, str], None]) -> T:
    """Run ``work``; a rate limit pauses as long as the vendor asks, then retries (a day's limit too); other
    retriable errors back off and retry up to MAX_TRIES."""
    tries = 0
    while True:
        try:
            return work()
        except RateLimited as exc:
            wait = exc.retry_after if exc.retry_after is not None else DEFAULT_PAUSE_SECONDS
            pause(wait, f"{exc.vendor or 'a vendor'} rate limit ({exc.problem or 'per minute'})")
        except RetriableError as exc:
            tries += 1
            if tries >= MAX_TRIES:
                raise
            pause(min(DEFAULT_PAUSE_SECONDS, 2.0**tries), f"{type(exc).__name__}: {exc}")


def plan_rows(plan: Iterable[PlanEntry]) -> list[list[str]]:
    """The plan as table rows (header first), for the CLI and the review export."""
    rows = [["action", "crm record", "name", "accounting id", "score", "why"]]
    for e in plan:
        rows.append(
            [e.action, str(e.ref), e.name, e.candidate_id, f"{e.score:.2f}" if e.score else "", "; ".join(e.reasons)]
        )
    return rows


#: A rate limit longer than this parks a backfill chunk (re-queued with a delay) instead of failing it,
#: so a day's limit waits for the reset rather than burning the message's receives into the DLQ.
PARK_AFTER_SECONDS = 60.0
MAX_DELAY_SECONDS = 900  # SQS's longest message delay


def handle_backfill_messages(
    backfill: ContactBackfill,
    messages: Sequence[tuple[str, str]],
    park: Callable[[str, int], None],
) -> list[str]:
    """Run each chunk; return the ids to retry. A long rate limit parks the chunk (``park(body, delay)``)."""
    failed: list[str] = []
    for message_id, body in messages:
        try:
            run_backfill_chunk(backfill, BackfillWorkMessage.model_validate_json(body), park)
        except (ValidationError, RetriableError):
            failed.append(message_id)  # an unreadable one is retried until the DLQ keeps it
    return failed


def run_backfill_chunk(backfill: ContactBackfill, chunk: BackfillWorkMessage, park: Callable[[str, int], None]) -> None:
    """Run one chunk. A rate limit longer than PARK_AFTER_SECONDS parks it (``park(body, delay)``: re-queued,
    no receive spent); raises a shorter one, and any other RetriableError (the message comes back)."""
    try:
        result = backfill.run_chunk(chunk.refs)
    except RateLimited as exc:
        wait = exc.retry_after or DEFAULT_PAUSE_SECONDS
        if wait <= PARK_AFTER_SECONDS:
            raise
        park(chunk.model_dump_json(), int(min(MAX_DELAY_SECONDS, wait)))
        return
    logger.info(
        "backfill chunk done",
        extra={"run_id": chunk.run_id, "counts": dict(result.counts), "failures": len(result.failures)},
    )
