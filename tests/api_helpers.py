"""Helpers of the API tests: keys with scopes, two organizations, the wrong callers."""

from __future__ import annotations

from consent import api_keys
from consent.extensions import db
from consent.models import SCOPES
from tests.factories import make_org

ENV_KEY = {"Authorization": "Bearer test-api-key"}  # from API_KEYS: full scope


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def key_for(org, *scopes: str, name: str = "Mass notifications") -> dict:
    """Authorization headers of a new database key of `org` with these scopes (all when none)."""
    _row, key = api_keys.create(org, name, scopes or SCOPES)
    db.session.commit()
    return bearer(key)


def two_orgs():
    """The district (first, the deployment's) and another one with its own number."""
    ours = make_org()
    theirs = make_org(name="Other District", texting_number="+12025550199")
    db.session.commit()
    return ours, theirs


def wrong_callers(org, route_scope: str) -> dict[str, tuple[dict, int]]:
    """Headers of each wrong caller of a route and the status it must get."""
    other_scopes = [s for s in SCOPES if s != route_scope]
    revoked_row, revoked = api_keys.create(org, "revoked", SCOPES)
    api_keys.revoke(revoked_row)
    db.session.commit()
    return {
        "no key": ({}, 401),
        "not bearer": ({"Authorization": "Basic dGVzdC1hcGkta2V5Og=="}, 401),
        "unknown key": (bearer("cdk_not-a-key-we-made"), 401),
        "revoked key": (bearer(revoked), 401),
        "wrong scope": (key_for(org, *other_scopes, name="other scopes"), 403),
    }
