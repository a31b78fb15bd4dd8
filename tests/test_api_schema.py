"""The OpenAPI document covers every /api/v1 route, and the API answers as it says (schemathesis,
a bounded number of derandomized examples per operation, with a full-scope key)."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import positive_data_acceptance

from consent import ledger
from consent.extensions import db
from consent.ledger import Actor
from consent.models import Channel, Source
from tests.api_helpers import ENV_KEY
from tests.factories import make_org


@pytest.fixture
def org(app):
    org = make_org()
    ledger.opt_out(org, Channel.TEXT, "+12025550111", source=Source.PORTAL, actor=Actor.recipient())
    db.session.commit()
    return org


def test_every_api_route_is_in_the_document(app):
    documented = set()
    for path, methods in app.test_client().get("/api/v1/openapi.json").json["paths"].items():
        documented |= {(path, method.upper()) for method in methods}
    routed = {
        (rule.rule, method)
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/api/v1/") and rule.rule != "/api/v1/openapi.json"
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    assert routed == documented


OPERATIONS = ["POST /api/v1/links", "POST /api/v1/optouts", "GET /api/v1/events"]


@pytest.mark.parametrize("operation_name", OPERATIONS)
def test_the_api_answers_as_its_document_says(app, org, operation_name):
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    method, path = operation_name.split(" ")
    (operation,) = [
        result.ok()
        for result in schema.get_all_operations()
        if result.ok().path == path and result.ok().method.upper() == method
    ]

    @settings(max_examples=25, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(case=operation.as_strategy())
    def check(case):
        # Every check but "schema-valid data is accepted": an `address` that is a string but
        # not an email (or phone) fits the schema and is rightly a 400 naming the field.
        case.call_and_validate(headers=ENV_KEY, excluded_checks=[positive_data_acceptance])
        db.session.rollback()

    check()
