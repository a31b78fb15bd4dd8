"""SMS provider webhooks (issue 5 builds them out)."""

from flask import Blueprint

from consent.extensions import csrf

bp = Blueprint("sms", __name__, url_prefix="/sms")
csrf.exempt(bp)
