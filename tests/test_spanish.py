"""Spanish: pages follow Accept-Language and the switch on every page, a signed-in parent's
language is remembered on their contact, and emails and texts go out in each recipient's
language."""

from __future__ import annotations

import html
import re
from types import SimpleNamespace

import pytest
import sqlalchemy as sa

from consent.extensions import db
from consent.models import ConsentEvent, Contact, EmailAddress, OutboxMessage, Role
from tests.conftest import csrf_token
from tests.factories import PASSWORD, make_family, make_org, make_site, make_user
from tests.test_enroll import valid_form

SPANISH = {"Accept-Language": "es-MX,es;q=0.9,en;q=0.5"}
ENGLISH = {"Accept-Language": "en-US,en;q=0.9"}


@pytest.fixture
def family(app):
    """The Riveras: Ana signs in (English so far), Luis reads Spanish; one student."""
    org = make_org()
    site = make_site(org)
    rivera = make_family(org, site, "Rivera", contacts=2, students=1)
    ana, luis = rivera.contacts
    luis.language = "es"
    make_user(org, "ana@example.org", Role.PARENT, contact=ana, name="Ana Rivera")
    db.session.commit()
    return SimpleNamespace(org=org, site=site, ana=ana, luis=luis, kid=rivera.students[0])


def text_of(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def switch_href(page: str) -> str:
    match = re.search(r'<nav aria-label="[^"]+" class="lang">\s*<a href="([^"]+)"', page)
    assert match, "no language switch on the page"
    return html.unescape(match.group(1))


def sign_in(client):
    response = client.post(
        "/login",
        data={"email": "ana@example.org", "password": PASSWORD, "csrf_token": csrf_token(client)},
        headers=ENGLISH,
    )
    assert response.status_code == 302


def toggle(client, path, target, channel, allow):
    """Press one toggle on a person's page; answers the page it comes back to."""
    return client.post(
        path,
        data={
            "csrf_token": csrf_token(client, "/enroll"),
            "target": target,
            "channel": channel,
            "allow": allow,
        },
        follow_redirects=True,
    )


@pytest.mark.parametrize(
    "path, spanish",
    [
        ("/enroll", "Inscriba a su familia"),
        ("/login", "Iniciar sesión"),
        ("/opt-back-in", "¿Qué desea volver a recibir?"),
        ("/confirm/not-a-token", "Este enlace no es válido"),
    ],
)
def test_page_follows_accept_language(client, family, path, spanish):
    """A browser that prefers Spanish gets the page in Spanish, marked lang="es"; one that
    prefers English gets English."""
    page = text_of(client.get(path, headers=SPANISH))
    assert spanish in page and '<html lang="es">' in page
    assert 'hreflang="en">English</a>' in page
    english = text_of(app_client(client).get(path, headers=ENGLISH))
    assert spanish not in english and '<html lang="en">' in english


def app_client(client):
    """A second visitor (no session shared with `client`)."""
    return client.application.test_client()


def test_switch_keeps_the_page_and_its_query_and_is_remembered(client, family):
    """The switch link points at the same path and query; after following it the visitor
    reads Spanish on every page, whatever the browser prefers, until switching back."""
    page = text_of(client.get("/opt-back-in?channel=email", headers=ENGLISH))
    href = switch_href(page)
    assert href == "/opt-back-in?channel=email&lang=es"
    spanish = text_of(client.get(href, headers=ENGLISH))
    assert "¿Qué desea volver a recibir?" in spanish
    assert switch_href(spanish) == "/opt-back-in?channel=email&lang=en"
    assert "Inscriba a su familia" in text_of(client.get("/enroll", headers=ENGLISH))
    back = text_of(client.get("/enroll?lang=en", headers=SPANISH))
    assert "Enroll your family" in back
    assert "Sign in" in text_of(client.get("/login", headers=SPANISH))


def test_signed_in_parent_reads_their_own_language(client, family):
    """A parent whose contact reads Spanish gets the portal in Spanish, even from an English
    browser."""
    family.ana.language = "es"
    db.session.commit()
    sign_in(client)
    page = text_of(client.get("/account/settings", headers=ENGLISH))
    assert "Su configuración" in page and "Cómo podemos comunicarnos con usted" in page


def test_choosing_spanish_while_signed_in_is_remembered_for_messages(client, family, mailbox):
    """Ana saves Spanish on her settings page (a POST; ?lang= alone changes only the page):
    her contact's language becomes es without any consent change, and the confirmation of her
    email opt-out arrives at the SMTP server in Spanish."""
    sign_in(client)
    events_before = db.session.scalar(sa.select(sa.func.count()).select_from(ConsentEvent))
    page = text_of(client.get("/account/settings?lang=es", headers=ENGLISH))
    assert "Su configuración" in page
    db.session.expire_all()
    assert db.session.get(Contact, family.ana.id).language == "en"
    client.post(
        "/account/language",
        data={"language": "es", "csrf_token": csrf_token(client, "/account/settings")},
    )
    db.session.expire_all()
    assert db.session.get(Contact, family.ana.id).language == "es"
    events_after = db.session.scalar(sa.select(sa.func.count()).select_from(ConsentEvent))
    assert events_after == events_before

    email = family.ana.emails[0].address
    flash = text_of(
        toggle(client, "/account/settings", f"email-{family.ana.emails[0].id}", "email", "off")
    )
    assert f"El correo electrónico a {email} está desactivado." in flash
    (message,) = mailbox.to(email)
    assert (
        message["Subject"]
        == "Canceló su suscripción al correo electrónico de Maple Valley School District"
    )
    body = mailbox.text(message)
    assert "Ya no recibirá correos electrónicos de Maple Valley School District" in body
    assert "volver a suscribirse" in body


def test_messages_to_a_spanish_contact_are_in_spanish(client, family, mailbox):
    """Ana (English) turns off Luis's texts and asks to turn his email back on: his text and
    the confirmation email that arrives are in Spanish; Ana's page stays English."""
    sign_in(client)
    path = f"/account/contacts/{family.luis.id}"
    phone = family.luis.phones[0]
    email = family.luis.emails[0].address
    page = text_of(toggle(client, path, f"phone-{phone.id}", "text", "off"))
    db.session.expire_all()
    (text,) = db.session.scalars(
        sa.select(OutboxMessage).where(OutboxMessage.to_address == phone.number)
    ).all()
    assert text.language == "es"
    assert "Canceló su suscripción y ya no recibirá mensajes de texto" in text.body

    toggle(client, path, f"email-{family.luis.emails[0].id}", "email", "off")
    toggle(client, path, f"email-{family.luis.emails[0].id}", "email", "on")
    request_mail = mailbox.to(email)[-1]
    assert request_mail["Subject"].startswith("Confirme que desea recibir correo electrónico")
    body = mailbox.text(request_mail)
    assert "Para confirmar, abra este enlace y presione el botón:" in body
    assert mailbox.links(request_mail, "/confirm/")
    assert f"Text messages to {text.to_address[:2]}" in page  # Ana's own page: English


def test_enrolling_in_spanish_remembers_spanish_for_the_family(client, family, mailbox):
    """The form filled in Spanish: each guardian's language is es, and the text that
    confirms the Yes goes out in Spanish."""
    form = valid_form(family.org, email="mai@example.org")
    form.update(
        {
            "guardians-1-first_name": "Tuan",
            "guardians-1-last_name": "Nguyen",
            "guardians-1-email": "tuan@example.org",
        }
    )
    client.get("/enroll?lang=es")
    response = client.post(
        "/enroll", data={**form, "csrf_token": csrf_token(client, "/enroll")}, headers=ENGLISH
    )
    assert response.status_code == 302
    assert "Revise su correo" in text_of(client.get(response.location))
    db.session.expire_all()
    owners = db.session.scalars(
        sa.select(Contact)
        .join(EmailAddress)
        .where(EmailAddress.address.in_(["mai@example.org", "tuan@example.org"]))
    ).all()
    assert sorted(c.language for c in owners) == ["es", "es"]
    (text,) = db.session.scalars(
        sa.select(OutboxMessage).where(OutboxMessage.to_address == "+12025550199")
    ).all()
    assert "Está suscrito a mensajes de texto sobre cierres de escuelas" in text.body
    assert "hasta 10 mensajes al mes" in text.body


def test_error_messages_are_spanish_and_tied_to_their_fields(client, family):
    """A Spanish form sent incomplete: the errors are in Spanish, at their fields."""
    form = valid_form(family.org)
    form["guardians-0-first_name"] = ""
    del form["guardians-0-phones-0-texts"]
    client.get("/enroll?lang=es")
    response = client.post("/enroll", data={**form, "csrf_token": csrf_token(client, "/enroll")})
    assert response.status_code == 422
    page = text_of(response)
    assert "Corrija los campos señalados abajo. No se guardó nada." in page
    assert re.search(r'id="guardians-0-first_name-error">\s*Escriba el nombre\.', page)
    assert 'aria-describedby="guardians-0-first_name-error"' in page
    assert "Elija si este número de celular puede recibir mensajes de texto: Sí o No." in page


def test_carrier_block_is_explained_in_spanish(client, family):
    """A STOP-blocked number: the portal's refusal and the ledger's reason read in Spanish."""
    from consent import ledger
    from consent.ledger import Actor
    from consent.models import Source

    phone = family.ana.phones[0]
    ledger.opt_out(
        family.org,
        "text",
        phone.number,
        source=Source.SMS_KEYWORD,
        actor=Actor.recipient("sms"),
        carrier_block=True,
    )
    db.session.commit()
    sign_in(client)
    client.get("/account/settings?lang=es")
    page = text_of(toggle(client, "/account/settings", f"phone-{phone.id}", "text", "on"))
    assert "Usted respondió STOP a nuestros mensajes de texto." in page
    assert "Bloqueado por respuesta STOP" in page
    with client.application.test_request_context("/?lang=es"):
        refusal = ledger.check_opt_back_in(family.org, "text", phone.number)
        assert refusal.reason.startswith("Este número respondió STOP a nuestros mensajes")


def test_signed_out_visitor_is_told_in_spanish_to_sign_in(client, family):
    """Flask-Login's message on the way to the sign-in page is in the visitor's language."""
    response = client.get("/account/settings", headers=SPANISH, follow_redirects=True)
    assert "Inicie sesión para ver esa página." in text_of(response)
