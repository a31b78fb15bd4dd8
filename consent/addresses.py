"""Addresses: phones to E.164 and emails to lower case, or an error that says why."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import phonenumbers
from email_validator import EmailNotValidError, validate_email

DEFAULT_REGION = "US"
PHONE_CHANNELS = ("text", "voice")
CHANNELS = ("text", "voice", "email")
_E164 = re.compile(r"^\+[1-9][0-9]{7,14}$")
_MAX_INPUT = 320  # longest valid email (RFC 3696); anything longer is not an address


class AddressError(ValueError):
    """An input that is not a phone number or email address; the message names it and says why."""

    def __init__(self, value: object, why: str):
        self.value = value
        self.why = why
        shown = str(value)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        super().__init__(f"{shown!r} is not a valid address: {why}")


def normalize_phone(value: str, region: str = DEFAULT_REGION) -> str:
    """Return the phone number in E.164 form, or raise AddressError."""
    if not isinstance(value, str):
        raise AddressError(value, "a phone number must be text")
    text = value.strip()
    if not text:
        raise AddressError(value, "it is empty")
    if len(text) > 40:
        raise AddressError(value, "it is too long to be a phone number")
    fast = _fast_phone(text, region)
    if fast is not None:
        return fast
    return _parse_phone(value, text, region)


_SEPARATORS = re.compile(r"[ ().\-]")
_PLAIN_NUMBER = re.compile(r"\+?[0-9]{8,15}")


def _fast_phone(text: str, region: str) -> str | None:
    """The E.164 form of a number typed with only digits, spaces, ( ) . - and maybe a leading
    +, when consent.e164 can vouch for it without phonenumbers: "+1 202 555 0123", and in the
    US "(202) 555-0123", "202.555.0123", "1-202-555-0123". None: ask phonenumbers. Imports and
    forms are mostly such numbers, and parsing each with phonenumbers costs far more.
    tests/test_addresses.py checks that both ways agree."""
    from consent.e164 import verdict

    compact = _SEPARATORS.sub("", text)
    if _PLAIN_NUMBER.fullmatch(compact) is None or compact.count("+") > 1:
        return None
    if compact[0] == "+":
        if text.lstrip()[0] != "+":
            return None
        candidate = compact
    elif region == "US" and len(compact) == 10:
        candidate = "+1" + compact
    elif region == "US" and len(compact) == 11 and compact[0] == "1":
        candidate = "+" + compact
    else:
        return None
    return candidate if verdict(candidate) is True else None


def _parse_phone(value: object, text: str, region: str) -> str:
    """normalize_phone through phonenumbers: every form it knows, and the reason it refuses."""
    try:
        parsed = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        raise AddressError(
            value, _PARSE_ERRORS.get(exc.error_type, "it is not a phone number")
        ) from None
    if not phonenumbers.is_valid_number(parsed):
        raise AddressError(value, "it is not a valid phone number")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


_PARSE_ERRORS = {
    phonenumbers.NumberParseException.INVALID_COUNTRY_CODE: "its country code is missing or unknown",
    phonenumbers.NumberParseException.NOT_A_NUMBER: "it is not a phone number",
    phonenumbers.NumberParseException.TOO_SHORT_NSN: "it is too short",
    phonenumbers.NumberParseException.TOO_SHORT_AFTER_IDD: "it is too short",
    phonenumbers.NumberParseException.TOO_LONG: "it is too long",
}


def normalize_email(value: str) -> str:
    """Return the email address lower-cased and checked (no DNS look-up), or raise AddressError."""
    if not isinstance(value, str):
        raise AddressError(value, "an email address must be text")
    text = value.strip()
    if not text:
        raise AddressError(value, "it is empty")
    if len(text) > _MAX_INPUT:
        raise AddressError(value, "it is too long to be an email address")
    local, _at, domain = text.rpartition("@")
    if len(text) <= 254 and len(local) <= 64 and _ASCII_LOCAL.match(local) and domain.isascii():
        # The common case, without email_validator's character-by-character checks of the
        # domain (half a millisecond an address, a roster has 200,000): a plain ASCII local
        # part, which it accepts as typed, at a domain it accepted before. Anything else (and
        # a domain it refuses, for its exact words) goes through it below.
        checked = _checked_domain(domain.lower())
        if checked is not None:
            return f"{local}@{checked}".lower()
    try:
        result = validate_email(text, check_deliverability=False)
    except EmailNotValidError as exc:
        raise AddressError(value, str(exc).rstrip(".")) from None
    return result.normalized.lower()


# RFC 5322 dot-atom in ASCII: what email_validator takes as a local part unchanged.
_ASCII_LOCAL = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*\Z"
)


@lru_cache(maxsize=4096)
def _checked_domain(domain: str) -> str | None:
    """The domain as email_validator normalizes it, or None when it refuses it."""
    try:
        return validate_email(f"a@{domain}", check_deliverability=False).domain
    except EmailNotValidError:
        return None


def is_email_like(value: str) -> bool:
    """True when the input looks like an email address rather than a phone number."""
    return "@" in value


def normalize(channel: str, value: str, region: str = DEFAULT_REGION) -> str:
    """Normalize an address for a channel: phones for text and voice, emails for email."""
    if channel == "email":
        return normalize_email(value)
    if channel in PHONE_CHANNELS:
        if isinstance(value, str) and _E164.match(value) and _is_valid_e164(value):
            return value
        return normalize_phone(value, region)
    raise ValueError(f"unknown channel {channel!r}")


def normalize_any(value: str, region: str = DEFAULT_REGION) -> tuple[str, str]:
    """Return ("email", address) or ("phone", E.164) for input of either kind."""
    if isinstance(value, str) and is_email_like(value):
        return "email", normalize_email(value)
    return "phone", normalize_phone(value, region)


_valid_cache: dict[str, bool] = {}


def _is_valid_e164(value: str) -> bool:
    """Cached validity of an E.164 string: the fast path of bulk eligibility."""
    hit = _valid_cache.get(value)
    if hit is None:
        try:
            hit = normalize_phone(value) == value
        except AddressError:
            hit = False
        if len(_valid_cache) > 500_000:
            _valid_cache.clear()
        _valid_cache[value] = hit
    return hit


def phone_digits(e164: str) -> str:
    """The national digits of an E.164 number, as staff type them ("2025550123")."""
    if _E164.match(e164):
        # E.164 is "+", the country code, then the national number; country codes are
        # prefix-free, so the first 1-3 digits that name one are it (no parse: imports call
        # this for every row).
        for length in (1, 2, 3):
            if int(e164[1 : 1 + length]) in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
                return e164[1 + length :]
    parsed = phonenumbers.parse(e164, None)
    return phonenumbers.national_significant_number(parsed)


@lru_cache(maxsize=4096)
def format_phone(e164: str) -> str:
    """An E.164 number the way people read it: +1 202-555-0100. Remembered (a page shows the
    same few numbers on every view, and phonenumbers parses each one again)."""
    try:
        parsed = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return e164
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


@dataclass(frozen=True)
class Address:
    """A normalized address and its kind."""

    kind: str  # "phone" or "email"
    value: str


def sort_fields(channel: str, address: str) -> tuple[str, str | None]:
    """The (sort_key, digits) a stored address is listed and searched by: emails by themselves;
    phones by all their digits, zero-padded, and by their national digits."""
    if channel == "email":
        return address, None
    digits = address.lstrip("+")
    try:
        national = phone_digits(address)
    except Exception:  # a stored number that phonenumbers cannot parse: search by all digits
        national = digits
    return digits.rjust(15, "0"), national
