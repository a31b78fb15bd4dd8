"""The eligibility API: may a messaging system send on this channel to these addresses?

`Authorization: Bearer <key>` with a key that has the scope `eligibility:read` (api/auth.py:
keys made in the admin, or API_KEYS). Answers in
the order given; an address that is not one is answered `invalid`, never an error for the whole
request. The OpenAPI document of these routes is api/openapi.py.
"""

from __future__ import annotations

from itertools import chain, repeat
from json.encoder import encode_basestring_ascii

from flask import Blueprint, Response, jsonify, request

from api.auth import (
    caller,
    error,
    json_body,
    json_errors,
    limited,
    organization,
    organization_for_check,
    require,
    string_field,
)
from api.openapi import MAX_ADDRESSES, document
from consent.addresses import CHANNELS
from consent.database import read_only, reads_without_transaction, retry_on_disconnect
from consent.eligibility import (
    REASONS,
    Eligibility,
    Packed,
    check_one,
    check_packed,
    check_rows,
    uses_snapshot,
)
from consent.extensions import csrf
from consent.purposes import of
from consent.tenant import current_organization

bp = Blueprint("api", __name__, url_prefix="/api/v1")
csrf.exempt(bp)


json_errors(bp)
limited(bp)


@bp.before_request
def _require_key():
    """Every API route but the OpenAPI document needs a valid key: 401 without one (the
    scope of each route is checked by its `require`)."""
    if request.endpoint == "api.openapi" or request.method == "OPTIONS":
        return None
    if caller() is None:
        return error("A valid API key is required: Authorization: Bearer <key>.", 401)
    return None


@bp.get("/openapi.json")
def openapi():
    """The OpenAPI 3.1 document of this API."""
    with reads_without_transaction():
        org = current_organization()
        keys = [p.key for p in of(org)] if org is not None else None
    return jsonify(document(keys))


@bp.post("/eligibility")
@read_only
@retry_on_disconnect
@require("eligibility:read")
def eligibility_many():
    """Eligibility of up to 100,000 addresses on one channel, in the order given."""
    body = json_body()
    channel = string_field(body, "channel", choices=CHANNELS)
    addresses = body.get("addresses")
    if not isinstance(addresses, list):
        return error("addresses must be a list of strings.", 400, "addresses")
    if len(addresses) > MAX_ADDRESSES:
        return error(f"At most {MAX_ADDRESSES:,} addresses per request; split the list.", 413)
    try:
        "".join(addresses)  # every one a string (in C; the loop below finds which is not)
    except TypeError:
        for index, address in enumerate(addresses):
            if not isinstance(address, str):
                return error(f"addresses[{index}] must be a string.", 400, "addresses")
    with reads_without_transaction():
        org, purpose, snap, problem = _organization_and_purpose(body.get("purpose"), channel)
        if problem is not None:
            return problem
        if uses_snapshot(channel):
            packed = check_packed(org, channel, addresses, purpose, snap)
            del body, addresses  # the answer below is written from `packed` alone
            return Response(packed_json(packed), mimetype="application/json")
        rows = check_rows(org, channel, addresses, purpose)
    return Response(results_json(rows), mimetype="application/json")


@bp.get("/eligibility")
@retry_on_disconnect
@require("eligibility:read")
def eligibility_one():
    """Eligibility of one address: ?channel=text&address=…"""
    channel = request.args.get("channel")
    address = request.args.get("address")
    if channel not in CHANNELS:
        return error("channel must be one of: text, voice, email.", 400, "channel")
    if address is None:
        return error("address is required.", 400, "address")
    with reads_without_transaction():
        org, purpose, snap, problem = _organization_and_purpose(
            request.args.get("purpose"), channel
        )
        if problem is not None:
            return problem
        if uses_snapshot(channel):
            (row,) = check_packed(org, channel, [address], purpose, snap).rows()
            answer = Eligibility(*row)
        else:
            answer = check_one(org, channel, address, purpose)
    return jsonify(answer.as_dict())


def _organization_and_purpose(key, channel):
    """(org, purpose, snapshot, None) in one round trip (purpose None when not given; the
    snapshot None when the check must bring it up to date itself), or (None, None, None, the
    answer: 503 without an organization, 400 for a purpose that is not one of the
    organization's keys)."""
    if key is not None and not isinstance(key, str):
        message = "purpose must be the key of one of the organization's purposes."
        return None, None, None, error(message, 400)
    org, purpose, snap = organization_for_check(key, channel)
    if org is None:
        return None, None, None, error("No organization is set up yet.", 503)
    if key is not None and purpose is None:
        message = (
            "purpose must be the key of one of the organization's purposes "
            "(GET /api/v1/purposes lists them)."
        )
        return None, None, None, error(message, 400)
    return org, purpose, snap, None


@bp.get("/purposes")
@require("eligibility:read")
def purposes_list():
    """The organization's message purposes: key, names, and the rules of each."""
    with reads_without_transaction():
        org = organization()
        if org is None:
            return error("No organization is set up yet.", 503)
        return jsonify(
            purposes=[
                {
                    "key": p.key,
                    "name_en": p.name_en,
                    "name_es": p.name_es,
                    "parents_may_turn_off": {
                        "text": p.parents_may_turn_off_text,
                        "voice": p.parents_may_turn_off_voice,
                        "email": p.parents_may_turn_off_email,
                    },
                    "reaches_opted_out": p.reaches_opted_out,
                    "is_general": p.is_general,
                }
                for p in of(org)
            ]
        )


_ROW = '{"address":%s,"normalized":%s,"allowed":%s,"reason":"%s"}'
# An E.164 number given as such (address and normalized the same "+digits" string) needs no
# escaping: one template per reason.
_SAME = {
    reason: '{"address":"%s","normalized":"%s","allowed":'
    + ("true" if reason == "ok" else "false")
    + ',"reason":"'
    + reason
    + '"}'
    for reason in REASONS
}


# A row of packed_json: _OPEN + address + _MIDDLE + address + its reason's tail, in one join.
_OPEN = ',{"address":"'
_MIDDLE = '","normalized":"'
_TAIL = {
    reason: '","allowed":' + ("true" if reason == "ok" else "false") + ',"reason":"' + reason + '"}'
    for reason in REASONS
}


def results_json(rows) -> str:
    """{"results": [...]} for many rows, written directly (faster than json.dumps of one dict
    per row; bench/eligibility.py); the same JSON that json.dumps would give."""
    enc = encode_basestring_ascii
    parts = []
    append = parts.append
    for address, norm, ok, reason in rows:
        if norm is address and address[:1] == "+":  # E.164 as given: digits only
            append(_SAME[reason] % (address, address))
        else:
            append(
                _ROW
                % (
                    enc(address),
                    "null" if norm is None else enc(norm),
                    "true" if ok else "false",
                    reason,
                )
            )
    return '{"results":[' + ",".join(parts) + "]}"


_BLOCK = 4096


def packed_json(packed: Packed) -> list[bytes]:
    """results_json of packed answers, as chunks of bytes (a block of _BLOCK rows each; the
    server sends them one after the other, no string of the whole answer is built here).
    A position not in `packed.normalized` holds an E.164 number as given: digits only."""
    addresses, reasons, odd = packed.addresses, packed.reasons, packed.normalized
    tails = [_TAIL[reason] for reason in REASONS]
    mixed = {index // _BLOCK for index in odd}
    chunks = [b'{"results":[']
    enc = encode_basestring_ascii
    for start in range(0, len(addresses), _BLOCK):
        end = start + _BLOCK
        if start // _BLOCK not in mixed:
            block = addresses[start:end]
            rows = "".join(
                chain.from_iterable(
                    zip(
                        repeat(_OPEN),
                        block,
                        repeat(_MIDDLE),
                        block,
                        map(tails.__getitem__, reasons[start:end]),
                    )
                )
            )
            chunks.append((rows if start else rows[1:]).encode())
            continue
        else:
            parts = []
            for index in range(start, min(end, len(addresses))):
                address, reason = addresses[index], REASONS[reasons[index]]
                if index not in odd:
                    parts.append(_SAME[reason] % (address, address))
                    continue
                norm = odd[index]
                parts.append(
                    _ROW
                    % (
                        enc(str(address)),
                        "null" if norm is None else enc(norm),
                        "true" if reason == "ok" else "false",
                        reason,
                    )
                )
        chunks.append((("," if start else "") + ",".join(parts)).encode())
    chunks.append(b"]}")
    return chunks
