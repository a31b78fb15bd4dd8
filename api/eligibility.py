"""The eligibility API (issue 5 builds it out)."""

from flask import Blueprint

from consent.extensions import csrf

bp = Blueprint("api", __name__, url_prefix="/api/v1")
csrf.exempt(bp)
