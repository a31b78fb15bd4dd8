"""The Opt-Out List in the admin: who sees it, search, filters, add, opt back in, exports."""

import csv
import io
import re

import pytest
import sqlalchemy as sa
from openpyxl import load_workbook

from consent import ledger
from consent.extensions import db
from consent.models import ConsentEvent, ConsentState, Contact, Phone, PhoneKind, Source, Status
from tests import factories
from tests.conftest import csrf_token
from tests.helpers import state_of

LIST = "/admin/optouts/"


def login(auth, who):
    """Sign in as one of the `staff` fixture's users."""
    names = {"org": "admin", "site": "site", "staff": "staff", "parent": "parent"}
    auth.login(f"{names[who]}@example.org", factories.PASSWORD)


def opt_out(org, channel, address, source=Source.ADMIN, **kwargs):
    """Record an opt-out through the ledger, committed."""
    outcome = ledger.opt_out(
        org, channel, address, source=source, actor=ledger.Actor.system(), **kwargs
    )
    db.session.commit()
    return outcome.state


def rows_shown(page: str) -> int:
    return len(re.findall(r'name="rowid"', page))


@pytest.fixture
def listed(staff):
    """A few opt-outs on every channel, one carrier-blocked and one bounced."""
    org = staff["organization"]
    opt_out(org, "text", "+12025550123", note="asked at the office")
    opt_out(org, "voice", "+12025550123")
    opt_out(org, "text", "+13125550199", source=Source.SMS_KEYWORD, carrier_block=True)
    opt_out(org, "email", "ana.rivera@example.org", source=Source.EMAIL_LINK)
    opt_out(org, "email", "zed@example.net")
    ledger.mark_bounced(org, "text", "+14155550111")
    db.session.commit()
    return staff


# --- who sees what --------------------------------------------------------------------------

PAGES = [LIST, LIST + "add/", LIST + "export.csv", LIST + "export-people.xlsx", LIST + "row/1/"]


@pytest.mark.parametrize("url", PAGES)
@pytest.mark.parametrize(
    ("who", "status"), [("org", 200), ("site", 200), ("staff", 403), ("parent", 403)]
)
def test_opt_out_pages_by_role(client, auth, listed, url, who, status):
    """The organization and site teams reach every opt-out page; staff and parents get 403."""
    login(auth, who)
    assert client.get(url).status_code == status


@pytest.mark.parametrize(
    ("who", "status"), [("org", 200), ("site", 403), ("staff", 403), ("parent", 403)]
)
def test_import_page_is_for_the_organization_team(client, auth, listed, who, status):
    """Only the organization team imports files."""
    login(auth, who)
    assert client.get(LIST + "import/").status_code == status


@pytest.mark.parametrize(
    ("who", "list_shown", "import_shown"),
    [("org", True, True), ("site", True, False), ("staff", False, False)],
)
def test_menu_shows_only_what_the_role_may_use(client, auth, listed, who, list_shown, import_shown):
    """The admin menu lists the opt-out list and the import only for the roles that may use them."""
    login(auth, who)
    page = client.get("/admin/").get_data(as_text=True)
    assert ('href="/admin/optouts/"' in page) is list_shown
    assert ('href="/admin/optouts/import/"' in page) is import_shown


def test_stranger_is_sent_to_sign_in(client, listed):
    """Without a session the list redirects to /login."""
    response = client.get(LIST)
    assert response.status_code == 302 and "/login" in response.headers["Location"]


# --- the list -------------------------------------------------------------------------------


def test_list_shows_opted_out_addresses_per_channel_in_order(client, auth, listed):
    """Emails alphabetically, then phones numerically per channel; bounced ones are not listed."""
    login(auth, "org")
    page = client.get(LIST).get_data(as_text=True)
    order = [
        page.index(s)
        for s in ("ana.rivera@example.org", "zed@example.net", "+1 202-555-0123", "+1 312-555-0199")
    ]
    assert order == sorted(order)
    assert "+1 415-555-0111" not in page
    assert "asked at the office" in page
    assert "Carrier block (replied STOP)" in page
    assert rows_shown(page) == 5


def test_list_names_the_contact_when_known(client, auth, staff):
    """A listed number shows the contact who has it."""
    org = staff["organization"]
    contact = db.session.scalars(sa.select(Contact)).first()
    number = contact.phones[0].number
    opt_out(org, "text", number)
    login(auth, "site")
    assert f"{contact.name} (contact)" in client.get(LIST).get_data(as_text=True)


@pytest.mark.parametrize(
    "typed", ["2025550123", "202-555-0123", "+12025550123", "(202) 555-0123", "202555"]
)
def test_search_finds_a_phone_however_it_is_typed(client, auth, listed, typed):
    """Digits only, dashes, E.164, or the first digits find the number and nothing else."""
    login(auth, "org")
    page = client.get(LIST, query_string={"search": typed}).get_data(as_text=True)
    assert "+1 202-555-0123" in page
    assert "+1 312-555-0199" not in page and "ana.rivera" not in page


def test_search_finds_an_email_from_part_of_it(client, auth, listed):
    """Part of an email address finds it, whatever its case."""
    login(auth, "org")
    page = client.get(LIST, query_string={"search": "RIVERA@exa"}).get_data(as_text=True)
    assert "ana.rivera@example.org" in page and "zed@example.net" not in page
    assert rows_shown(page) == 1


FILTER_CASES = [
    ({"flt1_channel_equals": "voice"}, ["+1 202-555-0123"], ["ana.rivera", "+1 312-555-0199"]),
    ({"flt1_source_equals": "email_link"}, ["ana.rivera"], ["zed@", "+1 202-555-0123"]),
    ({"flt1_carrier_block_equals": "1"}, ["+1 312-555-0199"], ["+1 202-555-0123", "zed@"]),
    ({"flt1_status_equals": "bounced"}, ["+1 415-555-0111"], ["+1 202-555-0123", "zed@"]),
    (
        {
            "flt1_date_added_on_or_after": "2000-01-01",
            "flt2_date_added_on_or_before": "2999-12-31",
        },
        ["zed@", "+1 202-555-0123"],
        [],
    ),
    ({"flt1_date_added_on_or_before": "2000-01-01"}, [], ["zed@", "+1 202-555-0123"]),
    (
        {"flt1_channel_equals": "", "flt2_source_equals": ""},
        ["zed@", "+1 202-555-0123"],
        ["+1 415-555-0111"],
    ),
]


@pytest.mark.parametrize(("query", "shown", "hidden"), FILTER_CASES)
def test_filters_narrow_the_list(client, auth, listed, query, shown, hidden):
    """Channel, source, carrier block, status and date added filter the rows."""
    login(auth, "org")
    page = client.get(LIST, query_string=query).get_data(as_text=True)
    for text in shown:
        assert text in page
    for text in hidden:
        assert text not in page


@pytest.mark.parametrize(("query", "shown", "hidden"), FILTER_CASES)
def test_the_export_has_the_rows_the_filtered_list_shows(
    client, auth, listed, query, shown, hidden
):
    """The export (at once or as a job: the same rows) is the list under the same filters."""
    login(auth, "org")
    page = client.get(LIST, query_string={**query, "page_size": 100}).get_data(as_text=True)
    body = client.get(LIST + "export.csv", query_string=query).get_data(as_text=True)
    rows = list(csv.reader(io.StringIO(body.lstrip("\ufeff"))))
    assert len(rows) - 1 == rows_shown(page)


def test_list_pages_without_counting(client, auth, listed):
    """No total count; a next page (by keyset: the position in the link) when there is one."""
    org = listed["organization"]
    rows = [ledger.BulkRow(f"+1202555{n:04d}", {}) for n in range(1000, 1020)]
    ledger.opt_out_many(org, "voice", rows, source=Source.IMPORT, actor=ledger.Actor.system())
    db.session.commit()
    login(auth, "org")
    page = client.get(LIST, query_string={"page_size": 20}).get_data(as_text=True)
    assert rows_shown(page) == 20
    assert "List (" not in page
    following = re.search(r'href="([^"]+)" rel="next"', page).group(1)
    assert "after=" in following and "page_size=20" in following
    second = client.get(following.replace("&amp;", "&")).get_data(as_text=True)
    assert rows_shown(second) == 5


# --- Add Opt-Out ----------------------------------------------------------------------------


def test_add_opt_out_records_each_channel_in_the_ledger(client, auth, staff):
    """A phone with "all" is opted out of texts and calls, source admin, by the admin, with the note."""
    org = staff["organization"]
    login(auth, "site")
    response = client.post(
        LIST + "add/",
        data={
            "address": "(202) 555-0177",
            "channel": "all",
            "note": "Called the office",
            "csrf_token": csrf_token(client, LIST + "add/"),
            "confirm": "yes",
        },
        follow_redirects=True,
    )
    assert "+1 202-555-0177 is now opted out of text messages and calls." in response.get_data(
        as_text=True
    )
    events = db.session.scalars(
        sa.select(ConsentEvent).where(ConsentEvent.address == "+12025550177")
    ).all()
    assert sorted(e.channel for e in events) == ["text", "voice"]
    for event in events:
        assert event.source == Source.ADMIN and event.to_status == Status.OPTED_OUT
        assert event.actor_user_id == staff["site"].id and event.note == "Called the office"
    assert state_of(org, "text", "+12025550177").status == Status.OPTED_OUT


def test_add_opt_out_of_an_email_takes_only_email(client, auth, staff):
    """An email address with the text channel is refused on the field; nothing is recorded."""
    login(auth, "org")
    page = client.post(
        LIST + "add/",
        data={
            "address": "Ana@Example.org",
            "channel": "text",
            "csrf_token": csrf_token(client, LIST + "add/"),
            "confirm": "yes",
        },
    ).get_data(as_text=True)
    assert "An email address can only be opted out of email." in page
    assert db.session.scalar(sa.select(sa.func.count()).select_from(ConsentEvent)) == 0
    client.post(
        LIST + "add/",
        data={
            "address": "Ana@Example.org",
            "channel": "all",
            "csrf_token": csrf_token(client, LIST + "add/"),
            "confirm": "yes",
        },
    )
    assert state_of(staff["organization"], "email", "ana@example.org").status == Status.OPTED_OUT


def test_add_opt_out_rejects_a_bad_address(client, auth, staff):
    """Something that is neither phone nor email gets a message that says why."""
    login(auth, "org")
    page = client.post(
        LIST + "add/",
        data={
            "address": "12",
            "channel": "all",
            "confirm": "yes",
            "csrf_token": csrf_token(client, LIST + "add/"),
        },
    ).get_data(as_text=True)
    assert "This is not a phone number or email address" in page
    assert db.session.scalar(sa.select(sa.func.count()).select_from(ConsentState)) == 0


def test_add_opt_out_without_token_is_400_and_changes_nothing(client, auth, staff):
    """A POST without the CSRF token is refused."""
    login(auth, "org")
    response = client.post(LIST + "add/", data={"address": "2025550177", "channel": "all"})
    assert response.status_code == 400
    assert db.session.scalar(sa.select(sa.func.count()).select_from(ConsentState)) == 0


# --- Opt Back In ----------------------------------------------------------------------------


def test_opt_back_in_emails_the_confirmation_and_changes_nothing(client, auth, listed, mailbox):
    """The person gets the /confirm link by email; the page says to whom; the state stays."""
    org = listed["organization"]
    state = state_of(org, "email", "ana.rivera@example.org")
    url = f"{LIST}row/{state.id}/"
    login(auth, "site")
    response = client.post(
        url,
        data={
            "attested": "y",
            "note": "She phoned",
            "csrf_token": csrf_token(client, url),
        },
        follow_redirects=True,
    )
    assert "We sent a confirmation link by email to ana.rivera@example.org" in response.get_data(
        as_text=True
    )
    [message] = [m for m in mailbox.to("ana.rivera@example.org") if mailbox.links(m, "/confirm/")]
    assert "Someone asked to opt ana.rivera@example.org back in to email" in mailbox.text(message)
    assert state_of(org, "email", "ana.rivera@example.org").status == Status.OPTED_OUT
    event = db.session.scalars(sa.select(ConsentEvent).where(ConsentEvent.kind == "request")).one()
    assert event.source == Source.ADMIN and event.note == "She phoned"
    assert event.actor_user_id == listed["site"].id and event.evidence["attested"] is True


def test_opt_back_in_needs_the_attestation(client, auth, listed, mailbox):
    """Without the tick nothing is sent and nothing is recorded."""
    state = state_of(listed["organization"], "email", "zed@example.net")
    url = f"{LIST}row/{state.id}/"
    login(auth, "org")
    page = client.post(url, data={"csrf_token": csrf_token(client, url)}).get_data(as_text=True)
    assert "Tick this box" in page
    assert not any(mailbox.links(m, "/confirm/") for m in mailbox.messages)
    assert db.session.scalar(sa.select(sa.func.count()).where(ConsentEvent.kind == "request")) == 0


def test_opt_back_in_of_a_carrier_block_is_refused_with_the_texting_number(
    client, auth, listed, mailbox
):
    """A number that replied STOP cannot be opted back in by an admin; the page says to text START."""
    state = state_of(listed["organization"], "text", "+13125550199")
    url = f"{LIST}row/{state.id}/"
    login(auth, "org")
    page = client.get(url).get_data(as_text=True)
    assert "texting START to +1 202-555-0100" in page
    response = client.post(url, data={"attested": "y", "csrf_token": csrf_token(client, LIST)})
    assert "texting START to +1 202-555-0100" in response.get_data(as_text=True)
    assert db.session.scalar(sa.select(sa.func.count()).where(ConsentEvent.kind == "request")) == 0


def test_opt_back_in_of_a_phone_sends_a_text(client, auth, listed):
    """For a number, the confirmation goes by text to that number."""
    from consent.models import OutboxMessage

    state = state_of(listed["organization"], "text", "+12025550123")
    url = f"{LIST}row/{state.id}/"
    login(auth, "org")
    page = client.post(
        url,
        data={"attested": "y", "csrf_token": csrf_token(client, url)},
        follow_redirects=True,
    ).get_data(as_text=True)
    assert "by text message to +1 202-555-0123" in page
    [message] = db.session.scalars(
        sa.select(OutboxMessage).where(OutboxMessage.purpose == "confirm_request")
    ).all()
    assert (
        message.channel == "text"
        and message.to_address == "+12025550123"
        and "/confirm/" in message.body
    )
    assert state_of(listed["organization"], "text", "+12025550123").status == Status.OPTED_OUT


def test_opt_back_in_without_token_is_400(client, auth, listed, mailbox):
    """A POST without the CSRF token sends nothing."""
    state = state_of(listed["organization"], "email", "zed@example.net")
    login(auth, "org")
    assert client.post(f"{LIST}row/{state.id}/", data={"attested": "y"}).status_code == 400
    assert not any(mailbox.links(m, "/confirm/") for m in mailbox.messages)


def test_row_of_another_organization_is_404(client, auth, listed):
    """A row id that is not this organization's is not found."""
    other = factories.make_org(name="Other", texting_number="+12025550999")
    foreign = opt_out(other, "text", "+12025550155")
    login(auth, "org")
    assert client.get(f"{LIST}row/{foreign.id}/").status_code == 404


# --- bounces: Flask-Admin's list action -----------------------------------------------------


def test_clear_bounce_list_action_needs_the_token(client, auth, listed):
    """The "Clear bounce" list action is 400 without the token; with it the bounce is cleared
    through the ledger by the admin."""
    org = listed["organization"]
    state = state_of(org, "text", "+14155550111")
    login(auth, "org")
    data = {"action": "clear_bounce", "rowid": [str(state.id)]}
    assert client.post(LIST + "action/", data=data).status_code == 400
    assert state_of(org, "text", "+14155550111").status == Status.BOUNCED
    page = client.get(LIST, query_string={"flt1_status_equals": "bounced"}).get_data(as_text=True)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    assert client.post(LIST + "action/", data={**data, "csrf_token": token}).status_code == 302
    assert state_of(org, "text", "+14155550111").status == Status.UNKNOWN
    event = db.session.scalars(sa.select(ConsentEvent).order_by(ConsentEvent.id.desc())).first()
    assert event.source == Source.ADMIN and event.actor_user_id == listed["org"].id


TWO_OF_A_KIND = [
    {"flt1_channel_equals": "text", "flt2_channel_equals": "voice"},
    {"flt1_channel_equals": "voice", "flt2_channel_equals": "voice"},
    {"flt1_date_added_on_or_after": "2000-01-01", "flt2_date_added_on_or_after": "2999-01-01"},
    {"flt1_date_added_on_or_after": "2999-01-01", "flt2_date_added_on_or_after": "2000-01-01"},
]


@pytest.mark.parametrize("big", [False, True], ids=["at-once", "job"])
@pytest.mark.parametrize("query", TWO_OF_A_KIND)
def test_two_filters_of_one_kind_both_reach_the_export(app, client, auth, listed, query, big):
    """The list applies every filter, two of one kind too; so does its export, written at
    once or by a job (a filter of each kind once made the export keep only the last)."""
    from consent import jobs

    login(auth, "org")
    page = client.get(LIST, query_string={**query, "page_size": 100}).get_data(as_text=True)
    app.config["EXPORT_JOB_ROWS"] = -1 if big else 1_000_000
    response = client.get(LIST + "export.csv", query_string=query)
    if big:
        assert response.status_code == 302 and "/export-jobs/" in response.location
        while jobs.run_one():
            pass
        response = client.get(response.location + "/download")
    assert response.status_code == 200
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True).lstrip("\ufeff"))))
    assert len(rows) - 1 == rows_shown(page)


# --- exports --------------------------------------------------------------------------------


def test_csv_export_is_the_list_as_filtered_with_formulas_neutralized(client, auth, listed):
    """The CSV has the filtered rows; cells starting with + = - @ get a leading quote."""
    org = listed["organization"]
    opt_out(org, "email", "=cmd@example.org", note='=HYPERLINK("http://x")')
    login(auth, "org")
    body = client.get(LIST + "export.csv", query_string={"flt1_channel_equals": "text"}).get_data(
        as_text=True
    )
    rows = list(csv.reader(io.StringIO(body.lstrip("\ufeff"))))
    assert rows[0][:3] == ["Address", "Channel", "Status"]
    assert [r[0] for r in rows[1:]] == ["'+12025550123", "'+13125550199"]
    assert rows[1][7] == "asked at the office"
    everything = client.get(LIST + "export.csv").get_data(as_text=True)
    assert "'=cmd@example.org" in everything and "'=HYPERLINK" in everything
    assert not re.search(r"(^|,)[=+\-@]", everything.lstrip("\ufeff"), re.M)


def test_xlsx_export_holds_text_cells_only(client, auth, listed):
    """The XLSX export keeps numbers as text (no formulas), with their + intact."""
    login(auth, "org")
    response = client.get(LIST + "export.xlsx", query_string={"search": "2025550123"})
    sheet = load_workbook(io.BytesIO(response.data)).active
    values = [[c.value for c in row] for row in sheet.iter_rows()]
    assert values[0][0] == "Address"
    assert sorted(v[0] for v in values[1:]) == ["+12025550123", "+12025550123"]
    assert all(c.data_type == "s" for row in sheet.iter_rows() for c in row if c.value)


def test_people_export_lists_each_person_with_opted_out_numbers(client, auth, staff):
    """Seed 002's export: the person's ID, name, number, its type, and the channels opted out."""
    org = staff["organization"]
    contact = db.session.scalars(sa.select(Contact)).first()
    contact.external_id = "P-1001"
    home = Phone(number="+12025550188", kind=PhoneKind.HOME, contact=contact)
    db.session.add(home)
    db.session.commit()
    opt_out(org, "voice", "+12025550188")
    opt_out(org, "text", contact.phones[0].number)
    login(auth, "org")
    rows = list(
        csv.reader(
            io.StringIO(
                client.get(LIST + "export-people.csv").get_data(as_text=True).lstrip("\ufeff")
            )
        )
    )
    assert rows[0][:6] == ["Person", "ID", "Name", "Family", "Number", "Type"]
    body = {tuple(r[:7]) for r in rows[1:]}
    assert ("Contact", "P-1001", contact.name, "Test", "'+12025550188", "Home", "Voice") in body
    assert (
        "Contact",
        "P-1001",
        contact.name,
        "Test",
        "'" + contact.phones[0].number,
        "Cell",
        "Text",
    ) in body
    assert len(rows) == 3
