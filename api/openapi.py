"""The OpenAPI 3.1 document of the eligibility API, served at /api/v1/openapi.json.

A schemathesis run in tests/test_api_eligibility.py checks that the API answers as written here.
"""

from __future__ import annotations

MAX_ADDRESSES = 100_000
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
            "title": "Consent Desk eligibility API",
            "version": "1.0.0",
            "description": (
                "Ask before you send: may this channel reach these addresses? Opted-out, "
                "bounced and (for text, when the organization requires consent) unknown "
                "addresses are not allowed. Results come back in the order given; an input "
                "that is not an address is answered `invalid`."
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
                        "413": _error_response("More than 100,000 addresses, or too large."),
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
                    },
                },
            }
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
                    "properties": {"error": {"type": "string"}},
                },
            },
        },
    }
