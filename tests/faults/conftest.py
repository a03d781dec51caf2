"""The fault-injection suite: every case ends with nothing lost and nothing duplicated.

Here, over the HubSpot-Xero local stack (fixture ``loop``, one stack per module): the fault matrix
(test_fault_matrix*.py: duplicates, poison messages, DLQ and replay, lease races, crashes, 5xx bursts,
slow answers), Xero's rate limit under a burst (test_rate_limited_burst.py), a revoked Xero connection
parking its work (test_disconnected_account.py) and the webhook API fuzzed (test_webhook_fuzz.py). For
every CRM x accounting pair (fixture ``pair``, one stack per module and pair): the vendors' errors, rate
limits and expired or revoked tokens (test_pair_faults.py), a crash at each step of the invoice path and
bad webhook bodies (test_pair_crashes.py). Both fixtures come from tests/stack_fixtures.py.

Fault cases kept elsewhere, and why:
- tests/e2e (test_contact_loop.py, test_deal_loop.py): duplicate, replayed or badly signed deliveries,
  malformed and oversized bodies, an outage outliving the retries (DLQ -> replay), worker crashes on the
  invoice path. Each is the second half of its module's story about one feature, told on the stack that
  module's happy path started.
- tests/unit: 429/5xx/timeouts and what is safe to retry (test_http_retries.py), token refresh races
  (test_oauth_tokens.py). They need no stack, so they stay in the fast tier (`make unit`).
"""

from tests.stack_fixtures import loop, pair  # noqa: F401 - fixtures, used by name
