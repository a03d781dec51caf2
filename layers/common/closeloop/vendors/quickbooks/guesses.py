"""What the QuickBooks Online adapter and sandbox assume but no published description settles: one entry per guess,
saying what it is, why the code is safe if it is wrong, and what would confirm it. Code, sandboxes and
contract notes cite an entry by its key: ``GUESSES[...]``."""

from __future__ import annotations

#: Everything this adapter assumes about QuickBooks Online without a settled source, in one place: what is
#: assumed, how the code stays safe if it is wrong, and what would confirm it. Code and sandbox comments name
#: the key.
GUESSES: dict[str, str] = {
    "refresh_token_resend_window": (
        "A refresh inside the ~24 h rotation window answers the same refresh token value, so after a lost "
        "answer the next scheduled attempt with the stored token usually works. Intuit's sources disagree: the "
        "help article 'Validity of Refresh Token' says the previous value fails with invalid_grant once a new "
        "one is returned, the older oauth-jsclient README says it expires 24 hours later (sources at "
        "REFRESH_RESEND_WITHIN_SECONDS); the sandbox models the 24 h reading (rotate_after, superseded_grace). "
        "Safe if wrong: a lost answer is never re-sent by itself (REFRESH_RESEND_WITHIN_SECONDS = 0) but "
        "reported as RefreshAnswerLost, and a refused token is AuthRevoked asking for a reconnect. Confirm: "
        "refresh twice within a day with one refresh token against a real company and compare the answers."
    ),
    "cloudevents_action_words": (
        "The action in a CloudEvents type qbo.<entity>.<action>.v<n> is the legacy operation as a past "
        "participle (created, updated, deleted, merged, voided, emailed: CLOUD_EVENT_OPERATIONS), as "
        "integrations that read the new shape spell them; Intuit's migration post and the SDK test payload "
        "show only 'created'. Safe if wrong: an action outside CLOUD_EVENT_OPERATIONS is kept as kind "
        "'other', like an unknown legacy operation, so the record is still read back. Confirm: the developer "
        "portal's 'send test event' for Invoice, Payment and Customer updates, deletes and voids."
    ),
    "cloudevents_time": (
        "A CloudEvent's time is when the change happened (the legacy lastUpdated). CloudEvents 1.0 makes time "
        "optional. Safe if wrong: time only orders and stamps the event; an event without one is kept and "
        "timed now, and events are de-duplicated on their id (unique per event), never on time. Confirm: "
        "compare a test event's time with the record's MetaData.LastUpdatedTime."
    ),
    "cloudevents_data_and_source": (
        "A CloudEvent's data is an empty object (notifications carry ids only) and source is 'intuit.' plus an "
        "opaque app id, as in the SDK samples; the sandbox sends that shape. Safe if wrong: the adapter reads "
        "neither field. Confirm: the developer portal's 'send test event'."
    ),
    "cloudevents_required_ids": (
        "Every CloudEvent in a delivery, including those of entities or products we do not follow, carries a "
        "non-blank id, intuitaccountid and intuitentityid (strings; a number is read as its digits), as the "
        "contract schema (tests/contracts/quickbooks/operations.json) and the SDKs' test payload show; the "
        "delivery model (webhooks.QuickBooksCloudEvent) requires them for every event, where the hand-written "
        "parser checked them only on the events it kept. Safe if wrong: such a delivery is refused with a 400 "
        "naming the field (never a 5xx), and the changes it carried are still found by the CDC / "
        "LastUpdatedTime polls. Confirm: the developer portal's 'send test event' for a non-accounting entity."
    ),
}
