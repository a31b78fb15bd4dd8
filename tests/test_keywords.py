"""Tests for reading STOP / START / HELP keywords and plain-language opt-outs in inbound SMS."""

from __future__ import annotations

import re
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consent.keywords import _PATTERNS, HELP, MAX_BODY, START, STOP, UNCLEAR, Meter, Reading, read

ORDINARY = Reading(None, False, None, "en")

STOP_WORDS = {
    "stop": "en", "stopall": "en", "unsubscribe": "en", "cancel": "en", "end": "en",
    "quit": "en", "revoke": "en", "optout": "en", "opt out": "en", "opt-out": "en",
    "parar": "es", "alto": "es", "cancelar": "es", "baja": "es", "remove": "en",
    "detener": "es", "arret": "fr", "stop all": "en",
}  # fmt: skip
ALL_WORDS = STOP_WORDS | {
    "start": "en", "unstop": "en", "yes": "en", "comenzar": "es",
    "help": "en", "info": "en", "ayuda": "es", "aide": "fr",
}  # fmt: skip


@pytest.mark.parametrize(
    ("body", "intent", "keyword", "language"),
    [
        (" stop ", STOP, "STOP", "en"),
        ("Stop.", STOP, "STOP", "en"),
        ("STOP!!", STOP, "STOP", "en"),
        ("stopall", STOP, "STOPALL", "en"),
        ("Unsubscribe", STOP, "UNSUBSCRIBE", "en"),
        ("CANCEL", STOP, "CANCEL", "en"),
        ("end", STOP, "END", "en"),
        ("Quit", STOP, "QUIT", "en"),
        ("revoke", STOP, "REVOKE", "en"),
        ("OPTOUT", STOP, "OPTOUT", "en"),
        ("opt out", STOP, "OPTOUT", "en"),
        ("Opt-Out", STOP, "OPTOUT", "en"),
        ("opt \t out", STOP, "OPTOUT", "en"),
        ("start", START, "START", "en"),
        ("UNSTOP", START, "UNSTOP", "en"),
        ("Yes", START, "YES", "en"),
        ("help", HELP, "HELP", "en"),
        ("Info?", HELP, "INFO", "en"),
        ("Parar", STOP, "PARAR", "es"),
        ("ALTO", STOP, "ALTO", "es"),
        ("cancelar", STOP, "CANCELAR", "es"),
        ("BAJA.", STOP, "BAJA", "es"),
        ("ayuda", HELP, "AYUDA", "es"),
        ("Comenzar", START, "COMENZAR", "es"),
    ],
)
def test_whole_message_keyword_is_read_exactly(body, intent, keyword, language):
    """A message that is only a keyword gives its intent, upper-case keyword and language."""
    assert read(body) == Reading(intent, True, keyword, language)


@pytest.mark.parametrize(
    "body",
    ["Stop.", "STOP!!", "stop?!", "Stop…", "stop ,;:", '"STOP"', "'stop'", "“Stop”", "STOP !"],
)
def test_stop_with_trailing_punctuation_is_exact_stop(body):
    """Trailing punctuation and surrounding quotes do not stop a keyword being exact."""
    assert read(body) == Reading(STOP, True, "STOP", "en")


@pytest.mark.parametrize(
    ("body", "keyword"),
    [("¡Parar!", "PARAR"), ("PÁRAR", "PARAR"), ("Ayúda", "AYUDA"), ("comenzár", "COMENZAR")],
)
def test_spanish_keyword_matches_without_regard_to_accents_or_opening_marks(body, keyword):
    """Spanish keywords match with or without accents and with ¡ ¿ in front."""
    reading = read(body)
    assert (reading.exact, reading.keyword, reading.language) == (True, keyword, "es")


@pytest.mark.parametrize("body", ["ＳＴＯＰ", "𝐒𝐓𝐎𝐏", "stop\u200b", "\ufeffSTOP", "STOP\x00"])
def test_styled_or_padded_stop_is_exact_stop(body):
    """Full-width or styled letters and invisible padding still read as the STOP keyword."""
    assert read(body) == Reading(STOP, True, "STOP", "en")


@pytest.mark.parametrize("body", ["si", "SÍ", "stahp", "stops", "helpful", "starting", "opt in"])
def test_near_miss_word_is_not_a_keyword(body):
    """Words that only resemble keywords (including Spanish "sí") are ordinary messages."""
    assert read(body) == ORDINARY


@pytest.mark.parametrize(
    ("body", "language"),
    [
        ("please stop texting me", "en"),
        ("Stop texting me", "en"),
        ("remove me from this list", "en"),
        ("remove me from your list", "en"),
        ("unsubscribe me", "en"),
        ("take me off your list", "en"),
        ("I want to opt out", "en"),
        ("no more texts please", "en"),
        ("don't text me anymore", "en"),
        ("Don’t text me anymore!", "en"),
        ("stop sending me messages", "en"),
        ("stop messaging me", "en"),
        ("please unsubscribe", "en"),
        ("opt me out", "en"),
        ("stop please", "en"),
        ("STOP STOP STOP", "en"),
        ("STOP 😡", "en"),
        ("do not contact us", "en"),
        ("never text me again", "en"),
        ("stop all these texts", "en"),
        ("Stop with the texts already", "en"),
        ("Can you stop texting me?", "en"),
        ("I'd like to stop receiving texts", "en"),
        ("How do I stop getting these messages?", "en"),
        ("Hi this is Maria's mom please remove me from your list", "en"),
        ("I don't know who this is, stop texting me", "en"),
        ("I already unsubscribed!", "en"),
        ("I no longer wish to receive these messages", "en"),
        ("I revoke my consent", "en"),
        ("delete my number from your system", "en"),
        ("unsubscribe from these texts", "en"),
        ("cancel my subscription", "en"),
        ("no me envíen más mensajes", "es"),
        ("dejen de enviarme mensajes", "es"),
        ("quiero darme de baja", "es"),
        ("por favor paren los mensajes", "es"),
        ("Por favor, dejen de mandarme mensajes", "es"),
        ("quítenme de la lista", "es"),
        ("No quiero recibir más mensajes", "es"),
        ("baja por favor", "es"),
    ],
)
def test_plain_request_to_stop_texting_is_inexact_stop(body, language):
    """A natural-language request to stop texting reads as STOP, not exact, with no keyword."""
    assert read(body) == Reading(STOP, False, None, language)


@pytest.mark.parametrize(
    "body",
    [
        "don't stop the bus at Elm St",
        "When does the bus stop?",
        "Can you help me with the lunch menu?",
        "I will cancel the appointment",
        "The game will end at 5",
        "yes I'll be there",
        "start time for school?",
        "Bus stop moved to Main St",
        "please don't stop texting me",
        "Is school cancelled tomorrow?",
        "stop by the office",
        "Stop alerts are late today",
        "Can you send bus stop alerts?",
        "stop sign at the corner",
        "Remove me from the carpool list",
        "Please don't remove me from the list",
        "Stop texting while driving, kids!",
        "I want to opt out of the field trip",
        "Opt out forms are due Friday",
        "I don't want to miss any texts",
        "Why did you stop texting me?",
        "If I unsubscribe will I still get alerts?",
        "Don't text me the schedule, email it",
        "You don't text me anymore",
        "remove me from the emergency contact list",
        "no quiero darme de baja",
        "no dejen de enviarme mensajes",
        "¿Por qué no me envían mensajes?",
        "Mi hijo está de baja",
    ],
)
def test_keyword_inside_other_talk_is_ordinary_message(body):
    """Messages that merely mention a keyword, or negate or ask about stopping, are ordinary."""
    assert read(body) == ORDINARY


@pytest.mark.parametrize(
    "body", ["start please", "help please", "yes please start", "I need help", "info on the trip"]
)
def test_start_and_help_words_in_a_phrase_give_no_intent(body):
    """Only a whole-message keyword gives START or HELP; phrases never do."""
    assert read(body) == ORDINARY


@pytest.mark.parametrize(
    "body",
    ["", "   ", "\x00", "\ud800", "🙂", "\u0345", "...", "\u200b\u200b", "stop" * 1000],
)
def test_odd_input_is_ordinary_message(body):
    """Empty, invisible, surrogate, emoji and run-together input reads as an ordinary message."""
    assert read(body) == ORDINARY


def test_message_longer_than_limit_is_ordinary():
    """A message over MAX_BODY characters is ordinary even if it starts with a request."""
    assert read("please stop texting me " + "x" * MAX_BODY) == ORDINARY
    assert read(" " * 5000 + "STOP" + " " * 5000) == Reading(STOP, True, "STOP", "en")


@pytest.mark.parametrize(
    "body",
    [
        "i " * (MAX_BODY // 2),
        "please " * (MAX_BODY // 7),
        "don't text me any more " * (MAX_BODY // 23) + "x",
        "no me envien mas " * (MAX_BODY // 17) + "x",
        "stop the " * (MAX_BODY // 9),
        "remove me from the " * (MAX_BODY // 19),
        "i don't want the texts " * (MAX_BODY // 23) + "x",
        "\ufdfa" * MAX_BODY,
        "a" * MAX_BODY,
    ],
)
def test_worst_case_message_is_read_in_bounded_work(body):
    """Long repetitive messages: every pattern runs on a bounded window, and the work counted
    is proportional to the length (no regex backtracking over the whole message)."""
    meter = Meter()
    read(body, meter)
    assert meter.longest <= WINDOW_CHARS
    assert meter.steps <= STEPS_PER_CHAR * len(body) + STEPS_FIXED


def _nested_unbounded_repeats(items, inside=False) -> list[str]:
    """The unbounded repeats (*, +, {n,}) inside another unbounded repeat of a parsed pattern."""
    from re import _constants as c

    found = []
    for op, arg in items:
        if op in (c.MAX_REPEAT, c.MIN_REPEAT, c.POSSESSIVE_REPEAT):
            unbounded = arg[1] == c.MAXREPEAT
            if inside and unbounded:
                found.append(str(arg[2])[:80])
            found += _nested_unbounded_repeats(arg[2], inside or unbounded)
        elif op in (c.SUBPATTERN, c.ATOMIC_GROUP):
            found += _nested_unbounded_repeats(arg[-1], inside)
        elif op == c.BRANCH:
            for branch in arg[1]:
                found += _nested_unbounded_repeats(branch, inside)
        elif op in (c.ASSERT, c.ASSERT_NOT):
            found += _nested_unbounded_repeats(arg[1], inside)
    return found


def test_every_pattern_repeats_only_tokens_or_bounded_groups():
    """No pattern of the keyword reader nests an unbounded repeat inside another (the shape that
    backtracks exponentially), so reading stays linear in the length of a message."""
    from re import _parser

    from consent import keywords

    patterns = [p.regex for p in keywords._PATTERNS] + [
        value for value in vars(keywords).values() if isinstance(value, re.Pattern)
    ]
    assert len(patterns) > 20
    for pattern in patterns:
        assert _nested_unbounded_repeats(_parser.parse(pattern.pattern, pattern.flags)) == [], (
            pattern.pattern
        )


# --- Properties ---------------------------------------------------------------------------------

WINDOW_CHARS = 32 * 31 + 4  # WINDOW tokens of at most MAX_TOKEN characters, and the sentinels
STEPS_PER_CHAR = 3 * len(_PATTERNS)  # a character is in at most 2 windows (+ separators)
STEPS_FIXED = 40 * len(_PATTERNS)

SPACE = st.sampled_from([c for c in map(chr, range(0x3001)) if c.isspace()])  # all of them
WHITESPACE = st.text(SPACE, max_size=5)
PUNCTUATION = st.characters(categories=["Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po"])
TRAILING = st.text(st.one_of(PUNCTUATION, SPACE))
WORDS = st.sampled_from(sorted(ALL_WORDS) + ["me", "texting", "please", "don't", "list", "no"])
MIXED_TEXT = st.lists(st.one_of(WORDS, st.text(max_size=6)), max_size=12).map(" ".join)


@given(st.one_of(st.text(), MIXED_TEXT))
def test_read_never_raises_and_returns_a_known_reading(body):
    """Any text gives a Reading with a known intent and language, and never raises."""
    reading = read(body)
    assert reading.intent in (None, STOP, START, HELP, UNCLEAR)
    assert reading.language in ("en", "es", "fr")


@given(st.one_of(st.text(), MIXED_TEXT))
def test_start_and_help_only_come_from_exact_keywords(body):
    """START and HELP readings are always exact; inexact readings never name a keyword."""
    reading = read(body)
    if reading.intent in (START, HELP):
        assert reading.exact
    if not reading.exact:
        assert reading.keyword is None
    if reading.intent is None:
        assert reading == ORDINARY


@given(st.sampled_from(sorted(STOP_WORDS)), WHITESPACE, TRAILING)
def test_stop_keyword_with_surrounding_whitespace_and_punctuation_is_exact_stop(
    word, leading, trailing
):
    """A STOP word padded with whitespace and followed by any punctuation is still exact STOP."""
    reading = read(leading + word + trailing)
    assert (reading.intent, reading.exact) == (STOP, True)
    assert reading.language == STOP_WORDS[word]


def random_case(word: str, flips: list[bool]) -> str:
    """The word with the letters whose flip is True in upper case."""
    return "".join(c.upper() if flip else c for c, flip in zip(word, flips, strict=True))


WORD_AND_FLIPS = st.sampled_from(sorted(ALL_WORDS)).flatmap(
    lambda w: st.tuples(st.just(w), st.lists(st.booleans(), min_size=len(w), max_size=len(w)))
)


@given(WORD_AND_FLIPS)
def test_keyword_in_random_case_still_matches(word_and_flips):
    """Keywords match whatever their mix of upper and lower case."""
    word, flips = word_and_flips
    reading = read(random_case(word, flips))
    assert reading == read(word)
    assert reading.exact
    assert reading.keyword == word.upper().replace(" ", "").replace("-", "")


def has_no_letter(c: str) -> bool:
    """Whether a character has no letter in it, even after compatibility folding (e.g. "ⓢ")."""
    return not any(x.isalpha() for x in unicodedata.normalize("NFKD", c).casefold())


@given(st.text(st.characters(exclude_categories=["L"]).filter(has_no_letter)))
def test_text_without_letters_never_yields_an_intent(body):
    """Text made only of digits, punctuation, symbols and spaces is an ordinary message."""
    assert read(body) == ORDINARY
