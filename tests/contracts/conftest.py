"""One recorded run of the pair loop per pair, shared by the contract tests of that pair.

The scenarios are the pair suite's own (tests/pairs/scenarios.py), run once while the sandboxes'
recorder is on. Three pairs cover the six vendors: the adapters' requests to one vendor do not depend on
the other side of the pair, and one local stack per pair is what makes this suite slow.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from closeloop_local.pairs import running_pair
from closeloop_local.sandboxes.base import Exchange, recording
from tests.contracts.recorded import Recorded
from tests.pairs import scenarios

ROOT = Path(__file__).resolve().parents[2]
PAIRS = (("hubspot", "xero"), ("pipedrive", "quickbooks"), ("sugarcrm", "zohobooks"))


@pytest.fixture(scope="module", params=PAIRS, ids=lambda p: f"{p[0]}-{p[1]}")
def recorded(request: pytest.FixtureRequest) -> Iterator[Recorded]:
    crm, books = request.param
    with recording() as recorder, running_pair(crm, books, ROOT) as pair:
        scenarios.a_new_company_becomes_one_customer_even_when_delivered_again(pair)
        scenarios.an_existing_customer_is_matched_not_duplicated(pair)
        scenarios.a_won_deal_becomes_one_invoice_written_back_and_paid_through(pair)
        hosts = {pair.crm_url.split("://")[1]: crm, pair.books_url.split("://")[1]: books}
        webhooks = pair.crm.sent_webhooks()
    exchanges: dict[str, list[Exchange]] = {crm: [], books: []}
    for exchange in recorder.exchanges:
        exchanges[hosts[exchange.host]].append(exchange)
    yield Recorded(crm, books, exchanges, webhooks)
