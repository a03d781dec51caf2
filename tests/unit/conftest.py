"""The fast tier (`make unit`): no sockets, so no local stack, no sandbox server, no moto server.

While a test under tests/unit is set up, run or torn down (module-scoped fixtures included), an internet
socket that connects or binds raises ``SocketUsed`` (tests/socket_guard.py): a unit test that reaches
for a server, or starts one, fails loudly instead of slowing the tier down. A test that needs the network
belongs to tests/integration or a stack tier.
"""

from __future__ import annotations

from collections.abc import Generator

import pytest

from tests.socket_guard import no_sockets


# Hooks in this conftest run only for the items under tests/unit, in each phase, so the guard also covers
# fixtures wider than a function (set up in a test's setup, torn down in the last user's teardown).
@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    with no_sockets():
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    with no_sockets():
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, None, None]:
    with no_sockets():
        return (yield)
