"""performance: a covering index for eligibility (address -> status from the index alone)

Revision ID: 0007_perf
Revises: 0001_initial
Create Date: 2026-11-22 23:58:00

"""
from alembic import op


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


def downgrade():
    with op.batch_alter_table('consent_states', schema=None) as batch_op:
        batch_op.drop_index('ix_consent_states_eligibility')
