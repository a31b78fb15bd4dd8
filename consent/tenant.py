"""The organization a request is served for (the tenant lookup)."""

from __future__ import annotations

import sqlalchemy as sa
from flask import g

from consent.extensions import db
from consent.models import Organization

# The deployment's organization: the first one. A scalar subquery, so that a statement that
# reads something else (the signed-in user, consent.web.load_user) can read it in passing.
FIRST_ORGANIZATION_ID = sa.select(sa.func.min(Organization.id)).scalar_subquery()
_FIRST_ORGANIZATION = sa.select(Organization).where(Organization.id == FIRST_ORGANIZATION_ID)


def current_organization():
    """The organization this deployment serves (the first one), cached per request."""
    if "organization" not in g:
        g.organization = db.session.scalars(_FIRST_ORGANIZATION).first()
    return g.organization


def remember_organization(organization: Organization | None) -> None:
    """Keep an organization read in passing as the request's (unless one is kept already)."""
    if "organization" not in g:
        g.organization = organization
