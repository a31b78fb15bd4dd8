"""Kept for the imports of the admin tests: the `world` fixture is in conftest.py, the World is
built by tests/factories.py (`make_world`), and a session's CSRF token comes from
tests/helpers.py."""

from __future__ import annotations

from tests.conftest import world  # noqa: F401  (for a module that imports the fixture by name)
from tests.factories import PASSWORD, World  # noqa: F401
from tests.factories import make_world as build  # noqa: F401
from tests.helpers import csrf_token as session_token  # noqa: F401

ROLES = ("org", "site", "staff")
