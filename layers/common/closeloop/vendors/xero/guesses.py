"""What the Xero adapter and sandbox assume but no published description settles: one entry per guess,
saying what it is, why the code is safe if it is wrong, and what would confirm it. Code, sandboxes and
contract notes cite an entry by its key: ``GUESSES[...]``."""

from __future__ import annotations

#: Everything this adapter assumes about Xero that neither the OpenAPI documents in /work/shared/specs/xero/
#: (xero_accounting.yaml "XS", xero-webhooks.yaml "XW", xero-identity.yaml) nor a Xero page settles, in one
#: place: what is assumed, how the code stays safe if it is wrong, and what would confirm it. Settled, so not
#: listed: the 30-minute refresh grace (developer.xero.com/faq/oauth2, see REFRESH_RESEND_WITHIN_SECONDS);
#: Idempotency-Key's 128 characters (XS components.parameters.idempotencyKey); the webhook body, its UTC
#: eventDateUtc and CREATE|UPDATE types (XW WebhookEvent) and x-xero-signature (XW, Xero's webhooks guide);
#: pagination.pageCount on paged lists (XS GET /Contacts example); searchTerm being case-insensitive (XS);
#: summarizeErrors, unitdp and the 204 of POST /Invoices/{id}/Email (XS); the per-tenant limits
#: (developer.xero.com/faq/limits).
GUESSES: dict[str, str] = {
    "rate_limit_problem_values": (
        "A 429 names the limit hit in X-Rate-Limit-Problem, 'day' for the daily one (others: minute, "
        "appminute, concurrent), with Retry-After in seconds; neither header is in XS. Xero staff quote the "
        "limits page for the header (github.com/XeroAPI/xero-node/issues/634) and xero-python#74 shows 'day', "
        "but calcinai/xero-php#352 reports 'Daily'/'Minute'. Safe if wrong: the value is lower-cased, 'daily' "
        "is read as 'day', and a daily limit not recognised as such is retried only while its wait fits the "
        "worker's sleep budget: a Retry-After of hours, or the retries running out, fails the call as "
        "RateLimited and the queue retries later. Confirm: the headers of a real 429 after the daily 5,000 "
        "calls of a tenant."
    ),
    "idempotency_replay": (
        "A write repeated with the same Idempotency-Key within about 6 minutes answers the first response "
        "(errors too), and the same key with a different request is a 400 whose problem-details Detail says so "
        "(Xero's idempotency guide, known here only through a secondary note: /work/shared/vendors/"
        "accounting.md section 6; XS says only 'safely retry ... 128 character max'). Safe if wrong: a batch's "
        "key carries a digest of its content; a refused key, in whatever 400 shape, fails as ValidationFailed "
        "with the redacted body and nothing is written twice; an invoice email is never re-sent once sent; "
        "and duplicates past the window are prevented by the lookups before a create (ContactNumber, invoice "
        "Reference). Confirm: PUT /Invoices twice with one key (one invoice, the same answer), then again "
        "with that key and another body."
    ),
    "webhook_event_identity": (
        "A webhook event has no id of its own (XW: resourceId, eventDateUtc, eventType, eventCategory, "
        "tenantId; the sequence numbers are per batch), so the dedupe key is built from those fields: a "
        "redelivered batch repeats each event's eventDateUtc exactly, and two changes of one record do not "
        "share one. Safe if wrong: a redelivery with a new stamp is handled twice, and events carry ids only, "
        "so each one only reads the record's current state again; two changes sharing a stamp are one event, "
        "and the If-Modified-Since polls still see the later change. Confirm: answer 500 to one real "
        "delivery and compare its retry's eventDateUtc values."
    ),
    "payment_updates_invoice": (
        "XW has no payment webhooks; a payment applied to an invoice is assumed to send an INVOICE UPDATE and "
        "to move the invoice's UpdatedDateUTC, so the If-Modified-Since polls of invoices see it. A secondary "
        "note says some changes do not bump UpdatedDateUTC (accounting.md section 5). Safe if wrong: only "
        "partly; a payment that moves neither shows as a payment_status_mismatch in the monthly "
        "reconciliation (closeloop.sync.reconcile), not at once. Confirm: pay an AUTHORISED invoice in a real "
        "organisation and compare its UpdatedDateUTC before and after, with the webhook deliveries."
    ),
    "if_modified_since_format": (
        "If-Modified-Since written yyyy-mm-ddThh:mm:ss without an offset is read as UTC and may not carry a "
        "fraction of a second (MODIFIED_SINCE_FORMAT). XS types it date-time with the example "
        "'2020-02-06T12:17:43.202-08:00'; the whole-second format is what xero-gateway#145 reports Xero "
        "expects. Safe if wrong about the fraction: the time is floored to the second and earlier rows are "
        "dropped here, so nothing is missed. Not safe if Xero read the naive time as the organisation's local "
        "time west of UTC: changes between the sent time and the real one would be skipped until the "
        "reconciliation. Confirm: a poll whose header equals an invoice's UpdatedDateUTC, in an organisation "
        "west of UTC, returns that invoice."
    ),
    "duplicate_contact_number_message": (
        "A duplicate ContactNumber is refused with a message matching _DUPLICATE ('The contact number ... is "
        "already assigned to another contact.', as the sandbox words it); XS examples settle only the "
        "duplicate Name message ('... is already assigned to another contact. The contact name must be "
        "unique ...'). Safe if wrong: the refusal is a ValidationFailed naming Xero's message instead of a "
        "Conflict, so the sync stops loudly rather than adopting the other contact; no second contact is made. "
        "Confirm: PUT /Contacts with a ContactNumber already in use."
    ),
    "item_code_case": (
        'Xero matches where=Code=="…" case-insensitively, so answers are keyed by the code asked for in any '
        "case (get_items); XS describes Code only as 'User defined item code (max length = 30)'. Safe if "
        "wrong: an item asked for in another case is missing from the answer, and the invoice fails as "
        'ValidationFailed naming the code, never a guessed line. Confirm: GET /Items?where=Code=="abc" for an '
        "item coded ABC."
    ),
    "webhook_body_leniency": (
        "XW requires firstEventSequence, lastEventSequence (each at least 1) and entropy on a delivery, and "
        "resourceUrl and tenantType on each event; the body model (webhooks.XeroWebhookPayload) requires only "
        "what the parser reads (events and each event's resourceId, eventCategory, eventType, eventDateUtc, "
        "tenantId) and allows a sequence of 0, because the intent-to-receive check is assumed to carry "
        "firstEventSequence/lastEventSequence 0 (so the sandbox sends it; XW has no example of that check). "
        "Safe if wrong: the model only accepts more than XW, never less, and every delivery is signed "
        "before it is parsed; refusing a real delivery for a field never read would make Xero retry it for "
        "24 hours and then disable the webhook. Confirm: the raw body of a real intent-to-receive request "
        "and of a real delivery."
    ),
    "item_details_sent_whole": (
        "XS does not say whether a SalesDetails or PurchaseDetails section sent in an item update is merged "
        "with the item's (only the named keys change) or replaces it (keys not sent are cleared). The adapter "
        "reads the item first (GET /Items/{ItemID}) and sends each section it writes whole: the values Xero "
        "holds with the named ones replaced. Safe if wrong either way: both readings save the same section. "
        "The cost: one read per update, and a finance edit landing between that read and the write could be "
        "overwritten in that section (a window of one call). Confirm: POST /Items/{ItemID} with SalesDetails "
        "{UnitPrice} alone for an item with a sales AccountCode, then read the AccountCode back."
    ),
    "item_code_rename": (
        "POST /Items/{ItemID} with another Code renames that item (XS updateItem addresses the item by ItemID "
        "in the path and requires Code in the body, but has no example of a changed code). Safe if wrong: the "
        "answer is checked; if Xero answers another ItemID (a new item made under the code) or the old code, "
        "update_item raises FatalError naming this guess and the sync records a failed sync instead of "
        "linking the product to the wrong item. Confirm: POST /Items/{ItemID} with a new Code and compare the "
        "answer's ItemID and Code, then GET /Items for both codes."
    ),
    "items_unpaged": (
        "GET /Items answers every item at once: XS getItems takes where, order, unitdp and If-Modified-Since "
        "and no page/pageSize (GET /Contacts and /Invoices do), and its answer schema (Items) has no "
        "pagination. Safe if wrong: iter_items sends no page on its first call and reads further pages only "
        "when an answer carries a pagination whose pageCount says there are more (page=2, 3, ...; a repeated "
        "page is a PagingLoop, never an endless read). If Xero paged silently (no pagination in the answer) "
        "the backfill would link only the first page's items and the rest would be created or matched by "
        "the per-product code lookup (get_items) when their products sync. Confirm: GET /Items in an "
        "organisation with more than 100 items."
    ),
    "purchase_order_web_path": (
        "A person opens a purchase order at https://go.xero.com/Accounts/Payable/PurchaseOrders/View/{id} "
        "(XS gives the API's /PurchaseOrders/{PurchaseOrderID} only; the web path is the one Xero's app shows). "
        "Safe if wrong: the link is only written for people (no sync reads it back); a wrong path opens Xero's "
        "dashboard. Confirm: open a purchase order in Xero and compare the address bar."
    ),
    "purchase_order_messages": (
        "The sandbox's purchase order validation messages (no contact, no line item, a status other than "
        "DRAFT/SUBMITTED/AUTHORISED on create, a taken PurchaseOrderNumber) are worded after Xero's invoice "
        "messages: XS documents the rules but not the texts. Safe if wrong: the adapter reads any 400 "
        "ValidationException as ValidationFailed with Xero's messages, whatever they say. Confirm: PUT "
        "/PurchaseOrders without a Contact, without LineItems, and with Status BILLED on a Xero demo company."
    ),
    "quote_web_path": (
        "A person opens a quote at https://go.xero.com/app/quotes/view/{QuoteID}: XS gives quotes no Url or "
        "web link, and Xero's help pages show the quotes app at that path. Safe if wrong: the link is only "
        "written to the CRM quote for a person to click; nothing reads it back. Confirm: open a quote in Xero "
        "and compare the address bar."
    ),
    "quote_update_whole_lines": (
        "POST /Quotes/{QuoteID} with LineItems replaces the quote's lines (lines not sent are removed), as "
        "POST /Invoices/{InvoiceID} does; XS updateQuote shows only a body of Contact, Date and Status. Safe "
        "if wrong: the revision sends every line with Contact and Date, so whichever way Xero reads it the "
        "quote holds the CRM quote's lines; a refusal is a failed sync of the CRM quote with Xero's message. "
        "Confirm: update a two-line quote with one line and read it back."
    ),
    "quote_invoiced_path": (
        "A SENT quote cannot be set INVOICED directly; it goes ACCEPTED then INVOICED (Xero's quote states "
        "in its help: a quote is marked accepted, then invoiced). XS lists the statuses, not the moves. Safe "
        "if wrong: ACCEPTED then INVOICED is a valid path either way (one extra call), each with its own "
        "Idempotency-Key. Confirm: POST Status INVOICED on a SENT quote and see whether Xero refuses it."
    ),
    # -- repeating invoices (closeloop.vendors.xero.repeating) ------------------------------------------
    "repeating_end_date_on_create": (
        "PUT /RepeatingInvoices accepts Schedule.EndDate and the template stops after it: XS lists EndDate in "
        "the Schedule schema ('Invoice end date - only returned if the template has an end date set') but its "
        "request examples never send one. Safe if wrong: create_schedule and extend_schedule read the answer; "
        "a template saved without an EndDate would bill for ever, so it is deleted at once and the deal's sync "
        "fails naming this guess (nothing is left running); one saved with another end is flagged by the "
        "flow. Confirm: PUT a template with an EndDate and read it back with GET /RepeatingInvoices/{id}."
    ),
    "repeating_due_date_type": (
        "Schedule.DueDateType DAYSAFTERBILLDATE with DueDate N makes each generated sales invoice due N days "
        "after its date (XS lists the enum without meanings; DAYSAFTERINVOICEDATE is also listed, and the "
        "contact payment-terms page names DAYSAFTERBILLDATE 'day(s) after bill date'). Safe if wrong: only "
        "the due dates of generated invoices differ (the payment poller reads each invoice's own DueDate); "
        "nothing is billed twice or missed. Confirm: a template with DAYSAFTERBILLDATE 30 and the DueDate of "
        "the invoice it generates."
    ),
    "repeating_reference_where": (
        'GET /RepeatingInvoices honours where=Type=="ACCREC"&&Reference=="..." (XS: "Filter by an any '
        'element", example Status=="DRAFT"). Safe if wrong: the answer is filtered again here by Reference '
        "and status, so a where Xero ignored costs a larger answer, never a wrong match. Confirm: two "
        "templates with different References and the where above."
    ),
    "repeating_deleted_reads": (
        "A deleted template answers GET /RepeatingInvoices/{id} with Status DELETED (the example answer of XS "
        "updateRepeatingInvoice shows DELETED) and drops out of GET /RepeatingInvoices, or answers 404. Safe "
        "either way: DELETED and a 404 both read as ended (get_schedule None, end_schedule a no-op) and "
        "find_schedule filters DELETED rows itself. Confirm: GET a template by id and in the list after "
        "POST /RepeatingInvoices/{id} with Status DELETED."
    ),
    "repeating_generated_invoices": (
        "The invoices a template generates carry its Reference (no [Week]-style placeholder in ours, so "
        "verbatim) and its RepeatingInvoiceID (XS Invoice.RepeatingInvoiceID), and a DRAFT template makes "
        "DRAFT invoices, an AUTHORISED one AUTHORISED invoices (the sandbox generates them so). Safe if wrong: "
        "the payment poller recognises a scheduled invoice by its Reference only; without it the invoice "
        "still counts in the customer's summary and the reconciliation's totals, but not on the deal's latest "
        "scheduled invoice. Confirm: an AUTHORISED template whose StartDate is today, and the invoice Xero "
        "generates from it the next morning."
    ),
}
