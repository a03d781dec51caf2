"""What the Zoho Books adapter and sandbox assume but no published description settles: one entry per guess,
saying what it is, why the code is safe if it is wrong, and what would confirm it. Code, sandboxes and
contract notes cite an entry by its key: ``GUESSES[...]``."""

from __future__ import annotations

#: Everything this adapter assumes about Zoho Books without a published source, in one place: what is
#: assumed, how the code stays safe if it is wrong, and what would confirm it.
GUESSES: dict[str, str] = {
    "rate_limit_codes": (
        "A 429 envelope carries code 44 for the per-minute limit and 45 for the per-day cap (CODE_MINUTE_LIMIT, "
        "CODE_DAY_LIMIT); Zoho documents the 429 but not these codes. Safe if wrong: the HTTP 429 alone makes it "
        "a rate limit, and a daily cap is also recognised by 'per day'/'daily' in the message. Confirm: the body "
        "of a real 429 from each limit."
    ),
    "invalid_value_code": (
        "Code 4 ('Invalid value passed for …') is a refused field value (the sandbox answers it). Safe if wrong: "
        "read_fault maps every non-zero code not listed in CODE_ERRORS to ValidationFailed on a 2xx answer, and "
        "lets the status decide on a failed one (400: ValidationFailed). Confirm: a real answer to a write with "
        "a bad field value."
    ),
    "custom_field_filter": (
        "GET /contacts?cf_closeloop_ref=… and GET /invoices?cf_closeloop_deal=… return only the records whose "
        "custom field has that value. Undocumented (the OpenAPI lists no cf_ parameters). Safe if wrong: every "
        "row returned is checked again (find_customers compares the number of the contact read in full; "
        "find_invoice the deal key of each row), so an ignored filter finds nothing rather than an arbitrary "
        "record. Confirm: a list call with a cf_ parameter in a real organisation returns only matching rows."
    ),
    "sku_filter": (
        "GET /items?sku=… returns only the item with that SKU. Undocumented. Safe if wrong: rows are kept only "
        "when their sku equals the code asked for (case-insensitively). Confirm: as for the cf_ filter."
    ),
    "per_minute_limit": (
        "100 calls a minute per organisation (RATE_LIMIT), from a secondary source (Databricks' Zoho Books "
        "connector notes); Zoho's own page was not found, and a concurrency limit exists but no number was "
        "published. Safe if wrong: a lower real limit answers 429s, which hold every worker off and re-queue "
        "the work. Confirm: Zoho's API limits page for Books, or the per-minute 429 seen in production."
    ),
    "list_rows_carry_custom_fields": (
        "List rows carry custom fields (custom_fields, custom_field_hash or flattened cf_ keys), as the full "
        "records do. Used by find_customers_any's local match and find_invoice's check. Safe if wrong for "
        "invoices: a row without the field is read in full before it is trusted. Confirm: a real list answer."
    ),
    "sku_length": (
        "Zoho publishes no length for an item's SKU (the items page gives name Max-length [100] and description "
        "Max-length [2000] only), so item_limits.code is 0 (no limit known). Safe if wrong: a SKU longer than "
        "Zoho takes is refused on create (ValidationFailed with Zoho's message): a failed sync naming the SKU, "
        "never a cut code. Confirm: a create with a 100- and a 300-character SKU in a real organisation."
    ),
    "item_list_rows_full": (
        "List items rows carry purchase_rate, purchase_account_id and account_id as Get an item does. Safe if "
        "wrong: a row without any of them is read in full (GET /items/{id}) before its fields are trusted, so a "
        "cost finance entered is never taken for missing (and overwritten by a link's fill). Confirm: a real "
        "List items answer; if rows carry them, no extra reads happen."
    ),
    "item_type_for_cost": (
        "Zoho keeps purchase_rate and purchase_account_id only on an item whose item_type includes purchases "
        "(sales_and_purchases, purchases, inventory); the page lists the types and the purchase attributes but "
        "not the rule. So a create with a cost sends item_type sales_and_purchases, and an update writing the "
        "purchase side of a sales item turns it into sales_and_purchases. Safe if wrong: the type is one Zoho "
        "documents and the item stays sellable; a Zoho that keeps purchase data on sales items loses nothing. "
        "Confirm: a create of a sales item with a purchase_rate, read back."
    ),
    "item_update_body": (
        "PUT /items/{id} may want name and rate in every body (the create marks them required; the update page "
        "is not clear), and keeps every attribute it is not sent. So the adapter reads the item first and sends "
        "its current name and rate with the named fields. Safe if wrong: sending the current values changes "
        "nothing. Confirm: a real PUT /items/{id} with only description, read back."
    ),
    "item_duplicate_code": (
        "A taken SKU or item name is answered with code 1001 (read_fault: Conflict), as duplicate values are "
        "elsewhere; the page only says the SKU 'should be unique throughout the product'. Safe if wrong: any "
        "other refusal of a create is followed by one lookup of the SKU, and an item found there makes it a "
        "Conflict (which the catalogue sync resolves by linking); a Zoho that does not enforce unique SKUs is "
        "still never sent a second create for a lost answer (POST /items is not re-sent). Confirm: a real "
        "create with a SKU and with a name another item holds."
    ),
    # Recurring invoices, purchase orders and vendors (issue 12); the sandbox cites these, adapters will too.
    "recurring_child_reference": (
        "A child invoice a recurring invoice makes carries the profile's reference_number (and recurring_invoice_id, "
        "which Zoho's invoice object documents); the pages say reference_number is 'the Order number of the "
        "Recurring Invoice' but not whether children copy it. The adapter reads a child's reference from its own "
        "reference_number, and when that is empty from its profile (recurring_invoice_id: read once per profile, "
        "its reference_number or recurrence_name, both our schedule reference), so a child that copied nothing is "
        "still recognised by the payment poller; this needs list rows to carry recurring_invoice_id (the sandbox's "
        "do). Safe if wrong: with neither, a child reads as an invoice of no deal (counted in the customer's "
        "balances, not shown on the deal): nothing is written wrongly. Confirm: a real child invoice of a profile "
        "with a reference number, read back in full and in a list row."
    ),
    "recurring_update_partial": (
        "PUT /recurringinvoices/{id} with recurrence_name, customer_id, recurrence_frequency, repeat_every and a "
        "new end_date keeps the profile's lines, dates and terms (the update page marks no argument as replaced "
        "when left out; the sandbox keeps them). extend_schedule sends only those. Safe if wrong: the answer is "
        "checked (same number of lines, same total, the new end date) and a difference is a FatalError telling "
        "a person to check the profile, never a silent change. Confirm: a real PUT with only those fields, read "
        "back."
    ),
    "po_reference_filter": (
        "GET /purchaseorders?reference_number=… returns only the orders with that reference (CData's Zoho Books "
        "driver lists it as a server-side filter; Zoho's purchase order page was not seen to). Safe if wrong: "
        "every row is checked again for the exact reference, so an ignored filter only costs pages. Confirm: a "
        "real list with the parameter."
    ),
    "purchase_order_web_path": (
        "A person opens a purchase order at https://books.zoho.<dc>/app/<organization_id>#/purchaseorders/<id>, "
        "as invoices open at #/invoices/<id>; the API gives no web link. Safe if wrong: the link is only shown "
        "for a person to click; nothing reads it back. Confirm: open a purchase order in Zoho Books."
    ),
    "recurring_duplicate_name": (
        "recurrence_name is documented as 'Unique name for the recurring profile'; a create or rename to a taken "
        "name (compared case-insensitively) is answered 400 code 1001, as other duplicate values are. Safe if "
        "wrong: an adapter treats any refusal of a create as 'look the name up', and finds by recurrence_name "
        "before every create, so a second profile is never made. Confirm: a real create with a taken name."
    ),
    "recurring_past_start": (
        "A start_date before today is refused (400 code 4) on create and when changed on update; Zoho's UI does "
        "not offer past start dates and the page is silent. Safe if wrong: an adapter that starts a schedule no "
        "earlier than today works whether or not Zoho accepts past dates. Confirm: a real create with yesterday."
    ),
    "recurring_status_moves": (
        "status/stop on a profile that is not active, and status/resume on one that is not stopped, are 400 "
        "code 4; a resumed profile skips the days it missed (its next date is the first on or after today). "
        "Safe if wrong: an adapter reads the status before moving it and treats 'already there' as done. "
        "Confirm: a real stop of a stopped profile, and a resume after a missed date."
    ),
    "recurring_modified_filter": (
        "GET /recurringinvoices?last_modified_time=… returns the profiles modified at or after it, as the "
        "invoices list does; the recurring page's filters (recurrence_name, customer_id, status, filter_by…) do "
        "not list it. Safe if wrong: rows are checked again by their last_modified_time, and the sandbox with "
        "ignore_undocumented_filters ignores it. Confirm: a real list with the parameter."
    ),
    "po_status_moves": (
        "Mark as open leads from draft, Mark as billed from open, Cancel from draft or open; other moves, edits "
        "of a billed or cancelled order and deleting a billed one are 400 code 4 (the page lists the endpoints, "
        "not the rules). Safe if wrong: an adapter only creates drafts and reads the status before moving one. "
        "Confirm: each move from each status in a real organisation."
    ),
    "po_duplicate_number": (
        "A purchaseorder_number already used (with ignore_auto_number_generation=true) is 400 code 1001, as an "
        "invoice number is. Safe if wrong: an adapter lets Zoho number orders and finds its own by "
        "reference_number before a create. Confirm: a real create with a taken number."
    ),
    "vendor_customer_same_name": (
        "With the preference 'Allow duplicates for customer and vendor display name' off (the sandbox's "
        "default, as for customers today), names are unique within one contact type, so a vendor may share a "
        "customer's name; Zoho's help page names the preference but not its scope. Safe if wrong: a 3062 answer "
        "to a vendor create is a refusal an adapter resolves by looking the name up among vendors, and the "
        "sandbox's contact_names_unique_across_types=True answers the stricter way. Confirm: a real vendor "
        "create with a customer's name, with the preference off."
    ),
    "contact_type_filter": (
        "GET /contacts?contact_type=vendor (or customer) returns only that type; the contacts page's filters do "
        "not list contact_type, though integrations use it. Safe if wrong: each row's contact_type is checked "
        "again, and the sandbox with ignore_undocumented_filters ignores it. Confirm: a real list with it."
    ),
    "contact_type_fixed": (
        "A contact keeps the contact_type it was created with: an update sending another type is 400 code 4. "
        "Safe if wrong: adapters send contact_type on create only. Confirm: a real update of a customer to vendor."
    ),
    "estimate_status_moves": (
        "Estimates move draft -> sent (POST /estimates/{id}/status/sent) -> accepted or declined "
        "(/status/accepted, /status/declined; the page: 'Mark a sent estimate as accepted/declined'); marking "
        "the status an estimate already has is a no-op, any other move is refused with 400 code 4 (Zoho lists "
        "only 4041 'Estimate status cannot be changed to Draft' for estimates); a sent estimate past its "
        "expiry_date reads 'expired' (one of the documented statuses) without its last_modified_time moving, "
        "as an invoice reads 'overdue', and can still be accepted or declined. Safe if wrong: an adapter reads "
        "the estimate's status before moving it and treats any refusal of a move as a failed sync with Zoho's "
        "message, and compares expiry_date itself rather than waiting for 'expired'. Confirm: each move from "
        "each status, and a sent estimate read the day after its expiry_date, in a real organisation."
    ),
    "estimate_invoiced_by_link": (
        "An invoice created (POST /invoices, or PUT /invoices creating under X-Upsert) with "
        "invoiced_estimate_id set to an estimate of the same customer is linked to it and marks the estimate "
        "'invoiced' (Zoho's OpenAPI for invoices lists invoiced_estimate_id as 'links the source estimate'; "
        "how the UI's 'Convert to Invoice' is done through the API is not described); another customer's or an "
        "unknown estimate is 400 code 4 (the quote flow names the estimate only when quote and deal bill the same "
        "CRM party). The invoice reads invoiced_estimate_id back. Safe if wrong: mark_quote_invoiced reads the "
        "estimate after invoicing and, finding it not 'invoiced', returns it as it is: the quote flow says so "
        "once in the audit and leaves the estimate; the invoice itself is made either way. Confirm: create an "
        "invoice with invoiced_estimate_id in a real organisation and read the estimate's status."
    ),
    "estimate_last_modified_filter": (
        "GET /estimates?last_modified_time=<YYYY-MM-DDTHH:MM:SS+hhmm> returns the estimates changed at or after "
        "that time, as the invoice and purchase order lists do; the estimates page documents reference_number, "
        "customer_id, status, date and estimate_number filters but this one was not seen. Safe if wrong: an "
        "adapter also sorts by last_modified_time descending (a documented sort column for invoices) and stops "
        "at the first older row, so an ignored filter only costs pages. Confirm: the filter on a real list."
    ),
    "estimate_web_path": (
        "A person opens an estimate at https://books.zoho.<dc>/app/<organization_id>#/quotes/<estimate_id>: "
        "the Books web app names estimates 'quotes' in its paths, as it opens invoices at #/invoices/<id>; the "
        "API gives estimates no web link. Safe if wrong: the link is only written to the CRM quote for a "
        "person to click; nothing reads it back. Confirm: open an estimate in Zoho Books and compare the "
        "address bar."
    ),
}
