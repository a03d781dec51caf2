"""The per-record lease every pipeline holds while it writes one record (no two workers create it twice)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from closeloop.errors import Busy
from closeloop.ports import SyncStore

#: Longer than one record's sync may take; a crashed holder's lease lapses after it.
LEASE_SECONDS = 120


@contextmanager
def held(store: SyncStore, name: str, owner: str, busy: str, seconds: int = LEASE_SECONDS) -> Iterator[None]:
    """Hold lease ``name`` for ``owner`` around the block, released however the block ends; raises
    Busy(``busy``) when another worker holds it (the work is retried)."""
    if not store.acquire_lease(name, owner, seconds):
        raise Busy(busy)
    try:
        yield
    finally:
        store.release_lease(name, owner)
