"""What every API route shares: the caller's key and scopes, its rate limit, its organization,
strict JSON bodies, and JSON errors.

`Authorization: Bearer <key>`: a key made in the admin (scoped, per organization) or one of
API_KEYS (full scope, the deployment's organization). No key or a wrong one: 401; a key
without the route's scope: 403. Each key has its own rate limit (API_RATE_LIMIT, per minute).
A body that is not UTF-8 JSON, or is nested deeper than MAX_DEPTH, is a 400, never a 500.
"""

from __future__ import annotations

import hashlib
import json
from functools import wraps

import msgspec
from flask import Blueprint, Response, current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException

from consent import api_keys
from consent.api_keys import Caller
from consent.extensions import db, limiter
from consent.models import Organization
from consent.tenant import current_organization

MAX_DEPTH = 32
# 19 digits in a row, found as b"0" * 19 once every digit is b"0" (a regular expression tries
# each position: 50 ms on a 1.5 MiB body, this 2 ms).
_DIGITS_AS_ZERO = bytes(b"0"[0] if chr(c).isdigit() and c < 128 else b" "[0] for c in range(256))
_LONG_RUN = b"0" * 19
_DECODE = msgspec.json.Decoder().decode
DEFAULT_RATE_LIMIT = "6000 per minute"


class BadRequest(Exception):
    """A request the API refuses: the status, the sentence and (for a 400) the field."""

    def __init__(self, message: str, status: int = 400, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.field = field


def error(message: str, status: int, field: str | None = None, **extra) -> Response:
    """A JSON error answer: {"error": message, "field": …}."""
    payload = {"error": message, **extra}
    if field is not None:
        payload["field"] = field
    response = jsonify(payload)
    response.status_code = status
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="consent-desk"'
    return response


def presented_key() -> str:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return given.strip() if scheme.lower() == "bearer" else ""


def rate_key() -> str:
    """Flask-Limiter's key: the presented key (hashed), so each key has its own budget."""
    given = presented_key()
    if not given:
        return f"api-anonymous:{request.remote_addr}"
    return "api:" + hashlib.sha256(given.encode("utf-8", "surrogateescape")).hexdigest()[:32]


def rate_limit() -> str:
    return current_app.config.get("API_RATE_LIMIT") or DEFAULT_RATE_LIMIT


def caller() -> Caller | None:
    """The caller of this request (authenticated once per request)."""
    if "api_caller" not in g:
        g.api_caller = api_keys.authenticate(presented_key(), current_app.config.get("API_KEYS"))
    return g.api_caller


def organization() -> Organization | None:
    """The caller's organization: its key's, or the deployment's for an API_KEYS key."""
    who = caller()
    if who is None:
        return None
    if who.organization_id is None:
        return current_organization()
    org = db.session.get(Organization, who.organization_id)
    g.organization = org
    return org


def organization_for_check(key: str | None, channel: str):
    """(the caller's organization, its purpose with this key, the organization's snapshot of
    the channel or None) in one round trip (consent.eligibility.organization_for_check)."""
    from consent.eligibility import organization_for_check as fetch

    who = caller()
    if who is None:
        return None, None, None
    org, purpose, snap = fetch(who.organization_id, key, channel)
    g.organization = org
    return org, purpose, snap


def require(scope: str):
    """The view needs a key with `scope`: 401 without a valid key, 403 without the scope."""

    def decorate(view):
        @wraps(view)
        def wrapped(*args, **kwargs):
            who = caller()
            if who is None:
                return error("A valid API key is required: Authorization: Bearer <key>.", 401)
            if not who.may(scope):
                return error(f"This API key lacks the scope {scope}.", 403, scope=scope)
            try:
                return view(*args, **kwargs)
            except BadRequest as refused:
                return error(refused.message, refused.status, refused.field)

        wrapped.scope = scope
        return wrapped

    return decorate


def json_body() -> dict:
    """The request's JSON object, read strictly: UTF-8, no NaN, at most MAX_DEPTH deep."""
    max_length = current_app.config.get("MAX_CONTENT_LENGTH")
    if max_length and (request.content_length or 0) > max_length:
        raise BadRequest("The request body is too large.", 413)
    raw = request.get_data(cache=True)
    shallow = raw.count(b"[") + raw.count(b"{") <= MAX_DEPTH
    long_digits = _LONG_RUN in raw.translate(_DIGITS_AS_ZERO)
    if (shallow or not _too_deep(raw.decode("utf-8", "replace"))) and not long_digits:
        # msgspec: a 1.5 MiB body in milliseconds, straight into Python objects (orjson holds
        # a parse tree of ~16x the body on the side; bench.memory). What it refuses, and long
        # runs of digits (integers past 64 bits), are read again below, as before.
        try:
            body = _DECODE(raw)
        except msgspec.DecodeError:
            body = None
        if isinstance(body, dict):
            return body
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("The body is not UTF-8 text.", 400, "body") from None
    if _too_deep(text):
        raise BadRequest(f"The JSON is nested deeper than {MAX_DEPTH} levels.", 400, "body")
    try:
        body = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise BadRequest("The body is not valid JSON: send a JSON object.", 400, "body") from None
    if not isinstance(body, dict):
        raise BadRequest("Send a JSON object, not another JSON value.", 400, "body")
    return body


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _too_deep(text: str) -> bool:
    """More than MAX_DEPTH open brackets at once (outside strings), found without parsing."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return False
    depth = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return True
        elif char in "]}":
            depth -= 1
    return False


def string_field(body: dict, name: str, *, required=True, choices=None, limit=320) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise BadRequest(f"{name} is required.", 400, name)
        return None
    if not isinstance(value, str):
        raise BadRequest(f"{name} must be a string.", 400, name)
    if choices is not None and value not in choices:
        raise BadRequest(f"{name} must be one of: {', '.join(choices)}.", 400, name)
    if len(value) > limit:
        raise BadRequest(f"{name} is longer than {limit} characters.", 400, name)
    return value


def addresses_field(body: dict, most: int) -> tuple[list[str], bool]:
    """`address` (one) or `addresses` (a list of at most `most`): (the list, whether many)."""
    if "addresses" in body:
        values = body["addresses"]
        if not isinstance(values, list):
            raise BadRequest("addresses must be a list of strings.", 400, "addresses")
        if len(values) > most:
            raise BadRequest(f"At most {most:,} addresses per request; split the list.", 413)
        for index, value in enumerate(values):
            if not isinstance(value, str):
                raise BadRequest(f"addresses[{index}] must be a string.", 400, "addresses")
        return values, True
    return [string_field(body, "address", limit=1000)], False


def json_errors(bp: Blueprint) -> None:
    """The blueprint's errors answer JSON, with the exception's headers (Allow on a 405)."""

    @bp.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        response = error(exc.description or exc.name, exc.code or 500)
        for name, value in exc.get_headers():
            if name.lower() != "content-type":
                response.headers[name] = value
        return response

    @bp.errorhandler(BadRequest)
    def _refused(exc: BadRequest):
        return error(exc.message, exc.status, exc.field)


def limited(bp: Blueprint) -> None:
    """Each key's requests to the blueprint count against its own API_RATE_LIMIT."""
    limiter.limit(rate_limit, key_func=rate_key)(bp)
