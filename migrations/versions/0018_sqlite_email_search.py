"""sqlite_email_search: SQLite only, a trigram index (FTS5) of the email states' addresses for
the opt-out list's part-of-an-email search, kept up to date by triggers on consent_states, and
filled with the emails already there. PostgreSQL has its pg_trgm index since 0007_perf.

Revision ID: 0018_sqlite_email_search
Revises: 0017_job_file_parts
Create Date: 2026-12-02 07:40:00

"""
from alembic import op

from consent.database import create_email_search, drop_email_search


# revision identifiers, used by Alembic.
revision = '0018_sqlite_email_search'
down_revision = '0017_job_file_parts'
branch_labels = None
depends_on = None


def upgrade():
    create_email_search(op.get_bind())


def downgrade():
    drop_email_search(op.get_bind())
