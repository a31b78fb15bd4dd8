"""Pages reached from signed links (issue 4 builds them out)."""

from flask import Blueprint

bp = Blueprint("links", __name__)


@bp.route("/opt-back-in", methods=["GET", "POST"])
def opt_back_in():
    """Ask for a confirmation to opt back in."""
    return "Opt back in", 503
