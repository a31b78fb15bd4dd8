"""Signed links: one salt per purpose, key rotation, an expiry per purpose, spent on change.

A token names the organization, channel, address and the state version it was issued for;
once the state moves on, the token is spent (single use without a token table).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from consent.addresses import CHANNELS

PURPOSES = ("confirm", "preferences", "unsubscribe", "verify_email", "claim", "reset", "verify")


class TokenError(Exception):
    """A link that cannot be used. `kind` is "bad", "expired" or "spent"."""

    def __init__(self, kind: str, message: str):
        self.kind = kind
        super().__init__(message)

    @property
    def status_code(self) -> int:
        return 400 if self.kind == "bad" else 410


@dataclass(frozen=True)
class LinkClaim:
    """What a valid token says."""

    purpose: str
    organization_id: int
    channel: str
    address: str
    version: int
    token_id: str
    extra: dict


def _serializer(purpose: str) -> URLSafeTimedSerializer:
    if purpose not in PURPOSES:
        raise ValueError(f"unknown purpose {purpose!r}")
    config = current_app.config
    # itsdangerous signs with the last key and accepts any of them: fallbacks first.
    keys = [*config.get("SECRET_KEY_FALLBACKS", []), config["SECRET_KEY"]]
    return URLSafeTimedSerializer(keys, salt=f"consent-desk.{purpose}")


def make(
    purpose: str, organization_id: int, channel: str, address: str, version: int, **extra
) -> str:
    """A signed token for one purpose and one (organization, channel, address, version)."""
    payload = {
        "o": organization_id,
        "c": channel,
        "a": address,
        "v": version,
        "id": secrets.token_urlsafe(6),
    }
    if extra:
        payload["x"] = extra
    return _serializer(purpose).dumps(payload)


def load(purpose: str, token: str) -> LinkClaim:
    """Check a token's signature and age; raise TokenError("bad" | "expired")."""
    serializer = _serializer(purpose)
    max_age = current_app.config["TOKEN_MAX_AGE"][purpose]
    try:
        data = serializer.loads(token, max_age=max_age)
    except SignatureExpired:
        raise TokenError("expired", "This link has expired.") from None
    except (BadSignature, UnicodeDecodeError, ValueError, TypeError):
        raise TokenError(
            "bad", "This link is not valid. It may have been cut short or changed."
        ) from None
    if not isinstance(data, dict):
        raise TokenError("bad", "This link is not valid.")
    try:
        claim = LinkClaim(
            purpose=purpose,
            organization_id=int(data["o"]),
            channel=str(data["c"]),
            address=str(data["a"]),
            version=int(data["v"]),
            token_id=str(data["id"]),
            extra=dict(data.get("x") or {}),
        )
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError):
        raise TokenError("bad", "This link is not valid.") from None
    # Only what we issue: values the database can hold, a known channel, an address's length.
    if not (
        0 < claim.organization_id < 2**31
        and 0 <= claim.version < 2**31
        and claim.channel in CHANNELS
        and 0 < len(claim.address) <= 320
    ):
        raise TokenError("bad", "This link is not valid.")
    return claim


def check_unspent(claim: LinkClaim, current_version: int) -> None:
    """Raise TokenError("spent") when the state has changed since the token was issued."""
    if current_version != claim.version:
        raise spent()


def spent() -> TokenError:
    """The error of a link whose choice has changed since it was issued."""
    return TokenError(
        "spent", "This link has already been used, or the choice it was for has changed since."
    )
