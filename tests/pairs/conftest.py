"""Every CRM x accounting pair on the local stack: one suite, written once against the sandbox drivers.

The ``pair`` fixture (tests/stack_fixtures.py) is module-scoped and parametrised, so pytest runs the whole
module for one pair (one LocalStack, two sandbox servers) before it starts the next. The sandboxes, their
drivers and how a pair is started live in ``closeloop_local.pairs`` (``closeloop demo --crm --accounting``
starts pairs the same way); each pair's adapters are chosen the way a deployment chooses them:
``CRM_PROVIDER`` / ``ACCOUNTING_PROVIDER`` and the vendors' URL settings. The pairs' fault cases (vendor
errors, rate limits, crashes, bad input) are in tests/faults with the rest of the fault matrix.
"""

from tests.stack_fixtures import covering_pair, pair  # noqa: F401 - fixtures, used by name
