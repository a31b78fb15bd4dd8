"""The purposes table of the parent's account pages: each address × purpose × channel in words,
a toggle per cell that goes through ledger.change_purpose (source portal), and every stranger
refused: another parent, the signed-out, an address of another family, a purpose of another
organization, an always-sent purpose."""

from __future__ import annotations

import html
import re
from types import SimpleNamespace

import pytest

from consent import eligibility, ledger, purposes
from consent.extensions import db
from consent.ledger import Actor
from consent.models import (
    Channel,
    EmailAddress,
    MessagePurpose,
    PurposeState,
    Role,
    Source,
    Status,
)
from tests.conftest import csrf_token
from tests.factories import PASSWORD, make_family, make_org, make_site, make_user
from tests.helpers import events_of, status_of


@pytest.fixture
def world(app):
    org = make_org()
    site = make_site(org)
    rivera = make_family(org, site, "Rivera", contacts=2, students=1)
    other = make_family(org, site, "Other", contacts=1, students=1)
    ana = rivera.contacts[0]
    kid = rivera.students[0]
    kid.emails.append(EmailAddress(address="kid.rivera@students.example.org"))
    make_user(org, "ana@example.org", Role.PARENT, contact=ana, name="Ana Rivera")
    make_user(org, "olga@example.org", Role.PARENT, contact=other.contacts[0], name="Olga")
    elsewhere = make_org(name="Elsewhere District", texting_number="+12025550199")
    db.session.commit()
    return SimpleNamespace(
        org=org,
        ana=ana,
        kid=kid,
        other=other,
        cell=ana.phones[0],
        email=ana.emails[0],
        general=purposes.by_key(org, "general"),
        emergency=purposes.by_key(org, "emergency"),
        attendance=purposes.by_key(org, "attendance"),
        foreign=purposes.by_key(elsewhere, "general"),
    )


def login(auth, email="ana@example.org"):
    assert auth.login(email, PASSWORD).status_code == 302


def page(client, path="/account/settings") -> str:
    return html.unescape(client.get(path).get_data(as_text=True))


def post(client, person_path, target, channel, purpose_id, allow, follow=False):
    return client.post(
        f"/account/{person_path}/purposes",
        data={
            "csrf_token": csrf_token(client),
            "target": target,
            "channel": channel,
            "purpose": str(purpose_id),
            "allow": allow,
        },
        follow_redirects=follow,
    )


def chosen(world, channel, address, purpose):
    db.session.expire_all()
    state = db.session.scalars(
        db.select(PurposeState).filter_by(
            organization_id=world.org.id, channel=channel, address=address, purpose_id=purpose.id
        )
    ).one_or_none()
    return state.status if state else None


def cell_words(text: str, target: str, purpose_name: str) -> list[str]:
    """The status words of one purpose's row in one address's table."""
    table = text.split(f'id="purposes-{target}"', 1)[1].split("</table>", 1)[0]
    row = table.split(f'<th scope="row">{purpose_name}</th>', 1)[1].split("</tr>", 1)[0]
    return re.findall(r'data-status="[a-z_]+">([^<]+)</span>', row)


def test_the_table_shows_each_purpose_per_channel_in_words(client, auth, world):
    login(auth)
    text = page(client)
    target = f"phone-{world.cell.id}"
    assert "Kinds of messages to" in text
    assert cell_words(text, target, "Emergency") == ["Sent", "Always sent"]
    assert cell_words(text, target, "General") == ["Off until texts are turned on", "Sent"]
    assert cell_words(text, f"email-{world.email.id}", "Emergency") == ["Always sent"]
    # An always-sent cell has no button; the others do.
    assert 'aria-label="Turn off: Emergency, Calls' not in text
    assert 'aria-label="Turn off: General, Calls' in text


def test_turning_a_purpose_off_and_on_goes_through_the_ledger(client, auth, world):
    login(auth)
    target = f"phone-{world.cell.id}"
    number = world.cell.number
    response = post(client, f"contacts/{world.ana.id}", target, "voice", world.general.id, "off")
    assert response.status_code == 302
    assert chosen(world, Channel.VOICE, number, world.general) == Status.OPTED_OUT
    event = events_of(number, channel=Channel.VOICE, fresh=True)[-1]
    assert event.source == Source.PORTAL and event.purpose_id == world.general.id
    assert event.evidence["purpose"] == "general"
    text = page(client)
    assert "General calls to" in text and ": off." in text
    assert cell_words(text, target, "General")[1] == "Off"
    assert cell_words(text, target, "Attendance")[1] == "Sent"
    assert status_of(world.org, Channel.VOICE, number) is None  # the channel is untouched
    post(client, f"contacts/{world.ana.id}", target, "voice", world.general.id, "on")
    assert chosen(world, Channel.VOICE, number, world.general) == Status.OPTED_IN
    assert cell_words(page(client), target, "General")[1] == "Sent"


def test_spanish_names_and_words(client, auth, world):
    world.ana.language = "es"
    db.session.commit()
    login(auth)
    text = page(client)
    target = f"phone-{world.cell.id}"
    assert cell_words(text, target, "Emergencias")[1] == "Siempre se envía"
    assert "Asistencia" in text


def test_a_channel_opt_out_shows_off_by_channel_and_emergency_still_reaching(client, auth, world):
    ledger.opt_out(
        world.org, Channel.TEXT, world.cell.number, source=Source.PORTAL, actor=Actor.recipient()
    )
    ledger.change_purpose(
        world.org, Channel.TEXT, world.cell.number, world.general, Status.OPTED_IN,
        source=Source.PORTAL, actor=Actor.recipient(),
    )  # fmt: skip
    db.session.commit()
    login(auth)
    text = page(client)
    target = f"phone-{world.cell.id}"
    # A purpose "yes" never lifts a channel "no".
    assert cell_words(text, target, "General")[0] == "Off: all texts are off"
    assert cell_words(text, target, "Emergency")[0] == "Emergency still reaches you"


def test_turning_a_purpose_on_never_lifts_the_channel_opt_out(client, auth, world):
    number = world.cell.number
    ledger.opt_out(world.org, Channel.TEXT, number, source=Source.PORTAL, actor=Actor.recipient())
    db.session.commit()
    login(auth)
    target = f"phone-{world.cell.id}"
    response = post(
        client, f"contacts/{world.ana.id}", target, "text", world.general.id, "on", follow=True
    )
    text = html.unescape(response.get_data(as_text=True))
    assert "Texts stay off for this address" in text
    assert status_of(world.org, Channel.TEXT, number) == Status.OPTED_OUT
    assert chosen(world, Channel.TEXT, number, world.general) == Status.OPTED_IN
    answer = eligibility.check_one(world.org, Channel.TEXT, number, world.general)
    assert answer.reason == "opted_out"


def test_an_always_sent_purpose_is_refused(client, auth, world):
    login(auth)
    target = f"phone-{world.cell.id}"
    response = post(
        client, f"contacts/{world.ana.id}", target, "voice", world.emergency.id, "off", follow=True
    )
    assert "Parents may not turn off these messages." in response.get_data(as_text=True)
    assert chosen(world, Channel.VOICE, world.cell.number, world.emergency) is None


def test_a_purpose_of_another_organization_is_not_found(client, auth, world):
    login(auth)
    target = f"phone-{world.cell.id}"
    response = post(client, f"contacts/{world.ana.id}", target, "text", world.foreign.id, "off")
    assert response.status_code == 404
    assert events_of(world.cell.number, fresh=True) == []


def test_an_address_of_another_family_is_not_found(client, auth, world):
    login(auth)
    theirs = world.other.contacts[0]
    # Another family's person, and another family's address under one's own person.
    for person_path, target in (
        (f"contacts/{theirs.id}", f"phone-{theirs.phones[0].id}"),
        (f"contacts/{world.ana.id}", f"phone-{theirs.phones[0].id}"),
    ):
        response = post(client, person_path, target, "text", world.general.id, "off")
        assert response.status_code == 404
    assert chosen(world, Channel.TEXT, theirs.phones[0].number, world.general) is None


def test_another_parent_cannot_change_anas_purposes(client, auth, world):
    login(auth, "olga@example.org")
    target = f"phone-{world.cell.id}"
    response = post(client, f"contacts/{world.ana.id}", target, "text", world.general.id, "off")
    assert response.status_code == 404
    assert chosen(world, Channel.TEXT, world.cell.number, world.general) is None


def test_signed_out_is_sent_to_sign_in(client, world):
    target = f"phone-{world.cell.id}"
    response = post(client, f"contacts/{world.ana.id}", target, "text", world.general.id, "off")
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    assert chosen(world, Channel.TEXT, world.cell.number, world.general) is None


def test_a_students_address_from_its_page(client, auth, world):
    login(auth)
    email = world.kid.emails[0]
    response = post(
        client, f"students/{world.kid.id}", f"email-{email.id}", "email", world.general.id, "off"
    )
    assert response.status_code == 302
    assert chosen(world, Channel.EMAIL, email.address, world.general) == Status.OPTED_OUT
    text = page(client, f"/account/students/{world.kid.id}")
    assert cell_words(text, f"email-{email.id}", "General") == ["Off"]
    # The students list shows the table read-only.
    listing = page(client, "/account/students")
    assert cell_words(listing, f"email-{email.id}", "General") == ["Off"]
    assert "/purposes" not in listing


def test_an_unconfirmed_address_cannot_change_its_purposes(client, auth, world):
    world.cell.verified_at = None
    db.session.commit()
    login(auth)
    target = f"phone-{world.cell.id}"
    response = post(
        client, f"contacts/{world.ana.id}", target, "voice", world.general.id, "off", follow=True
    )
    assert "not confirmed yet" in response.get_data(as_text=True)
    assert chosen(world, Channel.VOICE, world.cell.number, world.general) is None


def test_a_form_without_its_token_is_refused(client, auth, world):
    login(auth)
    response = client.post(
        f"/account/contacts/{world.ana.id}/purposes",
        data={"target": f"phone-{world.cell.id}", "channel": "voice",
              "purpose": str(world.general.id), "allow": "off"},
    )  # fmt: skip
    assert response.status_code == 400
    assert chosen(world, Channel.VOICE, world.cell.number, world.general) is None


@pytest.mark.parametrize(
    "change, column, value",
    [
        ("renamed", "name_en", "Lunch and buses"),
        ("made always sent", "parents_may_turn_off_voice", False),
        ("reaching the opted out", "reaches_opted_out", True),
        ("moved", "position", -1),
    ],
)
def test_a_purpose_changed_in_another_connection_shows_on_the_next_page(
    client, auth, world, change, column, value
):
    """The pages keep the purposes per process (purposes.kept) by a fingerprint read with the
    page's own statement: a change committed elsewhere (another worker's admin, a script)
    shows on the very next page, and a new purpose too."""
    import sqlalchemy as sa

    login(auth)
    target = f"phone-{world.cell.id}"
    before = page(client)
    assert cell_words(before, target, "General") == ["Off until texts are turned on", "Sent"]
    url = db.engine.url.render_as_string(hide_password=False)
    other = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with other.begin() as conn:
            table = MessagePurpose.__table__
            conn.execute(
                table.update().where(table.c.id == world.general.id).values({column: value})
            )
            conn.execute(
                sa.text(
                    "INSERT INTO message_purposes (organization_id, key, name_en, name_es, "
                    "position, parents_may_turn_off_text, parents_may_turn_off_voice, "
                    "parents_may_turn_off_email, reaches_opted_out, is_general) VALUES "
                    "(:org, 'lunch', 'Lunch menu', '', 9, :t, :t, :t, :f, :f)"
                ),
                {"org": world.org.id, "t": True, "f": False},
            )
    finally:
        other.dispose()
    db.session.remove()
    after = page(client)
    name = value if column == "name_en" else "General"
    words = cell_words(after, target, name)
    if column == "parents_may_turn_off_voice":
        assert words == ["Off until texts are turned on", "Always sent"]
    elif column == "reaches_opted_out":
        assert words == ["Sent", "Sent"]  # texts not opted in, yet General reaches them now
    else:
        assert words == ["Off until texts are turned on", "Sent"]
    if column == "position":
        assert after.index(">General</th>") < after.index(">Emergency</th>")
    assert cell_words(after, target, "Lunch menu") == ["Off until texts are turned on", "Sent"]
