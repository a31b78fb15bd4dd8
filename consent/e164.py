"""A fast answer to "is this string already a valid phone number in E.164 form?".

`verdict(value)` is True when phonenumbers would parse `value` to a valid number whose E.164
form is `value` itself, False when it would find it invalid, and None when it cannot tell
cheaply (a national prefix or a leading zero after the country code): the caller then asks
phonenumbers. It reads phonenumbers' own metadata, compiled once per region into one pattern
per number length, so bulk eligibility checks 100,000 numbers in a fraction of a second
instead of the several seconds that parsing each one costs. tests/test_eligibility.py checks
that it agrees with phonenumbers.
"""

from __future__ import annotations

import re

from phonenumbers import PhoneMetadata
from phonenumbers.phonenumberutil import COUNTRY_CODE_TO_REGION_CODE, REGION_CODE_FOR_NON_GEO_ENTITY

SHAPE = re.compile(r"\+[1-9][0-9]{7,14}")
# The number types phonenumbers tries; a number is valid when it is of any of them.
_TYPES = (
    "premium_rate", "toll_free", "shared_cost", "voip", "personal_number", "pager", "uan",
    "voicemail", "fixed_line", "mobile",
)  # fmt: skip


class _Region:
    """One region's metadata, compiled for validity checks."""

    __slots__ = ("leading", "general", "lengths", "types", "by_length", "prefix", "accept")

    def __init__(self, metadata):
        self.leading = re.compile(metadata.leading_digits) if metadata.leading_digits else None
        general = metadata.general_desc
        pattern = general.national_number_pattern if general else None
        self.general = re.compile(pattern) if pattern else None
        self.lengths = frozenset(general.possible_length) if general else frozenset()
        prefix = metadata.national_prefix_for_parsing
        self.prefix = re.compile(prefix) if prefix else None
        self.types = []
        for name in _TYPES:
            desc = getattr(metadata, name, None)
            if desc is not None and desc.national_number_pattern and -1 not in desc.possible_length:
                self.types.append((frozenset(desc.possible_length), desc.national_number_pattern))
        self.by_length: dict[int, re.Pattern | None] = {}
        self.accept = self._accept(prefix)

    def _accept(self, prefix: str | None) -> re.Pattern | None:
        """One pattern for the national number that says "valid here, nothing to strip": no
        leading zero, no national prefix, the general pattern and lengths, one type's pattern
        and lengths. A miss means "look closer", never "invalid"."""
        if self.general is None or not self.types:
            return None

        def sized(lengths) -> str:
            return "(?=(?:" + "|".join(f"[0-9]{{{n}}}" for n in sorted(lengths)) + r")\Z)"

        parts = [
            (sized(lengths) if lengths else "") + f"(?:{pattern})"
            for lengths, pattern in self.types
        ]
        head = "(?!0)" + (f"(?!(?:{prefix}))" if prefix else "")
        head += sized(self.lengths) if self.lengths else ""
        head += rf"(?=(?:{self.general.pattern})\Z)"
        return re.compile(head + "(?:" + "|".join(parts) + ")")

    def typed(self, nsn: str) -> bool:
        """phonenumbers' number type of `nsn` here is not UNKNOWN."""
        if self.general is None:
            return False
        size = len(nsn)
        if self.lengths and size not in self.lengths:
            return False
        if self.general.fullmatch(nsn) is None:
            return False
        if size not in self.by_length:
            patterns = [p for lengths, p in self.types if not lengths or size in lengths]
            self.by_length[size] = (
                re.compile("|".join(f"(?:{p})" for p in patterns)) if patterns else None
            )
        union = self.by_length[size]
        return union is not None and union.fullmatch(nsn) is not None


_countries: dict[str, tuple[int, list[_Region | None]]] = {}


def _country(prefix: str) -> tuple[int, list[_Region | None]] | None:
    """The country code spelled by `prefix` and its regions' compiled metadata (main first)."""
    hit = _countries.get(prefix)
    if hit is None:
        country_code = int(prefix)
        codes = COUNTRY_CODE_TO_REGION_CODE.get(country_code)
        if not codes:
            return None
        hit = _countries[prefix] = (country_code, [_compile(c, country_code) for c in codes])
    return hit


def _compile(code: str, country_code: int) -> _Region | None:
    if code == REGION_CODE_FOR_NON_GEO_ENTITY:
        metadata = PhoneMetadata.metadata_for_nongeo_region(country_code, None)
    else:
        metadata = PhoneMetadata.metadata_for_region(code, None)
    return _Region(metadata) if metadata is not None else None


def verdict(value: str) -> bool | None:
    """True: valid and already E.164; False: not a valid number; None: ask phonenumbers."""
    if SHAPE.fullmatch(value) is None:
        return None
    for end in (2, 3, 4):  # country codes are one to three digits, none a prefix of another
        country = _country(value[1:end])
        if country is not None:
            break
    else:
        return None
    nsn = value[end:]
    main = country[1][0]
    if main is not None and main.accept is not None and main.accept.fullmatch(nsn):
        if main.leading is None or main.leading.match(nsn):
            return True  # valid in the main region, which region_code_for_number tries first
    if nsn[0] == "0":
        return None  # leading zeros (Italy and others): phonenumbers' own rules apply
    regions = country[1]
    main = regions[0]
    if main is None or (main.prefix is not None and main.prefix.match(nsn)):
        return None  # a national prefix might be stripped: phonenumbers' own rules apply
    if len(regions) == 1:
        return main.typed(nsn)
    for region in regions:  # phonenumbers' region_code_for_number, then validity there
        if region is None:
            continue
        if region.leading is not None:
            if region.leading.match(nsn):
                return region.typed(nsn)
        elif region.typed(nsn):
            return True
    return False


_LINES: dict[str, re.Pattern | None] = {}


def _lines_pattern(prefix: str) -> re.Pattern | None:
    """The main region's `accept` of a country, for many numbers at once: one number a line
    (MULTILINE, `\\Z` read as the end of the line). None when the metadata could match across
    a line break or the main region needs a leading-digits check: then one at a time."""
    if prefix in _LINES:
        return _LINES[prefix]
    pattern = None
    country = _country(prefix)
    main = country[1][0] if country else None
    if main is not None and main.accept is not None and main.leading is None:
        text = main.accept.pattern
        if "[^" not in text and "." not in text and "$" not in text and "^" not in text:
            pattern = re.compile(rf"^\+{prefix}(?:" + text.replace(r"\Z", "$") + ")$", re.MULTILINE)
    _LINES[prefix] = pattern
    return pattern


def verdicts(values: list[str]) -> list[bool | None]:
    """verdict() of each value (each already of SHAPE), the same answers: the numbers of
    country code 1 (North America, what a district mostly sends) are checked against the main
    region in one regular-expression pass over all of them (a number a line); the rest, and
    those that pass fails, one by one."""
    pattern = _lines_pattern("1")
    lines = "\n".join(values)
    if pattern is None or lines.count("\n") != len(values) - 1:
        return [verdict(v) for v in values]
    marked = pattern.sub("", lines).split("\n")
    return [
        True if not line else verdict(value) for line, value in zip(marked, values, strict=True)
    ]
