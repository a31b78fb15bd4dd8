"""Many clients at once against gunicorn with three workers (on PostgreSQL, and on one SQLite
file as `make run` would use it): parents toggling
the same addresses in the portal, STOP/START texts (some delivered twice by the provider) for
the same numbers, and a poller asking the eligibility API. Afterwards every state is the fold
of its events, versions run 1..n, no text was applied twice, and no answer said `ok` for an
address whose last change committed before the question was an opt-out."""

from __future__ import annotations

import itertools
import random
import re
import threading
import time
from collections import Counter

import pytest
import requests
import sqlalchemy as sa

from consent.extensions import db
from consent.models import Channel, ConsentEvent, ConsentState, InboundMessage, Role, Status
from tests import factories
from tests.gunicorn_server import gunicorn

SECONDS = 12
CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


@pytest.fixture
def family(app):
    """One family with two parent logins and a student, on PostgreSQL, committed."""
    org = factories.make_org()
    site = factories.make_site(org)
    family = factories.make_family(org, site, "Busy", contacts=2, students=1)
    for n, contact in enumerate(family.contacts):
        factories.make_user(org, f"parent{n}@example.org", Role.PARENT, contact=contact)
    db.session.commit()
    student = family.students[0]
    return {
        "org_id": org.id,
        "student_id": student.id,
        "student_phone": student.phones[0],
        "own_phone": family.contacts[0].phones[0],
    }


def signed_in(base: str, email: str) -> tuple[requests.Session, str]:
    session = requests.Session()
    token = CSRF.search(session.get(base + "/login").text).group(1)
    response = session.post(
        base + "/login",
        data={"email": email, "password": factories.PASSWORD, "csrf_token": token},
        allow_redirects=False,
    )
    assert response.status_code == 302, response.text[:500]
    token = CSRF.search(session.get(base + "/account/settings").text).group(1)
    return session, token


class Run:
    """What the clients did and saw."""

    def __init__(self):
        self.stop = threading.Event()
        self.statuses: Counter = Counter()
        self.answers: list[tuple[str, int, int, bool]] = []  # address, v_before, v_after, ok
        self.sids: list[str] = []
        self.errors: list[str] = []
        self.lock = threading.Lock()

    def record(self, what: str, response: requests.Response, ok=(200, 302)):
        with self.lock:
            self.statuses[(what, response.status_code)] += 1
            if response.status_code not in ok:
                self.errors.append(f"{what}: {response.status_code} {response.text[:300]}")


def portal_client(run, base, email, paths, seed):
    rng = random.Random(seed)
    session, token = signed_in(base, email)
    while not run.stop.is_set():
        path, target, channel = rng.choice(paths)
        allow = rng.choice(["on", "off"])
        response = session.post(
            base + path,
            data={"csrf_token": token, "target": target, "channel": channel, "allow": allow},
            allow_redirects=False,
        )
        run.record("portal", response)


def sms_client(run, base, numbers, seed, sid_counter):
    rng = random.Random(seed)
    while not run.stop.is_set():
        if run.sids and rng.random() < 0.3:
            sid = rng.choice(run.sids)  # the provider delivers a text twice
            number, body = sid.split(":")[1:3]
        else:
            number, body = rng.choice(numbers), rng.choice(["STOP", "START", "stop", "Unstop"])
            sid = f"SM:{number}:{body}:{next(sid_counter)}"
            with run.lock:
                run.sids.append(sid)
        response = requests.post(
            base + "/sms/inbound",
            data={"From": number, "To": "+12025550100", "Body": body, "MessageSid": sid},
        )
        run.record("sms", response, ok=(200,))


def import_runner(run, database, numbers, tmp_path):
    """`flask optouts import` of a list with both numbers, again and again, in its own process."""
    import os
    import subprocess
    import sys

    from tests.gunicorn_server import ROOT

    env = {**os.environ, "PYTHONPATH": str(ROOT), "DATABASE_URL": database}
    env.update(SECRET_KEY="import-secret", EMAIL_TRANSPORT="record")
    n = 0
    while not run.stop.is_set():
        n += 1
        path = tmp_path / f"optouts-{n}.csv"
        path.write_text("Phone\n" + "\n".join(numbers) + "\n")
        done = subprocess.run(
            [sys.executable, "-m", "flask", "--app", "run", "optouts", "import", str(path)]
            + ["--channel", "text", "--note", f"list {n}"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        with run.lock:
            run.statuses[("import", done.returncode)] += 1
            if done.returncode != 0:
                run.errors.append(
                    f"import: {done.returncode} {done.stdout[-300:]} {done.stderr[-500:]}"
                )


def eligibility_poller(run, base, numbers, engine, org_id):
    """Ask about each number in turn, reading the committed version just before and after."""

    def committed_version(number) -> int:
        # a fresh transaction for each read: what is committed now
        with engine.connect() as conn:
            return (
                conn.execute(
                    sa.select(ConsentState.version)
                    .where(ConsentState.organization_id == org_id)
                    .where(ConsentState.channel == Channel.TEXT, ConsentState.address == number)
                ).scalar()
                or 0
            )

    while not run.stop.is_set():
        for number in numbers:
            before = committed_version(number)
            response = requests.get(
                base + "/api/v1/eligibility",
                params={"channel": "text", "address": number},
                headers={"Authorization": "Bearer test-api-key"},
            )
            after = committed_version(number)
            run.record("eligibility", response, ok=(200,))
            if response.status_code == 200:
                with run.lock:
                    run.answers.append((number, before, after, response.json()["allowed"]))


def test_many_clients_at_once_never_lose_or_double_a_decision(app, family, database, tmp_path):
    """Portal toggles, STOP/START webhooks, imports and eligibility questions at once, ~12 s."""
    student, own = family["student_phone"], family["own_phone"]
    numbers = [student.number, own.number]
    student_path = f"/account/students/{family['student_id']}"
    paths = [
        (student_path, f"phone-{student.id}", "text"),
        (student_path, f"phone-{student.id}", "voice"),
        ("/account/settings", f"phone-{own.id}", "text"),
        ("/account/settings", f"phone-{own.id}", "voice"),
    ]
    org_id = family["org_id"]
    db.session.close()
    engine = sa.create_engine(database)
    run = Run()
    sid_counter = itertools.count()
    with gunicorn(database, workers=3) as base:
        # Ana toggles her own cell and the student's; Luis (the other parent) the student's.
        portal = [("parent0@example.org", paths)] * 3 + [("parent1@example.org", paths[:2])] * 2
        threads = [
            threading.Thread(target=portal_client, args=(run, base, email, mine, seed))
            for seed, (email, mine) in enumerate(portal)
        ]
        threads += [
            threading.Thread(target=sms_client, args=(run, base, numbers, 100 + n, sid_counter))
            for n in range(3)
        ]
        threads.append(
            threading.Thread(target=import_runner, args=(run, database, numbers, tmp_path))
        )
        threads.append(
            threading.Thread(target=eligibility_poller, args=(run, base, numbers, engine, org_id))
        )
        for thread in threads:
            thread.start()
        time.sleep(SECONDS)
        run.stop.set()
        for thread in threads:
            thread.join(30)
    engine.dispose()

    assert not run.errors, run.errors[:5]
    assert run.statuses[("portal", 302)] >= 10, run.statuses
    assert sum(n for (what, _), n in run.statuses.items() if what == "sms") >= 10
    assert len(run.answers) >= 10
    assert run.statuses[("import", 0)] >= 1

    states = db.session.scalars(
        sa.select(ConsentState).where(ConsentState.organization_id == org_id)
    ).all()
    assert {s.address for s in states} == set(numbers)
    timelines = {}
    for state in states:
        events = db.session.scalars(
            sa.select(ConsentEvent)
            .where(
                ConsentEvent.organization_id == org_id,
                ConsentEvent.channel == state.channel,
                ConsentEvent.address == state.address,
                ConsentEvent.kind == "change",
            )
            .order_by(ConsentEvent.id)
        ).all()
        where = (state.channel, state.address)
        # versions 1..n, in commit order, without gaps or duplicates
        assert [e.state_version for e in events] == list(range(1, len(events) + 1)), where
        assert state.version == len(events), where
        # each change starts from where the one before it ended: no lost update
        for previous, event in itertools.pairwise(events):
            assert event.from_status == previous.to_status, (where, event.id)
        assert (events[-1].to_status, events[-1].carrier_block) == (
            state.status,
            state.carrier_block,
        ), where
        assert state.last_event_id == events[-1].id, where
        timelines[where] = {e.state_version: e.to_status for e in events} | {0: None}

    # A text delivered twice by the provider was answered and applied once.
    sids = list(db.session.scalars(sa.select(InboundMessage.message_sid)))
    assert len(sids) == len(set(sids)) == len(set(run.sids))
    applied = Counter(
        e.evidence.get("message_sid")
        for e in db.session.scalars(
            sa.select(ConsentEvent).where(ConsentEvent.source.in_(["sms_keyword"]))
        )
    )
    assert applied and max(applied.values()) <= 1

    # No answer said ok while every state it could have seen was not opted in.
    text = {address: t for (channel, address), t in timelines.items() if channel == "text"}
    wrong = [
        (address, before, after)
        for address, before, after, allowed in run.answers
        if allowed
        and not any(text[address].get(v) == Status.OPTED_IN for v in range(before, after + 1))
    ]
    assert not wrong, wrong[:5]
    assert any(allowed for *_, allowed in run.answers)
    assert not all(allowed for *_, allowed in run.answers)
