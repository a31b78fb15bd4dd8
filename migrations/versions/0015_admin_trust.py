"""admin trust: the organization's time zone (admin pages show times in it)

Revision ID: 0015_admin_trust
Revises: 0012_integrations
Create Date: 2026-12-01 22:50:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0015_admin_trust'
down_revision = '0012_integrations'
branch_labels = None
depends_on = None


def upgrade():
    # A plain ADD COLUMN with a constant default: no table rebuild (SQLite keeps foreign keys).
    op.add_column(
        'organizations',
        sa.Column(
            'time_zone',
            sa.String(length=64),
            nullable=False,
            server_default='America/New_York',
        ),
    )


def downgrade():
    with op.batch_alter_table('organizations', schema=None) as batch_op:
        batch_op.drop_column('time_zone')
