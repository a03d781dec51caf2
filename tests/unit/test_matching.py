"""Backfill matching: exact evidence, messy duplicates, look-alikes, thresholds, one claimant per candidate."""

from __future__ import annotations

import pytest

from closeloop.errors import ConfigurationError
from closeloop.models import AccountingCustomer, Address, CrmRef, Customer
from closeloop.sync.contacts import external_number
from closeloop.sync.matching import Match, Matcher, jaro_winkler, name_tokens

LONDON = Address(line1="12 High Street", city="London", postal_code="EC1A 1BB")


def crm(object_id: str, name: str, **kw: object) -> Customer:
    return Customer(ref=CrmRef(crm="crm", object_type="company", object_id=object_id), name=name, **kw)


def books(
    candidate_id: str, name: str, *, address: Address | None = None, phone: str = "", **kw: str
) -> AccountingCustomer:
    a = address or Address()
    fields = {
        "name": name,
        "phone": phone,
        "address.line1": a.line1,
        "address.city": a.city,
        "address.postal_code": a.postal_code,
    }
    return AccountingCustomer(id=candidate_id, name=name, fields=fields, **kw)


def test_jaro_winkler_reference_values() -> None:
    # Given the textbook pairs; When compared; Then the published Jaro-Winkler values come out
    assert jaro_winkler("martha", "marhta") == pytest.approx(0.9611, abs=1e-4)
    assert jaro_winkler("dwayne", "duane") == pytest.approx(0.84, abs=1e-4)
    assert jaro_winkler("abc", "xyz") == 0.0


def test_name_tokens_drop_case_accents_punctuation_and_legal_suffixes() -> None:
    # Given spellings of one name; When tokenised; Then they agree
    assert name_tokens("The Müller & Söhne GmbH") == name_tokens("MULLER AND SOHNE") == ("muller", "sohne")
    assert name_tokens("Ltd") == ("ltd",)


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        ("Acme Foods Ltd", "ACME FOODS LIMITED"),
        ("Acme Foods Ltd.", "acme, foods"),
        ("Café Müller GmbH", "Cafe Muller"),
        ("Smith & Jones Partners", "Jones and Smith Partners"),
        ("Brightwater Logistics", "Brightwatre Logistics Ltd"),
        ("Northwind Traders", "North Wind Traders"),
    ],
)
def test_messy_duplicates_with_an_agreeing_address_match_confidently(ours: str, theirs: str) -> None:
    # Given a candidate that is the same company spelled differently, at the same address
    matcher = Matcher([books("b1", theirs, address=LONDON), books("b2", "Unrelated Holdings", address=LONDON)])
    # When the CRM company is matched
    found = matcher.match(crm("1", ours, address=LONDON))
    # Then the duplicate is found with confidence
    assert found is not None
    assert (found.candidate_id, found.verdict) == ("b1", "confident")


def test_changed_email_on_the_same_domain_and_the_same_phone_support_a_typo_name() -> None:
    # Given accounting holds the company under a typo, with another mailbox and a reformatted phone
    candidate = books("b1", "Globbex Corporation", email="billing@globex.example", phone="020 7946 0001")
    # When the CRM company, with its new email and phone format, is matched
    found = Matcher([candidate]).match(crm("1", "Globex Corp", email="ap@globex.example", phone="+44 20 7946 0001"))
    # Then the phone and the domain carry it to a confident match
    assert found is not None
    assert found.verdict == "confident"
    assert {"same phone", "same domain"} <= set(found.reasons)


def test_exact_identifiers_are_confident_whatever_the_name() -> None:
    # Given candidates reachable by our stamp, by tax number and by email, none by name
    customer = crm("7", "New Name Ltd", tax_number="GB 123 456 789", email="AP@renamed.example")
    stamped = books("stamp", "Old Name", number=external_number(customer.ref))
    taxed = books("tax", "Other Name", tax_number="GB123456789")
    mailed = books("mail", "Third Name", email="ap@renamed.example")
    # When matched against all three, then without the stamp, then with the email only
    by_stamp = Matcher([stamped, taxed, mailed]).match(customer)
    by_tax = Matcher([taxed, mailed]).match(customer)
    by_email = Matcher([mailed]).match(customer)
    # Then the stamp wins, then the tax number, then the email, each confident with its reason
    assert [(m.candidate_id, m.verdict, m.reasons) for m in (by_stamp, by_tax, by_email) if m] == [
        ("stamp", "confident", ("our stamp",)),
        ("tax", "confident", ("tax number",)),
        ("mail", "confident", ("email",)),
    ]


def test_an_email_several_candidates_share_is_not_an_identifier() -> None:
    # Given a bookkeeper's address on two different companies
    shared = [
        books("b1", "Alpha Bakery", email="office@bookkeeper.example"),
        books("b2", "Omega Cycles", email="office@bookkeeper.example"),
    ]
    # When a third company with that address is matched
    found = Matcher(shared).match(crm("1", "Zeta Plumbing", email="office@bookkeeper.example"))
    # Then neither is taken as the same company
    assert found is None or found.verdict == "uncertain"


def test_a_candidate_stamped_for_another_crm_object_is_never_proposed() -> None:
    # Given the only similar candidate carries another CRM object's stamp
    other = crm("2", "Acme Foods")
    candidate = books("b1", "Acme Foods Ltd", address=LONDON, number=external_number(other.ref))
    # When a look-alike is matched
    found = Matcher([candidate]).match(crm("1", "Acme Foods", address=LONDON))
    # Then nothing is proposed
    assert found is None


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [("Acme Foods", "Acme Freight"), ("Blue Sky Dental", "Blue Sky Media"), ("Jordan Smith", "Jordan Smithers")],
)
def test_different_companies_sharing_words_are_not_confident(ours: str, theirs: str) -> None:
    # Given a different company sharing a word, even in the same city and postcode
    matcher = Matcher([books("b1", theirs, address=Address(city="London", postal_code="EC1A 1BB"))])
    # When matched
    found = matcher.match(crm("1", ours, address=Address(city="London", postal_code="EC1A 1BB")))
    # Then at most a person is asked
    assert found is None or found.verdict == "uncertain"


def test_an_equal_name_alone_goes_to_review_and_an_agreeing_postcode_makes_it_confident() -> None:
    # Given a candidate with the same normalised name
    bare = Matcher([books("b1", "Acme Foods Limited")])
    placed = Matcher([books("b1", "Acme Foods Limited", address=LONDON)])
    # When the CRM company is matched without, then with an address
    alone = bare.match(crm("1", "ACME FOODS LTD"))
    with_postcode = placed.match(crm("1", "ACME FOODS LTD", address=Address(postal_code="ec1a1bb")))
    # Then the name alone is for review, the postcode makes it confident
    assert alone is not None
    assert alone.verdict == "uncertain"
    assert with_postcode is not None
    assert with_postcode.verdict == "confident"
    assert with_postcode.score >= 0.95


def test_thresholds_decide_the_verdict() -> None:
    # Given one candidate with an equal name and nothing else to compare (it scores 0.75)
    candidates = [books("b1", "Acme Foods")]
    customer = crm("1", "Acme Foods")
    # When matched under different thresholds
    strict = Matcher(candidates, confident=0.95, review=0.9).match(customer)
    default = Matcher(candidates).match(customer)
    lenient = Matcher(candidates, confident=0.7, review=0.5).match(customer)
    # Then below review there is no match, between the two it is uncertain, above confident it is confident
    assert strict is None
    assert default is not None
    assert default.verdict == "uncertain"
    assert lenient is not None
    assert lenient.verdict == "confident"
    assert 0.0 <= lenient.score <= 1.0


def test_inverted_thresholds_are_refused() -> None:
    # Given review above confident; When a matcher is made; Then it is refused
    with pytest.raises(ConfigurationError):
        Matcher([], confident=0.5, review=0.9)


def test_two_equally_good_candidates_are_ambiguous() -> None:
    # Given accounting already holds the same company twice
    candidates = [books("b1", "Acme Foods Ltd", address=LONDON), books("b2", "Acme Foods Limited", address=LONDON)]
    # When matched
    found = Matcher(candidates).match(crm("1", "Acme Foods", address=LONDON))
    # Then a person decides which
    assert found is not None
    assert found.verdict == "uncertain"
    assert any("ambiguous" in r for r in found.reasons)


def test_one_candidate_one_confident_claimant() -> None:
    # Given two CRM companies that both look like the one accounting record, and a third that is elsewhere
    candidates = [books("b1", "Acme Foods Ltd", address=LONDON), books("b2", "Zeta Plumbing", address=LONDON)]
    first, second = crm("1", "Acme Foods", address=LONDON), crm("2", "ACME FOODS LIMITED", address=LONDON)
    third = crm("3", "Zeta Plumbing Ltd", address=LONDON)
    # When all are matched together
    results = Matcher(candidates).match_all([first, second, third])
    # Then both claims on b1 are uncertain with the conflict named; the uncontested one stays confident
    for ref in (first.ref, second.ref):
        claim = results[ref]
        assert claim is not None
        assert (claim.candidate_id, claim.verdict) == ("b1", "uncertain")
        assert any(r.startswith("conflict") for r in claim.reasons)
    assert results[third.ref] == Match("b2", results[third.ref].score, "confident", results[third.ref].reasons)  # type: ignore[union-attr]


def test_our_stamp_wins_a_conflict() -> None:
    # Given a candidate we stamped for one CRM company, which a look-alike also claims by name and address
    owner, lookalike = crm("1", "Acme Foods", address=LONDON), crm("2", "Acme Foods Ltd", address=LONDON)
    candidate = books("b1", "Acme Foods Ltd", address=LONDON, number=external_number(owner.ref))
    # When both are matched together (the look-alike cannot see the stamp as its own)
    results = Matcher([candidate]).match_all([owner, lookalike])
    # Then the owner keeps it confidently and the look-alike is not given it
    assert results[owner.ref] == Match("b1", 1.0, "confident", ("our stamp",))
    assert results[lookalike.ref] is None


def test_unrelated_customers_find_nothing_and_frequent_words_do_not_block() -> None:
    # Given many candidates sharing only the word "trading"
    candidates = [books(f"b{i}", f"Company{i} Trading Ltd") for i in range(200)]
    # When a company whose only shared word is "trading" is matched
    found = Matcher(candidates, max_block=50).match(crm("1", "Zanzibar Trading"))
    # Then nothing is proposed: "trading" is in too many candidates to block on
    assert found is None
