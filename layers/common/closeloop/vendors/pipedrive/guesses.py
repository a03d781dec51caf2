"""What the Pipedrive adapter and sandbox assume but no published description settles: one entry per guess,
saying what it is, why the code is safe if it is wrong, and what would confirm it. Code, sandboxes and
contract notes cite an entry by its key: ``GUESSES[...]``."""

from __future__ import annotations

#: What this module assumes without a published source, and what would confirm (or refute) each.
#: Every guess is made safe: the code still works, or fails with a clear message, when one is wrong.
GUESSES: dict[str, str] = {
    "daily budget header": "An exhausted daily token budget answers 429 with x-daily-ratelimit-token-remaining: "
    "0 (header name from Pipedrive's rate-limiting guide; its presence on every 429 is assumed), and a 429 "
    "while x-ratelimit-remaining still has room means the daily budget too. Confirm: a 429 from a company "
    "over its budget. Safe: such a 429 fails the call as RateLimited(problem='daily') without waiting; the "
    "queue retries later.",
    "address write replaces the address": "A PATCH /api/v2/organizations/{id} with an address object replaces "
    "the stored address (sub-fields left out are cleared), so street_number is left out when line 1 is "
    "written to route. Confirm: PATCH only route on an org with a street_number, then read it. If sub-fields "
    "merge instead, a stale street_number would prefix line 1 on read-back.",
    "address validation": "The v2 schema (OrganizationItemAddress: value, country, admin_area_level_1/2, "
    "locality, sublocality, route, street_number, subpremise, postal_code, all strings) is enforced: "
    "formatted_address, unknown keys and null sub-fields are refused with 400 (the sandbox does so). Confirm: "
    "a PATCH with formatted_address. Safe: the adapter sends only schema keys and no nulls.",
    "error body": 'A failed answer\'s body is {"success": false, "error": <message>, "errorCode": <code>, '
    '"error_info": …} (v1 answers; Pipedrive\'s v2 base response documents only success and error, so a v2 '
    "code may be named code instead: both are read). Confirm: the body of a real v2 400 and 404. Safe: the "
    "body only adds its message and code to the error's message; the status decides the error type (401: "
    "AuthRevoked), and a body that is not this shape adds nothing.",
    "webhook ids": "meta.entity_id and meta.user_id are strings in v2 deliveries (the v2 guide's example, our "
    "contract schema) and were integers in v1; the webhook model accepts either and reads them as text. "
    "Confirm: a real v2 delivery (Pipedrive's webhook test button). Safe: an integer id is read as its "
    "digits, so the ref and the dedupe key are the same either way; a delivery is never refused for it.",
    "product price currency": "A v2 product holds one price per currency (prices[]: currency, price, cost, "
    "direct_cost; pipedrive/client-nodejs v2 prices-array.ts and product-request.ts) and no field says which "
    "one is its list price; the adapter takes the only one, else the one in the API user's default_currency "
    "(GET /v1/users/me, base-user.ts). Confirm: a company whose products carry several currencies, and "
    "whether Pipedrive's UI shows the user's default one first. Safe: with several prices and none in that "
    "currency (or the user unreadable) the product reads with no price and no cost, so the catalogue sync "
    "writes none rather than a price in another currency.",
    "product cost zero": "A price entry's cost is 0 when none was given (product-request.ts: cost is "
    "optional; that the stored value is then 0 is assumed), so a cost of 0 reads as no cost. Confirm: a "
    "product made without a cost, read back. Safe: a product whose real cost is 0 leaves the item's "
    "purchase price unset (finance enters it) instead of writing 0; accounting owns the cost after the first "
    "sync anyway.",
    "product prices validation": "Pipedrive refuses (400) a product price entry with keys outside "
    "product_id, currency, price, cost, direct_cost, notes (prices-array.ts), without a currency or price, or "
    "a second entry in one currency (product-request.ts: 'there can only be one price per product per "
    "currency'); the sandbox does so. Confirm: POST /api/v2/products with two USD prices, and with an unknown "
    "price key. Safe: the adapter never writes products, it only reads them.",
    "recents paging": "GET /v1/recents pages by start/limit with additional_data.pagination."
    "more_items_in_collection and next_start (Pipedrive's v1 OpenAPI), one row per changed object. Confirm: "
    "more changes than one page in a real company. Safe: a next_start that does not advance fails loudly.",
    "deal product billing rules": "A deal product's billing (client-nodejs v2 get-deals-products-response-data-"
    "inner-all-of1..3.ts) is checked as the sandbox does it: on the row as it would be stored after a PATCH "
    "(frequency, cycles and start together), so a switch to one-time that leaves cycles set is a 400 rather "
    "than clearing them; the start date is YYYY-MM-DD within 10 years of today (the models type it as a "
    "string only); a row without billing answers one-time with null cycles and start; the plan limit (Growth "
    "and above) and the ban on recurring products for a deal with installments are not modelled. Confirm: "
    "PATCH billing_frequency one-time on a monthly row with cycles, a start date sent with a time, and a "
    "recurring row on an Essential plan. Safe: an adapter that writes billing sends frequency, cycles and "
    "start together, and reads a 400's message into a failed sync rather than guessing.",
    "deal product changes reach the deal": "Adding, editing or removing a deal product fires a deal change "
    "webhook and moves the deal's update_time (Pipedrive recomputes the deal value from its products; the "
    "sandbox does so when the value changes), so a product edited on a quoted deal revises its accounting "
    "quote and a won deal's changed billing reaches the recurring flow. Confirm: PATCH a deal product's "
    "billing_frequency_cycles only (value unchanged) on a real company with a deal webhook, and read "
    "/v1/recents after it. Safe if wrong: the change is picked up by the next change of the deal itself "
    "(webhook or catch-up); nothing is made twice, only later.",
    "recents deal stage": "A /v1/recents deal row's data is the v1 deal (recents-data-inner-any-of*.ts types "
    "it only as an object) and carries stage_id and status, so the catch-up can tell a deal open in a quote "
    "stage and give its quote event. Confirm: GET /v1/recents?items=deal on a real company. Safe if wrong: "
    "the catch-up gives the deal event only; the quote events still come from the deal webhooks, and the "
    "deal's invoice still bills its quote's lines (QuoteFlow reads the deal itself).",
    "deal value with recurring products": "A deal's value sums one billing period of each recurring product "
    "(as it sums one-time ones; the sandbox does so), so the invoice's amount check, which leaves the "
    "recurring lines out, compares like with like. Pipedrive documents MRR/ARR/ACV/TCV beside the value but "
    "not how the value counts cycles. Confirm: a real deal with a monthly product of 12 cycles and its value. "
    "Safe if wrong: the check only flags a difference on the deal (closeloop_sync_issue) and in the audit "
    "trail; the invoice and the schedule are made as they should be.",
    "deal product errors": "A PATCH or DELETE of a deal product the deal does not have answers 404 'Deal "
    "product not found' and a refused billing value 400 with the rule in error (the v2 error body; the "
    "wording is ours). Confirm: PATCH /api/v2/deals/<id>/products/999 and cycles 500 on a real company. "
    "Safe: adapters decide on the status, never on the wording.",
}
