"""The undo journey in Chromium: an admin opts a contact's texts out by mistake (the page
asks first), then undoes it from the contact page's log; no message goes out."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import sqlalchemy as sa

from consent import ledger
from consent.extensions import db
from consent.models import Channel, OutboxMessage, Status
from tests.factories import PASSWORD

pytestmark = pytest.mark.browser


@pytest.fixture
def slip(world):
    contact = world.near.contacts[0]
    return SimpleNamespace(org=world.org.id, contact=contact.id, number=contact.phones[0].number)


def _status(org_id, address):
    db.session.expire_all()
    state = ledger.current(org_id, Channel.TEXT, address)
    result = state.status if state else None
    db.session.rollback()
    return result


def _messages_to(address):
    db.session.expire_all()
    count = db.session.scalar(
        sa.select(sa.func.count(OutboxMessage.id)).where(OutboxMessage.to_address == address)
    )
    db.session.rollback()
    return count


def test_opt_out_asks_first_and_an_undo_puts_it_back(slip, live_server, pages):
    page = pages.new()
    page.goto(live_server.url("/login"))
    page.fill("#email", "org@example.org")
    page.fill("#password", PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/admin/")

    page.goto(live_server.url(f"/admin/contacts/{slip.contact}/"))
    page.locator("summary", has_text="Actions for Texts").first.click()  # the row's menu
    page.get_by_role("button", name="Turn off Texts (opt out)").first.click()
    page.wait_for_load_state()
    assert "Nothing has changed yet" in page.content()
    assert _status(slip.org, slip.number) == Status.OPTED_IN  # the first click changed nothing
    page.get_by_role("button", name="Yes, opt out").click()
    page.wait_for_load_state()
    assert _status(slip.org, slip.number) == Status.OPTED_OUT
    sent_before = _messages_to(slip.number)

    page.get_by_role("link", name="Undo this opt-out").first.click()
    page.wait_for_load_state()
    page.fill("#note", "Clicked the wrong parent")
    page.get_by_role("button", name="Undo this opt-out").click()
    page.wait_for_load_state()
    assert "Nothing was sent to the person" in page.locator(".alert").first.inner_text()
    assert _status(slip.org, slip.number) == Status.OPTED_IN
    assert _messages_to(slip.number) == sent_before
    assert "(an opt-out undone)" in page.content()
