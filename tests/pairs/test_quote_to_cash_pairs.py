"""Quote to cash through the real handlers on the local stack, for the pairs CLOSELOOP_PAIRS chooses.

Its own module, with its own stacks: each pair takes about 15 s here, and pytest-xdist's ``--dist loadfile``
keeps a module on one worker, so in test_every_pair.py it would add two minutes to the one worker already
running that module. `make test` runs it on a covering set (every CRM and every accounting system in a pair
at least: ``covering_pair``), `make test-all` and a plain pytest run on every pair.
"""

from __future__ import annotations

import pytest

from closeloop_local.pairs import Pair
from tests.pairs import scenarios

pytestmark = pytest.mark.e2e


def test_a_quote_accepted_then_won_makes_one_invoice_one_schedule_and_one_purchase_order(
    covering_pair: Pair,
) -> None:
    off = scenarios.quote_to_cash_off(covering_pair)
    if all(off.values()):
        pytest.skip("; ".join(f"{flow}: {reason}" for flow, reason in off.items()))
    scenarios.a_quote_accepted_then_won_makes_one_invoice_one_schedule_and_one_purchase_order(covering_pair)
