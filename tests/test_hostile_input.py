"""Hostile input: forged and mangled tokens, a token for one address used against another,
garbage spreadsheets, SQL-looking and huge form fields, script in names, and 10,000 sign-in
attempts. Each gets a clear answer, never a 500, and changes nothing it should not."""

from __future__ import annotations

import base64
import html
import io
import json
import re
import time
import zipfile
from collections import Counter

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from itsdangerous import URLSafeTimedSerializer
from markupsafe import escape

from consent import create_app, ledger, notifications, tokens
from consent.extensions import db, limiter
from consent.import_reader import ImportFileError, ImportRow, read_rows
from consent.models import (
    Channel,
    ConsentEvent,
    Family,
    Role,
    Status,
    User,
)
from tests import factories
from tests.accounts_helpers import verify_from_mailbox
from tests.conftest import Auth, csrf_token

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.fixture
def people(app):
    """Two families of one organization, a parent login in the first, and an org admin."""
    org = factories.make_org()
    site = factories.make_site(org)
    mine = factories.make_family(org, site, "Mine", contacts=1, students=1)
    theirs = factories.make_family(org, site, "Theirs", contacts=1, students=1)
    factories.make_user(org, "me@example.org", Role.PARENT, contact=mine.contacts[0])
    factories.make_user(org, "admin@example.org", Role.ORG)
    db.session.commit()
    return org, mine, theirs


def event_count() -> int:
    db.session.expire_all()
    return db.session.scalar(sa.select(sa.func.count()).select_from(ConsentEvent))


# --- tokens ------------------------------------------------------------------------------------


@FUZZ
@given(purpose=st.sampled_from(tokens.PURPOSES), text=st.text(max_size=300))
def test_any_text_as_a_token_is_a_token_error(app, purpose, text):
    """tokens.load of any text raises TokenError ("bad"), never anything else."""
    with pytest.raises(tokens.TokenError) as error:
        tokens.load(purpose, text)
    assert error.value.kind == "bad" and error.value.status_code == 400


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=12,
)
PAYLOAD = st.fixed_dictionaries(
    {},
    optional={"o": JSON, "c": JSON, "a": JSON, "v": JSON, "id": JSON, "x": JSON},
)


@FUZZ
@given(purpose=st.sampled_from(tokens.PURPOSES), payload=st.one_of(JSON, PAYLOAD))
def test_a_correctly_signed_but_malformed_payload_is_a_token_error_or_a_clean_claim(
    app, purpose, payload
):
    """Even with our key (a leaked key, a bug elsewhere), a strange payload gives TokenError or
    a claim whose fields have their types; the link page answers it without a 500."""
    signed = URLSafeTimedSerializer(app.config["SECRET_KEY"], salt=f"consent-desk.{purpose}")
    token = signed.dumps(payload)
    try:
        claim = tokens.load(purpose, token)
    except tokens.TokenError as error:
        assert error.kind == "bad"
    else:
        assert isinstance(claim.organization_id, int) and isinstance(claim.version, int)
        assert isinstance(claim.address, str) and isinstance(claim.extra, dict)
    response = app.test_client().get(f"/{purpose}/{token}")
    assert response.status_code in (200, 400, 404, 409, 410), response.status_code


def test_a_token_for_one_address_cannot_act_on_another(client, people):
    """A stolen preferences token is for its own address only: the page shows and changes
    only that address's people; the same token with the address swapped inside is a bad link;
    an extra ?address= in the URL is ignored."""
    org, mine, theirs = people
    my_email = mine.contacts[0].emails[0].address
    their_email = theirs.contacts[0].emails[0].address
    their_cell = theirs.contacts[0].phones[0].number
    my_cell = mine.contacts[0].phones[0].number
    token = tokens.make("unsubscribe", org.id, "email", my_email, 0)

    body, _sig = token.rsplit(".", 2)[0], token.rsplit(".", 2)[1:]
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    payload["a"] = their_email
    swapped = (
        base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode())
        .rstrip(b"=")
        .decode()
    )
    forged = ".".join([swapped, *token.rsplit(".", 2)[1:]])
    before = event_count()
    response = client.post(f"/unsubscribe/{forged}", data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == 400
    assert event_count() == before
    assert ledger.current(org, Channel.EMAIL, their_email) is None

    response = client.post(
        f"/unsubscribe/{token}?address={their_email}",
        data={"List-Unsubscribe": "One-Click", "address": their_email},
    )
    assert response.status_code == 200
    assert ledger.current(org, Channel.EMAIL, my_email).status == Status.OPTED_OUT
    assert ledger.current(org, Channel.EMAIL, their_email) is None

    preferences = notifications.preferences_token(org, my_email)
    page = html.unescape(client.get(f"/preferences/{preferences}").get_data(as_text=True))
    from consent.addresses import format_phone

    assert format_phone(my_cell) in page and format_phone(their_cell) not in page


def test_a_parent_cannot_reach_another_familys_people_by_guessing_ids(client, people):
    """Every contact and student id of another family is a 404, pages and toggles alike, and
    a toggle naming another family's phone through one's own page is a 404 too."""
    org, mine, theirs = people
    Auth(client).login("me@example.org", factories.PASSWORD)
    before = event_count()
    for contact in theirs.contacts:
        assert client.get(f"/account/contacts/{contact.id}").status_code == 404
    for student in theirs.students:
        assert client.get(f"/account/students/{student.id}").status_code == 404
    token = csrf_token(client, "/account/settings")
    their_phone = theirs.contacts[0].phones[0]
    for path in ("/account/settings", f"/account/students/{mine.students[0].id}"):
        response = client.post(
            path,
            data={
                "csrf_token": token,
                "target": f"phone-{their_phone.id}",
                "channel": "text",
                "allow": "off",
            },
        )
        assert response.status_code == 404
    assert event_count() == before


# --- spreadsheets ------------------------------------------------------------------------------


CELL = st.one_of(
    st.none(),
    st.text(max_size=40).map(lambda s: "".join(ch for ch in s if ch.isprintable())),
    st.integers(min_value=-(10**15), max_value=10**15),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.dates(),
    st.sampled_from(["=1+1", '=HYPERLINK("http://x")', "+12025550123", "@SUM(A1)", "-1"]),
)


def xlsx(rows) -> bytes:
    from openpyxl import Workbook

    workbook = Workbook()
    for row in rows:
        workbook.active.append(row)
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def rows_or_file_error(data: bytes, filename: str) -> list[ImportRow] | None:
    """The rows of a file, or None when it is refused with a clear ImportFileError."""
    try:
        rows = list(read_rows(io.BytesIO(data), filename, max_bytes=2_000_000))
    except ImportFileError as error:
        assert str(error)
        return None
    assert all(isinstance(r, ImportRow) and r.row_number >= 1 for r in rows)
    return rows


@FUZZ
@given(st.lists(st.lists(CELL, min_size=1, max_size=5), min_size=1, max_size=15))
def test_any_cells_in_a_real_xlsx_give_rows_or_a_file_error(table):
    """Numbers, dates, booleans, formulas and text in any cell of a real workbook: rows with a
    problem or an address, never a crash."""
    rows = rows_or_file_error(xlsx(table), "list.xlsx")
    for row in rows or []:
        assert (row.problem is None) == (row.address is not None) or row.problem


@FUZZ
@given(cut=st.integers(min_value=1, max_value=4000), flip=st.integers(min_value=0, max_value=4000))
def test_a_truncated_or_corrupted_xlsx_is_a_file_error_not_a_crash(cut, flip):
    """A workbook cut short or with a byte changed: rows or ImportFileError."""
    data = bytearray(xlsx([["Phone"], ["(202) 555-0123"], ["a@b.org"]]))
    if flip < len(data):
        data[flip] ^= 0xFF
    rows_or_file_error(bytes(data[: max(len(data) - cut, 1)]), "list.xlsx")


def test_a_zip_that_is_not_a_workbook_and_a_zip_bomb_are_file_errors():
    """A .xlsx that is a zip of something else is a file error; so is a small workbook whose
    text expands far beyond the size limit when unzipped."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("hello.txt", "not a workbook")
    assert rows_or_file_error(out.getvalue(), "list.xlsx") is None
    bomb = xlsx([[f"{n}" + "a" * 30_000] for n in range(200)])  # ~6 MB of text unzipped
    assert len(bomb) < 200_000
    with pytest.raises(ImportFileError):
        list(read_rows(io.BytesIO(bomb), "list.xlsx", max_bytes=200_000))


# --- script, SQL and huge values in forms ------------------------------------------------------

XSS = [
    "<script>alert('xss')</script>",
    '"><img src=x onerror=alert(1)>',
    "</title><svg onload=alert(2)>",
    "javascript:alert(3)",
    "{{ 7*7 }}{% raw %}",
]
SQLISH = ["Robert'); DROP TABLE families;--", "' OR '1'='1", '" OR 1=1 --', "1; SELECT pg_sleep(5)"]


def enroll_form(org, names: list[str], email: str) -> dict:
    """An enrollment whose every name field holds one of `names`."""
    first, last, relationship, family, kid_first, kid_last = (names * 6)[:6]
    return {
        "family_name": family,
        "guardians-0-first_name": first,
        "guardians-0-last_name": last,
        "guardians-0-relationship": relationship[:50],
        "guardians-0-email": email,
        "guardians-0-phones-0-number": factories.next_number(),
        "guardians-0-phones-0-kind": "cell",
        "guardians-0-phones-0-texts": "yes",
        "students-0-first_name": kid_first,
        "students-0-last_name": kid_last,
        "students-0-site": str(org.sites[0].id),
        "students-0-grade": "3",
        "password": "long-enough-pass",
        "confirm": "long-enough-pass",
    }


def enroll(client, org, names, email):
    data = {**enroll_form(org, names, email), "csrf_token": csrf_token(client, "/enroll")}
    return client.post("/enroll", data=data)


def portal_pages(client) -> dict[str, str]:
    """Every account page of the signed-in parent, by path."""
    pages = {}
    for path in ("/account/settings", "/account/contacts", "/account/students"):
        pages[path] = client.get(path).get_data(as_text=True)
    for path in set(
        re.findall(r'href="(/account/(?:contacts|students)/\d+)"', "".join(pages.values()))
    ):
        pages[path] = client.get(path).get_data(as_text=True)
    return pages


def test_script_in_every_name_is_shown_as_text_on_every_portal_page(client, people, mailbox):
    """Names that are HTML or script come back escaped, on every account page and in the
    enrollment's own answer."""
    org = people[0]
    # first, last, relationship, family, student's first and last names
    names = [XSS[2], XSS[0], XSS[3], XSS[1], XSS[4], XSS[1]]
    response = enroll(client, org, names, "xss@example.org")
    assert response.status_code in (200, 302), response.status_code
    # the link emailed to the new account confirms it and signs in
    assert verify_from_mailbox(client, mailbox, "xss@example.org").status_code == 302
    pages = portal_pages(client)
    assert len(pages) >= 4
    markup = [p for p in XSS if "<" in p]
    seen = set()
    for path, page in pages.items():
        for payload in markup:
            assert payload not in page, (path, payload)  # never as live markup
            if str(escape(payload)) in page:
                seen.add(payload)
        assert "<svg" not in page and "<img" not in page and "<script>alert" not in page, path
        # template syntax in a name is shown as typed, never evaluated
        assert "{{ 7*7 }}" not in html.unescape(page) or ">49" not in page
    assert seen == set(markup)
    assert any("{{ 7*7 }}{% raw %}" in html.unescape(page) for page in pages.values())
    assert 'href="javascript:' not in "".join(pages.values())


def test_sql_looking_input_is_stored_and_shown_literally(client, people, mailbox):
    """SQL in names, sign-in and the opt-back-in form is text like any other: stored as typed,
    shown as typed, and every table is still there."""
    org = people[0]
    response = enroll(client, org, SQLISH, "sql@example.org")
    assert response.status_code in (200, 302)
    typed = enroll_form(org, SQLISH, "sql@example.org")
    family = db.session.scalars(sa.select(Family).where(Family.name == typed["family_name"])).one()
    assert family.contacts[0].first_name == typed["guardians-0-first_name"] == SQLISH[0]
    assert family.students[0].last_name == typed["students-0-last_name"]
    for email in SQLISH:
        response = client.post(
            "/login",
            data={"email": email, "password": email, "csrf_token": csrf_token(client)},
        )
        assert response.status_code == 200
    for address in SQLISH:
        response = client.post(
            "/opt-back-in",
            data={
                "channel": "email",
                "address": address,
                "csrf_token": csrf_token(client, "/opt-back-in"),
            },
        )
        assert response.status_code in (200, 400)
        assert "Traceback" not in response.get_data(as_text=True)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Family)) == 3
    verify_from_mailbox(client, mailbox, "sql@example.org")
    page = html.unescape(client.get("/account/settings").get_data(as_text=True))
    assert SQLISH[0] in page


MEGABYTE = "x" * 1_000_000


@pytest.mark.parametrize(
    "path, fields",
    [
        ("/login", {"email": MEGABYTE, "password": MEGABYTE}),
        ("/opt-back-in", {"channel": "email", "address": MEGABYTE}),
        ("/enroll", {"family_name": MEGABYTE, "guardians-0-first_name": MEGABYTE}),
    ],
)
def test_a_megabyte_in_a_form_field_gets_a_clear_answer_and_writes_nothing(
    client, people, path, fields
):
    """A 1 MB field is refused at the field (or as too large), not a 500; nothing is saved."""
    before = (event_count(), db.session.scalar(sa.select(sa.func.count()).select_from(Family)))
    response = client.post(path, data={**fields, "csrf_token": csrf_token(client, path)})
    assert response.status_code in (200, 400, 413, 422), response.status_code
    page = html.unescape(response.get_data(as_text=True))
    assert "Traceback" not in page
    assert re.search(r"longer than|too long|at most|larger than we accept", page), page[-2000:]
    after = (event_count(), db.session.scalar(sa.select(sa.func.count()).select_from(Family)))
    assert after == before


def test_an_upload_over_the_size_limit_says_so(app, client, people):
    """A request body over MAX_CONTENT_LENGTH: 413 with a page that says what to do."""
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024
    response = client.post(
        "/enroll",
        data={"file": (io.BytesIO(b"x" * 100_000), "big.csv"), "csrf_token": "x"},
        content_type="multipart/form-data",
    )
    assert response.status_code == 413
    page = html.unescape(response.get_data(as_text=True))
    assert "larger than we accept" in page and "Send a smaller file" in page


# --- sign-in: a flood of attempts ----------------------------------------------------------------

FAILED = "That email and password do not match an account."
FLOOD = 2_000  # attempts from one address


class _StoppedClock:
    """The rate limiter's clock, stopped: every attempt of a test falls in one window, however
    long the machine takes over them."""

    def __init__(self):
        self.now = time.time()

    def time(self) -> float:
        return self.now

    def __getattr__(self, name):
        return getattr(time, name)


@pytest.fixture
def limited(app, people, monkeypatch):
    """The app with rate limits on, on the test's database; limits reset before and after."""
    from limits.storage import memory

    monkeypatch.setattr(memory, "time", _StoppedClock())
    limited = create_app({**app.config, "RATELIMIT_ENABLED": True})
    limiter.reset()
    yield limited
    limiter.reset()
    limiter.enabled = False


def test_a_flood_of_sign_in_attempts_is_rate_limited_without_telling_who_exists(limited):
    """2,000 attempts from one address, alternating a real email and an unknown one: the
    first 10 get the one failure message, all the rest 429, and the 429 pages for the real
    and the unknown email are the same."""
    client = limited.test_client()
    token = csrf_token(client)
    codes = Counter()
    bodies = {}
    for n in range(FLOOD):
        email = "me@example.org" if n % 2 else "nobody@example.org"
        response = client.post(
            "/login", data={"email": email, "password": "guess-" + str(n), "csrf_token": token}
        )
        codes[response.status_code] += 1
        if n < 10:
            assert FAILED in html.unescape(response.get_data(as_text=True))
        else:
            bodies.setdefault(n % 2, response.get_data(as_text=True))
    assert codes == {200: 10, 429: FLOOD - 10}
    assert bodies[0] == bodies[1]


def test_one_account_guessed_from_many_addresses_gets_a_growing_wait_not_a_lock(limited):
    """Guesses at one email from many addresses: after 5 failures each further attempt waits
    (2 s, then 4 s, ...), with the same page for a real email and an unknown one; the owner
    signs in once the wait is over, from anywhere; another email is never affected."""
    from datetime import timedelta

    from consent import accounts
    from consent.models import SignInFailure, utcnow

    def attempt(email, ip, password="wrong-guess"):
        client = limited.test_client()
        client.environ_base["REMOTE_ADDR"] = ip
        return client.post(
            "/login",
            data={"email": email, "password": password, "csrf_token": csrf_token(client)},
        )

    def last_failure(ago: timedelta):
        """Set when each email last failed (no test waits on the clock)."""
        with limited.app_context():
            for row in db.session.scalars(sa.select(SignInFailure)):
                row.last_failed_at = utcnow() - ago
            db.session.commit()

    def just_failed():
        last_failure(timedelta(0))

    def wait_over():
        last_failure(timedelta(hours=1))

    pages = {}
    for email in ("me@example.org", "nobody@example.org"):
        codes = [attempt(email, f"10.1.0.{n}").status_code for n in range(5)]
        assert codes == [200] * 5, (email, codes)
        just_failed()
        refused = attempt(email, "10.2.0.1")
        assert refused.status_code == 429
        page = html.unescape(refused.get_data(as_text=True))
        assert "Too many failed sign-ins with this email. Wait 2 seconds" in page
        pages[email] = re.sub(r'value="[^"]*"', "", page.replace(email, "EMAIL"))
    assert pages["me@example.org"] == pages["nobody@example.org"]
    # The right password waits too (else the wait would tell a guess that it was right).
    just_failed()
    assert attempt("me@example.org", "10.3.0.1", factories.PASSWORD).status_code == 429
    assert attempt("admin@example.org", "10.2.0.1", factories.PASSWORD).status_code == 302

    wait_over()
    assert attempt("me@example.org", "10.4.0.1").status_code == 200  # the 6th failure
    just_failed()
    refused = html.unescape(attempt("me@example.org", "10.4.0.2").get_data(as_text=True))
    assert "Wait 4 seconds" in refused
    wait_over()
    assert attempt("me@example.org", "10.5.0.1", factories.PASSWORD).status_code == 302
    with limited.app_context():  # signed in: the failures are forgotten; never more than 15 min
        assert accounts.wait_seconds("me@example.org") == 0
        db.session.add(SignInFailure(key=accounts._failure_key("x@example.org"), failures=99))
        db.session.commit()
        assert 0 < accounts.wait_seconds("x@example.org") <= 15 * 60


def test_known_unknown_and_inactive_emails_get_the_same_password_check(
    app, people, client, monkeypatch
):
    """Each failed sign-in makes exactly one password-hash check, whether the email has an
    account, has none, or is inactive: the work (and so the time) tells nothing."""
    import consent.models

    user = db.session.scalars(sa.select(User).where(User.email == "admin@example.org")).one()
    user.active = False
    db.session.commit()
    token = csrf_token(client)
    checks = []
    real_check = consent.models.check_password_hash

    def counting_check(pwhash, password):
        checks.append(pwhash.split("$", 1)[0])
        return real_check(pwhash, password)

    monkeypatch.setattr(consent.models, "check_password_hash", counting_check)
    methods = {}
    for email in ("me@example.org", "nobody@example.org", "admin@example.org"):
        checks.clear()
        response = client.post(
            "/login", data={"email": email, "password": "wrong-guess", "csrf_token": token}
        )
        assert FAILED in html.unescape(response.get_data(as_text=True))
        assert len(checks) == 1, (email, checks)
        methods[email] = checks[0]
    # The same kind of hash for each, so each check costs the same.
    assert len(set(methods.values())) == 1, methods


def test_sql_looking_searches_in_the_admin_find_nothing_and_break_nothing(client, people):
    """SQL in the admin's search boxes and filters is a search for that text: 200, no rows,
    and the data is all still there."""
    Auth(client).login("admin@example.org", factories.PASSWORD)
    before = db.session.scalar(sa.select(sa.func.count()).select_from(Family))
    for text in [*SQLISH, "%", "_", "\\", "%' --", MEGABYTE[:5000]]:
        for path, field in (
            ("/admin/contacts/", "q"),
            ("/admin/students/", "q"),
            ("/admin/optouts/", "search"),
            ("/admin/activity/", "search"),
        ):
            response = client.get(path, query_string={field: text})
            assert response.status_code == 200, (path, text[:40], response.status_code)
    for value in ("1 OR 1=1", "-1", "99999999999999999999", "<x>"):
        response = client.get("/admin/reports/", query_string={"site": value, "page": value})
        assert response.status_code in (200, 400), value
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Family)) == before


BIG = "99999999999999999999"


@pytest.mark.parametrize(
    "path",
    [
        f"/admin/contacts/{BIG}/",
        f"/admin/students/{BIG}/",
        f"/admin/optouts/row/{BIG}/",
        f"/admin/optouts/import/batch/{BIG}",
        "/admin/contacts/2147483648/",
        f"/admin/contacts/?page={BIG}",
        f"/admin/optouts/?page={BIG}",
        "/admin/optouts/?page=-5",
        f"/admin/activity/?page={BIG}",
        f"/admin/outbox/?page={BIG}",
        f"/admin/reports/?page={BIG}&site={BIG}",
        f"/admin/reports/parents/opted_out/?page={BIG}",
        f"/admin/users/details/?id={BIG}",
        f"/account/contacts/{BIG}",
    ],
)
def test_numbers_out_of_range_in_ids_and_pages_are_a_clean_400_or_404(app, client, people, path):
    """An id or page number too big for the database (or negative) is a 404 or a 400 page,
    never a 500."""
    app.config["PROPAGATE_EXCEPTIONS"] = False
    Auth(client).login(
        "me@example.org" if path.startswith("/account") else "admin@example.org",
        factories.PASSWORD,
    )
    response = client.get(path)
    assert response.status_code in (200, 302, 400, 404), response.status_code
    assert "Traceback" not in response.get_data(as_text=True)
