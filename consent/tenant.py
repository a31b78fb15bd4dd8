"""The organization a request is served for (the tenant lookup)."""

from __future__ import annotations

import sqlalchemy as sa
from flask import g

from consent.extensions import db


def current_organization():
    """The organization this deployment serves (the first one), cached per request."""
    from consent.models import Organization

    if "organization" not in g:
        g.organization = db.session.scalars(
            sa.select(Organization).order_by(Organization.id)
        ).first()
    return g.organization
