"""The parent's account pages (issue 3 builds them out)."""

from flask import Blueprint
from flask_login import current_user, login_required

bp = Blueprint("account", __name__, url_prefix="/account")


@bp.get("/settings")
@login_required
def settings():
    """The parent's own settings."""
    return f"Signed in as {current_user.email}"


@bp.get("/contacts")
@login_required
def contacts():
    """The family's other contacts."""
    return "Contacts"


@bp.get("/students")
@login_required
def students():
    """The family's students."""
    return "Students"
