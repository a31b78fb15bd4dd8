"""The OpenAPI 3.1 document of the API, served at /api/v1/openapi.json: eligibility, links,
opt-outs and the change feed.

Schemathesis runs in tests/test_eligibility_api.py and tests/test_api_schema.py check that the
API answers as written here.
"""

from __future__ import annotations

MAX_ADDRESSES = 100_000
MAX_LINKS = 10_000
MAX_OPTOUTS = 1_000
MAX_FEED = 10_000
SCOPES = ["eligibility:read", "events:read", "optouts:write", "links:write"]
OPTOUT_REASONS = ["stop", "request", "unsubscribe", "complaint", "other"]
CHANNELS = ["text", "voice", "email"]
REASONS = ["ok", "opted_out", "bounced", "no_consent", "invalid"]

_ERROR = {"$ref": "#/components/schemas/Error"}


def _error_response(description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": _ERROR}}}


PURPOSE_HELP = (
    "Optional: the key of one of the organization's message purposes (emergency, attendance, "
    "general by default). With it the answer is for that purpose (per-purpose choices; an "
    "emergency purpose may reach an address opted out of the channel, never a carrier-blocked "
    "or bounced one, and needs no prior text consent). Without it the answer is the "
    "channel-wide one. An unknown key is a 400."
)


def document(purpose_keys: list[str] | None = None) -> dict:
    """The OpenAPI document, as a dict; `purpose_keys`: the organization's purposes (the
    values `purpose` takes)."""
    purpose = {"type": "string", "description": PURPOSE_HELP}
    if purpose_keys:
        purpose["enum"] = list(purpose_keys)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Consent Desk API",
            "version": "1.0.0",
            "description": (
                "Ask before you send: may this channel reach these addresses? Opted-out, "
                "bounced and (for text, when the organization requires consent) unknown "
                "addresses are not allowed. Results come back in the order given; an input "
                "that is not an address is answered `invalid`. Keys are scoped: "
                + ", ".join(SCOPES)
                + "; a key without a route's scope gets 403."
            ),
        },
        "servers": [{"url": "/"}],
        "security": [{"bearerAuth": []}],
        "paths": {
            "/api/v1/eligibility": {
                "post": {
                    "operationId": "checkMany",
                    "summary": "Eligibility of up to 100,000 addresses on one channel",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/ManyRequest"}
                            }
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "One result per address, in the order given.",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/ManyResponse"}
                                }
                            },
                        },
                        "400": _error_response("The body is not a request of this shape."),
                        "401": _error_response("No API key, or not a valid one."),
                        "403": _error_response("The key lacks eligibility:read."),
                        "413": _error_response("More than 100,000 addresses, or too large."),
                        "429": _error_response("Too many requests with this key."),
                    },
                },
                "get": {
                    "operationId": "checkOne",
                    "summary": "Eligibility of one address",
                    "parameters": [
                        {
                            "name": "channel",
                            "in": "query",
                            "required": True,
                            "schema": {"type": "string", "enum": CHANNELS},
                        },
                        {
                            "name": "address",
                            "in": "query",
                            "required": True,
                            "description": "A phone number (any common form) or email address.",
                            "schema": {"type": "string"},
                        },
                        {
                            "name": "purpose",
                            "in": "query",
                            "required": False,
                            "description": PURPOSE_HELP,
                            "schema": purpose,
                        },
                    ],
                    "responses": {
                        "200": {
                            "description": "The result for the address.",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/Result"}
                                }
                            },
                        },
                        "400": _error_response("A parameter is missing or not valid."),
                        "401": _error_response("No API key, or not a valid one."),
                        "403": _error_response("The key lacks eligibility:read."),
                        "429": _error_response("Too many requests with this key."),
                    },
                },
            },
            **_integration_paths(),
        },
        "components": {
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "One of the keys in the API_KEYS setting.",
                }
            },
            "schemas": {
                "ManyRequest": {
                    "type": "object",
                    "required": ["channel", "addresses"],
                    "properties": {
                        "channel": {"type": "string", "enum": CHANNELS},
                        "addresses": {
                            "type": "array",
                            "maxItems": MAX_ADDRESSES,
                            "items": {"type": "string"},
                        },
                        "purpose": purpose,
                    },
                },
                "ManyResponse": {
                    "type": "object",
                    "required": ["results"],
                    "additionalProperties": False,
                    "properties": {
                        "results": {
                            "type": "array",
                            "items": {"$ref": "#/components/schemas/Result"},
                        }
                    },
                },
                "Result": {
                    "type": "object",
                    "required": ["address", "normalized", "allowed", "reason"],
                    "additionalProperties": False,
                    "properties": {
                        "address": {"type": "string", "description": "The address as given."},
                        "normalized": {
                            "type": ["string", "null"],
                            "description": "E.164 phone or lower-case email; null when invalid.",
                        },
                        "allowed": {"type": "boolean"},
                        "reason": {"type": "string", "enum": REASONS},
                    },
                },
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {"type": "string"},
                        "field": {"type": "string", "description": "The field that is wrong."},
                        "scope": {"type": "string", "description": "The scope a key lacks."},
                    },
                },
                **_integration_schemas(),
            },
        },
    }


def _json_body(ref: str) -> dict:
    return {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}},
    }


def _ok(description: str, ref: str) -> dict:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}},
    }


def _errors(scope: str, *, body: bool = True) -> dict:
    answers = {
        "400": _error_response("A field is missing or not valid (`field` names it)."),
        "401": _error_response("No API key, or not a valid one."),
        "403": _error_response(f"The key lacks {scope}."),
        "429": _error_response("Too many requests with this key."),
    }
    if body:
        answers["413"] = _error_response("Too many addresses, or too large a body.")
    return answers


def _integration_paths() -> dict:
    return {
        "/api/v1/links": {
            "post": {
                "operationId": "makeLinks",
                "summary": "One-click unsubscribe and preferences links for outside emails",
                "description": (
                    "Needs links:write. One `address`, or `addresses` (at most 10,000) for "
                    "`results` in the order given. Email answers carry the RFC 8058 headers."
                ),
                "requestBody": _json_body("LinksRequest"),
                "responses": {
                    "200": _ok("The links (one object, or `results`).", "LinksResponse"),
                    **_errors("links:write"),
                },
            }
        },
        "/api/v1/optouts": {
            "post": {
                "operationId": "reportOptOuts",
                "summary": "Opt-outs another system saw",
                "description": (
                    "Needs optouts:write. Recorded through the ledger with source `api` and "
                    "the key as actor; `reason: stop` on text carries the carrier block. "
                    "At most 1,000 `addresses`."
                ),
                "requestBody": _json_body("OptOutsRequest"),
                "responses": {
                    "200": _ok("One result per address.", "OptOutsResponse"),
                    **_errors("optouts:write"),
                },
            }
        },
        "/api/v1/purposes": {
            "get": {
                "operationId": "listPurposes",
                "summary": "The organization's message purposes and their rules",
                "description": "Needs eligibility:read. Each key can be given as `purpose`.",
                "responses": {
                    "200": {
                        "description": "The purposes, in the organization's order.",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["purposes"],
                                    "properties": {
                                        "purposes": {"type": "array", "items": {"type": "object"}}
                                    },
                                }
                            }
                        },
                    },
                    **_errors("eligibility:read", body=False),
                },
            }
        },
        "/api/v1/events": {
            "get": {
                "operationId": "changeFeed",
                "summary": "Consent changes, oldest first, after a cursor",
                "description": (
                    "Needs events:read. Follow `next`: a reader misses nothing and sees "
                    "nothing twice, even while changes commit."
                ),
                "parameters": [
                    {
                        "name": "after",
                        "in": "query",
                        "required": False,
                        "description": "The `next` of the previous page; none to start.",
                        "schema": {"type": "string", "pattern": "^[0-9]{1,19}-[0-9]{1,18}$"},
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_FEED},
                    },
                ],
                "responses": {
                    "200": _ok("A page of changes and the cursor to go on.", "FeedPage"),
                    **_errors("events:read", body=False),
                },
            }
        },
    }


_ADDRESS_OR_MANY = {
    "channel": {"type": "string", "enum": CHANNELS},
    "address": {"type": "string", "maxLength": 1000},
}


def _integration_schemas() -> dict:
    status = {
        "type": ["string", "null"],
        "enum": ["opted_in", "opted_out", "bounced", "unknown", None],
    }
    link = {
        "type": "object",
        "required": ["address", "normalized"],
        "properties": {
            "address": {"type": "string"},
            "normalized": {"type": ["string", "null"]},
            "unsubscribe_url": {"type": "string"},
            "preferences_url": {"type": "string"},
            "headers": {
                "type": "object",
                "required": ["List-Unsubscribe", "List-Unsubscribe-Post"],
                "properties": {
                    "List-Unsubscribe": {"type": "string"},
                    "List-Unsubscribe-Post": {"type": "string"},
                },
            },
            "error": {"type": "string"},
        },
    }
    return {
        "LinksRequest": {
            "type": "object",
            "required": ["channel"],
            "anyOf": [{"required": ["address"]}, {"required": ["addresses"]}],
            "properties": {
                **_ADDRESS_OR_MANY,
                "addresses": {"type": "array", "maxItems": MAX_LINKS, "items": {"type": "string"}},
            },
        },
        "Link": link,
        "LinksResponse": {
            "oneOf": [
                {"$ref": "#/components/schemas/Link"},
                {
                    "type": "object",
                    "required": ["results"],
                    "properties": {
                        "results": {"type": "array", "items": {"$ref": "#/components/schemas/Link"}}
                    },
                },
            ]
        },
        "OptOutsRequest": {
            "type": "object",
            "required": ["channel"],
            "anyOf": [{"required": ["address"]}, {"required": ["addresses"]}],
            "properties": {
                **_ADDRESS_OR_MANY,
                "addresses": {
                    "type": "array",
                    "maxItems": MAX_OPTOUTS,
                    "items": {"type": "string"},
                },
                "source": {
                    "type": "string",
                    "maxLength": 100,
                    "description": "The reporting system's name, kept as evidence.",
                },
                "reason": {"type": "string", "enum": OPTOUT_REASONS},
                "note": {"type": "string", "maxLength": 2000},
                "occurred_at": {"type": "string", "format": "date-time"},
            },
        },
        "OptOutResult": {
            "type": "object",
            "required": ["address", "normalized", "result"],
            "properties": {
                "address": {"type": "string"},
                "normalized": {"type": ["string", "null"]},
                "result": {
                    "type": "string",
                    "enum": ["opted_out", "already", "invalid", "refused"],
                },
                "error": {"type": "string"},
            },
        },
        "OptOutsResponse": {
            "oneOf": [
                {"$ref": "#/components/schemas/OptOutResult"},
                {
                    "type": "object",
                    "required": ["results"],
                    "properties": {
                        "results": {
                            "type": "array",
                            "items": {"$ref": "#/components/schemas/OptOutResult"},
                        }
                    },
                },
            ]
        },
        "Event": {
            "type": "object",
            "required": ["id", "at", "channel", "address", "from", "to", "source", "carrier_block"],
            "properties": {
                "id": {"type": "integer"},
                "at": {"type": "string", "description": "When, UTC (ISO 8601)."},
                "channel": {"type": "string", "enum": CHANNELS},
                "address": {"type": "string"},
                "from": status,
                "to": status,
                "source": {"type": "string"},
                "carrier_block": {"type": "boolean"},
                "version": {"type": "integer"},
                "purpose": {
                    "type": ["string", "null"],
                    "description": "The message purpose the change is about (its key); null "
                    "for a change of the whole channel, which every purpose reads.",
                },
            },
        },
        "FeedPage": {
            "type": "object",
            "required": ["events", "next"],
            "properties": {
                "events": {"type": "array", "items": {"$ref": "#/components/schemas/Event"}},
                "next": {"type": "string"},
            },
        },
    }
