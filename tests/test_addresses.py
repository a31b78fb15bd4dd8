"""Addresses: phones to E.164, emails lower-cased, errors that say why."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consent.addresses import (
    AddressError,
    _fast_phone,
    _parse_phone,
    format_phone,
    normalize,
    normalize_any,
    normalize_email,
    normalize_phone,
    phone_digits,
)


@pytest.mark.parametrize(
    "given_number",
    [
        "(202) 555-0123",
        "202-555-0123",
        "2025550123",
        "+1 202 555 0123",
        "+12025550123",
        " 1-202-555-0123 ",
    ],
)
def test_us_phone_forms_normalize_to_e164(given_number):
    """Every way staff type a US number gives the same E.164."""
    assert normalize_phone(given_number) == "+12025550123"


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("", "it is empty"),
        ("abc", "it is not a phone number"),
        ("123", "it is not a valid phone number"),
        ("+1 555 555 5555", "it is not a valid phone number"),
        ("9" * 50, "it is too long to be a phone number"),
    ],
)
def test_invalid_phone_error_names_the_input_and_why(value, why):
    """An invalid phone raises AddressError naming the input and the reason."""
    with pytest.raises(AddressError) as caught:
        normalize_phone(value)
    assert caught.value.why == why
    assert repr(value)[:20].strip("'") in str(caught.value)


def test_email_is_lower_cased_and_trimmed():
    """Emails come back trimmed and lower-cased."""
    assert normalize_email("  Ana.Rivera@Example.ORG ") == "ana.rivera@example.org"


@pytest.mark.parametrize(
    "value", ["", "ana", "ana@", "@example.org", "ana@example", "a b@example.org"]
)
def test_invalid_email_raises_with_reason(value):
    """An invalid email raises AddressError with a reason."""
    with pytest.raises(AddressError) as caught:
        normalize_email(value)
    assert caught.value.why


def test_normalize_any_tells_phone_from_email():
    """normalize_any returns the kind with the address."""
    assert normalize_any("Ana@Example.org") == ("email", "ana@example.org")
    assert normalize_any("202.555.0123") == ("phone", "+12025550123")


def test_phone_helpers_format_and_digits():
    """A number is shown as people read it and searched by its national digits."""
    assert format_phone("+12025550100") == "+1 202-555-0100"
    assert phone_digits("+12025550123") == "2025550123"


def test_region_setting_reads_national_numbers_of_that_country():
    """The default region decides how a number without a country code is read."""
    assert normalize_phone("020 7946 0018", region="GB") == "+442079460018"


@settings(max_examples=300)
@given(st.text(max_size=60))
def test_any_text_normalizes_or_raises_address_error(text):
    """Arbitrary input never crashes other than with AddressError, and normalizing is idempotent."""
    for channel in ("text", "voice", "email"):
        try:
            once = normalize(channel, text)
        except AddressError:
            continue
        assert normalize(channel, once) == once


@settings(max_examples=200)
@given(st.from_regex(r"\+?1?[ (.-]*[2-9]\d{2}[ ).-]*[2-9]\d{2}[ .-]*\d{4}", fullmatch=True))
def test_phone_like_text_is_idempotent(text):
    """Phone-shaped input normalizes to a fixed point, or raises AddressError."""
    try:
        once = normalize_phone(text)
    except AddressError:
        return
    assert once.startswith("+") and normalize_phone(once) == once


@settings(max_examples=200)
@given(st.emails())
def test_generated_emails_are_idempotent(email):
    """Valid-looking emails normalize to a fixed point, or raise AddressError."""
    try:
        once = normalize_email(email)
    except AddressError:
        return
    assert normalize_email(once) == once == once.lower()


_formatted_number = st.builds(
    lambda plus, one, digits, seps: (
        ("+" if plus else "")
        + ("1 " if one else "")
        + "".join(d + s for d, s in zip(digits, seps, strict=False))
    ),
    st.booleans(),
    st.booleans(),
    st.text(alphabet="0123456789", min_size=7, max_size=15),
    st.lists(st.sampled_from(["", "", "", " ", "-", ".", ")", "("]), min_size=15, max_size=15),
)


@settings(max_examples=400, deadline=None)
@given(_formatted_number, st.sampled_from(["US", "GB", "MX"]))
def test_fast_phone_path_agrees_with_phonenumbers(text, region):
    """A typed number that the fast path reads gets the same E.164 that phonenumbers gives."""
    fast = _fast_phone(text.strip(), region)
    if fast is None:
        return
    assert fast == _parse_phone(text, text.strip(), region)


@pytest.mark.parametrize(
    "typed", ["(202) 555-0123", "202.555.0123", "1-202-555-0123", "+1 202 555 0123", "2025550123"]
)
def test_common_us_forms_take_the_fast_path(typed):
    """The forms staff files hold are read without phonenumbers, to the same number."""
    assert _fast_phone(typed, "US") == "+12025550123" == _parse_phone(typed, typed, "US")


_us_number = st.builds(
    lambda area, exchange, line, form: form.format(a=area, e=exchange, n=f"{line:04d}"),
    st.integers(100, 999),
    st.integers(100, 999),
    st.integers(0, 9999),
    st.sampled_from(
        ["({a}) {e}-{n}", "{a}-{e}-{n}", "{a}.{e}.{n}", "+1 {a} {e} {n}", "1{a}{e}{n}", "{a}{e}{n}"]
    ),
)


@settings(max_examples=400, deadline=None)
@given(_us_number)
def test_fast_phone_path_agrees_on_us_numbers(text):
    """US numbers in every common form: the fast path, when it answers, answers as phonenumbers;
    and it refuses nothing that phonenumbers accepts (it asks phonenumbers instead)."""
    fast = _fast_phone(text, "US")
    if fast is not None:
        assert fast == _parse_phone(text, text, "US")
    try:
        slow = _parse_phone(text, text, "US")
    except AddressError:
        slow = None
    assert normalize_phone(text) == slow if slow else fast is None


_ATOM = st.text(alphabet="abcXYZ019!#$%&'*+/=?^_`{|}~-.", min_size=0, max_size=70)
_LABEL = st.text(alphabet="abcxyz019-é", min_size=0, max_size=66)
_DOMAIN = st.lists(_LABEL, min_size=1, max_size=4).map(".".join) | st.sampled_from(
    ["example.org", "localhost", "a.test", "x.local", "mail.invalid", "123.45", "ex--ample.com"]
)


def _slow(text: str):
    """What email_validator alone says of an address: the normalized one, or its reason."""
    from email_validator import EmailNotValidError, validate_email

    try:
        return validate_email(text.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        return ("refused", str(exc).rstrip("."))


@settings(max_examples=400)
@given(local=_ATOM, domain=_DOMAIN, upper=st.booleans())
def test_email_fast_path_agrees_with_email_validator(local, domain, upper):
    """The plain-ASCII shortcut of normalize_email gives email_validator's answer (address or
    refusal, its words), for odd local parts, domains and special-use names too."""
    text = f"{local}@{domain}"
    text = text.upper() if upper else text
    try:
        ours = normalize_email(text)
    except AddressError as exc:
        ours = ("refused", exc.why)
    assert ours == _slow(text)
