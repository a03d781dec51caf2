"""CatchUp: CRM changes since the watermark are queued like webhook events; nothing skipped when cut short."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from closeloop.models import SyncEvent, WorkMessage
from closeloop.sync.catchup import OVERLAP, WATERMARK, CatchUp
from tests.fakes import MemoryStore, ref

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


class ChangingCrm:
    name = "crm"

    def __init__(self, changes: list[SyncEvent]) -> None:
        self.changes = changes
        self.asked: list[datetime] = []

    def iter_changes_since(self, since: datetime) -> Iterator[SyncEvent]:
        self.asked.append(since)
        yield from (c for c in self.changes if c.occurred_at >= since)


class Queues:
    def __init__(self) -> None:
        self.sent: list[WorkMessage] = []

    def send(self, pipeline: str, body: str, delay_seconds: int = 0) -> None:
        self.sent.append(WorkMessage.model_validate_json(body))


def change(object_type: str, object_id: str, minutes_ago: int) -> SyncEvent:
    at = NOW - timedelta(minutes=minutes_ago)
    return SyncEvent(
        ref=ref(object_type, object_id),
        event_id=f"poll:{object_id}",
        kind="changed",
        occurred_at=at,
        source_type=f"{object_type}.poll",
        dedupe_key=f"poll:{object_type}:{object_id}:{at.timestamp()}",
    )


def test_the_first_run_only_sets_the_watermark() -> None:
    crm, queues, store = ChangingCrm([change("company", "1", 60)]), Queues(), MemoryStore()
    result = CatchUp(crm, queues, store, clock=lambda: NOW).run()  # type: ignore[arg-type]
    assert (result.since, queues.sent, crm.asked) == (None, [], [])
    assert store.get_watermark(WATERMARK) == NOW


def test_changes_since_the_watermark_reach_their_pipelines_in_messages_of_100() -> None:
    # Given a watermark 30 minutes ago, and 150 company changes, 2 contact changes and 1 deal change since
    changes = [change("company", str(n), 20) for n in range(150)]
    changes += [change("contact", "c1", 10), change("contact", "c2", 10), change("deal", "d1", 5)]
    changes.append(change("line_item", "li", 5))  # not a pipeline object: ignored
    crm, queues, store = ChangingCrm(changes), Queues(), MemoryStore()
    store.put_watermark(WATERMARK, NOW - timedelta(minutes=30))
    # When the catch-up runs
    result = CatchUp(crm, queues, store, clock=lambda: NOW).run()  # type: ignore[arg-type]
    # Then it asked from the watermark less the overlap, and queued every change once, 100 at most a message
    assert crm.asked == [NOW - timedelta(minutes=30) - OVERLAP]
    assert result.queued == {"contacts": 152, "deals": 1}
    assert [len(m.events) for m in queues.sent if m.pipeline == "contacts"] == [100, 52]
    assert store.get_watermark(WATERMARK) == NOW
    assert result.complete


def test_a_run_cut_short_moves_the_watermark_only_as_far_as_it_read() -> None:
    changes = [change("company", str(n), 50 - n) for n in range(10)]
    crm, queues, store = ChangingCrm(changes), Queues(), MemoryStore()
    store.put_watermark(WATERMARK, NOW - timedelta(hours=1))
    result = CatchUp(crm, queues, store, max_events=4, clock=lambda: NOW).run()  # type: ignore[arg-type]
    assert not result.complete
    assert store.get_watermark(WATERMARK) == changes[3].occurred_at
    # And the next run picks up from there (with the overlap), so nothing is skipped
    CatchUp(crm, queues, store, clock=lambda: NOW).run()  # type: ignore[arg-type]
    seen = {e.ref.object_id for m in queues.sent for e in m.events}
    assert seen == {str(n) for n in range(10)}
