"""GET /healthz: 200 when the database answers, else 503."""

import sqlalchemy as sa
from flask import Blueprint, jsonify

from consent.extensions import db

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """Say whether the app can reach its database."""
    try:
        db.session.execute(sa.text("SELECT 1"))
    except Exception:  # noqa: BLE001 - any failure means not healthy
        db.session.rollback()
        return jsonify(status="unavailable", database="unreachable"), 503
    return jsonify(status="ok", database="ok")
