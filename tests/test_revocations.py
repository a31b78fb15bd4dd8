"""Revocation by any reasonable means: the corpus in tests/fixtures/revocations.csv, read as
each row says, and the reader's properties (zero-width characters, typos, bounded work)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench import revocation
from consent import keywords
from consent.keywords import EMAIL, STOP, TEXT, UNCLEAR, VOICE, Meter, Reading, answer, read

CORPUS = revocation.rows()


def test_corpus_is_large_and_varied():
    """At least 150 messages, with revocations, ordinary replies and unclear ones."""
    kinds = {row.reading for row in CORPUS}
    assert len(CORPUS) >= 150
    assert kinds == {"stop", "start", "help", "unclear", "none"}
    assert sum(row.reading == "none" for row in CORPUS) >= 50


@pytest.mark.parametrize("row", CORPUS, ids=lambda row: row.body[:40])
def test_corpus_message_reads_as_expected(row):
    """Each corpus message gets its expected intent, channels, scope and reassigned flag."""
    assert revocation.got(row) == revocation.expected(row)


def test_corpus_recall_and_precision_meet_the_budget():
    """At least 95% of the revocations heard; no ordinary reply read as one."""
    score = revocation.score(CORPUS)
    assert score.recall >= 0.95
    assert score.false_stops == 0


# --- zero-width and format characters ---------------------------------------------------------

ZERO_WIDTH = st.sampled_from(["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", "\u200e"])
KEYWORD_MESSAGES = st.sampled_from(
    sorted(keywords._KEYWORDS) + ["please stop texting me", "stop calling me", "wrong number"]
)


@given(KEYWORD_MESSAGES, st.lists(st.tuples(st.integers(0, 40), ZERO_WIDTH), max_size=6))
def test_zero_width_characters_inside_a_keyword_never_change_the_reading(message, inserts):
    """Inserting zero-width or format characters anywhere gives the same reading."""
    body = message
    for position, char in inserts:
        position %= len(body) + 1
        body = body[:position] + char + body[position:]
    assert read(body) == read(message)


def test_zero_width_space_inside_stop_is_exact_stop():
    """The issue's example: S<U+200B>TOP is the STOP keyword."""
    assert read("S\u200bTOP") == Reading(STOP, True, "STOP", "en")


# --- typos --------------------------------------------------------------------------------------


@pytest.mark.parametrize("body", ["STIP", "STPO", "STOPP", "SOTP", "stopppp", "Sttop", "tsop"])
def test_one_letter_off_stop_is_an_inexact_stop(body):
    """A one-word message one edit from STOP reads as STOP, not exact (no carrier block)."""
    assert read(body) == Reading(STOP, False, None, "en")


@pytest.mark.parametrize("word", sorted(keywords._REAL_WORDS))
def test_real_word_one_edit_from_a_keyword_is_not_a_stop(word):
    """Words of the allow-list ("stoop", "quiet", "cancer", "para") are never read as STOP."""
    assert read(word).intent != STOP or word in keywords._KEYWORDS


def test_one_edit_counts_additions_deletions_changes_and_swaps():
    assert keywords.one_edit("stpo", "stop") and keywords.one_edit("stopp", "stop")
    assert keywords.one_edit("sto", "stop") and keywords.one_edit("stip", "stop")
    assert not keywords.one_edit("stop", "stop") and not keywords.one_edit("psto", "stop")
    assert not keywords.one_edit("stahp", "stop")


# --- channels, scope, wrong numbers, unclear ------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "channels"),
    [
        ("stop calling me", (VOICE,)),
        ("no more robocalls", (VOICE,)),
        ("no me llamen más", (VOICE,)),
        ("stop emailing me", (EMAIL,)),
        ("stop texting and calling me", (TEXT, VOICE)),
        ("please remove me from your list", (TEXT,)),
        ("STOP", (TEXT,)),
    ],
)
def test_request_names_its_channels(body, channels):
    """A plain request opts out the channels it names; texts when it names none."""
    reading = read(body)
    assert (reading.intent, reading.channels) == (STOP, channels)


def test_request_about_some_messages_has_scope_some():
    """ "stop sending the lunch menu" asks to stop only some messages."""
    reading = read("stop sending the lunch menu")
    assert (reading.intent, reading.scope) == (STOP, "some")
    assert read("Don't stop sending the attendance alerts") == keywords.ORDINARY


@pytest.mark.parametrize("body", ["wrong number", "this isn't Maria's phone", "número equivocado"])
def test_wrong_number_is_a_reassigned_stop(body):
    reading = read(body)
    assert (reading.intent, reading.reassigned, reading.channels) == (STOP, True, (TEXT,))


@pytest.mark.parametrize("body", ["not interested", "goodbye", "stop this", "no me interesa"])
def test_maybe_revocation_is_unclear(body):
    assert read(body).intent == UNCLEAR


@pytest.mark.parametrize(
    ("body", "meaning"),
    [("Y", "yes"), ("yes!", "yes"), ("Sí", "yes"), ("n", "no"), ("Nope.", "no"), ("maybe", None)],
)
def test_short_answers(body, meaning):
    """ "Y" and "Sí" are yes, "n" and "nope" no; anything else is not a short answer."""
    assert answer(body) == meaning


# --- bounded work ---------------------------------------------------------------------------------


@given(st.text(max_size=60), st.integers(1, 40))
def test_reading_work_is_linear_in_the_length(chunk, times):
    """Repeating a message k times costs at most proportionally more: the patterns run on
    bounded windows, so the work counted is linear in the length, never more."""
    body = (chunk + " ") * times
    meter = Meter()
    read(body, meter)
    assert meter.longest <= keywords.WINDOW * (keywords.MAX_TOKEN + 1) + 4
    assert meter.steps <= 3 * len(keywords._PATTERNS) * (len(body) + 40)


@given(st.text())
def test_any_text_is_read_without_raising(body):
    assert read(body).intent in (None, STOP, UNCLEAR, "start", "help")
