"""Password hashes: the werkzeug method comes from the PASSWORD_HASH_METHOD setting (scrypt
with werkzeug's default cost unless set; the tests choose a cheap one)."""

from __future__ import annotations

from flask import current_app, has_app_context
from werkzeug.security import generate_password_hash

DEFAULT_METHOD = "scrypt"


def hash_method() -> str:
    """The method for new hashes: the app's PASSWORD_HASH_METHOD, else scrypt."""
    if has_app_context():
        return current_app.config.get("PASSWORD_HASH_METHOD") or DEFAULT_METHOD
    return DEFAULT_METHOD


def hash_password(password: str) -> str:
    """A salted hash of `password` with the configured method."""
    return generate_password_hash(password, method=hash_method())
