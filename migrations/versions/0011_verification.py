"""verification: phones and emails say when and how they were proven to be their owner's
(the rows already on record come from the district's records: verified); the codes and
links sent to prove a new one

Revision ID: 0011_verification
Revises: 0010_accounts
Create Date: 2026-12-01 10:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0011_verification'
down_revision = '0010_accounts'
branch_labels = None
depends_on = None

TABLES = ('phones', 'email_addresses')


def upgrade():
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('verified_at', sa.DateTime(), nullable=True))
            batch_op.add_column(sa.Column('verified_by', sa.String(length=20), nullable=True))
        op.execute(
            sa.text(
                f"UPDATE {table} SET verified_at = CURRENT_TIMESTAMP, verified_by = 'records'"
            )
        )

    op.create_table(
        'address_verifications',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('organization_id', sa.Integer(), nullable=False),
        sa.Column('phone_id', sa.Integer(), nullable=True),
        sa.Column('email_id', sa.Integer(), nullable=True),
        sa.Column('address', sa.String(length=320), nullable=False),
        sa.Column('method', sa.String(length=12), nullable=False),
        sa.Column('sent_to', sa.String(length=320), nullable=False),
        sa.Column('secret_hash', sa.String(length=64), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('requested_by_user_id', sa.Integer(), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('expires_at', sa.DateTime(), nullable=False),
        sa.Column('used_at', sa.DateTime(), nullable=True),
        sa.CheckConstraint('(phone_id IS NULL) <> (email_id IS NULL)', name='one_row'),
        sa.ForeignKeyConstraint(['email_id'], ['email_addresses.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['organization_id'], ['organizations.id']),
        sa.ForeignKeyConstraint(['phone_id'], ['phones.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['requested_by_user_id'], ['users.id'], ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('address_verifications', schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f('ix_address_verifications_email_id'), ['email_id'], unique=False
        )
        batch_op.create_index(
            batch_op.f('ix_address_verifications_phone_id'), ['phone_id'], unique=False
        )
        batch_op.create_index(
            batch_op.f('ix_address_verifications_requested_by_user_id'),
            ['requested_by_user_id'],
            unique=False,
        )


def downgrade():
    with op.batch_alter_table('address_verifications', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_address_verifications_requested_by_user_id'))
        batch_op.drop_index(batch_op.f('ix_address_verifications_phone_id'))
        batch_op.drop_index(batch_op.f('ix_address_verifications_email_id'))
    op.drop_table('address_verifications')
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column('verified_by')
            batch_op.drop_column('verified_at')
