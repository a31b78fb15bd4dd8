"""remembered column mappings of opt-out import files

Revision ID: 0014_import_mappings
Revises: 0015_admin_trust
Create Date: 2026-12-01 22:50:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0014_import_mappings'
down_revision = '0015_admin_trust'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('import_mappings',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('organization_id', sa.Integer(), nullable=False),
    sa.Column('headers_digest', sa.String(length=64), nullable=False),
    sa.Column('headers', sa.JSON(), nullable=False),
    sa.Column('roles', sa.JSON(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'], name=op.f('fk_import_mappings_organization_id_organizations')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_import_mappings')),
    sa.UniqueConstraint('organization_id', 'headers_digest', name='uq_import_mappings_key')
    )
    with op.batch_alter_table('import_mappings', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_import_mappings_organization_id'), ['organization_id'], unique=False)


def downgrade():
    with op.batch_alter_table('import_mappings', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_import_mappings_organization_id'))
    op.drop_table('import_mappings')
