"""Load test: the parent portal, the SMS webhook and the eligibility API together.

Against a server on 127.0.0.1 loaded with the demo data (see README "Load test"):

    locust -f bench/locustfile.py --headless -H http://127.0.0.1:8000 \
        -u 30 -r 5 --run-time 10m --only-summary

Any answer other than the expected one counts as a failure; the run should end with none.
Not part of `python -m bench` (locust patches the standard library when imported).
"""

from __future__ import annotations

import itertools
import random
import re
import uuid

from locust import HttpUser, between, task

CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
TOGGLE = re.compile(r'name="target" value="(phone-\d+)"')
TEXTING_NUMBER = "+12025550100"
API_KEY = "demo-api-key"
# Numbers that text us STOP / START / HELP: a pool, so the same numbers change again and again.
SENDERS = [f"+1202555{n:04d}" for n in range(200, 260)]
_sids = itertools.count()


class Parent(HttpUser):
    """A parent signed in to the portal: reads the account pages and flips the calls toggle."""

    weight = 3
    wait_time = between(0.5, 2)

    def on_start(self):
        page = self.client.get("/login", name="/login").text
        token = CSRF.search(page).group(1)
        with self.client.post(
            "/login",
            data={
                "email": "parent@example.org",
                "password": "parent-demo-pass",
                "csrf_token": token,
            },
            allow_redirects=False,
            catch_response=True,
            name="/login [POST]",
        ) as response:
            if response.status_code != 302:
                response.failure(f"sign-in answered {response.status_code}")
        settings = self.client.get("/account/settings", name="/account/settings").text
        self.token = CSRF.search(settings).group(1)
        self.targets = TOGGLE.findall(settings)

    @task(4)
    def settings(self):
        self.client.get("/account/settings", name="/account/settings")

    @task(2)
    def contacts_and_students(self):
        self.client.get("/account/contacts", name="/account/contacts")
        self.client.get("/account/students", name="/account/students")

    @task(2)
    def toggle_calls(self):
        if not self.targets:
            return
        with self.client.post(
            "/account/settings",
            data={
                "csrf_token": self.token,
                "target": random.choice(self.targets),
                "channel": "voice",
                "allow": random.choice(["on", "off"]),
            },
            allow_redirects=False,
            catch_response=True,
            name="/account/settings [toggle]",
        ) as response:
            if response.status_code != 302:
                response.failure(f"toggle answered {response.status_code}")

    @task(1)
    def public_pages(self):
        self.client.get("/enroll", name="/enroll")
        self.client.get("/opt-back-in", name="/opt-back-in")


class SmsProvider(HttpUser):
    """The SMS provider delivering replies: mostly HELP, some STOP and START."""

    weight = 2
    wait_time = between(0.2, 1)

    @task
    def inbound(self):
        body = random.choices(["HELP", "STOP", "START", "Thanks!"], weights=[4, 3, 3, 1])[0]
        with self.client.post(
            "/sms/inbound",
            data={
                "From": random.choice(SENDERS),
                "To": TEXTING_NUMBER,
                "Body": body,
                "MessageSid": f"SMload{uuid.uuid4().hex[:24]}{next(_sids)}",
            },
            catch_response=True,
            name="/sms/inbound",
        ) as response:
            if response.status_code != 200 or "<Response" not in response.text:
                response.failure(f"webhook answered {response.status_code}")


class MessagingSystem(HttpUser):
    """The district's messaging system asking before it sends."""

    weight = 2
    wait_time = between(0.2, 1)
    headers = {"Authorization": f"Bearer {API_KEY}"}

    @task(5)
    def one(self):
        self.client.get(
            "/api/v1/eligibility",
            params={"channel": "text", "address": random.choice(SENDERS)},
            headers=self.headers,
            name="/api/v1/eligibility [GET]",
        )

    @task(1)
    def batch_of_500(self):
        addresses = [f"+1202555{random.randint(0, 9999):04d}" for _ in range(500)]
        with self.client.post(
            "/api/v1/eligibility",
            json={"channel": "text", "addresses": addresses},
            headers=self.headers,
            catch_response=True,
            name="/api/v1/eligibility [POST 500]",
        ) as response:
            if response.status_code != 200 or len(response.json()["results"]) != 500:
                response.failure(f"bulk answered {response.status_code}")
