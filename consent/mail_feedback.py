"""Bounce and complaint notifications from mail providers, verified before anything is read.

Amazon SES, through SNS (https://docs.aws.amazon.com/sns/latest/dg/sns-verify-signature-of-message.html):
the message's fields are joined in the documented order, and the signature checked (RSA PKCS#1
v1.5, SHA1 for SignatureVersion 1, SHA256 for 2) with the certificate at SigningCertURL, which
must be https on sns.<region>.amazonaws.com. SNS proves a message came from SNS, not from our
topic, so the TopicArn must also be one of SES_SNS_TOPIC_ARNS. A SubscriptionConfirmation of
such a topic is confirmed by fetching its SubscribeURL (also on sns.<region>.amazonaws.com).

SendGrid's Event Webhook (signed events): ECDSA P-256 with SHA-256 over the timestamp header
followed by the raw body, with the public key of SENDGRID_WEBHOOK_PUBLIC_KEY (base64 DER).
"""

from __future__ import annotations

import base64
import json
import re
import time
from functools import lru_cache
from urllib.parse import urlsplit

import requests
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding

from consent import reported
from consent.models import Organization

SNS_HOST = re.compile(r"^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$")
SENDGRID_TOLERANCE = 600  # seconds a signed SendGrid batch may be old
NOTIFICATION_KEYS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
SUBSCRIPTION_KEYS = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")  # fmt: skip


class FeedbackError(ValueError):
    """A notification that is not verified or not ours; nothing is recorded."""


def sns_url_ok(url: str) -> bool:
    parts = urlsplit(url or "")
    return (
        parts.scheme == "https"
        and bool(SNS_HOST.match(parts.hostname or ""))
        and not (parts.username or parts.password or parts.port not in (None, 443))
    )


@lru_cache(maxsize=16)
def fetch_certificate(url: str) -> bytes:
    """The PEM at an SNS signing-certificate URL (checked by the caller), cached."""
    answer = requests.get(url, timeout=10, allow_redirects=False)
    answer.raise_for_status()
    return answer.content


def confirm_subscription(url: str) -> None:
    requests.get(url, timeout=10, allow_redirects=False).raise_for_status()


def sns_string_to_sign(message: dict) -> bytes:
    keys = NOTIFICATION_KEYS if message.get("Type") == "Notification" else SUBSCRIPTION_KEYS
    parts = []
    for key in keys:
        if key in message and message[key] is not None:
            parts.append(f"{key}\n{message[key]}\n")
    return "".join(parts).encode("utf-8")


def verify_sns(message: dict) -> None:
    """Raise FeedbackError unless the SNS message is signed by SNS."""
    if not isinstance(message, dict):
        raise FeedbackError("not an SNS message")
    for key in ("Type", "Signature", "SigningCertURL", "TopicArn", "MessageId", "Timestamp"):
        if not isinstance(message.get(key), str):
            raise FeedbackError(f"missing {key}")
    url = message["SigningCertURL"]
    if not sns_url_ok(url):
        raise FeedbackError("the signing certificate is not on sns.<region>.amazonaws.com")
    version = str(message.get("SignatureVersion", "1"))
    algorithm = {"1": hashes.SHA1(), "2": hashes.SHA256()}.get(version)  # noqa: S303 - SNS v1
    if algorithm is None:
        raise FeedbackError("unknown SignatureVersion")
    try:
        certificate = x509.load_pem_x509_certificate(fetch_certificate(url))
        signature = base64.b64decode(message["Signature"], validate=True)
        certificate.public_key().verify(
            signature, sns_string_to_sign(message), padding.PKCS1v15(), algorithm
        )
    except (InvalidSignature, ValueError, TypeError, requests.RequestException) as exc:
        raise FeedbackError(f"the signature does not verify ({type(exc).__name__})") from None


def handle_sns(org: Organization, message: dict, topics) -> dict:
    """A verified SNS message of one of `topics`: confirm a subscription, or record the SES
    notification it carries. Returns what was done."""
    verify_sns(message)
    if message["TopicArn"] not in set(topics or ()):
        raise FeedbackError("not one of SES_SNS_TOPIC_ARNS")
    kind = message["Type"]
    if kind == "SubscriptionConfirmation":
        if not sns_url_ok(message.get("SubscribeURL", "")):
            raise FeedbackError("SubscribeURL is not on sns.<region>.amazonaws.com")
        confirm_subscription(message["SubscribeURL"])
        return {"confirmed": message["TopicArn"]}
    if kind != "Notification":
        return {"ignored": kind}
    try:
        notification = json.loads(message.get("Message") or "")
    except ValueError:
        raise FeedbackError("the notification is not JSON") from None
    if not isinstance(notification, dict):
        raise FeedbackError("the notification is not a JSON object")
    return {"results": _ses(org, notification, message["MessageId"])}


def _ses(org: Organization, notification: dict, sns_id: str) -> list[dict]:
    kind = notification.get("notificationType") or notification.get("eventType")
    mail = notification.get("mail") if isinstance(notification.get("mail"), dict) else {}
    evidence = {"provider": "Amazon SES", "sns_message_id": sns_id,
                "ses_message_id": str(mail.get("messageId", ""))[:100]}  # fmt: skip
    results = []
    if kind == "Bounce":
        bounce = notification.get("bounce") or {}
        if bounce.get("bounceType") != "Permanent":
            return [{"ignored": "transient bounce"}]
        for recipient in _recipients(bounce.get("bouncedRecipients")):
            detail = {**evidence, "bounce_type": "Permanent",
                      "bounce_subtype": str(bounce.get("bounceSubType", ""))[:40]}  # fmt: skip
            results.append({"address": recipient,
                            "result": reported.email_bounced(org, recipient, detail)})  # fmt: skip
    elif kind == "Complaint":
        complaint = notification.get("complaint") or {}
        for recipient in _recipients(complaint.get("complainedRecipients")):
            detail = {**evidence, "feedback_type":
                      str(complaint.get("complaintFeedbackType", ""))[:40]}  # fmt: skip
            results.append({"address": recipient,
                            "result": reported.email_complaint(org, recipient, detail)})  # fmt: skip
    return results


def _recipients(listed) -> list[str]:
    if not isinstance(listed, list):
        return []
    return [
        r["emailAddress"]
        for r in listed
        if isinstance(r, dict) and isinstance(r.get("emailAddress"), str)
    ][:100]


# --- SendGrid ---------------------------------------------------------------------------------


def verify_sendgrid(public_key_b64: str, signature_b64: str, timestamp: str, body: bytes) -> None:
    """Raise FeedbackError unless SendGrid signed `timestamp + body` with this key."""
    if not public_key_b64:
        raise FeedbackError("SENDGRID_WEBHOOK_PUBLIC_KEY is not set")
    if not (signature_b64 and timestamp and timestamp.isdigit()):
        raise FeedbackError("missing signature headers")
    if abs(time.time() - int(timestamp)) > SENDGRID_TOLERANCE:
        raise FeedbackError("the signed timestamp is too old")
    try:
        key = serialization.load_der_public_key(base64.b64decode(public_key_b64))
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise FeedbackError("SENDGRID_WEBHOOK_PUBLIC_KEY is not an ECDSA key")
        key.verify(
            base64.b64decode(signature_b64, validate=True),
            timestamp.encode() + body,
            ec.ECDSA(hashes.SHA256()),
        )
    except (InvalidSignature, ValueError, TypeError):
        raise FeedbackError("the signature does not verify") from None


def handle_sendgrid(org: Organization, events) -> list[dict]:
    """Verified SendGrid events: a bounce (not a block) marks bounced, a spam report opts out
    (source complaint), an unsubscribe opts out (source api); the rest are ignored."""
    if not isinstance(events, list):
        raise FeedbackError("SendGrid sends a JSON list of events")
    results = []
    for item in events[:1000]:
        if not isinstance(item, dict) or not isinstance(item.get("email"), str):
            continue
        kind = item.get("event")
        evidence = {"provider": "SendGrid", "sg_event_id": str(item.get("sg_event_id", ""))[:100],
                    "event": str(kind)[:30]}  # fmt: skip
        if kind == "bounce" and item.get("type", "bounce") == "bounce":
            evidence["reason"] = str(item.get("reason", ""))[:300]
            result = reported.email_bounced(org, item["email"], evidence)
        elif kind == "spamreport":
            result = reported.email_complaint(org, item["email"], evidence)
        elif kind in ("unsubscribe", "group_unsubscribe"):
            result = reported.email_unsubscribed(org, item["email"], evidence)
        else:
            continue
        results.append({"address": item["email"], "result": result})
    return results
