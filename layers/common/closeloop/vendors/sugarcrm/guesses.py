"""What the SugarCRM adapter and sandbox assume but no published description settles: one entry per guess,
saying what it is, why the code is safe if it is wrong, and what would confirm it. Code, sandboxes and
contract notes cite an entry by its key: ``GUESSES[...]``."""

from __future__ import annotations

#: What this module assumes without a published source, and what would confirm (or refute) each.
#: Every guess is made safe: the code still works, or fails with a clear message, when one is wrong.
GUESSES: dict[str, str] = {
    "release -> highest REST version": "Verified from the developer guides' REST API overview ('v10 - v11.<n> "
    "API documentation'): 13.2 -> v11_22, 13.3 -> v11_23; 14.0 -> v11_24 (docs/vendors crm.md). GUESS: 12.0 -> "
    "v11_16, 13.0 -> v11_20, 13.1 -> v11_21. Confirm: the 12.0/13.0/13.1 guides' overview line. Safe: "
    "discovery asks the server, it never uses this table.",
    "301 message names the range": "Sugar's RestService::execute (7.x-8.x source) words it 'Please change your "
    "requested API version to value between 10 and 11.20.'; assumed unchanged in 12-14. Confirm: "
    "curl -i <instance>/rest/v11_99/ping. Safe: without a parsable range, the call is repeated one minor "
    "version lower at a time.",
    "a 301 request was not processed": "RestService::execute checks the version before authentication and "
    "routing, so a refused PUT/POST changed nothing and is repeated under the lower version. Confirm: the "
    "curl above answers 301 without a token, and a refused PUT leaves the record unchanged.",
    "rate limit": "Sugar documents none; a third party reports ~20 req/s on Sugar's cloud and a 429. Confirm: "
    "Sugar support or a 429 seen in production. Safe: 429 and 5xx are retried with backoff and Retry-After.",
    "unregistered platform": "A login on a platform missing from Admin > Configure API Platforms is refused "
    "(disable_unknown_platform, default since 7.9); the exact status and label (sandbox: 400 "
    "invalid_parameter) are guessed. Confirm: a login with platform=unregistered. Safe: any refused login "
    "raises AuthRevoked naming SUGARCRM_PLATFORM.",
    "hook event and isUpdate may be absent": "Sugar's Web Logic Hooks page shows bean, event, isUpdate, data and "
    "dataChanges in every payload; the parser still reads a missing event as after_save and a missing isUpdate "
    "as false (the generated schema marks them optional). Confirm: a captured delivery of each trigger. Safe: "
    "a wrongly read creation is still queued and the worker reads the record as it is.",
}
