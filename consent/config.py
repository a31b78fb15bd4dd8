"""Configuration, read from the environment once, in the app factory."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def _bool(value: str | None, default: bool = False) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def _list(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def _dev_secret_key(instance_path: Path) -> str:
    """A development key generated once and kept in instance/, so sessions survive restarts."""
    path = instance_path / "secret_key"
    if path.exists():
        return path.read_text().strip()
    instance_path.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    path.write_text(key)
    path.chmod(0o600)
    return key


def _public_base_url(env: dict[str, str], production: bool) -> str | None:
    """PUBLIC_BASE_URL as set; unset in development, the address `make run` serves (its PORT),
    so links in messages work; unset in production, none (the request's own URL is used)."""
    url = (env.get("PUBLIC_BASE_URL") or "").rstrip("/")
    if url:
        return url
    if production:
        return None
    return f"http://127.0.0.1:{int(env.get('PORT') or 5000)}"


def from_environment(instance_path: str, env: dict[str, str] | None = None) -> dict:
    """The app's settings from environment variables (README "Configuration")."""
    env = dict(os.environ if env is None else env)
    instance = Path(instance_path)
    production = env.get("FLASK_ENV") == "production" or _bool(env.get("PRODUCTION"))
    database_url = env.get("DATABASE_URL") or f"sqlite:///{instance / 'consent-desk.sqlite3'}"
    if database_url.startswith("postgres://"):
        database_url = "postgresql+psycopg://" + database_url[len("postgres://") :]
    elif database_url.startswith("postgresql://"):
        database_url = "postgresql+psycopg://" + database_url[len("postgresql://") :]
    secret_key = env.get("SECRET_KEY") or (None if production else _dev_secret_key(instance))
    if not secret_key:
        raise RuntimeError("SECRET_KEY must be set in production")
    mail_server = env.get("MAIL_SERVER")
    return {
        "PRODUCTION": production,
        "SECRET_KEY": secret_key,
        "SECRET_KEY_FALLBACKS": _list(env.get("SECRET_KEY_FALLBACKS")),
        "SQLALCHEMY_DATABASE_URI": database_url,
        "MAIL_SERVER": mail_server or "127.0.0.1",
        "MAIL_PORT": int(env.get("MAIL_PORT") or 25),
        "MAIL_USERNAME": env.get("MAIL_USERNAME") or None,
        "MAIL_PASSWORD": env.get("MAIL_PASSWORD") or None,
        "MAIL_USE_TLS": _bool(env.get("MAIL_USE_TLS")),
        "MAIL_USE_SSL": _bool(env.get("MAIL_USE_SSL")),
        "MAIL_DEFAULT_SENDER": env.get("MAIL_DEFAULT_SENDER")
        or "Consent Desk <no-reply@example.org>",
        # Delivery is decided by EMAIL_TRANSPORT, not by Flask-Mail's testing switch.
        "MAIL_SUPPRESS_SEND": False,
        # Without an SMTP server, development records email in the outbox instead of sending.
        "EMAIL_TRANSPORT": env.get("EMAIL_TRANSPORT") or ("smtp" if mail_server else "record"),
        "TWILIO_ACCOUNT_SID": env.get("TWILIO_ACCOUNT_SID") or None,
        "TWILIO_AUTH_TOKEN": env.get("TWILIO_AUTH_TOKEN") or None,
        "PUBLIC_BASE_URL": _public_base_url(env, production),
        "RATELIMIT_STORAGE_URI": env.get("RATELIMIT_STORAGE_URI") or "memory://",
        "RATELIMIT_ENABLED": _bool(env.get("RATELIMIT_ENABLED"), True),
        "RATELIMIT_HEADERS_ENABLED": True,
        "API_KEYS": _list(env.get("API_KEYS")) or ([] if production else ["demo-api-key"]),
        # Each API key's own budget (Flask-Limiter syntax).
        "API_RATE_LIMIT": env.get("API_RATE_LIMIT") or "6000 per minute",
        # Mail providers' feedback: the SNS topics of our SES bounces and complaints, and
        # SendGrid's Event Webhook verification key (base64 DER). Unset: the route is a 404.
        "SES_SNS_TOPIC_ARNS": _list(env.get("SES_SNS_TOPIC_ARNS")),
        "SENDGRID_WEBHOOK_PUBLIC_KEY": env.get("SENDGRID_WEBHOOK_PUBLIC_KEY") or None,
        "WEBHOOK_DISABLE_AFTER_HOURS": int(env.get("WEBHOOK_DISABLE_AFTER_HOURS") or 24),
        "SESSION_COOKIE_SECURE": production,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "REMEMBER_COOKIE_SECURE": production,
        "REMEMBER_COOKIE_HTTPONLY": True,
        "REMEMBER_COOKIE_SAMESITE": "Lax",
        "MAX_CONTENT_LENGTH": int(env.get("MAX_UPLOAD_MB") or 25) * 1024 * 1024,
        "IMPORT_MAX_BYTES": int(env.get("IMPORT_MAX_MB") or 20) * 1024 * 1024,
        "PROXY_FIX": int(env.get("PROXY_FIX_HOPS") or (1 if production else 0)),
        # Expiry of signed links, per purpose, in seconds. One-click unsubscribe links never
        # expire unless UNSUBSCRIBE_LINK_DAYS says so: a list's unsubscribe must keep working
        # while the address is subscribed (RFC 8058, CAN-SPAM), in old emails too.
        "TOKEN_MAX_AGE": {
            "confirm": int(env.get("CONFIRM_LINK_DAYS") or 7) * 86400,
            "preferences": int(env.get("PREFERENCES_LINK_DAYS") or 60) * 86400,
            "unsubscribe": (
                int(env["UNSUBSCRIBE_LINK_DAYS"]) * 86400
                if env.get("UNSUBSCRIBE_LINK_DAYS")
                else None
            ),
            "verify_email": int(env.get("VERIFY_EMAIL_LINK_DAYS") or 2) * 86400,
            # Account links: claim an account, reset a password, verify the sign-in email.
            "claim": int(env.get("CLAIM_LINK_DAYS") or 14) * 86400,
            "reset": int(env.get("RESET_LINK_HOURS") or 2) * 3600,
            "verify": int(env.get("VERIFY_LINK_DAYS") or 7) * 86400,
        },
        # A landline's code is read out in a call (Twilio when configured, else recorded in
        # the outbox); off: it goes by email to the owner's confirmed address instead.
        "VERIFY_BY_CALL": _bool(env.get("VERIFY_BY_CALL"), True),
        "OUTBOX_MAX_ATTEMPTS": int(env.get("OUTBOX_MAX_ATTEMPTS") or 8),
        # How long a worker holds the messages it claimed; a worker that dies loses its
        # claim when the lease runs out, and another worker delivers them.
        "OUTBOX_LEASE_SECONDS": int(env.get("OUTBOX_LEASE_SECONDS") or 300),
        # How long a background job (consent.jobs) stays with its worker between two chunks;
        # a job whose worker died is resumed by another once this runs out.
        "JOB_LEASE_SECONDS": int(env.get("JOB_LEASE_SECONDS") or 120),
        "ROSTER_CHUNK": int(env.get("ROSTER_CHUNK") or 2000),
        "IMPORT_CHUNK": int(env.get("IMPORT_CHUNK") or 5000),
        "EXPORT_JOB_ROWS": int(env.get("EXPORT_JOB_ROWS") or 5000),
        "OUTBOX_DELIVER_AFTER_COMMIT": _bool(env.get("OUTBOX_DELIVER_AFTER_COMMIT"), True),
        "DEFAULT_PHONE_REGION": env.get("DEFAULT_PHONE_REGION") or "US",
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
        "WTF_CSRF_TIME_LIMIT": None,
        # werkzeug's method for new password hashes (and the sign-in's throwaway one).
        "PASSWORD_HASH_METHOD": "scrypt",
    }
