"""Every CRM x accounting pair on the local stack: one suite, written once against the sandbox drivers.

The ``pair`` fixture is module-scoped and parametrised, so pytest runs the whole module for one pair
(one LocalStack, two sandbox servers) before it starts the next. The sandboxes, their drivers and how a
pair is started live in ``closeloop_local.pairs`` (``closeloop demo --crm --accounting`` starts pairs the
same way); each pair's adapters are chosen the way a deployment chooses them: ``CRM_PROVIDER`` /
``ACCOUNTING_PROVIDER`` and the vendors' URL settings.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from closeloop_local.pairs import ACCOUNTING, CRMS, Pair, running_pair

ROOT = Path(__file__).resolve().parents[2]
#: The functions' clock runs 10x (CLOSELOOP_TIME_SCALE): their backoff, Retry-After waits and SQS delays
#: shrink; the sandboxes keep real time, and every fault these cases inject is counted, not timed.
FUNCTIONS_CLOCK = {"CLOSELOOP_TIME_SCALE": "10"}


@pytest.fixture(scope="module", params=[(c, a) for c in CRMS for a in ACCOUNTING], ids=lambda p: f"{p[0]}-{p[1]}")
def pair(request: pytest.FixtureRequest) -> Iterator[Pair]:
    crm_name, books_name = request.param
    with running_pair(crm_name, books_name, ROOT, env=FUNCTIONS_CLOCK) as started:
        yield started
