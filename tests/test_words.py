"""The product's words (consent/words.py): one label per source, one text per status, used by
the pages that show them."""

import re

from consent import words
from consent.models import Channel, Source, Status
from tests.admin_world import world  # noqa: F401  (the fixture)


def test_every_source_has_one_label_of_its_own():
    assert set(words.SOURCE_WORDS) == set(Source)
    assert len(set(words.SOURCE_WORDS.values())) == len(Source)


def test_every_channel_and_status_has_words():
    for table in (words.CHANNEL_WORDS, words.CHANNEL_LABELS, words.CHANNEL_NAMES):
        assert set(table) == set(Channel)
    assert set(words.STATUS_WORDS) == set(Status)
    assert words.STATUS_WORDS[Status.UNKNOWN] == "No choice yet"


def test_an_address_is_shown_the_way_people_read_it():
    assert words.shown_address("+12025550100") == "+1 202-555-0100"
    assert words.shown_address("ana@example.org") == "ana@example.org"


def test_admin_source_filter_lists_each_source_once(client, world):  # noqa: F811
    """The opt-out list's Source filter offers each source once, in words."""
    world.login(client, "org")
    page = client.get("/admin/optouts/").get_data(as_text=True)
    select = re.search(r'<select[^>]*id="f-source".*?</select>', page, re.S)
    assert select is not None, "no Source filter on the page"
    labels = re.findall(r'<option value="\w+"[^>]*>([^<]+)</option>', select.group(0))
    assert len(labels) == len(Source) and len(set(labels)) == len(labels)
    assert "A text reply (keyword)" in labels and "A text reply (in words)" in labels


def test_spanish_words_come_from_the_catalog(app):
    with app.test_request_context("/?lang=es"):
        assert str(words.channel_words(Channel.TEXT)) == "mensajes de texto"
        assert str(words.status_label(None)) == "Sin elección todavía"
