"""The public enrollment form (issue 3 builds it out)."""

from flask import Blueprint

bp = Blueprint("enroll", __name__)


@bp.route("/enroll", methods=["GET", "POST"])
def enroll():
    """Enroll a family."""
    return "Enrollment is not open yet.", 503
