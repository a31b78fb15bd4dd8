"""Voice provider webhooks: the opt-out key pressed during a call, and the menu the district's
own number answers with. Twilio-compatible form posts, answered in TwiML.

Signed like the SMS webhooks (X-Twilio-Signature over PUBLIC_BASE_URL + path when set). In
production a deployment without TWILIO_AUTH_TOKEN refuses every voice webhook (403) instead of
accepting unsigned ones; in development, without a token, they are accepted.
"""

from __future__ import annotations

from flask import Blueprint, Response, request
from flask_babel import force_locale
from twilio.twiml.voice_response import VoiceResponse

from api.sms import check_signature
from consent import ledger, sms
from consent.addresses import AddressError, format_phone, normalize_phone
from consent.extensions import csrf, db
from consent.i18n import gettext as _
from consent.ledger import Actor
from consent.models import Channel, Organization, Source
from consent.notifications import language_for
from consent.tenant import current_organization
from consent.web import request_origin

bp = Blueprint("voice", __name__, url_prefix="/voice")
csrf.exempt(bp)

SAY_LANGUAGE = {"en": "en-US", "es": "es-US"}
MENU_CHANNELS = {"1": (Channel.VOICE,), "2": (Channel.TEXT,), "3": (Channel.VOICE, Channel.TEXT)}
SPANISH_KEY = "9"


bp.before_request(check_signature)  # the same check as /sms/*


def twiml(answer: VoiceResponse) -> Response:
    return Response(str(answer), mimetype="application/xml")


def _say(answer, text: str, language: str) -> None:
    answer.say(text, language=SAY_LANGUAGE.get(language, "en-US"))


def _organization(*numbers: str) -> Organization | None:
    for number in numbers:
        org = sms.organization_for(number)
        if org is not None:
            return org
    return current_organization()


def _number(org: Organization, raw: str) -> str | None:
    try:
        return normalize_phone(sms.clean(raw, 64), org.default_region or "US")
    except AddressError:
        return None


def _evidence(form, digits: str, **more) -> dict:
    return {
        "call_sid": sms.clean(form.get("CallSid"), 64),
        "digits": digits,
        "direction": sms.clean(form.get("Direction"), 32),
        "from": sms.clean(form.get("From"), 64),
        "to": sms.clean(form.get("To"), 64),
        **more,
    }


def _opt_out(org, number, channels, evidence) -> None:
    actor = Actor.recipient(f"the person at {format_phone(number)} (keypress during a call)")
    for channel in channels:
        ledger.opt_out(
            org,
            channel,
            number,
            source=Source.VOICE_KEYPRESS,
            actor=actor,
            evidence=evidence,
            origin=request_origin(),
        )


@bp.post("/keypress")
def keypress():
    """A `<Gather>` action during a call: the organization's key opts the callee out of calls.

    The callee is `To` on an outbound call (`Direction` starting with "outbound") and `From` on
    an inbound one. Another key changes nothing (an empty answer ends the gather).
    """
    form = request.form
    outbound = (form.get("Direction") or "").lower().startswith("outbound")
    ours, theirs = (form.get("From", ""), form.get("To", ""))
    if not outbound:
        ours, theirs = theirs, ours
    org = _organization(ours)
    if org is None:
        return twiml(VoiceResponse()), 404
    digits = sms.clean(form.get("Digits"), 32).strip()
    number = _number(org, theirs)
    language = language_for(Channel.VOICE, number, org.id) if number else "en"
    answer = VoiceResponse()
    if digits != (org.voice_optout_key or "9"):
        return twiml(answer)
    with force_locale(language):
        if number is None:
            _say(answer, _("We could not tell which number this call is for."), language)
            return twiml(answer)
        _opt_out(org, number, (Channel.VOICE,), _evidence(form, digits))
        db.session.commit()
        _say(
            answer,
            _(
                "You will no longer receive calls from %(org)s at this number. Goodbye.",
                org=org.name,
            ),
            language,
        )
    answer.hangup()
    return twiml(answer)


def _menu(org: Organization, language: str) -> VoiceResponse:
    answer = VoiceResponse()
    gather = answer.gather(
        num_digits=1, action=f"/voice/menu?lang={language}", method="POST", timeout=8
    )
    with force_locale(language):
        _say(
            gather,
            _(
                "This is %(org)s. To stop calls from us, press 1. To stop text messages, "
                "press 2. To stop both, press 3.",
                org=org.name,
            ),
            language,
        )
    if language == "en":
        _say(gather, "Para español, oprima 9.", "es")
    with force_locale(language):
        _say(answer, _("We did not receive a choice. Goodbye."), language)
    return answer


@bp.post("/inbound")
def inbound():
    """The district's number answers a call with the opt-out menu (Spanish by pressing 9)."""
    org = _organization(request.form.get("To", ""))
    if org is None:
        return twiml(VoiceResponse()), 404
    language = "en"
    number = _number(org, request.form.get("From", ""))
    if number and language_for(Channel.VOICE, number, org.id) == "es":
        language = "es"
    return twiml(_menu(org, language))


@bp.post("/menu")
def menu():
    """The caller's choice in the menu: 1 calls, 2 texts, 3 both; 9 the menu in Spanish."""
    form = request.form
    language = "es" if request.args.get("lang") == "es" else "en"
    org = _organization(form.get("To", ""))
    if org is None:
        return twiml(VoiceResponse()), 404
    digits = sms.clean(form.get("Digits"), 32).strip()
    if digits == SPANISH_KEY and language == "en":
        return twiml(_menu(org, "es"))
    channels = MENU_CHANNELS.get(digits)
    if channels is None:
        return twiml(_menu(org, language))
    number = _number(org, form.get("From", ""))
    answer = VoiceResponse()
    with force_locale(language):
        if number is None:
            _say(answer, _("We could not tell which number you are calling from."), language)
            return twiml(answer)
        _opt_out(org, number, channels, _evidence(form, digits, menu=True, language=language))
        db.session.commit()
        words = {
            "1": _("You will no longer receive calls from %(org)s at this number.", org=org.name),
            "2": _(
                "You will no longer receive text messages from %(org)s at this number.",
                org=org.name,
            ),
            "3": _(
                "You will no longer receive calls or text messages from %(org)s at this number.",
                org=org.name,
            ),
        }[digits]
        _say(answer, words + " " + _("Goodbye."), language)
    answer.hangup()
    return twiml(answer)
