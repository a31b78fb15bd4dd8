"""performance: a covering index for eligibility (address -> status from the index alone);
PostgreSQL: a trigram index of the emails for part-of-an-email search (pg_trgm)

Revision ID: 0007_perf
Revises: 0001_initial
Create Date: 2026-11-22 23:58:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0007_perf'
down_revision = '0001_initial'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('consent_states', schema=None) as batch_op:
        batch_op.create_index(
            'ix_consent_states_eligibility',
            ['organization_id', 'channel', 'address', 'status'],
            unique=False,
        )
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('CREATE EXTENSION IF NOT EXISTS pg_trgm')
        op.create_index(
            'ix_consent_states_email_trgm',
            'consent_states',
            ['address'],
            unique=False,
            postgresql_using='gin',
            postgresql_ops={'address': 'gin_trgm_ops'},
            postgresql_where=sa.text("channel = 'email'"),
        )


def downgrade():
    if op.get_bind().dialect.name == 'postgresql':
        op.drop_index(
            'ix_consent_states_email_trgm',
            table_name='consent_states',
            postgresql_where=sa.text("channel = 'email'"),
        )
    with op.batch_alter_table('consent_states', schema=None) as batch_op:
        batch_op.drop_index('ix_consent_states_eligibility')
