"""``runtime.reset`` forgets every cached component: a local stack never serves the next with the last one's."""

from __future__ import annotations

import pytest

from closeloop import runtime


def test_reset_clears_every_cached_component_including_the_catalogue_sync(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the catalogue sync decided once (off here: nothing to build)
    monkeypatch.setenv("PRODUCT_SYNC", "false")
    runtime.reset()
    assert runtime.product_sync() is None
    cached = [
        value
        for value in vars(runtime).values()
        if getattr(value, "__module__", None) == runtime.__name__ and hasattr(value, "cache_info")
    ]
    assert runtime.product_sync in cached and len(cached) > 10
    # When the runtime is reset
    runtime.reset()
    # Then no cached component of the module keeps anything
    assert {f.__name__: f.cache_info().currsize for f in cached if f.cache_info().currsize} == {}
