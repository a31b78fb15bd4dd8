"""accounts that belong to the person: a verified sign-in email, a version of each user's
sign-ins (sessions end when it moves on), and failed sign-ins per attempted email

Revision ID: 0010_accounts
Revises: 0009_roster
Create Date: 2026-12-02 10:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0010_accounts'
down_revision = '0009_roster'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('email_verified_at', sa.DateTime(), nullable=True))
        batch_op.add_column(
            sa.Column('auth_version', sa.Integer(), server_default='0', nullable=False)
        )
    # Every account made before this was made by staff, the CLI or the demo: verified.
    op.execute('UPDATE users SET email_verified_at = created_at')

    op.create_table('sign_in_failures',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('last_failed_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_sign_in_failures'))
    )
    with op.batch_alter_table('sign_in_failures', schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f('ix_sign_in_failures_last_failed_at'), ['last_failed_at'], unique=False
        )


def downgrade():
    with op.batch_alter_table('sign_in_failures', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sign_in_failures_last_failed_at'))
    op.drop_table('sign_in_failures')
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('auth_version')
        batch_op.drop_column('email_verified_at')
