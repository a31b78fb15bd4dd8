"""Mail providers' feedback: Amazon SES through SNS (signature verified with our own key and
certificate, the certificate fetch patched) and SendGrid's signed Event Webhook (a generated
ECDSA key): a hard bounce marks the email bounced, a complaint opts it out (source complaint)."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from consent import ledger, mail_feedback
from consent.extensions import db
from consent.ledger import Actor
from consent.models import Channel, Source, Status
from tests.factories import make_org

TOPIC = "arn:aws:sns:us-east-1:123456789012:ses-feedback"
CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem"


@pytest.fixture(scope="module")
def sns_key():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30)).sign(key, hashes.SHA256())
    )  # fmt: skip
    return key, cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture
def ses(app, sns_key, monkeypatch):
    """SES configured; the certificate fetch answers our certificate for the SNS URL only."""
    _key, pem = sns_key
    fetched, confirmed = [], []

    def fetch(url):
        fetched.append(url)
        return pem

    monkeypatch.setattr(mail_feedback, "fetch_certificate", fetch)
    monkeypatch.setattr(mail_feedback, "confirm_subscription", confirmed.append)
    app.config["SES_SNS_TOPIC_ARNS"] = [TOPIC]
    org = make_org()
    db.session.commit()
    yield org, fetched, confirmed
    app.config["SES_SNS_TOPIC_ARNS"] = []


def sns_message(key, kind="Notification", message=None, version="1", **over) -> dict:
    body = {
        "Type": kind,
        "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
        "TopicArn": TOPIC,
        "Message": json.dumps(message) if message is not None else "You have chosen to subscribe",
        "Timestamp": "2026-11-24T10:00:00.000Z",
        "SignatureVersion": version,
        "SigningCertURL": CERT_URL,
    }
    if kind == "SubscriptionConfirmation":
        body["Token"] = "2336412f37"
        body["SubscribeURL"] = (
            "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&Token=2336412f37"
        )
    body.update(over)
    algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
    signature = key.sign(mail_feedback.sns_string_to_sign(body), padding.PKCS1v15(), algorithm)
    body["Signature"] = base64.b64encode(signature).decode()
    return body


def bounce(address, kind="Permanent"):
    return {"notificationType": "Bounce", "mail": {"messageId": "0100abc"},
            "bounce": {"bounceType": kind, "bounceSubType": "General",
                       "bouncedRecipients": [{"emailAddress": address}]}}  # fmt: skip


def complaint(address):
    return {"notificationType": "Complaint", "mail": {"messageId": "0100def"},
            "complaint": {"complaintFeedbackType": "abuse",
                          "complainedRecipients": [{"emailAddress": address}]}}  # fmt: skip


def post_sns(client, body):
    return client.post("/feedback/ses", data=json.dumps(body), content_type="text/plain")


@pytest.mark.parametrize("version", ["1", "2"])
def test_a_verified_ses_hard_bounce_marks_the_email_bounced(client, ses, sns_key, version):
    org, fetched, _confirmed = ses
    response = post_sns(
        client, sns_message(sns_key[0], message=bounce("Ana@Example.org"), version=version)
    )
    assert response.status_code == 200
    assert fetched == [CERT_URL]
    state = ledger.current(org, Channel.EMAIL, "ana@example.org")
    assert state.status == Status.BOUNCED and state.source == Source.BOUNCE


def test_a_soft_bounce_changes_nothing(client, ses, sns_key):
    org, *_ = ses
    post_sns(client, sns_message(sns_key[0], message=bounce("ana@example.org", "Transient")))
    assert ledger.current(org, Channel.EMAIL, "ana@example.org") is None


def test_an_ses_complaint_opts_the_email_out(client, ses, sns_key, mailbox):
    org, *_ = ses
    post_sns(client, sns_message(sns_key[0], message=complaint("ana@example.org")))
    state = ledger.current(org, Channel.EMAIL, "ana@example.org")
    assert state.status == Status.OPTED_OUT and state.source == Source.COMPLAINT
    assert mailbox.to("ana@example.org") == []  # no email to someone who called ours spam


def test_the_subscription_is_confirmed(client, ses, sns_key):
    _org, _fetched, confirmed = ses
    response = post_sns(client, sns_message(sns_key[0], kind="SubscriptionConfirmation"))
    assert response.status_code == 200 and confirmed[0].startswith("https://sns.us-east-1.")


@pytest.mark.parametrize(
    "tamper",
    ["body", "other key", "cert url", "http cert", "topic", "subscribe url"],
)
def test_unverified_or_foreign_sns_messages_get_403_and_change_nothing(
    client, ses, sns_key, tamper
):
    org, fetched, confirmed = ses
    key = sns_key[0]
    if tamper == "other key":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    over = {
        "cert url": {"SigningCertURL": "https://sns.us-east-1.amazonaws.com.evil.example/c.pem"},
        "http cert": {"SigningCertURL": CERT_URL.replace("https", "http")},
        "topic": {"TopicArn": "arn:aws:sns:us-east-1:999999999999:someone-elses"},
    }.get(tamper, {})
    kind = "SubscriptionConfirmation" if tamper == "subscribe url" else "Notification"
    body = sns_message(key, kind=kind, message=complaint("ana@example.org"), **over)
    if tamper == "body":
        body["Message"] = json.dumps(complaint("someone@example.org"))
    if tamper == "subscribe url":
        body = sns_message(key, kind=kind, SubscribeURL="https://evil.example/confirm")
    assert post_sns(client, body).status_code == 403
    assert ledger.current(org, Channel.EMAIL, "ana@example.org") is None
    assert ledger.current(org, Channel.EMAIL, "someone@example.org") is None
    assert confirmed == []
    if tamper in ("cert url", "http cert"):
        assert fetched == []  # never fetched from anywhere but SNS


def test_ses_is_404_when_not_configured(app, client):
    assert client.post("/feedback/ses", data="{}").status_code == 404


# --- SendGrid ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sendgrid_key():
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def sendgrid(app, sendgrid_key):
    public = sendgrid_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    app.config["SENDGRID_WEBHOOK_PUBLIC_KEY"] = base64.b64encode(public).decode()
    org = make_org()
    db.session.commit()
    yield org
    app.config["SENDGRID_WEBHOOK_PUBLIC_KEY"] = None


def post_sendgrid(client, key, events, *, timestamp=None, body=None):
    raw = body if body is not None else json.dumps(events).encode()
    stamp = str(int(timestamp if timestamp is not None else time.time()))
    signature = key.sign(stamp.encode() + raw, ec.ECDSA(hashes.SHA256()))
    return client.post("/feedback/sendgrid", data=raw, content_type="application/json", headers={
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": stamp})  # fmt: skip


def test_sendgrid_bounce_spamreport_and_unsubscribe(client, sendgrid, sendgrid_key):
    org = sendgrid
    ledger.opt_in(
        org, Channel.EMAIL, "c@example.org", source=Source.PORTAL, actor=Actor.recipient()
    )
    db.session.commit()
    events = [
        {"email": "a@example.org", "event": "bounce", "type": "bounce", "sg_event_id": "e1"},
        {"email": "b@example.org", "event": "spamreport", "sg_event_id": "e2"},
        {"email": "c@example.org", "event": "unsubscribe", "sg_event_id": "e3"},
        {"email": "d@example.org", "event": "bounce", "type": "blocked", "sg_event_id": "e4"},
        {"email": "e@example.org", "event": "delivered", "sg_event_id": "e5"},
    ]
    response = post_sendgrid(client, sendgrid_key, events)
    assert response.status_code == 200
    assert ledger.current(org, Channel.EMAIL, "a@example.org").status == Status.BOUNCED
    b = ledger.current(org, Channel.EMAIL, "b@example.org")
    assert b.status == Status.OPTED_OUT and b.source == Source.COMPLAINT
    assert ledger.current(org, Channel.EMAIL, "c@example.org").status == Status.OPTED_OUT
    assert ledger.current(org, Channel.EMAIL, "d@example.org") is None  # a block is not a bounce
    assert ledger.current(org, Channel.EMAIL, "e@example.org") is None


@pytest.mark.parametrize("tamper", ["body", "other key", "old", "no signature"])
def test_unsigned_or_tampered_sendgrid_events_get_403(client, sendgrid, sendgrid_key, tamper):
    org = sendgrid
    events = [{"email": "a@example.org", "event": "spamreport"}]
    if tamper == "no signature":
        response = client.post("/feedback/sendgrid", json=events)
    elif tamper == "other key":
        response = post_sendgrid(client, ec.generate_private_key(ec.SECP256R1()), events)
    elif tamper == "old":
        response = post_sendgrid(client, sendgrid_key, events, timestamp=time.time() - 3600)
    else:  # one body signed, another sent
        raw = json.dumps(events).encode()
        stamp = str(int(time.time()))
        sig = base64.b64encode(sendgrid_key.sign(stamp.encode() + raw, ec.ECDSA(hashes.SHA256())))
        response = client.post("/feedback/sendgrid", data=raw.replace(b"a@", b"z@"),
                               content_type="application/json", headers={
                                   "X-Twilio-Email-Event-Webhook-Signature": sig.decode(),
                                   "X-Twilio-Email-Event-Webhook-Timestamp": stamp})  # fmt: skip
    assert response.status_code == 403
    assert ledger.current(org, Channel.EMAIL, "a@example.org") is None
    assert ledger.current(org, Channel.EMAIL, "z@example.org") is None


def test_a_signed_body_that_is_not_events_is_400(client, sendgrid, sendgrid_key):
    assert post_sendgrid(client, sendgrid_key, None, body=b"\xff\xfe").status_code == 400
    assert post_sendgrid(client, sendgrid_key, {"email": "a@b.org"}).status_code == 400
