"""Mail providers' bounce and complaint notifications: `POST /feedback/ses` (Amazon SES through
SNS) and `POST /feedback/sendgrid` (SendGrid's signed Event Webhook). Each is verified first
(consent/mail_feedback.py); an unverified or foreign one is a 403 and changes nothing. Not
configured (no SES_SNS_TOPIC_ARNS / SENDGRID_WEBHOOK_PUBLIC_KEY): 404."""

from __future__ import annotations

import json

from flask import Blueprint, abort, current_app, jsonify, request

from api.auth import error, json_errors
from consent import mail_feedback
from consent.extensions import csrf, db
from consent.mail_feedback import FeedbackError
from consent.tenant import current_organization

bp = Blueprint("feedback", __name__, url_prefix="/feedback")
csrf.exempt(bp)
json_errors(bp)

MAX_BODY = 1024 * 1024


def _raw() -> bytes:
    if (request.content_length or 0) > MAX_BODY:
        abort(413)
    return request.get_data(cache=True)


def _json(raw: bytes):
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None


@bp.post("/ses")
def ses():
    topics = current_app.config.get("SES_SNS_TOPIC_ARNS") or ()
    if not topics:
        abort(404)
    message = _json(_raw())
    org = current_organization()
    if message is None or org is None:
        return error("The body is not an SNS message.", 400, "body")
    try:
        done = mail_feedback.handle_sns(org, message, topics)
    except FeedbackError as refused:
        current_app.logger.warning("SES notification refused: %s", refused)
        db.session.rollback()
        return error(f"Not accepted: {refused}.", 403)
    db.session.commit()
    return jsonify(done)


@bp.post("/sendgrid")
def sendgrid():
    key = current_app.config.get("SENDGRID_WEBHOOK_PUBLIC_KEY")
    if not key:
        abort(404)
    raw = _raw()
    try:
        mail_feedback.verify_sendgrid(
            key,
            request.headers.get("X-Twilio-Email-Event-Webhook-Signature", ""),
            request.headers.get("X-Twilio-Email-Event-Webhook-Timestamp", ""),
            raw,
        )
    except FeedbackError as refused:
        current_app.logger.warning("SendGrid events refused: %s", refused)
        return error(f"Not accepted: {refused}.", 403)
    events = _json(raw)
    org = current_organization()
    if events is None or org is None:
        return error("The body is not a list of SendGrid events.", 400, "body")
    try:
        results = mail_feedback.handle_sendgrid(org, events)
    except FeedbackError as refused:
        return error(str(refused), 400, "body")
    db.session.commit()
    return jsonify(results=results)
