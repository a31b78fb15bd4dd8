"""job_file_parts: a job's file (an upload, an export) kept in parts of about 1 MiB instead of
one blob (job_files.content), so neither its writer nor its reader holds it whole. Each
existing file's content is copied into parts, then the column dropped (a plain DROP COLUMN).

Revision ID: 0017_job_file_parts
Revises: 0016_purposes
Create Date: 2026-12-02 01:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0017_job_file_parts'
down_revision = '0016_purposes'
branch_labels = None
depends_on = None

PART_SIZE = 1024 * 1024


def upgrade():
    parts = op.create_table(
        'job_file_parts',
        sa.Column('job_file_id', sa.Integer(), nullable=False),
        sa.Column('seq', sa.Integer(), nullable=False),
        sa.Column('data', sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(['job_file_id'], ['job_files.id'], name=op.f('fk_job_file_parts_job_file_id_job_files'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('job_file_id', 'seq', name=op.f('pk_job_file_parts')),
    )
    conn = op.get_bind()
    files = sa.table('job_files', sa.column('id', sa.Integer()), sa.column('content', sa.LargeBinary()))
    ids = conn.execute(sa.select(files.c.id).order_by(files.c.id)).scalars().all()
    for file_id in ids:  # one file in memory at a time
        content = conn.execute(sa.select(files.c.content).where(files.c.id == file_id)).scalar() or b''
        for seq, start in enumerate(range(0, len(content), PART_SIZE)):
            conn.execute(parts.insert().values(job_file_id=file_id, seq=seq, data=content[start:start + PART_SIZE]))
    op.drop_column('job_files', 'content')


def downgrade():
    op.add_column('job_files', sa.Column('content', sa.LargeBinary(), nullable=True))
    conn = op.get_bind()
    files = sa.table('job_files', sa.column('id', sa.Integer()), sa.column('content', sa.LargeBinary()))
    parts = sa.table('job_file_parts', sa.column('job_file_id', sa.Integer()), sa.column('seq', sa.Integer()), sa.column('data', sa.LargeBinary()))
    ids = conn.execute(sa.select(files.c.id).order_by(files.c.id)).scalars().all()
    for file_id in ids:
        chunks = conn.execute(sa.select(parts.c.data).where(parts.c.job_file_id == file_id).order_by(parts.c.seq)).scalars()
        conn.execute(files.update().where(files.c.id == file_id).values(content=b''.join(bytes(c) for c in chunks)))
    op.drop_table('job_file_parts')
