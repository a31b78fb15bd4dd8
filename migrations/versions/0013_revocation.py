"""revocation: the organization's texting terms, privacy policy and postal address, and the
FCC revoke-all rule; an index of inbound texts by sender (what we last asked a number)

Revision ID: 0013_revocation
Revises: 0011_verification
Create Date: 2026-11-24 10:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0013_revocation'
down_revision = '0011_verification'
branch_labels = None
depends_on = None


def upgrade():
    # Plain ADD COLUMN (no batch): a batch would rebuild organizations, which SQLite refuses to
    # drop while foreign keys are on and other tables reference it.
    op.add_column('organizations', sa.Column('terms_url', sa.String(500), nullable=False, server_default=''))
    op.add_column('organizations', sa.Column('privacy_url', sa.String(500), nullable=False, server_default=''))
    op.add_column('organizations', sa.Column('postal_address', sa.String(300), nullable=False, server_default=''))
    op.add_column('organizations', sa.Column('revoke_all', sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_index(
        'ix_inbound_messages_sender',
        'inbound_messages',
        ['organization_id', 'from_number', 'id'],
    )


def downgrade():
    op.drop_index('ix_inbound_messages_sender', table_name='inbound_messages')
    with op.batch_alter_table('organizations') as batch:
        batch.drop_column('revoke_all')
        batch.drop_column('postal_address')
        batch.drop_column('privacy_url')
        batch.drop_column('terms_url')
