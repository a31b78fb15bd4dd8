"""SMS provider webhooks: texts people send us (answered in TwiML) and delivery callbacks.

Both are Twilio-compatible form posts. When TWILIO_AUTH_TOKEN is set, each must carry a valid
X-Twilio-Signature, computed over PUBLIC_BASE_URL + path when that is set (behind a proxy the
URL the provider signed is the public one); without one the answer is 403 and nothing changes.
"""

from __future__ import annotations

from flask import Blueprint, Response, abort, current_app, request
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

from consent import sms
from consent.extensions import csrf, db
from consent.web import request_origin

bp = Blueprint("sms", __name__, url_prefix="/sms")
csrf.exempt(bp)


@bp.before_request
def check_signature():
    """403 for a webhook call whose Twilio signature is missing or wrong, and in production
    for every call when no TWILIO_AUTH_TOKEN is set (unsigned calls are never trusted there)."""
    token = current_app.config.get("TWILIO_AUTH_TOKEN")
    if not token:
        if current_app.config.get("PRODUCTION"):
            current_app.logger.error("webhook refused: TWILIO_AUTH_TOKEN is not set")
            abort(403)
        return None
    signature = request.headers.get("X-Twilio-Signature", "")
    if not signature or not RequestValidator(token).validate(signed_url(), request.form, signature):
        abort(403)
    return None


def signed_url() -> str:
    """The URL the provider signed: the public one when PUBLIC_BASE_URL is set."""
    base = current_app.config.get("PUBLIC_BASE_URL")
    if not base:
        return request.url
    query = request.query_string.decode("utf-8", "replace")
    return base + request.path + (f"?{query}" if query else "")


def twiml(text: str, status: int = 200) -> Response:
    """A TwiML answer: one message with `text`, or none when it is empty."""
    answer = MessagingResponse()
    if text:
        answer.message(text)
    return Response(str(answer), status=status, mimetype="application/xml")


@bp.post("/inbound")
def inbound():
    """Answer a text sent to an organization's number: STOP, START, HELP, or nothing."""
    form = request.form
    sid = form.get("MessageSid") or form.get("SmsSid") or ""
    if not sid or len(sid) > sms.MAX_SID:
        abort(400)
    org = sms.organization_for(form.get("To", ""))
    if org is None:
        # Not one of our numbers: a misconfigured webhook. 404 shows in the provider's error
        # log (and sends it to any fallback URL) instead of silently dropping a STOP.
        current_app.logger.warning("inbound text to unknown number %r", form.get("To"))
        return twiml("", 404)
    reply = sms.handle_inbound(
        org,
        form.get("From", ""),
        form.get("Body", ""),
        sid,
        request_origin(),
        to_number=form.get("To", ""),
        opt_out_type=form.get("OptOutType", ""),
    )
    db.session.commit()
    return twiml(reply)


@bp.post("/status")
def status():
    """Record a delivery callback: carrier opt-outs (21610) and bounces (30003/30005/30006)."""
    form = request.form
    sid = form.get("MessageSid") or form.get("SmsSid") or ""
    if not sid or len(sid) > sms.MAX_SID:
        abort(400)
    sms.handle_status(
        sid,
        form.get("MessageStatus") or form.get("SmsStatus") or "",
        to_number=form.get("To", ""),
        from_number=form.get("From", ""),
        error_code=form.get("ErrorCode", ""),
        origin=request_origin(),
    )
    db.session.commit()
    return Response(status=204)
